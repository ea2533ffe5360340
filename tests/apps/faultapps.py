"""Applications the fault tests run behind a real web server, as
``apps.faultapps:router`` from the tests directory.

Every answer names the worker that produced it (its pid), so that a test
can tell a replacement worker from the one it killed. Waits are bounded:
a worker that is never interrupted still ends.
"""

import os
import signal
import time

_BLOCK = b'0123456789abcdef' * 4096      # 64 KiB
SLOW_BODY_SIZE = 256 * 1024
_LONGEST_HANG = 300.0


def _query(environ, default=''):
    return environ.get('QUERY_STRING') or default


def _answer(start_response, body, status='200 OK'):
    start_response(status, [('Content-Type', 'text/plain'), ('Content-Length', str(len(body))),
                            ('X-Worker-Pid', str(os.getpid()))])
    return [body]


def pid(environ, start_response):
    return _answer(start_response, str(os.getpid()).encode())


_served = []


def consume(environ, start_response):
    """Reads the whole body and answers its length; the first request a
    worker serves is logged, so that a test sees a fresh worker serve."""
    size = len(environ['wsgi.input'].read())
    if not _served:
        _served.append(size)
        _announce(environ, 'first POST')
    return _answer(start_response, b'%d' % size)


def slow(environ, start_response):
    """Sleeps ?SECONDS, then answers with a large body (its end proves the
    whole response arrived). Logs when it starts, so that a test knows it
    is in progress."""
    environ['wsgi.errors'].write('slow request started in pid %d\n' % os.getpid())
    environ['wsgi.errors'].flush()
    time.sleep(float(_query(environ, '1')))
    head = b'slept in %d\n' % os.getpid()
    return _answer(start_response, head + b'.' * (SLOW_BODY_SIZE - len(head) - 4) + b'end\n')


class _Stream:
    """Up to ?BLOCKS blocks of 64 KiB; close() leaves a marker file saying
    how many blocks were produced, in $FAULT_MARKERS."""

    def __init__(self, environ, tag, blocks):
        self.tag = tag
        self.blocks = blocks
        self.produced = 0
        self.log = environ['wsgi.errors']

    def __iter__(self):
        self.log.write('stream %s started in pid %d\n' % (self.tag, os.getpid()))
        self.log.flush()
        while self.produced < self.blocks:
            self.produced += 1
            yield _BLOCK

    def close(self):
        path = os.path.join(os.environ['FAULT_MARKERS'], 'closed-%s' % self.tag)
        with open(path + '.tmp', 'w') as stream:
            stream.write('%d %d' % (os.getpid(), self.produced))
        os.rename(path + '.tmp', path)


def stream(environ, start_response):
    """?TAG:BLOCKS: a streamed response whose close() the test can see."""
    tag, _, blocks = _query(environ, 'x:16').partition(':')
    body = _Stream(environ, tag, int(blocks))
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', str(len(_BLOCK) * body.blocks)),
                              ('X-Worker-Pid', str(os.getpid()))])
    return body


def hang(environ, start_response):
    """Never answers (sleeps): what --timeout is for."""
    _announce(environ, 'hang')
    time.sleep(_LONGEST_HANG)
    return _answer(start_response, b'woke up')


def spin(environ, start_response):
    """Never answers (a busy loop in Python code)."""
    _announce(environ, 'spin')
    deadline = time.monotonic() + _LONGEST_HANG
    while time.monotonic() < deadline:
        pass
    return _answer(start_response, b'spun')


def hang_after_headers(environ, start_response):
    """Sends its headers and a first block, then never finishes."""
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('X-Worker-Pid', str(os.getpid()))])

    def body():
        yield _BLOCK
        _announce(environ, 'hang after headers')
        time.sleep(_LONGEST_HANG)
        yield _BLOCK
    return body()


def deaf(environ, start_response):
    """Never answers, and no signal handler can interrupt it (as code
    stuck in a C extension): only SIGKILL ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGABRT, signal.SIGTERM])
    _announce(environ, 'deaf')
    time.sleep(_LONGEST_HANG)
    return _answer(start_response, b'heard')


def _announce(environ, what):
    environ['wsgi.errors'].write('%s request started in pid %d\n' % (what, os.getpid()))
    environ['wsgi.errors'].flush()


ROUTES = {'/pid': pid, '/consume': consume, '/slow': slow, '/stream': stream, '/hang': hang,
          '/spin': spin,
          '/hang-after-headers': hang_after_headers, '/deaf': deaf}


def router(environ, start_response):
    app = ROUTES.get(environ.get('PATH_INFO', ''))
    if app is None:
        return _answer(start_response, b'not found\n', '404 Not Found')
    return app(environ, start_response)

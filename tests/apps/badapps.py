"""Misbehaving WSGI applications, one per path, run by name as
``apps.badapps:app`` (PATH_INFO /NAME picks the application).

Every response iterable says "close() called for NAME" on wsgi.errors when
it is closed, so a test can tell from the log of any serving path (stderr of
a CGI process, Apache's error log, the FastCGI server's log) that PEP 3333's
close() happened.
"""

import os

CLOSED = 'close() called for %s'
SECRET = 'secret-detail-4f1c'   # in every exception message; never in a response


class Body:
    """A response iterable: yields *blocks*, raising where a block is an
    exception, and records (and optionally fails) its close()."""

    def __init__(self, environ, blocks, close_raises=False):
        self.errors = environ['wsgi.errors']
        self.name = environ.get('PATH_INFO', '').strip('/')
        self.blocks = blocks
        self.close_raises = close_raises

    def __iter__(self):
        for block in self.blocks:
            if isinstance(block, BaseException):
                raise block
            yield block

    def close(self):
        self.errors.write(CLOSED % self.name + '\n')
        self.errors.flush()
        if self.close_raises:
            raise RuntimeError('close() failed: ' + SECRET)


def _ok(start_response, headers=()):
    start_response('200 OK', [('Content-Type', 'text/plain'), *headers])


def raise_before_start(environ, start_response):
    raise RuntimeError('raised before start_response: ' + SECRET)


def raise_after_start(environ, start_response):
    _ok(start_response)
    raise RuntimeError('raised after start_response: ' + SECRET)


def raise_in_first_block(environ, start_response):
    _ok(start_response)
    return Body(environ, [RuntimeError('raised before the first block: ' + SECRET)])


def raise_mid_body(environ, start_response):
    _ok(start_response)
    return Body(environ, [b'partial ', RuntimeError('raised mid-body: ' + SECRET), b'never'])


def raise_mid_body_with_length(environ, start_response):
    _ok(start_response, [('Content-Length', '100')])
    return Body(environ, [b'partial ', RuntimeError('raised mid-body: ' + SECRET), b'never'])


def returns_bytes(environ, start_response):
    _ok(start_response)
    return b'a body, not an iterable of bodies'


def returns_str(environ, start_response):
    _ok(start_response)
    return 'a str body'


def yields_str(environ, start_response):
    _ok(start_response)
    return Body(environ, ['a str block'])


def yields_str_mid_body(environ, start_response):
    _ok(start_response)
    return Body(environ, [b'partial ', 'a str block', b'never'])


def non_latin1_value(environ, start_response):
    _ok(start_response, [('X-Name', 'snow\u2603man')])
    return Body(environ, [b'never sent'])


def crlf_in_value(environ, start_response):
    _ok(start_response, [('X-Evil', 'a\r\nSet-Cookie: stolen=1')])
    return Body(environ, [b'never sent'])


def lf_in_value(environ, start_response):
    _ok(start_response, [('X-Evil', 'a\nSet-Cookie: stolen=1')])
    return Body(environ, [b'never sent'])


def crlf_in_name(environ, start_response):
    _ok(start_response, [('X-Evil\r\nSet-Cookie', 'stolen=1')])
    return Body(environ, [b'never sent'])


def nul_in_value(environ, start_response):
    _ok(start_response, [('X-Evil', 'a\x00b')])
    return Body(environ, [b'never sent'])


def del_in_name(environ, start_response):
    _ok(start_response, [('X-Ev\x7fil', 'b')])
    return Body(environ, [b'never sent'])


def crlf_in_status(environ, start_response):
    start_response('200 OK\r\nSet-Cookie: stolen=1', [])
    return Body(environ, [b'never sent'])


def start_response_twice(environ, start_response):
    _ok(start_response)
    start_response('404 Not Found', [('Content-Type', 'text/plain')])
    return Body(environ, [b'never sent'])


def close_raises(environ, start_response):
    _ok(start_response, [('Content-Length', '8')])
    return Body(environ, [b'complete'], close_raises=True)


def status_without_reason(environ, start_response):
    start_response('200', [])
    return Body(environ, [b'never sent'])


def status_not_numeric(environ, start_response):
    start_response('OK 200', [])
    return Body(environ, [b'never sent'])


def status_without_space(environ, start_response):
    start_response('200OK', [])
    return Body(environ, [b'never sent'])


def status_as_bytes(environ, start_response):
    start_response(b'200 OK', [])
    return Body(environ, [b'never sent'])


def status_as_int(environ, start_response):
    start_response(200, [])
    return Body(environ, [b'never sent'])


def headers_as_dict(environ, start_response):
    start_response('200 OK', {'Content-Type': 'text/plain'})
    return Body(environ, [b'never sent'])


def status_header(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Status', '302 Found'),
                              ('Location', 'http://elsewhere.example/')])
    return [b'a 200 that a web server would have sent as a redirect']


def status_header_added_after_start(environ, start_response):
    headers = [('Content-Type', 'text/plain')]
    start_response('200 OK', headers)
    headers.append(('status', '403 Forbidden'))
    return Body(environ, [b'added after start_response'])


def hop_by_hop_header(environ, start_response):
    _ok(start_response, [('Connection', 'close')])
    return Body(environ, [b'never sent'])


def non_latin1_name(environ, start_response):
    _ok(start_response, [('X-Snow\u2603', 'man')])
    return Body(environ, [b'never sent'])


def non_latin1_status(environ, start_response):
    start_response('200 Snow\u2603man', [])
    return Body(environ, [b'never sent'])


def headers_changed_after_start(environ, start_response):
    headers = [('Content-Type', 'text/plain')]
    start_response('200 OK', headers)
    # Added after start_response() checked the list: checked again when sent.
    headers.append(('X-Evil', 'a\r\nSet-Cookie: stolen=1'))
    return Body(environ, [b'complete'])


def returns_none(environ, start_response):
    _ok(start_response)


def exits(environ, start_response):
    raise SystemExit('the application called sys.exit(): ' + SECRET)


def latin1_value(environ, start_response):
    """Not misbehaving: a value within ISO-8859-1 goes out as its bytes."""
    _ok(start_response, [('X-Name', 'caf\xe9')])
    return Body(environ, [b'complete'])


def pid(environ, start_response):
    """Which process serves: for the FastCGI tests, the worker's pid."""
    _ok(start_response)
    return Body(environ, [str(os.getpid()).encode()])


def app(environ, start_response):
    name = environ.get('PATH_INFO', '').strip('/')
    if name.startswith('_') or name in ('app', 'Body') or not callable(globals().get(name)):
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'no such application']
    return globals()[name](environ, start_response)

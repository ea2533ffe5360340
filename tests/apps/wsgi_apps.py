"""WSGI applications the tests run through both wsgiref and gateway."""

import sys


def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'Hello, world!\n']


def two_chunks(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'first ', b'second']


def generator(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    yield b'one '
    yield b''
    yield b'two'


def declared_length(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '10')])
    return [b'01234', b'56789']


def empty(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return []


def write_callable(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'written ')
    return [b'returned']


def header_added_after_start(environ, start_response):
    # wsgiref sends what the list holds when the headers go out.
    headers = [('Content-Type', 'text/plain')]
    start_response('200 OK', headers)
    headers.append(('X-Added', 'later'))
    return [b'late header']


def echo_environ(environ, start_response):
    keys = ('REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'CONTENT_TYPE',
            'CONTENT_LENGTH', 'SERVER_PROTOCOL', 'HTTP_X_FOO', 'HTTP_PROXY')
    lines = ['%s=%r' % (key, environ.get(key)) for key in keys]
    lines.append('wsgi.url_scheme=%s' % environ['wsgi.url_scheme'])
    lines.append('wsgi.run_once=%r' % environ['wsgi.run_once'])
    lines.append('wsgi.multithread=%r' % environ['wsgi.multithread'])
    lines.append('wsgi.multiprocess=%r' % environ['wsgi.multiprocess'])
    start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8')])
    return ['\n'.join(lines).encode('utf-8')]


def echo_body(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    body = environ['wsgi.input'].read(length)
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


def read_all(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


def not_found(environ, start_response):
    start_response('404 Not Found', [('Content-Type', 'text/html'), ('X-Multi', 'a'),
                                     ('X-Multi', 'b')])
    return [b'<h1>Not Found</h1>']


def error_before_start(environ, start_response):
    raise RuntimeError('boom before start_response')


def error_in_iteration_before_body(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])

    def body():
        raise RuntimeError('boom before the first chunk')
        yield b''  # pragma: no cover
    return body()


def error_after_body(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])

    def body():
        yield b'partial '
        raise RuntimeError('boom after the first chunk')
    return body()


def exc_info_recovery(environ, start_response):
    try:
        raise ValueError('handled by the app')
    except ValueError:
        start_response('200 OK', [('Content-Type', 'text/plain')])
        start_response('503 Service Unavailable', [('Content-Type', 'text/plain')], sys.exc_info())
    return [b'recovered']


def returns_bytes(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return b'this should have been a list'


def returns_str(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return 'text'


def too_long(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
    return [b'12345', b'EXTRA']


def crosses_length(environ, start_response):
    """The declared length ends in the middle of the second block."""
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
    return [b'123', b'45EXTRA']


def too_short(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '100')])
    return [b'only a little', b'']


def no_content(environ, start_response):
    start_response('204 No Content', [])
    return [b'']


def not_modified(environ, start_response):
    start_response('304 Not Modified', [('ETag', '"x"')])
    return [b'']


def continue_status(environ, start_response):
    start_response('103 Early Hints', [('Link', '</s.css>; rel=preload')])
    return [b'']


def header_injection(environ, start_response):
    start_response('200 OK', [('X-Evil', 'a\r\nSet-Cookie: stolen=1')])
    return [b'never sent']


def status_injection(environ, start_response):
    start_response('200 OK\r\nSet-Cookie: stolen=1', [])
    return [b'never sent']


def name_injection(environ, start_response):
    start_response('200 OK', [('X-Evil\r\nSet-Cookie', 'stolen=1')])
    return [b'never sent']


class ClosingIterable:
    """Records close() in a list the test holds."""

    def __init__(self, chunks, log, fail_at=None, close_raises=False):
        self.chunks = chunks
        self.log = log
        self.fail_at = fail_at
        self.close_raises = close_raises

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError('iteration failed at %d' % index)
            yield chunk

    def close(self):
        self.log.append('closed')
        if self.close_raises:
            raise RuntimeError('close() failed')


DIFFERENTIAL = [
    hello, two_chunks, generator, declared_length, empty, write_callable, echo_environ,
    header_added_after_start,
    echo_body, not_found, error_before_start, error_in_iteration_before_body,
    exc_info_recovery,
]

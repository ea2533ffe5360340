"""Each wsgiref defect that gateway fixes, shown against wsgiref itself."""

import io
import subprocess
import sys

import pytest

import gateway.handlers as gw
import wsgiref.handlers as std
from apps import wsgi_apps
from support.helpers import REPO, TESTS
from test_handlers_differential import environ, run_in_process


class RecordingHandler(gw.SimpleHandler):
    """An origin server handler that records abort_response() calls."""

    aborted = 0

    def abort_response(self):
        super().abort_response()
        type(self).aborted += 1


def run_recording(app, **env):
    RecordingHandler.aborted = 0
    out, err = io.BytesIO(), io.StringIO()
    RecordingHandler(io.BytesIO(), out, err, environ(**env)).run(app)
    return out.getvalue(), err.getvalue(), RecordingHandler.aborted


def body_of(raw):
    return raw.partition(b'\r\n\r\n')[2]


# 1. Content-Length is a promise: never more, and a shortfall is noticed.

def test_never_more_than_declared_content_length():
    out, err, aborted = run_recording(wsgi_apps.too_long)
    assert body_of(out) == b'12345'
    assert 'more than its Content-Length of 5; 5 bytes dropped' in err
    assert aborted == 0
    stdlib_out, _ = run_in_process(std, 'SimpleHandler', wsgi_apps.too_long, environ())
    assert body_of(stdlib_out) == b'12345EXTRA'   # the defect being fixed


@pytest.mark.parametrize('handler', ['SimpleHandler', 'BaseCGIHandler'])
def test_a_block_crossing_the_declared_length_is_cut_at_it(handler):
    # The bytes up to the length go out, the rest of that block does not:
    # a client waiting for 5 bytes gets them (and no more).
    out, err = run_in_process(gw, handler, wsgi_apps.crosses_length, environ())
    assert body_of(out) == b'12345'
    assert 'more than its Content-Length of 5; 5 bytes dropped' in err


def test_fewer_bytes_than_declared_is_logged_and_aborts():
    out, err, aborted = run_recording(wsgi_apps.too_short)
    assert body_of(out) == b'only a little'
    assert 'response truncated: Content-Length 100 declared, 13 bytes sent' in err
    assert aborted == 1


def test_excess_dropped_for_cgi_too():
    out, err = run_in_process(gw, 'BaseCGIHandler', wsgi_apps.too_long, environ())
    assert out == b'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n12345'
    assert 'bytes dropped' in err


def test_invalid_declared_content_length_is_a_500():
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '12abc')])
        return [b'x']
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert out.startswith(b'Status: 500 Internal Server Error\r\n')
    assert 'Invalid Content-Length' in err


# 2. No Content-Length on 1xx/204/304; no body after HEAD (origin server).

@pytest.mark.parametrize('app', [wsgi_apps.no_content, wsgi_apps.not_modified,
                                 wsgi_apps.continue_status], ids=lambda a: a.__name__)
@pytest.mark.parametrize('class_name', ['SimpleHandler', 'BaseCGIHandler'])
def test_no_content_length_on_responses_without_content(app, class_name):
    out, err = run_in_process(gw, class_name, app, environ())
    assert b'Content-Length' not in out, out
    assert err == ''
    stdlib_out, _ = run_in_process(std, class_name, app, environ())
    assert b'Content-Length: 0' in stdlib_out   # the defect being fixed


def test_head_gets_headers_of_get_but_no_body():
    get, _ = run_in_process(gw, 'SimpleHandler', wsgi_apps.hello, environ())
    head, err = run_in_process(gw, 'SimpleHandler', wsgi_apps.hello, environ(REQUEST_METHOD='HEAD'))
    assert head == get.partition(b'\r\n\r\n')[0] + b'\r\n\r\n'
    assert b'Content-Length: 14\r\n' in head
    assert err == ''
    stdlib_head, _ = run_in_process(std, 'SimpleHandler', wsgi_apps.hello,
                                    environ(REQUEST_METHOD='HEAD'))
    assert stdlib_head.endswith(b'Hello, world!\n')   # the defect being fixed


def test_head_with_app_that_sends_nothing_is_not_truncated():
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '1000')])
        return []
    out, err, aborted = run_recording(app, REQUEST_METHOD='HEAD')
    assert b'Content-Length: 1000\r\n' in out and body_of(out) == b''
    assert aborted == 0 and err == ''


# 3. An app that returns bytes or str is told so in one line.

@pytest.mark.parametrize('app, kind', [(wsgi_apps.returns_bytes, 'bytes'),
                                       (wsgi_apps.returns_str, 'str')])
def test_returning_bytes_or_str_is_explained(app, kind):
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert out.startswith(b'Status: 500 Internal Server Error\r\n')
    assert err.splitlines()[-1] == (
        f'AssertionError: The application returned {kind} instead of an iterable of bytes;'
        ' return [body] instead')


def test_returning_empty_bytes_still_means_an_empty_body():
    def app(environ, start_response):
        start_response('200 OK', [])
        return b''
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert out == b'Status: 200 OK\r\nContent-Length: 0\r\n\r\n' and err == ''


# 4. An error after the headers went out: logged, aborted, close() always called.

def test_error_after_headers_logs_traceback_and_aborts():
    closed = []

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return wsgi_apps.ClosingIterable([b'partial ', b'never'], closed, fail_at=1)
    out, err, aborted = run_recording(app)
    assert body_of(out) == b'partial '
    assert 'Traceback (most recent call last)' in err
    assert 'RuntimeError: iteration failed at 1' in err
    assert 'error after the response headers were sent; response aborted' in err
    assert aborted == 1
    assert closed == ['closed']


def test_close_that_raises_after_a_complete_response_sends_nothing_more():
    closed = []

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return wsgi_apps.ClosingIterable([b'complete'], closed, close_raises=True)
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert out == b'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\ncomplete'
    assert 'RuntimeError: close() failed' in err
    assert closed == ['closed']
    stdlib_out, _ = run_in_process(std, 'BaseCGIHandler', app, environ())
    assert stdlib_out.count(b'Status:') == 2   # wsgiref appends a second response


@pytest.mark.parametrize('fail_at', [None, 0, 1])
def test_close_called_exactly_once(fail_at):
    closed = []

    def app(environ, start_response):
        start_response('200 OK', [])
        return wsgi_apps.ClosingIterable([b'a', b'b'], closed, fail_at=fail_at)
    run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert closed == ['closed']


def test_close_called_when_the_client_disconnects():
    closed = []

    class Gone(io.BytesIO):
        def write(self, data):
            raise BrokenPipeError(32, 'Broken pipe')

    def app(environ, start_response):
        start_response('200 OK', [])
        return wsgi_apps.ClosingIterable([b'a', b'b'], closed)
    err = io.StringIO()
    gw.SimpleHandler(io.BytesIO(), Gone(), err, environ()).run(app)
    assert closed == ['closed']
    assert err.getvalue() == ''


def test_exc_info_after_headers_sent_reraises_the_apps_error():
    def app(environ, start_response):
        write = start_response('200 OK', [])
        write(b'sent')
        try:
            raise KeyError('original')
        except KeyError:
            start_response('500 Oops', [], sys.exc_info())
        return [b'not reached']
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert body_of(out) == b'sent'
    assert "KeyError: 'original'" in err


# 5. Control characters are refused, with or without -O.

@pytest.mark.parametrize('app', [wsgi_apps.header_injection, wsgi_apps.status_injection,
                                 wsgi_apps.name_injection], ids=lambda a: a.__name__)
def test_control_characters_refused(app):
    out, err = run_in_process(gw, 'SimpleHandler', app, environ())
    assert out.startswith(b'HTTP/1.0 500 Internal Server Error\r\n')
    assert b'stolen' not in out
    assert 'ValueError' in err and 'control character' in err


@pytest.mark.parametrize('module, expect_split', [('gateway.handlers', False),
                                                  ('wsgiref.handlers', True)])
def test_control_characters_refused_under_python_O(module, expect_split):
    code = ("import io, sys\nfrom apps import wsgi_apps\n"
            f"from {module} import SimpleHandler\n"
            "out = io.BytesIO()\n"
            "env = {'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.0'}\n"
            "SimpleHandler(io.BytesIO(), out, io.StringIO(), env).run(wsgi_apps.header_injection)\n"
            "sys.stdout.buffer.write(out.getvalue())\n")
    proc = subprocess.run([sys.executable, '-O', '-c', code], capture_output=True, timeout=30,
                          cwd=TESTS, env={'PYTHONPATH': f'{REPO}:{TESTS}'})
    assert proc.returncode == 0, proc.stderr
    assert (b'\r\nSet-Cookie: stolen=1\r\n' in proc.stdout) is expect_split


@pytest.mark.parametrize('value', ['a\x00b', 'a\x7fb', 'a\x1bb', 'a\nb'])
def test_headers_class_refuses_control_characters(value):
    from gateway.headers import Headers
    with pytest.raises(ValueError, match='holds a control character'):
        Headers([('X', value)])
    headers = Headers()
    with pytest.raises(ValueError, match='holds a control character'):
        headers['X'] = value
    with pytest.raises(ValueError, match='holds a control character'):
        headers.add_header('X', value)


def test_headers_allow_tab_and_latin1():
    from gateway.headers import Headers
    headers = Headers([('X', 'a\tb caf\xe9 \xa0')])
    assert bytes(headers) == b'X: a\tb caf\xe9 \xa0\r\n\r\n'


def test_hop_by_hop_refused_even_under_python_O():
    code = ("import io, sys\n"
            "assert False, 'not running under -O'\n"
            "from gateway.handlers import BaseCGIHandler\n"
            "def app(e, sr):\n"
            "    sr('200 OK', [('Connection', 'close')]); return [b'x']\n"
            "out, err = io.BytesIO(), io.StringIO()\n"
            "env = {'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.1'}\n"
            "BaseCGIHandler(io.BytesIO(), out, err, env).run(app)\n"
            "sys.stdout.buffer.write(out.getvalue())\n"
            "sys.stderr.write(err.getvalue())\n")
    proc = subprocess.run([sys.executable, '-O', '-c', code], capture_output=True, timeout=30,
                          env={'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b'Status: 500 ') and b'\r\n\r\nx' not in proc.stdout
    # The 500 is for the hop-by-hop field, not for anything else.
    assert b"Hop-by-hop header, 'Connection: close', not allowed" in proc.stderr


# Chunked responses: the opt-in that replaces wsgiref's "XXX try for chunked".

class ChunkedHandler(gw.SimpleHandler):
    http_version = '1.1'
    chunked_encoding = True


def run_chunked(app, **env):
    out = io.BytesIO()
    env.setdefault('SERVER_PROTOCOL', 'HTTP/1.1')
    ChunkedHandler(io.BytesIO(), out, io.StringIO(), environ(**env)).run(app)
    return out.getvalue()


def test_chunked_response_when_length_unknown():
    out = run_chunked(wsgi_apps.two_chunks)
    assert b'Transfer-Encoding: chunked\r\n' in out and b'Content-Length' not in out
    assert body_of(out) == b'6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n'


def test_chunked_not_used_for_http10_client_or_single_block():
    assert b'chunked' not in run_chunked(wsgi_apps.two_chunks, SERVER_PROTOCOL='HTTP/1.0')
    assert b'Content-Length: 14' in run_chunked(wsgi_apps.hello)


def test_chunked_error_leaves_the_body_unterminated():
    out = run_chunked(wsgi_apps.error_after_body)
    assert body_of(out) == b'8\r\npartial \r\n'


def test_chunked_head_sends_no_chunks():
    out = run_chunked(wsgi_apps.two_chunks, REQUEST_METHOD='HEAD')
    assert b'Transfer-Encoding: chunked\r\n' in out and body_of(out) == b''


def test_empty_first_block_does_not_send_headers_so_a_later_error_is_a_500():
    def app(environ, start_response):
        start_response('200 OK', [])
        yield b''
        raise RuntimeError('after an empty block')
    out, err = run_in_process(gw, 'BaseCGIHandler', app, environ())
    assert out.startswith(b'Status: 500 Internal Server Error\r\n')
    stdlib_out, _ = run_in_process(std, 'BaseCGIHandler', app, environ())
    assert stdlib_out.startswith(b'Status: 200 OK')   # headers went out too early


# A response that fails in finish_response() leaves the handler's request
# state in place, as wsgiref's does (its testDontResetInternalStateOnException):
# only a complete response resets the handler.

@pytest.mark.parametrize('error', [ConnectionResetError(104, 'reset'), ValueError('disk full')],
                         ids=['disconnect', 'write error'])
def test_state_kept_after_an_error_in_finish_response(error):
    class Failing(io.BytesIO):
        def write(self, data):
            raise error

    seen = []
    for module in (std, gw):
        closed = []

        def app(environ, start_response):
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return wsgi_apps.ClosingIterable([b'body'], closed)
        log = io.StringIO()
        handler = module.SimpleHandler(io.BytesIO(), Failing(), log, environ())
        handler.run(app)
        seen.append((handler.status, handler.headers.items(), handler.environ['PATH_INFO'],
                     type(handler.result).__name__, closed))
        assert (type(error).__name__ in log.getvalue()) is isinstance(error, ValueError)
    assert seen[1] == seen[0] == ('200 OK', [('Content-Type', 'text/plain')], '/p',
                                  'ClosingIterable', ['closed'])


def test_state_reset_after_a_complete_response():
    handler = gw.SimpleHandler(io.BytesIO(), io.BytesIO(), io.StringIO(), environ())
    handler.run(wsgi_apps.hello)
    assert (handler.status, handler.headers, handler.environ, handler.result) == (None,) * 4
    assert handler.headers_sent is False


# The process environment under every request (BaseHandler.os_environ) is
# read when a handler first needs it, not at import: CGI handlers never need
# it, so a CGI process reads its environment once.

def test_process_environment_read_at_first_use():
    code = ("import os, io\n"
            "import gateway.handlers as gw\n"
            "os.environ['SET_AFTER_IMPORT'] = 'seen'\n"
            "seen = {}\n"
            "def app(environ, start_response):\n"
            "    seen.update(environ)\n"
            "    start_response('200 OK', [])\n"
            "    return []\n"
            "env = {'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.0'}\n"
            "gw.SimpleHandler(io.BytesIO(), io.BytesIO(), io.StringIO(), env).run(app)\n"
            "print(seen.get('SET_AFTER_IMPORT'), seen['REQUEST_METHOD'])\n")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=30, env={'PYTHONPATH': REPO, 'FROM_THE_START': 'x'})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['seen', 'GET']



# A Status header is refused only where a web server would act on it.

def _status_header_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Status', '302 Found')])
    return [b'body']


@pytest.mark.parametrize('module', [gw, std])
def test_an_origin_server_sends_a_status_header_as_wsgiref_does(module):
    out = io.BytesIO()
    module.SimpleHandler(io.BytesIO(), out, io.StringIO(), environ()).run(_status_header_app)
    assert out.getvalue().startswith(b'HTTP/1.0 200 OK\r\n') and b'\r\nStatus: 302 Found\r\n' in out.getvalue()


def test_cgi_output_refuses_a_status_header_that_wsgiref_passes_on():
    results = {}
    for module in (gw, std):
        out, err = io.BytesIO(), io.StringIO()
        module.BaseCGIHandler(io.BytesIO(), out, err, environ()).run(_status_header_app)
        results[module] = out.getvalue(), err.getvalue()
    assert results[std][0].startswith(b'Status: 200 OK\r\n') and b'Status: 302 Found' in results[std][0]
    assert results[gw][0].startswith(b'Status: 500 Internal Server Error\r\n')
    assert b'302' not in results[gw][0] and "Header 'Status: 302 Found' not allowed" in results[gw][1]

"""gateway.simple_server on real sockets: byte for byte wsgiref.simple_server
by default, its fixes, the opt-in HTTP/1.1 and threading, and Django's
development server running on it."""

import contextlib
import io
import logging
import os
import re
import select
import socket
import socketserver
import subprocess
import sys
import threading
import wsgiref.simple_server as std_server

import pytest

import gateway.simple_server as gw_server
from apps import wsgi_apps
from support.helpers import unavailable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 10
HELLO = b'Hello, world!\n'


# -- helpers --------------------------------------------------------------------

@contextlib.contextmanager
def captured_stderr():
    """sys.stderr, where the servers write their log, as a StringIO."""
    log = io.StringIO()
    saved, sys.stderr = sys.stderr, log
    try:
        yield log
    finally:
        sys.stderr = saved


def connect(server):
    sock = socket.create_connection(server.server_address[:2], timeout=TIMEOUT)
    return sock


def read_to_eof(sock):
    """Everything until the server closes: (bytes, the error that ended it or None)."""
    data = b''
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError as error:
            return data, error
        if not chunk:
            return data, None
        data += chunk


def exchange(module, app, request, **options):
    """Send *request* to a fresh server of *module* that serves one request.

    Returns (response, log, error): what the client read until the server
    closed, what the server wrote to stderr, and the connection error, if any.
    """
    with captured_stderr() as log:
        server = module.make_server('127.0.0.1', 0, app, **options)
        try:
            thread = threading.Thread(target=server.handle_request)
            thread.start()
            with connect(server) as sock:
                sock.sendall(request)
                if not request:
                    sock.shutdown(socket.SHUT_WR)
                response, error = read_to_eof(sock)
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        finally:
            server.server_close()
    return response, log.getvalue(), error


@contextlib.contextmanager
def serving(app, module=gw_server, **options):
    """A server running serve_forever in a thread; yields the server."""
    server = module.make_server('127.0.0.1', 0, app, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()


def read_chunked(rfile):
    body = b''
    while True:
        line = rfile.readline()
        if not line.endswith(b'\r\n'):
            raise EOFError('incomplete chunked body: %r' % (body + line))
        size = int(line.split(b';')[0], 16)
        if not size:
            assert rfile.readline() == b'\r\n'
            return body
        body += rfile.read(size)
        if rfile.read(2) != b'\r\n':
            raise EOFError('incomplete chunk: %r' % body)


def read_response(rfile, head=False):
    """One response from *rfile*: (status line, {lowercased name: value}, body)."""
    status = rfile.readline()
    if not status:
        raise EOFError('connection closed before a response')
    headers = {}
    while True:
        line = rfile.readline()
        if line in (b'\r\n', b''):
            break
        name, value = line.decode('iso-8859-1').split(':', 1)
        headers[name.lower()] = value.strip()
    code = status.split()[1]
    if head or code in (b'204', b'304') or code.startswith(b'1'):
        body = b''
    elif headers.get('transfer-encoding') == 'chunked':
        body = read_chunked(rfile)
    elif 'content-length' in headers:
        body = rfile.read(int(headers['content-length']))
    else:
        body = rfile.read()
    return status.rstrip(b'\r\n').decode('iso-8859-1'), headers, body


def is_closed(rfile):
    """True if the server has closed the connection (EOF, or reset)."""
    try:
        return rfile.read(1) == b''
    except ConnectionResetError:
        return True


def normal_response(data):
    return re.sub(rb'\r\nDate: [^\r]*\r\n', b'\r\nDate: D\r\n', data)


def log_lines(log):
    """The access log lines of *log*, timestamps replaced."""
    return [re.sub(r'\[[^\]]*\]', '[T]', line) for line in log.splitlines()
            if line.startswith('127.0.0.1 - - [')]


def exception_lines(log):
    return [line for line in log.splitlines() if re.match(r'[A-Za-z_.]+(Error|Exception)\b', line)]


def echo(*keys):
    """An app whose body is repr() of the named environ values, one a line."""
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [''.join('%s=%r\n' % (key, environ.get(key)) for key in keys).encode()]
    return app


def body_echo(read):
    """An app that answers with what read(wsgi.input) returns (Content-Length set)."""
    def app(environ, start_response):
        body = read(environ['wsgi.input'])
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    return app


GET10 = b'GET / HTTP/1.0\r\n\r\n'
GET11 = b'GET /p%20q/%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\nContent-Type: text/x\r\n\r\n'
POST = (b'POST /submit HTTP/1.0\r\nContent-Type: application/octet-stream\r\n'
        b'Content-Length: 11\r\nX-Trace: one\r\nX-Trace: two\r\n\r\nhello world')


# -- differential: the default server is wsgiref's, byte for byte -----------------

DIFFERENTIAL = [
    (wsgi_apps.hello, GET10),
    (wsgi_apps.hello, GET11),
    (wsgi_apps.two_chunks, GET10),
    (wsgi_apps.generator, GET11),
    (wsgi_apps.declared_length, GET10),
    (wsgi_apps.empty, GET10),
    (wsgi_apps.write_callable, GET10),
    (wsgi_apps.not_found, GET11),
    (wsgi_apps.error_before_start, GET10),
    (wsgi_apps.error_in_iteration_before_body, GET11),
    (wsgi_apps.exc_info_recovery, GET10),
    (wsgi_apps.echo_body, POST),
    (wsgi_apps.echo_environ, GET11),
    (echo('HTTP_X_TRACE', 'HTTP_HOST', 'CONTENT_LENGTH', 'REMOTE_ADDR', 'SERVER_SOFTWARE',
          'GATEWAY_INTERFACE', 'REMOTE_HOST', 'SCRIPT_NAME'), POST),
    (wsgi_apps.hello, b'GET /' + b'x' * 70000 + b' HTTP/1.0\r\n\r\n'),     # 414
    (wsgi_apps.hello, b'NONSENSE\r\n\r\n'),                               # 400
    (wsgi_apps.hello, b'GET / HTTP/2.0\r\n\r\n'),                         # 505
    (wsgi_apps.hello, b'GET / HTTP/1.0\r\nX-Long: ' + b'y' * 70000 + b'\r\n\r\n'),  # 431
    (wsgi_apps.hello, b'GET /\r\n\r\n'),                                  # HTTP/0.9
    (wsgi_apps.hello, b''),                                               # no request
]


DIFFERENTIAL_IDS = ['%d-%s' % (n, app.__name__) for n, (app, _) in enumerate(DIFFERENTIAL)]


@pytest.mark.parametrize('app,request_bytes', DIFFERENTIAL, ids=DIFFERENTIAL_IDS)
def test_default_server_is_wsgiref_byte_for_byte(app, request_bytes):
    std = exchange(std_server, app, request_bytes)
    ours = exchange(gw_server, app, request_bytes)
    assert normal_response(ours[0]) == normal_response(std[0])
    assert log_lines(ours[1]) == log_lines(std[1])
    assert exception_lines(ours[1]) == exception_lines(std[1])
    assert ours[2] is None and std[2] is None
    if request_bytes:
        assert len(log_lines(ours[1])) >= 1


def test_default_log_line_and_server_header():
    response, log, _ = exchange(gw_server, wsgi_apps.hello, GET10)
    assert response.startswith(b'HTTP/1.0 200 OK\r\nDate: ')
    version = sys.version.split()[0].encode()
    assert b'\r\nServer: WSGIServer/0.2 CPython/%s\r\n' % version in response
    assert response.endswith(b'\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n' + HELLO)
    assert log_lines(log) == ['127.0.0.1 - - [T] "GET / HTTP/1.0" 200 14']
    assert gw_server.software_version == std_server.software_version
    assert gw_server.server_version == 'WSGIServer/0.2'
    assert gw_server.sys_version == std_server.sys_version


def test_demo_app_page_matches_apart_from_stream_objects():
    import wsgiref.handlers
    request = b'GET /demo?q HTTP/1.0\r\nContent-Type: text/plain\r\n\r\n'
    # The process environment is on both pages, read at another moment by
    # each server (gateway's when a handler first needed it, wsgiref's at
    # import: README, Differences), while tests change it: compared apart.
    process = {key.encode() for key in set(os.environ) | set(wsgiref.handlers.BaseHandler.os_environ)}
    pages = []
    for module in (std_server, gw_server):
        response = exchange(module, module.demo_app, request)[0]
        body = response.split(b'\r\n\r\n', 1)[1]
        pages.append([line for line in body.splitlines()
                      if not line.startswith((b'wsgi.input', b'wsgi.errors', b'wsgi.file_wrapper',
                                              b'SERVER_PORT'))
                      and line.split(b' = ')[0] not in process])
    assert pages[0] == pages[1]
    assert pages[1][0] == b'Hello world!' and b"PATH_INFO = '/demo'" in pages[1]


def test_head_sends_no_body_where_wsgiref_does():
    request = b'HEAD / HTTP/1.0\r\n\r\n'
    std = exchange(std_server, wsgi_apps.hello, request)
    ours = exchange(gw_server, wsgi_apps.hello, request)
    assert normal_response(std[0]) == normal_response(ours[0]) + HELLO   # documented difference
    assert ours[0].endswith(b'Content-Length: 14\r\n\r\n')
    assert log_lines(ours[1]) == log_lines(std[1]) == ['127.0.0.1 - - [T] "HEAD / HTTP/1.0" 200 14']


def test_public_names_match_wsgiref():
    assert gw_server.__all__ == std_server.__all__
    for name in ('WSGIServer', 'WSGIRequestHandler', 'ServerHandler', 'demo_app', 'make_server',
                 'server_version', 'sys_version', 'software_version', '__version__'):
        assert hasattr(gw_server, name)
    assert issubclass(gw_server.WSGIServer, std_server.HTTPServer)
    assert issubclass(gw_server.WSGIRequestHandler, std_server.BaseHTTPRequestHandler)
    assert gw_server.WSGIRequestHandler.protocol_version == 'HTTP/1.0'
    assert gw_server.ServerHandler.http_version == '1.0'
    assert gw_server.ServerHandler.server_software == std_server.software_version
    server = gw_server.make_server('127.0.0.1', 0, wsgi_apps.hello)
    try:
        assert type(server) is gw_server.WSGIServer
        assert server.get_app() is wsgi_apps.hello
        assert server.base_environ['CONTENT_LENGTH'] == server.base_environ['SCRIPT_NAME'] == ''
        assert server.RequestHandlerClass is gw_server.WSGIRequestHandler
    finally:
        server.server_close()


# -- the fixes, each against wsgiref's behaviour -----------------------------------

def test_underscore_header_is_dropped_not_merged():
    request = b'GET / HTTP/1.0\r\nX-Auth-User: alice\r\nX_Auth_User: admin\r\n\r\n'
    app = echo('HTTP_X_AUTH_USER')
    std = exchange(std_server, app, request)[0]
    ours = exchange(gw_server, app, request)[0]
    assert std.endswith(b"HTTP_X_AUTH_USER='alice,admin'\n")
    assert ours.endswith(b"HTTP_X_AUTH_USER='alice'\n")


def test_underscore_header_alone_does_not_reach_the_app():
    request = b'GET / HTTP/1.0\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n'
    app = echo('HTTP_X_FORWARDED_FOR')
    assert exchange(std_server, app, request)[0].endswith(b"HTTP_X_FORWARDED_FOR='10.0.0.1'\n")
    assert exchange(gw_server, app, request)[0].endswith(b'HTTP_X_FORWARDED_FOR=None\n')


def test_proxy_header_does_not_become_http_proxy():
    request = b'GET / HTTP/1.0\r\nProxy: http://attacker.example:8080\r\n\r\n'
    app = echo('HTTP_PROXY')
    assert exchange(std_server, app, request)[0].endswith(
        b"HTTP_PROXY='http://attacker.example:8080'\n")
    assert exchange(gw_server, app, request)[0].endswith(b'HTTP_PROXY=None\n')


def test_no_invented_content_type():
    app = echo('CONTENT_TYPE')
    assert exchange(std_server, app, GET10)[0].endswith(b"CONTENT_TYPE='text/plain'\n")
    assert exchange(gw_server, app, GET10)[0].endswith(b"CONTENT_TYPE=''\n")
    request = b'GET / HTTP/1.0\r\nContent-Type: application/json; charset=utf-8\r\n\r\n'
    assert exchange(gw_server, app, request)[0].endswith(
        b"CONTENT_TYPE='application/json; charset=utf-8'\n")


def test_error_after_headers_resets_a_close_delimited_response():
    # HTTP/1.0 without Content-Length: the end of the connection ends the
    # body, so an ordinary close would make the truncated body look whole.
    std = exchange(std_server, wsgi_apps.error_after_body, GET10)
    ours = exchange(gw_server, wsgi_apps.error_after_body, GET10)
    assert std[2] is None and std[0].endswith(b'\r\n\r\npartial ')    # looks complete
    assert isinstance(ours[2], ConnectionResetError)
    assert b'Content-Length' not in ours[0]
    assert 'RuntimeError: boom after the first chunk' in ours[1]
    assert 'response aborted' in ours[1]
    assert log_lines(ours[1]) == ['127.0.0.1 - - [T] "GET / HTTP/1.0" 200 8']


def test_short_content_length_is_logged_and_closes_without_reset():
    response, log, error = exchange(gw_server, wsgi_apps.too_short, GET10)
    assert error is None
    assert b'Content-Length: 100\r\n' in response and response.endswith(b'only a little')
    assert 'response truncated: Content-Length 100 declared, 13 bytes sent' in log


def read_rest(stream):
    return stream.read()


def test_read_without_size_stops_at_content_length():
    request = b'POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello'
    response, log, _ = exchange(gw_server, body_echo(read_rest), request)
    assert response.endswith(b'Content-Length: 5\r\n\r\nhello')

    # wsgiref's read() waits for the client to close: the response never
    # comes while the connection is open.
    with captured_stderr():
        server = std_server.make_server('127.0.0.1', 0, body_echo(read_rest))
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        try:
            with connect(server) as sock:
                sock.sendall(request)
                sock.settimeout(0.5)
                with pytest.raises(socket.timeout, match='timed out'):
                    sock.recv(1)
        finally:
            thread.join(TIMEOUT)
            server.server_close()
    assert not thread.is_alive()


def test_input_is_empty_without_content_length():
    def app(environ, start_response):
        stream = environ['wsgi.input']
        parts = [stream.read(), stream.read(10), stream.readline(), b''.join(stream.readlines())]
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [repr(parts).encode()]
    response = exchange(gw_server, app, b'POST / HTTP/1.0\r\n\r\nnot a body')[0]
    assert response.endswith(b"[b'', b'', b'', b'']")


def test_input_line_methods_respect_the_length():
    def app(environ, start_response):
        stream = environ['wsgi.input']
        parts = [stream.readline(), stream.readline(2), list(stream), stream.read()]
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [repr(parts).encode()]
    request = b'POST / HTTP/1.0\r\nContent-Length: 11\r\n\r\nab\ncdef\ngh\nEXTRA\n'
    response = exchange(gw_server, app, request)[0]
    assert response.endswith(b"[b'ab\\n', b'cd', [b'ef\\n', b'gh\\n'], b'']")


CHUNKED_POST = (b'POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
                b'5;name=value\r\nhello\r\n1\r\n \r\n6\r\nworld\n\r\n0\r\nX-Trailer: t\r\n\r\n')


def test_chunked_request_is_dechunked_in_the_default_server_too():
    std = exchange(std_server, body_echo(lambda s: s.read(10)), CHUNKED_POST)[0]
    assert std.endswith(b'\r\n\r\n5;name=val')       # wsgiref hands over the framing
    app = body_echo(read_rest)
    response = exchange(gw_server, app, CHUNKED_POST)[0]
    assert response.startswith(b'HTTP/1.0 200 OK\r\n')
    assert response.endswith(b'Content-Length: 12\r\n\r\nhello world\n')
    terminated = exchange(gw_server, echo('wsgi.input_terminated', 'CONTENT_LENGTH'), CHUNKED_POST)
    assert terminated[0].endswith(b"wsgi.input_terminated=True\nCONTENT_LENGTH=''\n")


FRAMING_ERRORS = [
    (b'Content-Length: ten\r\n', '400'),
    (b'Content-Length: -1\r\n', '400'),
    (b'Content-Length: 5\r\nContent-Length: 6\r\n', '400'),
    (b'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '400'),
    (b'Transfer-Encoding: gzip\r\n', '400'),
    (b'Transfer-Encoding: chunked, gzip\r\n', '400'),
    (b'Transfer-Encoding: gzip, chunked\r\n', '501'),
]


@pytest.mark.parametrize('headers,status', FRAMING_ERRORS)
def test_unknowable_body_length_is_refused_before_the_app(headers, status):
    calls = []

    def app(environ, start_response):
        calls.append(environ['PATH_INFO'])
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'app ran']

    request = b'POST /f HTTP/1.1\r\nHost: x\r\n' + headers + b'\r\n12345'
    std = exchange(std_server, app, request)
    assert std[0].startswith(b'HTTP/1.0 200 OK') and calls == ['/f']   # wsgiref runs the app
    response, log, _ = exchange(gw_server, app, request)
    assert response.startswith(b'HTTP/1.0 %s ' % status.encode())
    assert calls == ['/f']
    assert log_lines(log) == ['127.0.0.1 - - [T] "POST /f HTTP/1.1" %s %d'
                              % (status, len(response.split(b'\r\n\r\n', 1)[1]))]


def test_transfer_encoding_in_http10_request_is_refused():
    request = b'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
    assert exchange(gw_server, wsgi_apps.hello, request)[0].startswith(b'HTTP/1.0 400 ')


def test_identical_duplicate_content_lengths_are_accepted():
    request = b'POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc'
    assert exchange(gw_server, body_echo(read_rest), request)[0].endswith(b'\r\n\r\nabc')


def test_header_injection_refused_under_python_O():
    script = r'''
import io, socket, sys, threading
assert False, "not running under -O"
from gateway.simple_server import make_server
def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('X-Evil', 'a\r\nSet-Cookie: stolen=1')])
    return [b'never sent']
log, sys.stderr = sys.stderr, io.StringIO()
server = make_server('127.0.0.1', 0, app)
thread = threading.Thread(target=server.handle_request)
thread.start()
sock = socket.create_connection(server.server_address, timeout=10)
sock.sendall(b'GET / HTTP/1.0\r\n\r\n')
data = sock.makefile('rb').read()
thread.join(10)
print(repr(data))
print(sys.stderr.getvalue().strip().splitlines()[-2], file=log)
'''
    result = subprocess.run([sys.executable, '-O', '-c', script], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("b'HTTP/1.0 500 Internal Server Error\\r\\n")
    assert 'stolen' not in result.stdout and 'never sent' not in result.stdout
    assert 'control character' in result.stderr


# -- opt-in: threads and HTTP/1.1 ----------------------------------------------------

def test_make_server_options_build_the_classes():
    class MyServer(gw_server.WSGIServer):
        pass

    class MyHandler(gw_server.WSGIRequestHandler):
        pass

    server = gw_server.make_server('127.0.0.1', 0, wsgi_apps.hello, threaded=True, http11=True)
    custom = gw_server.make_server('127.0.0.1', 0, wsgi_apps.hello, MyServer, MyHandler,
                                   threaded=True, http11=True)
    try:
        assert type(server) is gw_server.ThreadingWSGIServer and server.daemon_threads
        assert server.RequestHandlerClass.protocol_version == 'HTTP/1.1'
        assert issubclass(server.RequestHandlerClass, gw_server.WSGIRequestHandler)
        assert isinstance(custom, MyServer) and isinstance(custom, socketserver.ThreadingMixIn)
        assert custom.daemon_threads
        assert issubclass(custom.RequestHandlerClass, MyHandler)
        assert MyHandler.protocol_version == 'HTTP/1.0'     # the caller's class is untouched
    finally:
        server.server_close()
        custom.server_close()


def test_threaded_server_serves_connections_concurrently():
    both_in = threading.Barrier(2, timeout=TIMEOUT)

    def app(environ, start_response):
        both_in.wait()      # only returns when two requests are in the app at once
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [repr(environ['wsgi.multithread']).encode()]

    with serving(app, threaded=True) as server:
        results = []

        def client():
            with connect(server) as sock:
                sock.sendall(GET10)
                results.append(read_to_eof(sock)[0])
        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    assert len(results) == 2 and all(r.endswith(b'\r\n\r\nTrue') for r in results)


def test_two_requests_on_one_connection():
    with captured_stderr() as log:
        with serving(echo('PATH_INFO', 'wsgi.multithread'), threaded=True, http11=True) as server:
            with connect(server) as sock, sock.makefile('rb') as rfile:
                sock.sendall(b'GET /one HTTP/1.1\r\nHost: x\r\n\r\n')
                first = read_response(rfile)
                sock.sendall(b'GET /two HTTP/1.1\r\nHost: x\r\n\r\n')
                second = read_response(rfile)
                sock.sendall(b'GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
                third = read_response(rfile)
                assert is_closed(rfile)
    assert first[0] == 'HTTP/1.1 200 OK' and 'connection' not in first[1]
    assert first[2] == b"PATH_INFO='/one'\nwsgi.multithread=True\n"
    assert second[2] == b"PATH_INFO='/two'\nwsgi.multithread=True\n"
    assert third[1]['connection'] == 'close' and third[2].startswith(b"PATH_INFO='/three'")
    assert [line.split('"')[1] for line in log_lines(log.getvalue())] == [
        'GET /one HTTP/1.1', 'GET /two HTTP/1.1', 'GET /three HTTP/1.1']


def test_pipelined_requests():
    with serving(echo('PATH_INFO'), threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n'
                         b'GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
            bodies = [read_response(rfile)[2] for _ in range(3)]
            assert is_closed(rfile)
    assert bodies == [b"PATH_INFO='/a'\n", b"PATH_INFO='/b'\n", b"PATH_INFO='/c'\n"]


def test_response_without_length_is_chunked():
    with serving(wsgi_apps.generator, threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            status, headers, body = read_response(rfile)
            sock.sendall(b'HEAD / HTTP/1.1\r\nHost: x\r\n\r\n')
            head = read_response(rfile, head=True)
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            raw = b''
            while not raw.endswith(b'\r\n0\r\n\r\n'):
                raw += sock.recv(65536)
    assert status == 'HTTP/1.1 200 OK' and headers['transfer-encoding'] == 'chunked'
    assert 'content-length' not in headers and body == b'one two'
    assert head[1]['transfer-encoding'] == 'chunked' and head[2] == b''
    assert raw.endswith(b'\r\n\r\n4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n')    # empty part skipped


def test_http10_client_of_http11_server_gets_no_chunks_and_a_close():
    with serving(wsgi_apps.two_chunks, threaded=True, http11=True) as server:
        with connect(server) as sock:
            sock.sendall(b'GET / HTTP/1.0\r\n\r\n')
            response, error = read_to_eof(sock)
    assert error is None
    assert response.startswith(b'HTTP/1.1 200 OK\r\n')
    assert b'Transfer-Encoding' not in response and b'\r\nConnection: close\r\n' in response
    assert response.endswith(b'\r\n\r\nfirst second')


def test_http11_without_threads_closes_every_connection():
    with serving(wsgi_apps.hello, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            status, headers, body = read_response(rfile)
            assert is_closed(rfile)
    assert headers['connection'] == 'close' and body == HELLO


def test_idle_connection_is_closed_after_the_keep_alive_timeout():
    class QuickHandler(gw_server.WSGIRequestHandler):
        protocol_version = 'HTTP/1.1'
        keep_alive_timeout = 0.2

    with serving(wsgi_apps.hello, threaded=True, handler_class=QuickHandler) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            assert read_response(rfile)[2] == HELLO
            assert is_closed(rfile)     # within the socket's TIMEOUT, not forever


@pytest.mark.parametrize('read', [
    read_rest,
    lambda stream: stream.read(4) + b'|' + stream.read(100),
    lambda stream: b'|'.join(stream),
    lambda stream: b'|'.join(stream.readlines()),
    lambda stream: stream.readline(3) + b'|' + stream.readline(),
], ids=['read', 'read-sized', 'iterate', 'readlines', 'readline-sized'])
def test_chunked_upload_is_dechunked(read):
    expected = read(io.BytesIO(b'hello world\n'))
    with serving(body_echo(read), threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(CHUNKED_POST)
            first = read_response(rfile)
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok')
            second = read_response(rfile)
    assert first[2] == expected
    assert second[2] == read(io.BytesIO(b'ok'))


@pytest.mark.parametrize('body', [
    b'zz\r\nhello\r\n0\r\n\r\n',                   # not hexadecimal
    b'0x5\r\nhello\r\n0\r\n\r\n',                  # a prefix int() would accept
    b'-5\r\nhello\r\n0\r\n\r\n',
    b'1_0\r\n' + b'x' * 16 + b'\r\n0\r\n\r\n',     # int(..., 16) accepts underscores
    b'5\nhello\r\n0\r\n\r\n',                      # bare LF
    b'5\r\nhelloXX0\r\n\r\n',                      # no CRLF after the data
    b'5;a\rb\r\nhello\r\n0\r\n\r\n',               # CR inside the line
    b'1' * 17 + b'\r\n',                           # too many digits
    b'5;' + b'e' * 5000 + b'\r\nhello\r\n0\r\n\r\n',  # size line too long
    b'0\r\nX-Big: ' + b't' * 20000 + b'\r\n\r\n',  # trailers too long
])
def test_malformed_chunked_upload_gets_400_and_a_close(body):
    request = b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' + body
    with captured_stderr() as log:
        with serving(body_echo(read_rest), threaded=True, http11=True) as server:
            with connect(server) as sock, sock.makefile('rb') as rfile:
                sock.sendall(request)
                status, headers, text = read_response(rfile)
                assert is_closed(rfile)
    assert status == 'HTTP/1.1 400 Bad Request'
    assert headers['connection'] == 'close'
    assert text == b'Bad Request: malformed chunked request body'
    assert 'ChunkedBodyError' in log.getvalue()


def test_truncated_chunked_upload_is_an_error_for_the_app():
    seen = []

    def app(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except ValueError as error:
            seen.append(error)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'done']

    request = b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort'
    with serving(app, threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            status, headers, body = read_response(rfile)
    assert isinstance(seen[0], gw_server.ChunkedBodyError) and 'incomplete' in str(seen[0])
    assert headers['connection'] == 'close' and body == b'done'


def reads_after_signal(started, go):
    def app(environ, start_response):
        started.set()
        assert go.wait(TIMEOUT)
        body = environ['wsgi.input'].read(5)
        start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
        return [body]
    return app


EXPECTING = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n'


def test_100_continue_is_sent_when_the_app_first_reads():
    started, go = threading.Event(), threading.Event()
    with serving(reads_after_signal(started, go), threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(EXPECTING)
            assert started.wait(TIMEOUT)
            assert select.select([sock], [], [], 0.2)[0] == []     # nothing before the read
            go.set()
            assert rfile.readline() == b'HTTP/1.1 100 Continue\r\n'
            assert rfile.readline() == b'\r\n'
            sock.sendall(b'hello')
            status, headers, body = read_response(rfile)
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi')
            again = read_response(rfile)
    assert status == 'HTTP/1.1 200 OK' and body == b'hello' and 'connection' not in headers
    assert again[2] == b'hi'


def test_wsgiref_sends_100_continue_before_the_app_runs():
    class Handler(std_server.WSGIRequestHandler):
        protocol_version = 'HTTP/1.1'

    started, go = threading.Event(), threading.Event()
    with captured_stderr():
        with serving(reads_after_signal(started, go), std_server, handler_class=Handler) as server:
            with connect(server) as sock:
                sock.sendall(EXPECTING)
                assert started.wait(TIMEOUT)
                early = sock.recv(100)      # arrives although the app has not read
                go.set()
                sock.sendall(b'hello')
                read_to_eof(sock)
    assert early == b'HTTP/1.1 100 Continue\r\n\r\n'


def test_no_100_continue_when_the_app_answers_without_reading():
    with serving(wsgi_apps.hello, threaded=True, http11=True) as server:
        with connect(server) as sock:
            sock.sendall(EXPECTING)
            response, error = read_to_eof(sock)
    assert response.startswith(b'HTTP/1.1 200 OK\r\n')
    assert b'100 Continue' not in response and b'\r\nConnection: close\r\n' in response
    assert response.endswith(HELLO) and error is None


def test_unread_small_body_is_skipped_and_large_one_closes():
    with serving(wsgi_apps.hello, threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc'
                         b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            assert read_response(rfile)[2] == HELLO
            assert read_response(rfile)[2] == HELLO

        size = gw_server.ServerHandler.max_discard + 1
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % size)
            sock.sendall(b'x' * size)
            assert read_response(rfile)[2] == HELLO
            assert is_closed(rfile)


def test_chunked_response_aborted_after_error_has_no_last_chunk():
    with captured_stderr() as log:
        with serving(wsgi_apps.error_after_body, threaded=True, http11=True) as server:
            with connect(server) as sock:
                sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
                response, error = read_to_eof(sock)
    assert b'\r\nTransfer-Encoding: chunked\r\n' in response
    assert response.endswith(b'\r\n\r\n8\r\npartial \r\n')      # then closed: no "0\r\n\r\n"
    assert error is None
    assert 'response aborted' in log.getvalue()


def test_short_response_closes_a_persistent_connection():
    with captured_stderr():
        with serving(wsgi_apps.too_short, threaded=True, http11=True) as server:
            with connect(server) as sock:
                sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
                response, error = read_to_eof(sock)    # ends: the server does not wait for more
    assert b'Content-Length: 100\r\n' in response and response.endswith(b'only a little')


# -- Django's development server, its real classes over gateway.simple_server -----
#
# django.core.servers.basehttp subclasses wsgiref.simple_server's WSGIServer,
# ServerHandler and WSGIRequestHandler. The module is loaded here as Django
# ships it, a second time and apart from the copy Django itself uses, with its
# `from wsgiref import simple_server` answered by gateway.simple_server: the
# same code, standing on our classes instead of wsgiref's.

def load_basehttp_over_gateway():
    """A fresh django.core.servers.basehttp whose wsgiref is gateway."""
    import importlib.util
    import types
    try:
        from django.conf import settings
    except ImportError:
        unavailable('Django is not installed (it is in the test extra)')
    if not settings.configured:
        # ThreadedWSGIServer closes database connections after each request:
        # that needs settings, and no database is needed for that.
        settings.configure(DATABASES={})
    spec = importlib.util.find_spec('django.core.servers.basehttp')
    basehttp = importlib.util.module_from_spec(spec)
    stand_in = types.ModuleType('wsgiref')
    stand_in.simple_server = gw_server
    saved = sys.modules.get('wsgiref')
    sys.modules['wsgiref'] = stand_in
    try:
        spec.loader.exec_module(basehttp)
    finally:
        if saved is None:
            del sys.modules['wsgiref']
        else:
            sys.modules['wsgiref'] = saved
    return basehttp


@pytest.fixture(scope='module')
def basehttp():
    return load_basehttp_over_gateway()


def test_djangos_classes_stand_on_gateways(basehttp):
    assert basehttp.simple_server is gw_server
    assert issubclass(basehttp.WSGIServer, gw_server.WSGIServer)
    assert issubclass(basehttp.ServerHandler, gw_server.ServerHandler)
    assert issubclass(basehttp.WSGIRequestHandler, gw_server.WSGIRequestHandler)
    for cls in (basehttp.WSGIServer, basehttp.ServerHandler, basehttp.WSGIRequestHandler):
        assert not any(base.__module__.startswith('wsgiref') for base in cls.__mro__)


class LogRecords(logging.Handler):
    """The lines Django's request handler logs (it logs through `logging`)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def framework_app(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/stream':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return iter([b'streamed ', b'body'])
    if path == '/fail':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return wsgi_apps.error_after_body(environ, lambda *args: None)
    length = int(environ.get('CONTENT_LENGTH') or 0)
    body = environ['wsgi.input'].read(length)
    text = ('%s %s body=%r user=%r' % (environ['REQUEST_METHOD'], path, body,
                                       environ.get('HTTP_X_USER'))).encode()
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(text)))])
    return [text]


@contextlib.contextmanager
def django_server(basehttp, threaded=True):
    """Django's dev server, as its run() builds it, serving framework_app:
    yields (server, stderr log, the lines Django logged)."""
    records = LogRecords()
    logger = logging.getLogger('django.server')
    saved_level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    server_class = basehttp.ThreadedWSGIServer if threaded else basehttp.WSGIServer
    try:
        with captured_stderr() as log:
            server = server_class(('127.0.0.1', 0), basehttp.WSGIRequestHandler, ipv6=False)
            server.set_app(framework_app)
            thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
            thread.start()
            try:
                yield server, log, records.lines
            finally:
                server.shutdown()
                thread.join(TIMEOUT)
                server.server_close()
    finally:
        logger.removeHandler(records)
        logger.setLevel(saved_level)


def no_server_error(log):
    return 'Exception occurred during processing' not in log.getvalue()


def test_django_dev_server_keeps_connections_alive(basehttp):
    with django_server(basehttp) as (server, log, lines):
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'GET /a HTTP/1.1\r\nHost: x\r\nX-User: alice\r\nX_User: admin\r\n\r\n')
            first = read_response(rfile)
            sock.sendall(b'POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndata')
            second = read_response(rfile)
            sock.sendall(b'HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n')
            third = read_response(rfile, head=True)
            sock.sendall(b'GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
            stream = read_response(rfile)       # delimited by the close
    assert first[0] == 'HTTP/1.1 200 OK' and 'connection' not in first[1]
    assert first[2] == b"GET /a body=b'' user='alice'"
    assert second[2] == b"POST /b body=b'data' user=None"
    assert third[0] == 'HTTP/1.1 200 OK' and third[2] == b''
    assert stream[1]['connection'] == 'close' and 'transfer-encoding' not in stream[1]
    assert stream[2] == b'streamed body'
    assert [line.split('"')[1] for line in lines] == [
        'GET /a HTTP/1.1', 'POST /b HTTP/1.1', 'HEAD /c HTTP/1.1', 'GET /stream HTTP/1.1']
    assert log.getvalue() == ''


def test_django_dev_server_without_threads_closes_each_connection(basehttp):
    with django_server(basehttp, threaded=False) as (server, log, lines):
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi')
            status, headers, body = read_response(rfile)
            assert is_closed(rfile)
    assert headers['connection'] == 'close' and body == b"POST /x body=b'hi' user=None"
    assert no_server_error(log)


def test_django_dev_server_gets_the_100_continue_and_the_reset(basehttp):
    with django_server(basehttp) as (server, log, lines):
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n'
                         b'Expect: 100-continue\r\n\r\n')
            assert rfile.readline() == b'HTTP/1.1 100 Continue\r\n' and rfile.readline() == b'\r\n'
            sock.sendall(b'abc')
            assert read_response(rfile)[2] == b"POST /e body=b'abc' user=None"
        with connect(server) as sock:
            sock.sendall(b'GET /fail HTTP/1.1\r\nHost: x\r\n\r\n')
            response, error = read_to_eof(sock)
    assert isinstance(error, ConnectionResetError)      # not a body that looks complete
    assert b'Content-Length' not in response and b'Connection: close' in response
    assert 'RuntimeError: boom after the first chunk' in log.getvalue()
    assert no_server_error(log)
    assert [line.split('"')[1] for line in lines] == ['POST /e HTTP/1.1', 'GET /fail HTTP/1.1']


def test_conflicting_framing_closes_a_persistent_connection():
    with serving(wsgi_apps.hello, threaded=True, http11=True) as server:
        with connect(server) as sock, sock.makefile('rb') as rfile:
            sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n'
                         b'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n')
            status, headers, body = read_response(rfile)
            assert is_closed(rfile)
    assert status == 'HTTP/1.1 400 Bad Request' and headers['connection'] == 'close'
    assert body == b'Both Content-Length and Transfer-Encoding given\n'


@pytest.mark.parametrize('http11', [False, True])
def test_environ_and_input_pass_both_validators(http11):
    import gateway.validate
    import wsgiref.validate

    def read_all(environ, start_response):
        body = environ['wsgi.input'].read(int(environ['CONTENT_LENGTH'] or 0))
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [body]

    request = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody'
    # The validator's iterator has no len(): chunked over HTTP/1.1.
    end = b'\r\n\r\n4\r\nbody\r\n0\r\n\r\n' if http11 else b'\r\n\r\nbody'
    for validator in (wsgiref.validate.validator, gateway.validate.validator):
        response, log, _ = exchange(gw_server, validator(read_all), request, http11=http11)
        assert response.endswith(end) and 'Error' not in log
    response, log, _ = exchange(gw_server, gateway.validate.validator(wsgi_apps.read_all),
                                request, http11=http11)
    assert response.endswith(end) and 'Error' not in log

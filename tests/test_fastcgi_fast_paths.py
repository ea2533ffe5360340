"""The FastCGI serving path's shortcuts give exactly what the long way gives.

Each shortcut on the per-request path (header checks done once, the whole
answer encoded in one call, non-blocking I/O with the timeout applied only
when a call would block, the request served straight after accept()) is
compared here with the general code it stands in for.
"""

import contextlib
import os
import socket
import tempfile
import threading

import pytest

from support.fake_transport import FakeChannel
from support.helpers import unavailable, wait_until
from gateway.handlers.base import BaseHandler
from gateway.handlers.fastcgi import FastCGIHandler, ServerLog
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p
from gateway.fastcgi.config import Config
from gateway.fastcgi.connection import ServedConnection, State
from gateway.fastcgi.transports import SocketTransport
from gateway.fastcgi.worker import Worker
from gateway.headers import Headers, check_header_name, check_header_value, check_headers
from gateway.util import is_hop_by_hop

PARAMS = {'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '/app', 'PATH_INFO': '/x',
          'QUERY_STRING': '', 'SERVER_PROTOCOL': 'HTTP/1.1', 'SERVER_NAME': 'localhost',
          'SERVER_PORT': '80'}


def hello(environ, start_response):
    body = environ['wsgi.input'].read() or b'hello'
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]


# -- one encoder call for the whole answer ------------------------------------

@pytest.mark.parametrize('size', [0, 1, 7, 8, 9, 65535, 65536, 65537, 200000])
def test_end_response_is_stdout_end_stdout_and_end_request(size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for app_status in (0, 3, -1):
        ours = p.Connection()
        ours.receive_data(c.encode_begin_request(7))
        theirs = p.Connection()
        theirs.receive_data(c.encode_begin_request(7))
        assert ours.end_response(7, data, app_status) == (
            theirs.stdout(7, data) + p.encode_record(p.FCGI_STDOUT, 7) + theirs.end_request(7, app_status))
        assert not ours.active_requests and not theirs.active_requests


# -- header checks done once ----------------------------------------------------

def _reference_checks(headers):
    """start_response()'s checks as they were: the full check of each header."""
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise AssertionError(f"Headers must be a list of (name, value) tuples (got {item!r})")
        name = check_header_name(item[0])
        check_header_value(item[1])
        if is_hop_by_hop(name):
            raise AssertionError(f"Hop-by-hop header, '{name}: {item[1]}', not allowed")
    return Headers(headers)


class _Str(str):
    pass


TRICKY = [
    [('Content-Type', 'text/plain')],
    [('X-Tab', 'a\tb')],
    [('X-Nbsp', 'a\xa0b')],
    [('X-Latin', 'caf\xe9')],
    [('X-Line', 'a\r\nSet-Cookie: x=1')],
    [('X-Nul', 'a\x00')],
    [('X-Del', 'a\x7f')],
    [('X-Esc', '\x1b[31m')],
    [('Bad Name', 'v')],
    [('Bad:Name', 'v')],
    [('', 'v')],
    [('X-Empty', '')],
    [('X-Tab\t', 'v')],
    [('X-Nbsp\xa0', 'v')],
    [(b'X-Bytes', 'v')],
    [('X-Bytes', b'v')],
    [('X-Int', 1)],
    [(_Str('X-Sub'), 'v')],
    [('X-Sub', _Str('v'))],
    [('Connection', 'close')],
    [('keep-alive', 'timeout=5')],
    [('Connection', 'close'), ('X-Bad', 'a\nb')],
    [('X-Bad', 'a\nb'), ('Connection', 'close')],
    [('X-Ok', 'v'), ('X-One', 'v', 'extra')],
    [['X-List', 'v']],
]


def _outcome(call):
    try:
        result = call()
    except Exception as error:
        return type(error), str(error)
    return 'ok', result._headers if isinstance(result, Headers) else result


@pytest.mark.parametrize('headers', TRICKY, ids=repr)
def test_start_response_accepts_and_refuses_as_the_full_checks_do(headers):
    handler = BaseHandler()
    handler.status = handler.headers = None
    expected = _outcome(lambda: _reference_checks(list(headers)))
    got = _outcome(lambda: (handler.start_response('200 OK', list(headers)), handler.headers)[1])
    assert got == expected


def test_a_field_that_passed_before_is_refused_when_it_is_no_plain_str_pair():
    class Text(str):
        pass

    for cgi in (False, True):
        check_headers([('X-Seen', 'before')], cgi=cgi)
        for field in [('X-Seen', Text('before')), (Text('X-Seen'), 'before'),
                      ('X-Seen', 'before', 'extra')]:
            with pytest.raises(AssertionError):
                check_headers([field], cgi=cgi)
    check_headers([('Status', '200 OK')])       # fine for HTTP, not for CGI output
    with pytest.raises(ValueError):
        check_headers([('Status', '200 OK')], cgi=True)


def test_headers_built_without_a_second_check_are_plain_headers():
    items = [('Content-Type', 'text/plain'), ('Content-Length', '5')]
    fast, plain = Headers._trusted(list(items)), Headers(list(items))
    assert type(fast) is Headers and vars(fast) == vars(plain)
    assert bytes(fast) == bytes(plain) and fast.get_all('content-length') == ['5']


@pytest.mark.parametrize('declared', [['5'], ['5', ' 5 '], ['5', '6'], ['x'], ['-1'], ['\xb2'], []])
def test_declared_length_read_as_get_all_reads_it(declared):
    class Subclass(Headers):
        pass

    outcomes = []
    for cls in (Headers, Subclass):
        handler = BaseHandler()
        handler.headers = cls([('X', 'y')] + [('Content-Length', value) for value in declared])
        outcomes.append(_outcome(handler._declared_length))
    assert outcomes[0] == outcomes[1]


# -- non-blocking I/O -------------------------------------------------------------

class WatchedTransport(SocketTransport):
    """The socket transport, telling each time it waits on the socket."""

    def __init__(self, sock, timeout):
        SocketTransport.__init__(self, sock, timeout)
        self.waits = []                         # 'read' or 'write', in order
        self.waited = threading.Semaphore(0)    # released on each wait

    def _wait(self, writing, deadline):
        self.waits.append('write' if writing else 'read')
        self.waited.release()
        return SocketTransport._wait(self, writing, deadline)


def _pair(read_timeout=5.0, app=None):
    ours, theirs = socket.socketpair()
    conn = ServedConnection(ours, app or hello, Config(read_timeout=read_timeout), {})
    conn.transport = WatchedTransport(ours, conn.timeout)
    return conn, theirs


def _answer(sock):
    reader, out = c.RecordReader(), b''
    while True:
        data = sock.recv(65536)
        assert data, 'closed before END_REQUEST'
        for record in reader.feed(data):
            if record.type == p.FCGI_STDOUT:
                out += record.content
            elif record.type == p.FCGI_END_REQUEST:
                return out, c.decode_end_request(record.content)


def test_nothing_arrived_yet_returns_at_once_without_waiting():
    conn, theirs = _pair()
    assert conn.handle_readable(wait=False) is True
    assert conn.transport.waits == [] and conn.state is State.OPEN
    theirs.sendall(c.encode_begin_request(1, keep_conn=True) + c.encode_params(1, PARAMS)
                   + c.encode_stdin(1, b''))
    assert conn.handle_readable(wait=False) is True
    assert _answer(theirs) == (b'Status: 200 OK\r\nContent-Type: text/plain\r\n'
                               b'Content-Length: 5\r\n\r\nhello', (0, 0))
    conn.close()
    theirs.close()


def test_input_arriving_slowly_is_waited_for_and_read():
    conn, theirs = _pair()
    body = b'x' * 300000

    def send_slowly():
        theirs.sendall(c.encode_begin_request(1) + c.encode_params(1, {
            **PARAMS, 'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': str(len(body))}))
        for start in range(0, len(body), 60000):
            # Each block only once the server waits for it.
            assert conn.transport.waited.acquire(timeout=10)
            theirs.sendall(c.encode_stdin(1, body[start:start + 60000], end=False))
        theirs.sendall(c.encode_stdin(1, b''))
    sender = threading.Thread(target=send_slowly)
    sender.start()
    result = []
    reader = threading.Thread(target=lambda: result.append(_answer(theirs)))
    reader.start()
    try:
        assert conn.handle_readable() is False     # served, then closed (no keep_conn)
        reader.join(10)
        out, end = result[0]
        assert out.endswith(b'\r\n\r\n' + body) and end == (0, 0)
        assert conn.transport.waits.count('read') >= 5
    finally:
        sender.join(10)
        theirs.close()


def test_a_silent_peer_mid_request_times_out(gateway_log):
    conn, theirs = _pair(read_timeout=0.3)
    theirs.sendall(c.encode_begin_request(1) + c.encode_params(1, {
        **PARAMS, 'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '10'}))
    assert conn.handle_readable() is False
    assert 'the web server sent no input for 0.3s; aborting it' in gateway_log.text
    assert conn.transport.waits == ['read']
    theirs.close()


def test_a_large_answer_to_a_slow_reader_is_sent_whole():
    def big(environ, start_response):
        start_response('200 OK', [])
        return [b'y' * 3000000]
    conn, theirs = _pair(app=big)
    theirs.sendall(c.encode_begin_request(1) + c.encode_params(1, PARAMS)
                   + c.encode_stdin(1, b''))
    result = []

    def read_once_the_server_waits():
        assert conn.transport.waited.acquire(timeout=10)
        result.append(_answer(theirs))
    reader = threading.Thread(target=read_once_the_server_waits)
    reader.start()
    assert conn.handle_readable() is False
    reader.join(10)
    out, end = result[0]
    assert out == b'Status: 200 OK\r\nContent-Length: 3000000\r\n\r\n' + b'y' * 3000000
    assert end == (0, 0) and conn.transport.waits[0] == 'write'
    theirs.close()


def test_a_reader_that_never_reads_times_the_send_out(gateway_log):
    def big(environ, start_response):
        start_response('200 OK', [])
        return [b'y' * 5000000]
    conn, theirs = _pair(read_timeout=0.3, app=big)
    theirs.sendall(c.encode_begin_request(1) + c.encode_params(1, PARAMS)
                   + c.encode_stdin(1, b''))
    assert conn.handle_readable() is False
    assert 'the web server read nothing we sent for 0.3s' in gateway_log.text
    assert set(conn.transport.waits) == {'write'}
    theirs.close()


# -- serving straight after accept() ------------------------------------------------

@contextlib.contextmanager
def serving(app, family):
    if family == 'unix':
        if not hasattr(socket, 'AF_UNIX'):
            unavailable('no unix sockets')
        directory = tempfile.mkdtemp()
        address = os.path.join(directory, 's')
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(address)
    else:
        listener = socket.socket()
        listener.bind(('127.0.0.1', 0))
        address = listener.getsockname()
    listener.listen(64)
    worker = Worker([listener], app, Config(workers=1, read_timeout=5))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker, family, address
    finally:
        worker.stop(graceful=False)
        thread.join(10)
        listener.close()


@pytest.fixture
def worker_on(request):
    with serving(hello, request.param) as running:
        yield running


def _connect(family, address):
    sock = socket.socket(socket.AF_UNIX if family == 'unix' else socket.AF_INET)
    sock.settimeout(5)
    sock.connect(address)
    return sock


@pytest.mark.parametrize('worker_on', ['tcp', 'unix'], indirect=True)
def test_connections_closed_after_one_request_leave_nothing_behind(worker_on):
    worker, family, address = worker_on
    for _ in range(20):
        sock = _connect(family, address)
        sock.sendall(c.encode_begin_request(1) + c.encode_params(1, PARAMS)
                     + c.encode_stdin(1, b''))
        assert _answer(sock)[0].endswith(b'hello')
        assert sock.recv(1) == b''
        sock.close()
    wait_until(lambda: not worker.connections, what='every connection closed')
    assert worker.requests_served == 20


@pytest.mark.parametrize('worker_on', ['tcp', 'unix'], indirect=True)
def test_a_request_arriving_after_the_connection_is_served(worker_on):
    worker, family, address = worker_on
    sock = _connect(family, address)
    sock.sendall(c.encode_begin_request(1, keep_conn=True))    # the rest comes later
    wait_until(lambda: [conn for conn in list(worker.connections) if conn.codec.active_requests],
               what='the worker holding the BEGIN_REQUEST')
    sock.sendall(c.encode_params(1, PARAMS) + c.encode_stdin(1, b''))
    assert _answer(sock)[0].endswith(b'hello')
    sock.sendall(c.encode_begin_request(1) + c.encode_params(1, PARAMS)
                 + c.encode_stdin(1, b'again'))
    assert _answer(sock)[0].endswith(b'again')
    assert sock.recv(1) == b''
    sock.close()


def test_accepted_tcp_connections_have_nodelay():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    worker = Worker([listener], hello, Config(workers=1, read_timeout=5))
    listener.setblocking(False)
    worker._accepting[listener] = worker._accept_plan(listener)
    clients = []
    try:
        for _ in range(3):
            client = socket.create_connection(listener.getsockname(), timeout=5)
            client.sendall(c.encode_begin_request(1, keep_conn=True))   # keeps it open
            clients.append(client)
        wait_until(lambda: worker._accept(listener) and len(worker.connections) == 3,
                   what='3 connections accepted', interval=0)
        for conn in worker.connections:
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        for conn in list(worker.connections):
            conn.close()
        for client in clients:
            client.close()
        listener.close()


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_waiting_for_the_web_server_to_close_holds_up_no_one(family):
    def ignores_input(environ, start_response):
        start_response('200 OK', [])
        return [b'not read']
    with serving(ignores_input, family) as (worker, family, address):
        # Its input never ends, so after the answer the worker waits for
        # this web server to close before closing (a close with unread
        # input would be a reset)...
        slow = _connect(family, address)
        slow.sendall(c.encode_begin_request(1) + c.encode_params(1, {
            **PARAMS, 'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '10'})
            + c.encode_stdin(1, b'0123', end=False))
        assert _answer(slow)[0].endswith(b'not read')
        assert slow.recv(1) == b''          # our side is done...
        # ...but the next web server connection is served meanwhile.
        other = _connect(family, address)
        other.sendall(c.encode_begin_request(1) + c.encode_params(1, PARAMS)
                      + c.encode_stdin(1, b''))
        assert _answer(other)[0].endswith(b'not read')
        assert State.LINGERING in [conn.state for conn in list(worker.connections)]
        other.close()
        slow.sendall(c.encode_stdin(1, b'456789'))   # more input: discarded
        slow.close()
        wait_until(lambda: not worker.connections, what='the lingering connection closed')


def test_a_response_cut_short_reaches_the_web_server_before_the_close():
    def raises_late(environ, start_response):
        start_response('200 OK', [])

        def body():
            yield b'half'
            raise RuntimeError('late')
        return body()
    with serving(raises_late, 'tcp') as (worker, family, address):
        for _ in range(20):
            sock = _connect(family, address)
            # The end of the input comes after the request has started.
            sock.sendall(c.encode_begin_request(1, keep_conn=True) + c.encode_params(1, PARAMS))
            sock.sendall(c.encode_stdin(1, b''))
            data, reader = b'', c.RecordReader()
            while True:
                chunk = sock.recv(65536)    # a reset would raise here
                if not chunk:
                    break
                data += chunk
            records = reader.feed(data)
            assert b''.join(r.content for r in records if r.type == p.FCGI_STDOUT).endswith(b'half')
            assert not [r for r in records if r.type == p.FCGI_END_REQUEST]
            sock.close()


# -- the usual answer, written at once --------------------------------------------

class _LongWay(FastCGIHandler):
    """The handler with its shortcut for the usual answer off: a subclass
    that changes how a response is written."""

    def _write(self, data):
        FastCGIHandler._write(self, data)


def _sent_by(handler_class, app, method):
    channel = FakeChannel()
    params = dict(PARAMS, REQUEST_METHOD=method)
    handler_class(channel, params, ServerLog(), False, True).run(app)
    return channel.calls


def _app(status, headers, blocks, change_after=None):
    def app(environ, start_response):
        listed = list(headers)
        start_response(status, listed)
        if change_after:
            listed.append(change_after)
        return blocks
    return app


USUAL_AND_NOT = [
    ('200 OK', [('Content-Type', 'text/plain')], [b'hello']),
    ('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')], [b'hello']),
    ('200 OK', [('content-length', ' 5 ')], [b'hello']),
    ('200 OK', [('Content-Length', '005')], [b'hello']),
    ('200 OK', [('Content-Length', '4')], [b'hello']),
    ('200 OK', [('Content-Length', '9')], [b'hello']),
    ('200 OK', [('Content-Length', '5'), ('Content-Length', '5')], [b'hello']),
    ('200 OK', [('Content-Length', 'five')], [b'hello']),
    ('200 OK', [], [b'']),
    ('200 OK', [], [b'x' * 70000]),
    ('200 OK', [], (b'tuple',)),
    ('200 OK', [], [b'a', b'b']),
    ('200 OK', [], ['text']),
    ('204 No Content', [], [b'body']),
    ('304 Not Modified', [('Content-Length', '4')], [b'body']),
    ('103 Early Hints', [], [b'body']),
    ('404 Caf\xe9', [('X-Name', 'caf\xe9')], [b'not here']),
]


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'head', 'POST'])
@pytest.mark.parametrize('status, headers, blocks', USUAL_AND_NOT)
def test_the_usual_answer_is_sent_as_the_long_way_sends_it(status, headers, blocks, method):
    assert FastCGIHandler._takes_shortcut and not _LongWay._takes_shortcut
    app = _app(status, headers, blocks)
    assert _sent_by(FastCGIHandler, app, method) == _sent_by(_LongWay, app, method)


def test_headers_changed_after_start_response_are_checked_as_the_long_way_checks_them():
    for added in [('X-Late', 'fine'), ('X-Bad', 'a\nb'), ('Content-Length', '5')]:
        app = _app('200 OK', [('Content-Type', 'text/plain')], [b'hello'], change_after=added)
        assert _sent_by(FastCGIHandler, app, 'GET') == _sent_by(_LongWay, app, 'GET')

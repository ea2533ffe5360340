"""The FastCGI server's protocol behaviour, over real sockets."""

import contextlib
import hashlib
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from support.helpers import REPO
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p
from gateway.fastcgi.config import Config
from gateway.fastcgi.worker import Worker

PARAMS = {'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '/app', 'PATH_INFO': '/x',
          'QUERY_STRING': '', 'SERVER_PROTOCOL': 'HTTP/1.1', 'SERVER_NAME': 'localhost',
          'SERVER_PORT': '80'}


class Recorder:
    """Apps for these tests, and what happened to them."""

    def __init__(self):
        self.closed = threading.Event()
        self.input_error = None
        self.reading = threading.Event()
        self.chunks = 0                 # blocks /stream has yielded

    def __call__(self, environ, start_response):
        path = environ['PATH_INFO']
        recorder = self
        if path == '/echo':
            body = environ['wsgi.input'].read()
            start_response('200 OK', [('Content-Type', 'application/octet-stream')])
            return [body]
        if path == '/slow-read':
            self.reading.set()
            try:
                environ['wsgi.input'].read()
            except Exception as error:
                self.input_error = error
                raise
            start_response('200 OK', [])
            return [b'read it all']
        if path == '/stream':
            start_response('200 OK', [('Content-Type', 'text/plain')])

            class Stream:
                def __iter__(self):
                    for index in range(100000):
                        recorder.reading.set()
                        recorder.chunks += 1
                        time.sleep(0.001)
                        yield b'chunk %d\n' % index

                def close(self):
                    recorder.closed.set()
            return Stream()
        if path == '/big':
            start_response('200 OK', [])
            return [b'x' * 200000]
        if path == '/errors':
            environ['wsgi.errors'].write('a line for the log\n')
            start_response('200 OK', [])
            return [b'logged']
        if path == '/environ':
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return ['\n'.join(sorted(environ)).encode('latin-1')]
        if path == '/raise':
            raise RuntimeError('secret detail')
        if path == '/raise-late':
            start_response('200 OK', [])

            def body():
                yield b'half'
                raise RuntimeError('late')
            return body()
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'hello ' + path.encode('latin-1')]


@contextlib.contextmanager
def running_worker(app, **settings):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(64)
    settings.setdefault('workers', 1)
    worker = Worker([listener], app, Config(**settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        worker.stop(graceful=False)
        thread.join(10)
        listener.close()
        assert not thread.is_alive()


class Client:
    """A blocking FastCGI client on one connection."""

    def __init__(self, address, timeout=10):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.reader = c.RecordReader()
        self.records = []

    def send(self, data):
        self.sock.sendall(data)

    def begin(self, request_id=1, params=None, keep_conn=False, role=p.FCGI_RESPONDER):
        self.send(c.encode_begin_request(request_id, role, keep_conn)
                  + c.encode_params(request_id, {**PARAMS, **(params or {})}))

    def next_record(self):
        while not self.records:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.records.extend(self.reader.feed(data))
        return self.records.pop(0)

    def response(self, request_id=1):
        """(stdout, stderr, (app_status, protocol_status)) of one request."""
        out, err = b'', b''
        while True:
            record = self.next_record()
            if record is None:
                return out, err, None
            if record.request_id != request_id:
                continue
            if record.type == p.FCGI_STDOUT:
                out += record.content
            elif record.type == p.FCGI_STDERR:
                err += record.content
            elif record.type == p.FCGI_END_REQUEST:
                return out, err, c.decode_end_request(record.content)

    def request(self, path='/x', body=b'', keep_conn=False, request_id=1, **params):
        self.begin(request_id, {'PATH_INFO': path, 'CONTENT_LENGTH': str(len(body)), **params},
                   keep_conn)
        self.send(c.encode_stdin(request_id, body))
        return self.response(request_id)

    def closed_by_peer(self):
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b''
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def server():
    app = Recorder()
    with running_worker(app, read_timeout=5) as address:
        yield app, address


def test_hello(server):
    app, address = server
    out, err, end = Client(address).request('/hello')
    assert out == (b'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n'
                   b'hello /hello')
    assert end == (0, p.FCGI_REQUEST_COMPLETE)


def test_keep_conn_serves_the_next_request_on_the_same_connection(server):
    _, address = server
    client = Client(address)
    for index in range(5):
        out, _, end = client.request(f'/n{index}', keep_conn=True)
        assert out.endswith(b'hello /n%d' % index) and end == (0, 0)
    client.close()


def test_without_keep_conn_the_connection_is_closed(server):
    _, address = server
    client = Client(address)
    assert client.request()[2] == (0, 0)
    assert client.closed_by_peer()


def test_get_values_truthful_and_unknown_names_left_out(server):
    _, address = server
    client = Client(address)
    client.send(c.encode_get_values([p.FCGI_MAX_CONNS, p.FCGI_MAX_REQS, p.FCGI_MPXS_CONNS,
                                     'NOT_A_VALUE']))
    record = client.next_record()
    assert record.type == p.FCGI_GET_VALUES_RESULT and record.request_id == 0
    assert p.decode_pairs(record.content) == {'FCGI_MAX_CONNS': '1024', 'FCGI_MAX_REQS': '1',
                                              'FCGI_MPXS_CONNS': '0'}


def test_get_values_answered_in_the_middle_of_a_request(server):
    app, address = server
    client = Client(address)
    client.begin(1, {'PATH_INFO': '/echo', 'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '6'})
    client.send(c.encode_stdin(1, b'abc', end=False))
    client.send(c.encode_get_values([p.FCGI_MPXS_CONNS]))
    record = client.next_record()
    assert record.type == p.FCGI_GET_VALUES_RESULT
    assert p.decode_pairs(record.content) == {'FCGI_MPXS_CONNS': '0'}
    client.send(c.encode_stdin(1, b'def'))
    out, _, end = client.response(1)
    assert out.endswith(b'\r\n\r\nabcdef') and end == (0, 0)


def test_unknown_management_type_gets_unknown_type(server):
    _, address = server
    client = Client(address)
    client.send(p.encode_record(42, 0, b'whatever'))
    record = client.next_record()
    assert record.type == p.FCGI_UNKNOWN_TYPE and c.decode_unknown_type(record.content) == 42
    assert client.request(keep_conn=True)[2] == (0, 0)   # and the connection still serves


@pytest.mark.parametrize('role', [p.FCGI_AUTHORIZER, p.FCGI_FILTER, 99])
def test_roles_not_served_get_unknown_role(server, role):
    _, address = server
    client = Client(address)
    client.begin(1, role=role)
    client.send(c.encode_stdin(1, b''))
    assert client.response(1) == (b'', b'', (0, p.FCGI_UNKNOWN_ROLE))


def test_second_begin_request_on_a_busy_connection_gets_cant_mpx_conn(server):
    app, address = server
    client = Client(address)
    client.begin(1, {'PATH_INFO': '/echo', 'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '2'},
                 keep_conn=True)
    client.send(c.encode_stdin(1, b'a', end=False))
    client.begin(2, keep_conn=True)
    client.send(c.encode_stdin(2, b''))
    assert client.response(2) == (b'', b'', (0, p.FCGI_CANT_MPX_CONN))
    client.send(c.encode_stdin(1, b'b'))
    out, _, end = client.response(1)
    assert out.endswith(b'ab') and end == (0, 0)


def test_abort_while_the_app_reads_input(server):
    app, address = server
    client = Client(address)
    client.begin(1, {'PATH_INFO': '/slow-read', 'REQUEST_METHOD': 'POST',
                     'CONTENT_LENGTH': '1000'}, keep_conn=True)
    client.send(c.encode_stdin(1, b'partial', end=False))
    assert app.reading.wait(5)
    client.send(c.encode_abort_request(1))
    out, _, end = client.response(1)
    assert end == (0, p.FCGI_REQUEST_COMPLETE) and b'read it all' not in out
    assert isinstance(app.input_error, ConnectionAbortedError)
    assert client.request('/after', keep_conn=True)[0].endswith(b'hello /after')


def test_abort_while_streaming_closes_the_iterable_promptly(server):
    app, address = server
    client = Client(address)
    client.begin(1, {'PATH_INFO': '/stream'}, keep_conn=True)
    client.send(c.encode_stdin(1, b''))
    assert app.reading.wait(5)
    assert client.next_record().type == p.FCGI_STDOUT
    client.send(c.encode_abort_request(1))
    out, _, end = client.response(1)
    assert end == (0, p.FCGI_REQUEST_COMPLETE)
    assert app.closed.wait(5)
    assert app.chunks < 100000      # closed when aborted, not after the last chunk


def test_unsafe_variables_sent_in_params_never_reach_the_application(server):
    # Straight in PARAMS, as a web server that forwards a Proxy: header (or
    # IIS, which passes Content-Type and Content-Length as HTTP_* too) sends
    # them: the server's own drop, with no front stripping anything first.
    _, address = server
    out, _, end = Client(address).request(
        '/environ', HTTP_PROXY='http://attacker.invalid:3128', HTTP_CONTENT_TYPE='text/evil',
        HTTP_CONTENT_LENGTH='99', HTTP_HOST='example.org')
    names = out.partition(b'\r\n\r\n')[2].decode('latin-1').split('\n')
    assert end == (0, 0) and 'HTTP_HOST' in names
    assert not {'HTTP_PROXY', 'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH'} & set(names)


def test_records_for_inactive_request_ids_are_ignored(server):
    _, address = server
    client = Client(address)
    client.send(c.encode_stdin(7, b'stray') + c.encode_params(9, {'A': 'b'})
                + c.encode_abort_request(5))
    out, _, end = client.request('/fine')
    assert out.endswith(b'hello /fine') and end == (0, 0)


def test_overloaded_when_over_the_connection_limit():
    with running_worker(Recorder(), max_connections=1) as address:
        first = Client(address)
        assert first.request(keep_conn=True)[2] == (0, 0)
        second = Client(address)
        second.begin(1)
        second.send(c.encode_stdin(1, b''))
        assert second.response(1) == (b'', b'', (0, p.FCGI_OVERLOADED))
        assert second.closed_by_peer()
        assert first.request(keep_conn=True)[2] == (0, 0)


def test_output_records_at_most_65535_bytes_and_padded_to_8(server):
    _, address = server
    client = Client(address)
    client.request('/big')   # warm: consume through the reader
    raw = socket.create_connection(address, timeout=10)
    raw.sendall(c.encode_begin_request(1) + c.encode_params(1, {**PARAMS, 'PATH_INFO': '/big'})
                + c.encode_stdin(1, b''))
    data = b''
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    position, stdout_total, sizes = 0, 0, []
    while position < len(data):
        version, kind, request_id, length, padding, _ = struct.unpack_from('>BBHHBB', data, position)
        assert version == 1 and length <= 65535
        assert (8 + length + padding) % 8 == 0
        sizes.append((kind, length))
        if kind == p.FCGI_STDOUT:
            stdout_total += length
        position += 8 + length + padding
    assert position == len(data)
    assert stdout_total > 200000 and len([s for s in sizes if s[0] == p.FCGI_STDOUT]) >= 4


def test_app_error_is_a_500_without_the_traceback(server, caplog):
    _, address = server
    with caplog.at_level(logging.ERROR, logger='gateway'):
        out, err, end = Client(address).request('/raise')
    assert out.startswith(b'Status: 500 Internal Server Error\r\n')
    assert b'secret detail' not in out and err == b''
    assert end == (0, 0)
    assert 'secret detail' in caplog.text


@pytest.mark.parametrize('missing', ['REQUEST_METHOD', 'SERVER_PROTOCOL'])
def test_params_without_a_required_variable_are_a_500_and_a_log_line(server, caplog, missing):
    # A web server configured without its standard FastCGI parameters (an
    # nginx location that forgot fastcgi_params) sends too little.
    _, address = server
    params = {name: value for name, value in PARAMS.items() if name != missing}
    client = Client(address)
    with caplog.at_level(logging.WARNING, logger='gateway'):
        client.send(c.encode_begin_request(1, p.FCGI_RESPONDER, False)
                    + c.encode_params(1, params) + c.encode_stdin(1, b''))
        out, err, end = client.response()
    assert out.startswith(b'Status: 500 Internal Server Error\r\n') and end == (0, 0)
    assert f'the web server set no {missing}' in caplog.text
    assert 'Traceback' not in caplog.text and 'the application raised' not in caplog.text
    assert Client(address).request('/hello')[0].endswith(b'hello /hello')


def test_error_after_headers_closes_without_end_request(server):
    _, address = server
    client = Client(address)
    out, _, end = client.request('/raise-late', keep_conn=True)
    assert out.endswith(b'half') and end is None   # the web server sees a failed response


def test_wsgi_errors_go_to_the_server_log_not_to_stderr_records(server, caplog):
    _, address = server
    with caplog.at_level(logging.ERROR, logger='gateway'):
        out, err, end = Client(address).request('/errors')
    assert err == b'' and out.endswith(b'logged')
    assert 'a line for the log' in caplog.text


def test_wsgi_errors_as_stderr_records_when_asked():
    with running_worker(Recorder(), fcgi_stderr=True) as address:
        out, err, end = Client(address).request('/errors')
    assert err == b'a line for the log\n' and end == (0, 0)


def test_stalled_sender_is_closed_after_the_read_timeout(gateway_log):
    with running_worker(Recorder(), read_timeout=0.5) as address:
        client = Client(address)
        client.begin(1, {'PATH_INFO': '/echo', 'REQUEST_METHOD': 'POST',
                         'CONTENT_LENGTH': '100'})
        client.send(p.encode_record(p.FCGI_STDIN, 1, b'')[:4])   # half a record header
        assert client.closed_by_peer()
        assert 'the web server sent no input for 0.5s; aborting it' in gateway_log.text
        assert Client(address).request('/next')[0].endswith(b'hello /next')


def test_threads_serve_other_connections_while_one_is_busy():
    app = Recorder()
    with running_worker(app, threads=2) as address:
        busy = Client(address)
        busy.begin(1, {'PATH_INFO': '/slow-read', 'REQUEST_METHOD': 'POST',
                       'CONTENT_LENGTH': '10'})
        busy.send(c.encode_stdin(1, b'12345', end=False))
        assert app.reading.wait(5)
        out, _, end = Client(address).request('/other')
        assert out.endswith(b'hello /other')
        busy.send(c.encode_stdin(1, b'67890'))
        assert busy.response(1)[0].endswith(b'read it all')


STREAM_SERVER = """
import os, socket, sys, hashlib
sys.path.insert(0, {repo!r})
from gateway.fastcgi.config import Config
from gateway.fastcgi.worker import Worker

def app(environ, start_response):
    if environ['PATH_INFO'] == '/upload':
        digest, total = hashlib.sha256(), 0
        stream = environ['wsgi.input']
        while True:
            block = stream.read(65536)
            if not block:
                break
            digest.update(block)
            total += len(block)
        start_response('200 OK', [])
        return [b'%d %s' % (total, digest.hexdigest().encode())]
    size = int(environ['QUERY_STRING'])
    start_response('200 OK', [('Content-Length', str(size))])
    block = b'z' * 65536
    def body():
        sent = 0
        while sent < size:
            chunk = block[:size - sent]
            sent += len(chunk)
            yield chunk
    return body()

listener = socket.socket()
listener.bind(('127.0.0.1', 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
Worker([listener], app, Config(workers=1)).run()
"""


def peak_rss_kb(pid):
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])


def test_100mb_upload_and_download_in_bounded_memory():
    proc = subprocess.Popen([sys.executable, '-c', STREAM_SERVER.format(repo=REPO)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        address = ('127.0.0.1', port)
        Client(address).request('/download', QUERY_STRING='10')   # warm up
        baseline = peak_rss_kb(proc.pid)
        size = 100 * 1024 * 1024

        client = Client(address, timeout=60)
        client.begin(1, {'PATH_INFO': '/upload', 'REQUEST_METHOD': 'POST',
                         'CONTENT_LENGTH': str(size)})
        digest, block = hashlib.sha256(), os.urandom(65535)
        sent = 0
        sender_error = []

        def send_body():
            nonlocal sent
            try:
                while sent < size:
                    chunk = block[:min(len(block), size - sent)]
                    client.send(p.encode_record(p.FCGI_STDIN, 1, chunk))
                    digest.update(chunk)
                    sent += len(chunk)
                client.send(p.encode_record(p.FCGI_STDIN, 1, b''))
            except OSError as error:
                sender_error.append(error)
        sender = threading.Thread(target=send_body)
        sender.start()
        out, _, end = client.response(1)
        sender.join(60)
        assert not sender_error
        assert out.split(b'\r\n\r\n', 1)[1] == b'%d %s' % (size, digest.hexdigest().encode())

        client = Client(address, timeout=60)
        client.begin(1, {'PATH_INFO': '/download', 'QUERY_STRING': str(size)})
        client.send(c.encode_stdin(1, b''))
        received, end = 0, None
        while end is None:
            record = client.next_record()
            if record.type == p.FCGI_STDOUT:
                received += len(record.content)
            elif record.type == p.FCGI_END_REQUEST:
                end = c.decode_end_request(record.content)
        head = len(b'Status: 200 OK\r\nContent-Length: %d\r\n\r\n' % size)
        assert received - head == size and end == (0, 0)

        growth_kb = peak_rss_kb(proc.pid) - baseline
        assert growth_kb < 10 * 1024, f'worker memory grew by {growth_kb} kB'
    finally:
        proc.kill()
        proc.wait(10)


class RecordingSocket(socket.socket):
    """A real socket that remembers what each send() call carried."""

    sends = None

    def send(self, data, flags=0):
        self.sends.append(bytes(data))
        return super().send(data, flags)


def serve_over_socketpair(app, params, sole=False, requests=1, keep_conn=True):
    from gateway.fastcgi.connection import ServedConnection
    ours, theirs = socket.socketpair()
    served = RecordingSocket(fileno=theirs.detach())
    served.sends = []
    conn = ServedConnection(served, app, Config(), {}, sole=sole, idle_timeout=not sole)
    ours.settimeout(10)
    responses = []
    for _ in range(requests):
        ours.sendall(c.encode_begin_request(1, keep_conn=keep_conn) + c.encode_params(1, params)
                     + c.encode_stdin(1, b''))
        assert conn.handle_readable() or not keep_conn and not sole
        reader, records = c.RecordReader(), []
        while not records or records[-1].type != p.FCGI_END_REQUEST:
            records += reader.feed(ours.recv(65536))
        responses.append(records)
    ours.close()
    return served.sends, responses, conn


def test_a_body_that_reaches_its_content_length_ends_in_the_same_write_as_end_request():
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '6')])
        yield b'abc'
        yield b'def'
    sends, responses, _ = serve_over_socketpair(app, PARAMS)
    last = list(c.parse_records(sends[-1]))
    kinds = [record.type for record in last]
    assert kinds[-1] == p.FCGI_END_REQUEST
    assert any(r.type == p.FCGI_STDOUT and r.content.endswith(b'def') for r in last)
    assert len(sends) == 2      # the first block streamed, the last with END_REQUEST


def test_the_sole_connection_outlives_requests_without_keep_conn():
    sends, responses, conn = serve_over_socketpair(Recorder(), PARAMS, sole=True, requests=3,
                                                   keep_conn=False)
    assert len(responses) == 3 and all(r[-1].type == p.FCGI_END_REQUEST for r in responses)


def test_records_after_an_abort_in_the_same_write_are_still_answered(server):
    app, address = server
    client = Client(address)
    client.begin(1, {'PATH_INFO': '/stream'}, keep_conn=True)
    client.send(c.encode_stdin(1, b''))
    assert app.reading.wait(5)
    assert client.next_record().type == p.FCGI_STDOUT
    client.send(c.encode_abort_request(1) + c.encode_get_values([p.FCGI_MPXS_CONNS]))
    assert client.response(1)[2] == (0, p.FCGI_REQUEST_COMPLETE)
    assert app.closed.wait(5)
    kinds = []
    while p.FCGI_GET_VALUES_RESULT not in kinds:
        record = client.next_record()
        assert record is not None, 'the connection closed: GET_VALUES went unanswered'
        kinds.append(record.type)
    assert p.FCGI_END_REQUEST not in kinds      # no second END_REQUEST for the abort

"""Hostile FastCGI input against a live server, over real sockets.

The corpus in ``fastcgi_corpus/`` (rebuilt by its ``make_corpus.py``) holds
one file of raw bytes per case, as a web server would send them, and
``cases.json`` says what the server must do with each. Every case is
replayed on a fresh connection to a worker that keeps serving: the
connection must be answered as expected or closed within a bound (no hang),
the log must say what was wrong and who sent it, the worker must survive,
and the next connection must be served.

Then: senders that stall mid-record, a web server that stops reading a large
response, protocol errors while an application runs, and a bounded fuzzing
run of the serving loop, bounded by its number of cases (GATEWAY_FUZZ_CASES
and GATEWAY_FUZZ_SEED make it longer or different locally).

With one thread, a worker serves one request at a time: while a stalled web
server holds a request (until read_timeout), that worker serves nobody else.
The other workers (and, with --threads, the other threads) do.
"""

import contextlib
import gzip
import json
import logging
import os
import random
import re
import socket
import struct
import threading

import pytest

from fastcgi_corpus.corpus_app import application as corpus_app
from support.fcgi_client import (TESTS, ServerProcess, cgi_params, get, pid_alive,
                                 read_until_end_request, wait_until)
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p
from gateway.fastcgi.config import Config
from gateway.fastcgi.connection import ServedConnection
from gateway.fastcgi.worker import Worker

CORPUS = os.path.join(TESTS, 'fastcgi_corpus')
# A live server answers well within this; waiting longer means it hangs.
ANSWER_TIMEOUT = 5.0

STATUS_NAMES = {p.FCGI_REQUEST_COMPLETE: 'REQUEST_COMPLETE', p.FCGI_CANT_MPX_CONN: 'CANT_MPX_CONN',
                p.FCGI_OVERLOADED: 'OVERLOADED', p.FCGI_UNKNOWN_ROLE: 'UNKNOWN_ROLE'}


def load_cases():
    with open(os.path.join(CORPUS, 'cases.json')) as f:
        cases = json.load(f)
    for case in cases:
        with open(os.path.join(CORPUS, case['file']), 'rb') as f:
            data = f.read()
        case['data'] = gzip.decompress(data) if case['file'].endswith('.gz') else data
    return cases


CASES = load_cases()


# ---------------------------------------------------------------------------
# A live worker in this process, and what it logs
# ---------------------------------------------------------------------------

class WorkerLog(logging.Handler):
    """The gateway's log records emitted by one worker thread."""

    def __init__(self, thread_name):
        logging.Handler.__init__(self, logging.DEBUG)
        self.thread_name = thread_name
        self.entries = []       # (level name, message, has a traceback)
        self.entries_lock = threading.Lock()

    def emit(self, record):
        if record.threadName == self.thread_name or record.threadName.startswith('fastcgi-'):
            with self.entries_lock:
                self.entries.append((record.levelname, record.getMessage(),
                                     record.exc_info is not None))

    def mark(self):
        with self.entries_lock:
            return len(self.entries)

    def since(self, mark):
        with self.entries_lock:
            return list(self.entries[mark:])


class LiveWorker:
    """A Worker serving on a loopback port in a thread of this process.

    An exception that escapes the worker's loop is kept in ``failure``: the
    same exception would end a worker process."""

    count = 0

    def __init__(self, app, **settings):
        LiveWorker.count += 1
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.address = self.listener.getsockname()
        settings.setdefault('workers', 1)
        settings.setdefault('read_timeout', 10.0)
        self.worker = Worker([self.listener], app, Config(**settings))
        self.failure = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f'hostile-worker-{LiveWorker.count}')
        self.log = WorkerLog(self.thread.name)
        self.logger = logging.getLogger('gateway')
        self.saved_level = self.logger.level
        self.logger.addHandler(self.log)
        self.logger.setLevel(logging.INFO)
        self.thread.start()

    def _run(self):
        try:
            self.worker.run()
        except BaseException as exc:
            self.failure = exc

    def assert_alive(self):
        assert self.failure is None, f'the worker loop died: {self.failure!r}'
        assert self.thread.is_alive(), 'the worker loop returned'

    def stop(self):
        self.worker.stop(graceful=False)
        self.thread.join(10)
        self.listener.close()
        self.logger.removeHandler(self.log)
        self.logger.setLevel(self.saved_level)
        assert not self.thread.is_alive()
        assert self.failure is None, f'the worker loop died: {self.failure!r}'


@contextlib.contextmanager
def live_worker(app=corpus_app, **settings):
    server = LiveWorker(app, **settings)
    try:
        yield server
    finally:
        server.stop()


class ProcessLog:
    """The same questions asked of a server process's log lines."""

    LINE = re.compile(r'^\[[^]]*\] \[\d+\] \[(\w+)\] (.*)$')

    def __init__(self, server):
        self.server = server

    def mark(self):
        return self.server.mark()

    def since(self, mark):
        entries = []
        for line in self.server.log.split('\n')[mark:]:
            match = self.LINE.match(line)
            if match:
                entries.append((match.group(1), match.group(2), False))
            elif entries:   # a traceback's lines follow their record's
                level, message, _ = entries[-1]
                entries[-1] = (level, message, True)
        return entries


# ---------------------------------------------------------------------------
# The web server's side
# ---------------------------------------------------------------------------

def summarize(records, final=True):
    """The records as cases.json writes them, one line each. A STDOUT
    stream becomes one line once its END_REQUEST arrived (or, *final*,
    once the connection ended without it)."""
    lines, stdout = [], {}

    def flush(request_id):
        data = b''.join(stdout.pop(request_id, []))
        if data:
            head, _, body = data.partition(b'\r\n\r\n')
            status = re.search(rb'^Status: (\d{3})', head, re.M)
            lines.append('STDOUT %d %s %s' % (request_id, status.group(1).decode() if status
                                              else 200, body.decode('latin-1')))
    for record in records:
        if record.type == p.FCGI_STDOUT:
            if record.content:
                stdout.setdefault(record.request_id, []).append(record.content)
        elif record.type == p.FCGI_END_REQUEST:
            flush(record.request_id)
            status = c.decode_end_request(record.content)[1]
            lines.append('END_REQUEST %d %s' % (record.request_id,
                                                STATUS_NAMES.get(status, status)))
        elif record.type == p.FCGI_UNKNOWN_TYPE:
            lines.append('UNKNOWN_TYPE %d' % c.decode_unknown_type(record.content))
        elif record.type == p.FCGI_GET_VALUES_RESULT:
            values = p.decode_pairs(record.content)
            lines.append('GET_VALUES_RESULT ' + ' '.join(
                f'{name}={value}' for name, value in sorted(values.items())))
        else:
            lines.append('%s %d %r' % (p.RECORD_TYPE_NAMES.get(record.type, record.type),
                                       record.request_id, record.content))
    if final:
        for request_id in list(stdout):
            flush(request_id)
    return lines


def connect(address, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(ANSWER_TIMEOUT)
    sock.connect(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def peer_of(sock):
    return '127.0.0.1:%d' % sock.getsockname()[1]


def send_tolerant(sock, data):
    """Send *data*; the server may close first (that is an outcome)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def half_close(sock):
    """Shut down our sending side; False when the server already reset
    the connection."""
    try:
        sock.shutdown(socket.SHUT_WR)
        return True
    except OSError:     # ENOTCONN after a reset
        return False


def read_until_closed(sock, reader, what):
    """The records the server sends until it closes ('eof' or 'reset')."""
    records = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return records, 'reset'
        except socket.timeout:
            raise AssertionError(f'{what}: neither answered nor closed within '
                                 f'{ANSWER_TIMEOUT}s; got {summarize(records)}') from None
        if not data:
            return records, 'eof'
        records += reader.feed(data)


def read_records(sock, reader, records, done, what):
    """Read into *records* until done(records); the server must not close."""
    while not done(records):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f'{what}: no answer within {ANSWER_TIMEOUT}s; '
                                 f'got {summarize(records)}') from None
        assert data, f'{what}: closed by the server; got {summarize(records)}'
        records += reader.feed(data)
    return records


def well_formed(request_id=1, path='/next', keep_conn=False):
    return (c.encode_begin_request(request_id, keep_conn=keep_conn)
            + c.encode_params(request_id, cgi_params(path)) + c.encode_stdin(request_id, b''))


def assert_serves(address, path='/next'):
    """A new connection gets a well-formed request answered."""
    response = get(address, path, timeout=ANSWER_TIMEOUT)
    assert (response.status, response.body, response.protocol_status) == (
        200, b'hello ' + path.encode(), p.FCGI_REQUEST_COMPLETE)


def replay(case, address, log):
    """Play one corpus case and check everything cases.json promises."""
    name, expect = case['name'], case['expect']
    mark = log.mark()
    sock = connect(address)
    peer = peer_of(sock)
    reader = c.RecordReader()
    try:
        send_tolerant(sock, case['data'])
        if case['half_close']:
            half_close(sock)
        if case['then'] == 'closed':
            records, _ = read_until_closed(sock, reader, name)
            assert summarize(records) == expect, name
        else:
            records = read_records(sock, reader, [],
                                   lambda r: len(summarize(r, final=False)) >= len(expect), name)
            assert summarize(records) == expect, name
            # Anything more the case made the server say comes before the
            # answer to a GET_VALUES sent now.
            sock.sendall(c.encode_get_values([p.FCGI_MPXS_CONNS]))
            more = read_records(sock, reader, [], lambda r: any(
                x.type == p.FCGI_GET_VALUES_RESULT for x in r), name)
            assert summarize(more) == ['GET_VALUES_RESULT FCGI_MPXS_CONNS=0'], name
            # And the connection still serves a request.
            sock.sendall(well_formed(path='/same-connection'))
            records, how = read_until_closed(sock, reader, name)
            assert summarize(records) == ['STDOUT 1 200 hello /same-connection',
                                          'END_REQUEST 1 REQUEST_COMPLETE'], name
            assert how == 'eof' and reader.partial_record is None
    finally:
        sock.close()

    if case['log'] is None:
        entries = log.since(mark)
        assert not [e for e in entries if e[0] in ('WARNING', 'ERROR', 'CRITICAL')], (
            f'{name}: nothing is wrong, yet: {entries}')
    else:
        wanted = case['log'].format(peer=peer)
        wait_until(lambda: [e for e in log.since(mark) if wanted in e[1] and peer in e[1]],
                   ANSWER_TIMEOUT, what=lambda: (
                       f'{name}: a log line with {wanted!r} and {peer}; log: {log.since(mark)}'))
    assert not [e for e in log.since(mark) if e[0] in ('ERROR', 'CRITICAL') or e[2]], (
        f'{name}: an error was logged: {log.since(mark)}')


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def servers():
    """Live workers by configuration, shared by the corpus cases: every
    case also proves the worker survived the ones before it."""
    running = {}

    def server_for(config):
        key = json.dumps(config, sort_keys=True)
        if key not in running:
            running[key] = LiveWorker(corpus_app, **config)
        return running[key]
    yield server_for
    for server in running.values():
        server.stop()


def test_corpus_files_match_the_manifest():
    names = {case['file'] for case in CASES}
    on_disk = {name for name in os.listdir(CORPUS) if name.endswith(('.bin', '.bin.gz'))}
    assert names == on_disk
    assert len({case['name'] for case in CASES}) == len(CASES)
    for case in CASES:
        assert case['then'] in ('closed', 'open') and case['what']
        assert not (case['half_close'] and case['then'] == 'open'), case['name']


@pytest.mark.parametrize('case', CASES, ids=[case['name'] for case in CASES])
def test_corpus_case(servers, case):
    server = servers(case['config'])
    replay(case, server.address, server.log)
    server.assert_alive()
    assert_serves(server.address)


def test_corpus_against_a_server_process():
    """The corpus against ``python -m gateway fastcgi``: the same outcomes,
    the log lines in its real log, and the one worker never replaced."""
    cases = [case for case in CASES if not case['config']]
    with ServerProcess(['fastcgi_corpus.corpus_app:application', '--bind', '127.0.0.1:0',
                        '--workers', '1', '--log-level', 'info']) as server:
        address = server.address()
        [pid] = server.wait_booted(1)
        log = ProcessLog(server)
        for case in cases:
            replay(case, address, log)
            assert_serves(address)
        assert server.booted_pids() == [pid] and pid_alive(pid)


# ---------------------------------------------------------------------------
# Bugs the corpus found, shown on their own
# ---------------------------------------------------------------------------

def test_overloaded_with_keep_conn_does_not_run_the_refused_request():
    """OVERLOADED for a request whose PARAMS came in the same write: before,
    the PARAMS still ran the request, whose state was gone (KeyError out of
    the worker's loop)."""
    with live_worker(max_connections=1) as server:
        first = connect(server.address)
        first.sendall(well_formed(path='/first', keep_conn=True))
        records = read_records(first, c.RecordReader(), [], lambda r: len(summarize(
            r, final=False)) >= 2, 'first')
        assert summarize(records) == ['STDOUT 1 200 hello /first', 'END_REQUEST 1 REQUEST_COMPLETE']
        second = connect(server.address)
        second.sendall(well_formed(path='/second', keep_conn=True))
        records, _ = read_until_closed(second, c.RecordReader(), 'second')
        assert summarize(records) == ['END_REQUEST 1 OVERLOADED']
        second.close()
        server.assert_alive()
        first.sendall(well_formed(path='/again'))
        records, _ = read_until_closed(first, c.RecordReader(), 'again')
        assert summarize(records) == ['STDOUT 1 200 hello /again', 'END_REQUEST 1 REQUEST_COMPLETE']
        first.close()
        assert any('refused with OVERLOADED' in e[1] for e in server.log.since(0))


def unfinished_params(size, keep_conn=True):
    """BEGIN_REQUEST and *size* bytes of PARAMS (one name-value pair that
    later PARAMS may still follow), in whole records, without the end."""
    pairs = p.encode_pairs({'HTTP_X_PAD': 'x' * (size - 15)})
    assert len(pairs) == size
    return c.encode_begin_request(1, keep_conn=keep_conn) + b''.join(
        p.encode_record(p.FCGI_PARAMS, 1, pairs[at:at + 65528]) for at in range(0, size, 65528))


def held_by(worker, sock=None):
    """What the worker's connections (or the one from *sock*) hold for
    requests not started yet (None when the worker changed them while they
    were counted)."""
    try:
        return sum(conn.codec.pending_params for conn in list(worker.connections)
                   if conn.channel is None
                   and (sock is None or conn.transport.peer == sock.getsockname()))
    except RuntimeError:
        return None


def test_unfinished_params_past_the_worker_budget_are_answered_overloaded():
    """Each connection may hold up to --max-params-size of PARAMS that never
    end; with many of them a worker's memory went wherever the peers liked.
    Past --max-pending-params the connections holding the most are answered
    OVERLOADED and closed, each named in the log; the others, and new
    requests, are served."""
    budget, size, hogs = 1 << 20, 600_000, 6
    with live_worker(max_pending_params=budget) as server:
        mark = server.log.mark()
        sockets = []
        for index in range(hogs):
            sock = connect(server.address)
            sock.sendall(unfinished_params(size))
            sockets.append(sock)
            # One connection's PARAMS all read before the next comes: the
            # largest holder is then always an earlier connection.
            wait_until(lambda: held_by(server.worker, sock) == size == held_by(server.worker)
                       == server.worker.pending_params, ANSWER_TIMEOUT, what=lambda: (
                           f'hog {index}: {size} bytes held, the others refused; held '
                           f'{held_by(server.worker)}; log: {server.log.since(mark)}'))
            assert server.worker.pending_params <= budget
        assert_serves(server.address, '/while-held')
        *refused, kept = sockets
        for sock in refused:
            records, how = read_until_closed(sock, c.RecordReader(), 'refused hog')
            assert (summarize(records), how) == (['END_REQUEST 1 OVERLOADED'], 'eof')
            wanted = f'request 1 from {peer_of(sock)} refused with OVERLOADED'
            assert [e for e in server.log.since(mark)
                    if wanted in e[1] and '--max-pending-params' in e[1]], server.log.since(mark)
            sock.close()
        # The connection within the budget finishes its request.
        kept.sendall(p.encode_record(p.FCGI_PARAMS, 1, p.encode_pairs(cgi_params('/kept')))
                     + p.encode_record(p.FCGI_PARAMS, 1) + c.encode_stdin(1, b''))
        records = read_records(kept, c.RecordReader(), [], lambda r: len(summarize(
            r, final=False)) >= 2, 'kept')
        assert summarize(records) == ['STDOUT 1 200 hello /kept', 'END_REQUEST 1 REQUEST_COMPLETE']
        kept.close()
        wait_until(lambda: server.worker.pending_params == 0 == held_by(server.worker),
                   ANSWER_TIMEOUT, what='nothing held once the connections are gone')
        server.assert_alive()


def test_a_hundred_unfinished_params_stay_within_the_budget_in_a_worker_process():
    """The issue's reproduction: a hundred connections, each holding an
    unfinished PARAMS of about 1 MB, grew a worker by 107 MB. With an
    8 MiB budget the worker's peak memory grows by at most about twice that
    (what the allocator keeps of memory freed and taken again)."""
    hogs, size, budget = 100, 1_000_000, 8 << 20
    with ServerProcess(['fastcgi_corpus.corpus_app:application', '--bind', '127.0.0.1:0',
                        '--workers', '1', '--max-pending-params', str(budget)]) as server:
        address = server.address()
        [pid] = server.wait_booted(1)
        assert_serves(address, '/warm-up')
        baseline = peak_rss_kb(pid)
        data = unfinished_params(size)
        sockets = []
        try:
            for _ in range(hogs):
                sock = connect(address)
                sockets.append(sock)
                send_tolerant(sock, data)
            # Eight of them fit in the budget at most: the others are refused.
            wait_until(lambda: server.count('refused with OVERLOADED') >= hogs - 8, 30,
                       what=lambda: f'{hogs - 8} refusals; log:\n{server.log}')
            assert_serves(address, '/after')
            growth_kb = peak_rss_kb(pid) - baseline
            assert growth_kb < 32 * 1024, f'the worker grew by {growth_kb} kB'
        finally:
            for sock in sockets:
                sock.close()


def peak_rss_kb(pid):
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise AssertionError(f'no VmHWM in /proc/{pid}/status')


class SignallingApp:
    """/echo reads the body, /stream streams until told otherwise; each
    says when it has started, and the stream when it was closed."""

    def __init__(self):
        self.reading = threading.Event()
        self.streaming = threading.Event()
        self.closed = threading.Event()
        self.blocks = 0
        self.input_error = None

    def __call__(self, environ, start_response):
        if environ['PATH_INFO'] not in ('/echo', '/stream'):
            return corpus_app(environ, start_response)
        if environ['PATH_INFO'] == '/echo':
            self.reading.set()
            try:
                body = environ['wsgi.input'].read()
            except Exception as error:
                self.input_error = error
                raise
            start_response('200 OK', [])
            return [b'%d' % len(body)]
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        app = self
        block = b'x' * 65536

        class Stream:
            def __iter__(self):
                for _ in range(4096):       # 256 MiB at most
                    app.blocks += 1
                    app.streaming.set()
                    yield block

            def close(self):
                app.closed.set()
        return Stream()


def echo_request(declared=100, keep_conn=True):
    return (c.encode_begin_request(1, keep_conn=keep_conn) + c.encode_params(
        1, cgi_params('/echo', 'POST', CONTENT_LENGTH=str(declared))))


def test_a_protocol_error_while_the_application_reads_is_not_an_application_error():
    """Before, the ProtocolError came out of wsgi.input.read() into the
    application: logged with a traceback as the application's error, and a
    500 sent on a connection already known to be broken."""
    app = SignallingApp()
    with live_worker(app) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(echo_request() + c.encode_stdin(1, b'partial', end=False))
        assert app.reading.wait(ANSWER_TIMEOUT)
        sock.sendall(b'\x02' + bytes(15))      # a record header of version 2
        records, _ = read_until_closed(sock, c.RecordReader(), 'version 2 mid-body')
        assert summarize(records) == []
        assert isinstance(app.input_error, ConnectionAbortedError)
        entries = server.log.since(mark)
        assert any(f'FastCGI protocol error from {peer_of(sock)}: unsupported FastCGI version 2'
                   in e[1] for e in entries), entries
        assert not [e for e in entries if e[0] == 'ERROR' or e[2]], entries
        sock.close()
        server.assert_alive()
        assert_serves(server.address)


def test_a_protocol_error_while_streaming_ends_the_response_without_end_request():
    app = SignallingApp()
    with live_worker(app) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(well_formed(path='/stream', keep_conn=True))
        assert app.streaming.wait(ANSWER_TIMEOUT)
        sock.sendall(p.encode_record(p.FCGI_STDOUT, 1, b'not from a web server'))
        records, _ = read_until_closed(sock, c.RecordReader(), 'STDOUT mid-response')
        assert p.FCGI_END_REQUEST not in [record.type for record in records]
        assert app.closed.wait(ANSWER_TIMEOUT) and app.blocks < 4096
        entries = server.log.since(mark)
        assert any(f'FastCGI protocol error from {peer_of(sock)}: request 1: unexpected STDOUT'
                   in e[1] for e in entries), entries
        assert not [e for e in entries if e[0] == 'ERROR' or e[2]], entries
        sock.close()
        server.assert_alive()
        assert_serves(server.address)


# ---------------------------------------------------------------------------
# Stalled senders and a reader that never reads
# ---------------------------------------------------------------------------

def begin_and_params(path='/', keep_conn=False):
    return (c.encode_begin_request(1, keep_conn=keep_conn)
            + c.encode_params(1, cgi_params(path)))


def _pairs_record(padding):
    content = p.encode_pairs({'AB': 'cdef'})
    return struct.pack('>BBHHBx', 1, p.FCGI_PARAMS, 1, len(content), padding) + content


STALLS = {
    'mid-header': (c.encode_begin_request(1)[:5], '5 of 8 bytes'),
    'mid-content': (c.encode_begin_request(1) + p.encode_record(
        p.FCGI_PARAMS, 1, p.encode_pairs(cgi_params()))[:30], '30 of'),
    'mid-padding': (c.encode_begin_request(1) + _pairs_record(200) + bytes(50), '66 of 216 bytes'),
    'mid-params-stream': (c.encode_begin_request(1) + p.encode_record(
        p.FCGI_PARAMS, 1, p.encode_pairs(cgi_params())), 'request 1 incomplete'),
}


@pytest.mark.parametrize('stall', list(STALLS))
def test_a_sender_stalled_between_requests_is_closed_after_the_read_timeout(stall):
    """No request runs yet: the worker keeps serving others meanwhile, and
    closes the stalled connection once it has been silent for read_timeout."""
    data, _ = STALLS[stall]
    with live_worker(read_timeout=0.5) as server:
        mark = server.log.mark()
        stalled = connect(server.address)
        stalled.sendall(data)
        assert_serves(server.address, '/while-stalled')
        records, _ = read_until_closed(stalled, c.RecordReader(), stall)
        assert records == []
        wait_until(lambda: [e for e in server.log.since(mark)
                            if re.search(r'for more than 0\.5s', e[1])],
                   ANSWER_TIMEOUT, what='a log line about the silence')
        stalled.close()
        server.assert_alive()
        assert_serves(server.address)


@pytest.mark.parametrize('stall', list(STALLS))
def test_the_silence_log_line_says_where_the_web_server_stopped(stall, caplog):
    """What the worker's idle sweep logs before closing a silent connection."""
    data, wanted = STALLS[stall]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn = ServedConnection(theirs, corpus_app, Config(read_timeout=0.5), {})
        ours.sendall(data)
        assert conn.handle_readable(wait=False)
        with caplog.at_level(logging.INFO, logger='gateway'):
            conn.log_silence(0.5)
        assert wanted in caplog.text and 'silent for more than 0.5s' in caplog.text
        assert caplog.records[-1].levelname == 'WARNING'


def test_the_silence_log_line_between_requests_is_routine(caplog):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn = ServedConnection(theirs, corpus_app, Config(read_timeout=0.5), {})
        ours.sendall(well_formed(keep_conn=True))
        assert conn.handle_readable(wait=False)
        assert ours.recv(65536)     # answered; the connection stays open
        with caplog.at_level(logging.INFO, logger='gateway'):
            conn.log_silence(0.5)
        assert 'idle for more than 0.5s' in caplog.text
        assert caplog.records[-1].levelname == 'INFO'


@pytest.mark.parametrize('cut', ['mid-header', 'mid-content', 'mid-padding'])
def test_a_sender_stalled_mid_body_is_closed_after_the_read_timeout(cut):
    """A request is running and waits for its body: it is given up after
    read_timeout, the application sees its input fail, the worker goes on."""
    app = SignallingApp()
    stdin = struct.pack('>BBHHBx', 1, p.FCGI_STDIN, 1, 100, 100) + b'b' * 100 + bytes(100)
    partial = {'mid-header': stdin[:3], 'mid-content': stdin[:50],
               'mid-padding': stdin[:150]}[cut]
    with live_worker(app, read_timeout=0.5) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(echo_request(declared=200) + partial)
        assert app.reading.wait(ANSWER_TIMEOUT)
        records, _ = read_until_closed(sock, c.RecordReader(), cut)
        assert records == []
        assert isinstance(app.input_error, ConnectionAbortedError)
        peer = peer_of(sock)
        sock.close()
        assert any(f'request 1 from {peer}: the web server sent no input for 0.5s' in e[1]
                   for e in server.log.since(mark)), server.log.since(mark)
        server.assert_alive()
        assert_serves(server.address)


def trickle(sock, pieces, stop, pace=0.1):
    """Send *pieces* one at a time, *pace* seconds apart, until they run
    out, *stop* is set or the server closes: a client on a slow link."""
    for piece in pieces:
        if stop.wait(pace):
            return
        try:
            sock.sendall(piece)
        except OSError:
            return


@contextlib.contextmanager
def trickling(sock, pieces):
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(sock, pieces, stop))
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(10)


def test_a_trickled_body_is_answered_408_after_the_request_read_timeout():
    """Apache's mod_proxy_fcgi streams a body as the client sends it: a
    client sending a byte now and then held the worker (its only thread)
    for up to --read-timeout per read, without end. The request must now
    arrive within --request-read-timeout, counted from BEGIN_REQUEST."""
    with ServerProcess(['apps.fcgiapps:router', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--read-timeout', '30', '--request-read-timeout', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        sock = connect(address)
        sock.sendall(c.encode_begin_request(1) + c.encode_params(1, cgi_params(
            '/echo', 'POST', CONTENT_LENGTH='1000')) + c.encode_stdin(1, b'ab', end=False))
        with trickling(sock, [c.encode_stdin(1, b'x', end=False)] * 300):
            records, how = read_until_closed(sock, c.RecordReader(), 'a trickled body')
        peer = peer_of(sock)
        sock.close()
        assert summarize(records) == ['STDOUT 1 408 Request Timeout: the request did not arrive'
                                      ' in time.\n', 'END_REQUEST 1 REQUEST_COMPLETE']
        assert how == 'eof'
        server.wait_for_log(rf'POST /echo from {re.escape(peer)}: body not complete after 1s '
                            r'\(--request-read-timeout\): [1-9]\d* of 1000 bytes received;'
                            r' answered 408 Request Timeout')
        assert get(address, '/').body == b'Hello, World!'


def test_a_body_late_on_a_kept_connection_is_answered_408_and_the_connection_kept():
    """A web server's pool (nginx keepalive, Apache enablereuse) may pick the
    connection for its next request the moment the 408 has come: shutting it
    then failed that request. As after a 413, the connection stays open, the
    rest of the body is dropped as it comes, and the next request is served;
    meanwhile the worker (one thread) serves other connections, and the kept
    one still closes after --read-timeout of silence."""
    with ServerProcess(['apps.fcgiapps:router', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--read-timeout', '3', '--request-read-timeout', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        sock = connect(address)
        sock.sendall(c.encode_begin_request(1, keep_conn=True) + c.encode_params(1, cgi_params(
            '/echo', 'POST', CONTENT_LENGTH='1000')) + c.encode_stdin(1, b'ab', end=False))
        late = read_until_end_request(sock)
        assert late.status == 408
        assert get(address, '/').body == b'Hello, World!'     # the worker is not held
        sock.sendall(c.encode_stdin(1, b'x' * 998) + c.encode_request(
            1, cgi_params('/'), keep_conn=True))
        assert read_until_end_request(sock).body == b'Hello, World!'
        records, how = read_until_closed(sock, c.RecordReader(), 'a kept connection, silent')
        sock.close()
        assert (records, how) == ([], 'eof')
        server.wait_for_log(r'closing the connection from .*: idle for more than 3s')


def test_params_trickled_past_the_request_read_timeout_are_answered_408():
    """Before the application starts nothing waits on the connection, but
    it holds its PARAMS and its place: the worker's sweep answers it."""
    params = p.encode_record(p.FCGI_PARAMS, 1, p.encode_pairs(cgi_params('/slow-params')))
    with live_worker(read_timeout=10, request_read_timeout=1) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(c.encode_begin_request(1) + params[:20])
        with trickling(sock, [params[at:at + 1] for at in range(20, len(params))]):
            assert_serves(server.address, '/meanwhile')
            records, how = read_until_closed(sock, c.RecordReader(), 'trickled PARAMS')
        peer = peer_of(sock)
        sock.close()
        assert summarize(records) == ['STDOUT 1 408 Request Timeout: the request did not arrive'
                                      ' in time.\n', 'END_REQUEST 1 REQUEST_COMPLETE']
        wanted = (f'request 1 from {peer}: PARAMS not complete after 1s '
                  f'(--request-read-timeout)')
        entries = server.log.since(mark)
        assert [e for e in entries if wanted in e[1] and 'bytes received; answered 408' in e[1]], \
            entries
        server.assert_alive()
        assert_serves(server.address)


def test_a_body_overdue_once_the_response_started_cuts_it():
    """An application that answers before it reads: nothing can replace the
    response on the wire, so it is cut (no END_REQUEST: the web server sees
    it failed)."""
    read_error = []

    def stream_then_read(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'first block\n'
        try:
            environ['wsgi.input'].read()
        except OSError as error:
            read_error.append(error)
            raise
        yield b'never sent'

    with live_worker(stream_then_read, read_timeout=10, request_read_timeout=1) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(echo_request(declared=1000) + c.encode_stdin(1, b'ab', end=False))
        with trickling(sock, [c.encode_stdin(1, b'x', end=False)] * 300):
            records, how = read_until_closed(sock, c.RecordReader(), 'answered, then overdue')
        peer = peer_of(sock)
        sock.close()
        assert summarize(records) == ['STDOUT 1 200 first block\n']
        # The connection is shut down before the read raises: wait for it.
        wait_until(lambda: read_error, ANSWER_TIMEOUT, what="the application's read to fail")
        assert isinstance(read_error[0], ConnectionAbortedError)
        entries = server.log.since(mark)
        assert [e for e in entries if f'POST /echo from {peer}: body not complete after 1s' in e[1]
                and 'its response had started: cut' in e[1]], entries
        assert not [e for e in entries if e[0] == 'ERROR' or e[2]], entries
        server.assert_alive()


def test_a_web_server_that_stops_reading_is_dropped_after_the_read_timeout():
    """A large response to a web server that reads none of it: the send is
    given up after read_timeout, the connection dropped, the iterable
    closed, and the worker serves the next connection. Meanwhile (one
    thread) it served nobody else."""
    app = SignallingApp()
    with live_worker(app, read_timeout=0.5) as server:
        mark = server.log.mark()
        sock = connect(server.address, rcvbuf=4096)
        sock.sendall(well_formed(path='/stream'))
        assert app.closed.wait(ANSWER_TIMEOUT)
        assert app.blocks < 4096, 'the whole response went out: nothing stopped reading'
        peer = peer_of(sock)
        wanted = (f'request 1 from {peer}: the web server read nothing we sent for 0.5s;'
                  ' connection closed')
        wait_until(lambda: [e for e in server.log.since(mark) if wanted in e[1]],
                   ANSWER_TIMEOUT, what=lambda: f'{wanted!r} in {server.log.since(mark)}')
        assert not [e for e in server.log.since(mark) if e[0] == 'ERROR' or e[2]]
        server.assert_alive()
        assert_serves(server.address)
        # What the web server had not read is still there, then the end.
        sock.settimeout(ANSWER_TIMEOUT)
        reader, kinds = c.RecordReader(), set()
        while True:
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            kinds.update(record.type for record in reader.feed(data))
        assert kinds == {p.FCGI_STDOUT}, 'no END_REQUEST after an incomplete response'
        sock.close()


def test_a_web_server_that_never_stops_sending_after_the_answer_is_dropped():
    """Answered without reading the body and without FCGI_KEEP_CONN, the
    connection lingers (reading what is still sent, so that closing does
    not reset the response away). A web server that sends on without end
    is dropped after read_timeout, and other connections are served
    meanwhile. Before, it was read from for as long as it kept sending."""
    with live_worker(read_timeout=0.5) as server:
        mark = server.log.mark()
        sock = connect(server.address)
        sock.sendall(c.encode_begin_request(1) + c.encode_params(1, cgi_params(
                         '/', 'POST', CONTENT_LENGTH=str(1 << 40)))
                     + c.encode_stdin(1, b'x' * 1000, end=False))
        records = read_records(sock, c.RecordReader(), [], lambda r: len(summarize(
            r, final=False)) >= 2, 'answer')
        assert summarize(records) == ['STDOUT 1 200 hello /', 'END_REQUEST 1 REQUEST_COMPLETE']
        block = c.encode_stdin(1, b'y' * 65528, end=False)
        outcome = []

        def flood():
            # 13 GB: far more than 0.5s of sending, however fast the machine.
            try:
                for _ in range(200000):
                    sock.sendall(block)
                outcome.append('still open after 200000 blocks')
            except OSError as error:
                outcome.append(error)
        flooding = threading.Thread(target=flood)
        flooding.start()
        try:
            assert_serves(server.address, '/meanwhile')
        finally:
            flooding.join(40)
        assert outcome and isinstance(outcome[0], (BrokenPipeError, ConnectionResetError)), outcome
        peer = peer_of(sock)
        sock.close()
        assert any(f'closing the connection from {peer}: still sending 0.5s after the last answer'
                   in e[1] for e in server.log.since(mark)), server.log.since(mark)
        server.assert_alive()
        assert_serves(server.address)


def test_a_web_server_that_reads_no_management_answers_is_dropped():
    """GET_VALUES asked over and over by a web server that reads none of the
    answers: once they fill the socket buffers the worker waits at most
    read_timeout, then drops the connection."""
    with live_worker(read_timeout=0.5) as server:
        mark = server.log.mark()
        sock = connect(server.address, rcvbuf=4096)
        questions = c.encode_get_values([p.FCGI_MPXS_CONNS]) * 4096
        outcome = []

        def ask():
            try:
                for _ in range(1000):       # 98 MB of questions, at most
                    sock.sendall(questions)
                outcome.append('all sent')
            except OSError as error:
                outcome.append(error)
        asking = threading.Thread(target=ask)
        asking.start()
        asking.join(60)
        assert outcome and isinstance(outcome[0], (BrokenPipeError, ConnectionResetError)), outcome
        peer = peer_of(sock)
        sock.close()
        wanted = f'connection from {peer}: the web server read nothing we sent for 0.5s'
        assert any(wanted in e[1] for e in server.log.since(mark)), server.log.since(mark)
        server.assert_alive()
        assert_serves(server.address)


# ---------------------------------------------------------------------------
# Fuzzing the serving loop
# ---------------------------------------------------------------------------

FUZZ_CASES = int(os.environ.get('GATEWAY_FUZZ_CASES', '300'))
FUZZ_SEED = int(os.environ.get('GATEWAY_FUZZ_SEED', '20240605'))


def fuzz_seeds():
    body = bytes(range(256)) * 40
    seeds = [case['data'] for case in CASES if 0 < len(case['data']) <= 70000]
    seeds += [
        well_formed(path='/'), well_formed(path='/keep', keep_conn=True),
        echo_request(len(body)) + c.encode_stdin(1, body),
        echo_request(3, keep_conn=False) + c.encode_stdin(1, b'abc'),
        c.encode_get_values([p.FCGI_MAX_CONNS, p.FCGI_MAX_REQS, p.FCGI_MPXS_CONNS]),
        well_formed(path='/a', keep_conn=True) + c.encode_get_values([p.FCGI_MPXS_CONNS]),
    ]
    return seeds


def record_starts(data):
    """Where the records of *data* start, read leniently (stops at the
    first header that does not fit)."""
    starts, pos = [], 0
    while pos + 8 <= len(data):
        starts.append(pos)
        clen, plen = struct.unpack_from('>HB', data, pos + 4)
        pos += 8 + clen + plen
    return starts


def mutate(rng, data, seeds):
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(8)
        if how == 0 and data:                   # bit flips
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1 and data:                 # interesting byte values
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF))
        elif how == 2 and record_starts(data):  # one header field of one record
            start = rng.choice(record_starts(data))
            field = rng.randrange(5)
            if field == 0:
                data[start] = rng.choice((0, 2, 255))
            elif field == 1:
                data[start + 1] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 255))
            elif field == 2:
                struct.pack_into('>H', data, start + 2, rng.choice((0, 1, 2, 65535)))
            elif field == 3:
                struct.pack_into('>H', data, start + 4, rng.choice(
                    (0, 1, 7, 8, 65535, rng.randrange(65536))))
            else:
                data[start + 6] = rng.choice((0, 1, 255, rng.randrange(256)))
        elif how == 3 and data:                 # truncation
            del data[rng.randrange(len(data)):]
        elif how == 4:                          # splice with another seed
            other = rng.choice(seeds)
            data = data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]
        elif how == 5 and data:                 # a slice repeated
            start = rng.randrange(len(data))
            end = min(len(data), start + rng.randint(1, 64))
            data[start:start] = data[start:end] * rng.randint(1, 3)
        elif how == 6 and data:                 # a slice removed
            start = rng.randrange(len(data))
            del data[start:start + rng.randint(1, 64)]
        else:                                   # random bytes inserted
            at = rng.randint(0, len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(data)


def check_output(raw, sent):
    """What the server wrote on a connection that ended cleanly: whole
    records, each padded to 8 bytes, and no more END_REQUESTs than requests
    begun."""
    ends, pos = 0, 0
    while pos < len(raw):
        assert len(raw) - pos >= 8, 'a record header cut short'
        version, kind, _, clen, plen = struct.unpack_from('>BBHHB', raw, pos)
        assert version == 1 and (clen + plen) % 8 == 0, (version, clen, plen)
        assert pos + 8 + clen + plen <= len(raw), 'a record cut short'
        ends += kind == p.FCGI_END_REQUEST
        pos += 8 + clen + plen
    begins = sum(1 for start in record_starts(sent) if sent[start + 1] == p.FCGI_BEGIN_REQUEST
                 and sent[start] == 1)
    assert ends <= begins, f'{ends} END_REQUEST records for {begins} BEGIN_REQUEST records'


def fuzz_one(address, data, rng):
    """Send *data* in random pieces, end the connection one of three ways;
    return what the server said (None when we did not wait for it)."""
    sock = connect(address)
    try:
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 4)))) \
            if len(data) > 1 else []
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        for piece in pieces:
            send_tolerant(sock, piece)
        ending = rng.random()
        if ending < 0.7:
            if not half_close(sock):
                return None
            raw = b''
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    return None
                except socket.timeout:
                    raise AssertionError('neither answered nor closed') from None
                if not chunk:
                    return raw
                raw += chunk
        if ending < 0.85:   # the web server resets the connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        return None
    finally:
        sock.close()


@pytest.mark.parametrize('threads', [1, 2])
def test_fuzzing_the_serving_loop(threads):
    """Mutated corpus cases and well-formed requests, each on a new
    connection to the same worker, sent in random pieces; the connection
    then half-closed, closed or reset. After each, a well-formed request on
    a new connection must be served, and nothing may have been logged as an
    error. (With threads, connections are served by the pool.)"""
    rng = random.Random(FUZZ_SEED)
    seeds = fuzz_seeds()
    done = 0
    with live_worker(read_timeout=5, threads=threads) as server:
        while done < FUZZ_CASES:
            data = mutate(rng, rng.choice(seeds), seeds)
            mark = server.log.mark()
            context = (f'fuzz case {done} (GATEWAY_FUZZ_SEED={FUZZ_SEED}); input '
                       f'({len(data)} bytes): {data[:2048].hex()}')
            try:
                raw = fuzz_one(server.address, data, rng)
                if raw is not None:
                    check_output(raw, data)
                server.assert_alive()
                assert_serves(server.address, '/canary')
            except AssertionError as error:
                raise AssertionError(f'{context}\n{error}\nlog: {server.log.since(mark)}') from None
            bad = [e for e in server.log.since(mark) if e[0] in ('ERROR', 'CRITICAL') or e[2]]
            assert not bad, f'{context}\nerrors logged: {bad}'
            done += 1

"""ServedConnection on its own: bytes in, bytes out, no socket.

A FakeTransport (tests/support/fake_transport.py) stands in for the socket:
the test feeds the web server's records and reads back what the connection
sent, when it shut its side down, and in which State it is. Live sockets,
workers and real web servers are test_fastcgi_server.py's and after.
"""

import pytest

from apps import wsgi_apps
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p
from gateway.fastcgi.client import cgi_params
from gateway.fastcgi.config import Config
from gateway.fastcgi.connection import ServedConnection, State
from gateway.handlers.fastcgi import RequestAborted
from support.fake_transport import FakeTransport


def hello(environ, start_response):
    body = b'hello ' + environ['PATH_INFO'].encode('latin-1')
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]


def served(app=hello, transport=None, **settings):
    transport = transport or FakeTransport()
    conn = ServedConnection(None, app, Config(**settings), {p.FCGI_MPXS_CONNS: '0'},
                            transport=transport)
    return conn, transport


def echo(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Length', str(len(body)))])
    return [body]


def records(data):
    return list(c.parse_records(data))


def answer(data, request_id=1):
    """(stdout, END_REQUEST's protocol status or None) of *request_id*."""
    out, status = b'', None
    for record in records(data):
        if record.request_id != request_id:
            continue
        if record.type == p.FCGI_STDOUT:
            out += record.content
        elif record.type == p.FCGI_END_REQUEST:
            status = c.decode_end_request(record.content)[1]
    return out, status


def body_of(out):
    return out.partition(b'\r\n\r\n')[2]


# -- one request -------------------------------------------------------------------

def test_a_request_kept_alive_is_answered_in_one_write_and_the_connection_stays_open():
    conn, transport = served()
    transport.feed(c.encode_request(1, cgi_params('/a'), keep_conn=True))
    assert conn.handle_readable() is True
    assert len(transport.sent) == 1 and transport.sent[0][1] is False
    out, status = answer(transport.output())
    assert body_of(out) == b'hello /a' and status == p.FCGI_REQUEST_COMPLETE
    assert conn.state is State.OPEN and conn.served == 1 and conn.channel is None


def test_the_last_answer_with_all_input_read_closes_at_once():
    conn, transport = served()
    transport.feed(c.encode_request(1, cgi_params('/b')))
    assert conn.handle_readable() is False
    assert transport.sent[-1][1] is True        # may share the FIN's segment
    assert conn.state is State.CLOSED and transport.is_closed and transport.shut == []


def test_the_last_answer_with_input_still_coming_lingers_until_the_web_server_closes():
    conn, transport = served()
    transport.feed(c.encode_begin_request(1) + c.encode_params(1, cgi_params(
        '/c', 'POST', CONTENT_LENGTH='100')) + c.encode_stdin(1, b'x' * 10, end=False))
    assert conn.handle_readable() is True
    assert answer(transport.output())[1] == p.FCGI_REQUEST_COMPLETE
    assert conn.state is State.LINGERING and transport.shut == ['write']
    transport.feed(c.encode_stdin(1, b'y' * 90))
    transport.close_input()
    assert conn.handle_readable(wait=False) is False
    assert conn.state is State.CLOSED


def test_requests_one_after_another_on_a_kept_connection():
    conn, transport = served()
    transport.feed(c.encode_request(1, cgi_params('/1'), keep_conn=True))
    assert conn.handle_readable() is True
    transport.feed(c.encode_request(2, cgi_params('/2'), keep_conn=True))
    assert conn.handle_readable() is True
    assert body_of(answer(transport.output(), 1)[0]) == b'hello /1'
    assert body_of(answer(transport.output(), 2)[0]) == b'hello /2'
    assert conn.served == 2


@pytest.mark.parametrize('piece', [1, 3, 8, 100])
def test_any_split_of_the_input_gives_the_same_bytes(piece):
    whole = c.encode_request(1, cgi_params('/split', 'POST', body=b'0123456789'),
                             b'0123456789', keep_conn=True)
    conn, transport = served(echo)
    transport.feed(*(whole[at:at + piece] for at in range(0, len(whole), piece)))
    while transport.incoming:
        conn.handle_readable()
    reference, reference_transport = served(echo)
    reference_transport.feed(whole)
    reference.handle_readable()
    assert transport.output() == reference_transport.output() != b''


# -- the body, read on demand --------------------------------------------------------

def test_the_body_is_read_as_the_application_asks_across_reads():
    conn, transport = served(echo)
    body = bytes(range(256)) * 1000
    transport.feed(c.encode_begin_request(1, keep_conn=True)
                   + c.encode_params(1, cgi_params('/', 'POST', body=body)))
    stdin = c.encode_stdin(1, body)
    transport.feed(*(stdin[at:at + 7000] for at in range(0, len(stdin), 7000)))
    assert conn.handle_readable() is True
    assert body_of(answer(transport.output())[0]) == body


def test_abort_request_while_the_application_reads_ends_it_with_end_request():
    seen = []

    def reads(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except RequestAborted as error:
            seen.append(error)
            raise
    conn, transport = served(reads)
    transport.feed(c.encode_begin_request(1, keep_conn=True)
                   + c.encode_params(1, cgi_params('/', 'POST', CONTENT_LENGTH='10'))
                   + c.encode_stdin(1, b'abc', end=False), c.encode_abort_request(1))
    assert conn.handle_readable() is True
    assert seen and answer(transport.output()) == (b'', p.FCGI_REQUEST_COMPLETE)
    assert conn.state is State.OPEN


def test_abort_request_between_streamed_blocks_closes_the_iterable():
    closed = []

    def streams(environ, start_response):
        start_response('200 OK', [])
        return wsgi_apps.ClosingIterable([b'block %d\n' % n for n in range(100)], closed)
    conn, transport = served(streams)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))

    def abort_after_the_first_block(data):
        transport.on_send = None
        transport.feed(c.encode_abort_request(1))
    transport.on_send = abort_after_the_first_block
    assert conn.handle_readable() is True
    out, status = answer(transport.output())
    assert closed and status == p.FCGI_REQUEST_COMPLETE
    assert out.count(b'block ') < 100


def test_a_web_server_silent_mid_body_is_dropped():
    conn, transport = served(echo, read_timeout=1, request_read_timeout=0)
    transport.feed(c.encode_begin_request(1) + c.encode_params(1, cgi_params(
        '/', 'POST', CONTENT_LENGTH='10')) + c.encode_stdin(1, b'abc', end=False))
    assert conn.handle_readable() is False
    assert conn.state is State.CLOSED and answer(transport.output())[1] is None


@pytest.mark.parametrize('keep', [True, False])
def test_a_body_late_past_the_request_read_timeout_is_answered_408(keep):
    conn, transport = served(echo, read_timeout=60, request_read_timeout=0.05)
    transport.feed(c.encode_begin_request(1, keep_conn=keep) + c.encode_params(1, cgi_params(
        '/', 'POST', CONTENT_LENGTH='10')) + c.encode_stdin(1, b'abc', end=False))
    conn.handle_readable()
    out, status = answer(transport.output())
    assert out.startswith(b'Status: 408 Request Timeout\r\n') and status == 0
    if keep:
        # As after a 413: open for a pool's next request, the rest of the body dropped.
        assert conn.state is State.OPEN and transport.shut == []
        transport.feed(c.encode_stdin(1, b'defghij'),
                       c.encode_request(2, cgi_params('/next'), keep_conn=True))
        assert conn.handle_readable() is True and conn.handle_readable() is True
        out, status = answer(transport.output(), 2)
        assert b'Content-Length: 0\r\n' in out and status == 0     # echoed: no body
    else:
        assert 'write' in transport.shut and conn.state is State.LINGERING


def test_a_body_ending_short_of_its_content_length_raises_oserror():
    seen = []

    def reads(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except OSError as error:
            seen.append(str(error))
        start_response('400 Bad Request', [('Content-Length', '0')])
        return []
    conn, transport = served(reads)
    transport.feed(c.encode_begin_request(1, keep_conn=True)
                   + c.encode_params(1, cgi_params('/', 'POST', CONTENT_LENGTH='10'))
                   + c.encode_stdin(1, b'abc'))
    assert conn.handle_readable() is True
    assert seen == ['the request body ended 7 bytes short of its CONTENT_LENGTH: the client or'
                    ' the web server stopped sending']
    assert answer(transport.output())[0].startswith(b'Status: 400 ')


# -- --max-body-size -----------------------------------------------------------------

@pytest.mark.parametrize('keep', [True, False])
def test_a_declared_body_over_the_limit_is_answered_413_without_the_application(keep):
    ran = []

    def records_its_runs(environ, start_response):
        ran.append(environ['PATH_INFO'])
        return hello(environ, start_response)
    conn, transport = served(records_its_runs, max_body_size=9)
    transport.feed(c.encode_begin_request(1, keep_conn=keep)
                   + c.encode_params(1, cgi_params('/', 'POST', CONTENT_LENGTH='10'))
                   + c.encode_stdin(1, b'0123', end=False))
    assert conn.handle_readable() is True
    out, status = answer(transport.output())
    assert out.startswith(b'Status: 413 Content Too Large\r\n') and status == 0
    assert ran == []
    if keep:
        # The rest of the body is dropped as it comes; the next request is served.
        transport.feed(c.encode_stdin(1, b'456789'),
                       c.encode_request(2, cgi_params('/next'), keep_conn=True))
        assert conn.handle_readable() is True and conn.handle_readable() is True
        assert conn.state is State.OPEN
        assert body_of(answer(transport.output(), 2)[0]) == b'hello /next'
        assert ran == ['/next']
    else:
        assert conn.state is State.LINGERING and transport.shut == ['write']


@pytest.mark.parametrize('size', [0, 9, 10])
def test_a_body_within_the_limit_is_read_whole(size):
    conn, transport = served(echo, max_body_size=10)
    body = b'x' * size
    transport.feed(c.encode_request(1, cgi_params('/', 'POST', body=body), body, keep_conn=True))
    assert conn.handle_readable() is True
    assert body_of(answer(transport.output())[0]) == body


@pytest.mark.parametrize('keep', [True, False])
def test_a_streamed_body_passing_the_limit_is_cut_there_and_answered_413(keep):
    got, raised = [], []

    def reads(environ, start_response):
        if environ['PATH_INFO'] == '/next':
            return hello(environ, start_response)
        try:
            while True:
                block = environ['wsgi.input'].read(4)
                if not block:
                    break
                got.append(block)
        except RequestAborted as error:
            raised.append(error)
            raise
        start_response('200 OK', [])
        return [b'whole']
    conn, transport = served(reads, max_body_size=10)
    # No CONTENT_LENGTH: a chunked upload, as Apache mod_proxy_fcgi streams it.
    transport.feed(c.encode_begin_request(1, keep_conn=keep)
                   + c.encode_params(1, cgi_params('/', 'POST'))
                   + c.encode_stdin(1, b'0123', end=False),
                   c.encode_stdin(1, b'4567', end=False), c.encode_stdin(1, b'89ab', end=False))
    assert conn.handle_readable() is True
    assert b''.join(got) == b'01234567' and len(raised) == 1
    out, status = answer(transport.output())
    assert out.startswith(b'Status: 413 Content Too Large\r\n') and status == 0
    assert b'whole' not in out
    if keep:
        # A pool may reuse the connection at once: it stays open, the rest
        # of the body dropped as it comes, and the next request is served.
        assert conn.state is State.OPEN and transport.shut == []
        transport.feed(c.encode_stdin(1, b'cdef'),
                       c.encode_request(2, cgi_params('/next'), keep_conn=True))
        assert conn.handle_readable() is True and conn.handle_readable() is True
        assert body_of(answer(transport.output(), 2)[0]) == b'hello /next'
    else:
        assert conn.state is State.LINGERING and 'write' in transport.shut


def test_a_streamed_body_passing_the_limit_after_the_response_started_cuts_it(caplog):
    def streams(environ, start_response):
        start_response('200 OK', [])
        yield b'started'
        yield environ['wsgi.input'].read()
    conn, transport = served(streams, max_body_size=10)
    transport.feed(c.encode_begin_request(1, keep_conn=True)
                   + c.encode_params(1, cgi_params('/', 'POST'))
                   + c.encode_stdin(1, b'x' * 8, end=False), c.encode_stdin(1, b'y' * 8))
    conn.handle_readable()
    out, status = answer(transport.output())
    assert b'started' in out and b'413' not in out and status is None
    assert 'write' in transport.shut
    assert 'body over --max-body-size 10: 16 of an unknown number of bytes received; its' \
           ' response had started: cut' in caplog.text


# -- records out of band, refusals ---------------------------------------------------

def test_get_values_in_the_middle_of_a_body_is_answered_at_once():
    conn, transport = served(echo)
    transport.feed(c.encode_begin_request(1, keep_conn=True)
                   + c.encode_params(1, cgi_params('/', 'POST', CONTENT_LENGTH='6'))
                   + c.encode_stdin(1, b'abc', end=False)
                   + c.encode_get_values([p.FCGI_MPXS_CONNS, 'NOT_KNOWN'])
                   + c.encode_stdin(1, b'def'))
    conn.handle_readable()
    kinds = [r.type for r in records(transport.output())]
    assert kinds[0] == p.FCGI_GET_VALUES_RESULT
    assert p.decode_pairs(records(transport.output())[0].content) == {p.FCGI_MPXS_CONNS: '0'}
    assert body_of(answer(transport.output())[0]) == b'abcdef'


def test_a_second_request_while_one_runs_gets_cant_mpx_conn():
    def second_arrives(environ, start_response):
        transport.feed(c.encode_begin_request(2) + c.encode_params(2, cgi_params('/2')),
                       c.encode_stdin(1, b'x'))
        environ['wsgi.input'].read()
        return hello(environ, start_response)
    conn, transport = served(second_arrives)
    transport.feed(c.encode_begin_request(1, keep_conn=True) + c.encode_params(1, cgi_params(
        '/1', 'POST', CONTENT_LENGTH='1')))
    conn.handle_readable()
    assert answer(transport.output(), 2) == (b'', p.FCGI_CANT_MPX_CONN)
    assert body_of(answer(transport.output(), 1)[0]) == b'hello /1'


@pytest.mark.parametrize('role', [p.FCGI_AUTHORIZER, p.FCGI_FILTER, 9])
def test_roles_not_served_are_refused_without_running_anything(role):
    ran = []
    conn, transport = served(lambda e, s: ran.append(1))
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True, role=role))
    assert conn.handle_readable() is True
    assert answer(transport.output()) == (b'', p.FCGI_UNKNOWN_ROLE) and not ran


def test_over_the_connection_limit_a_request_is_overloaded_and_closed():
    conn, transport = served()
    conn.overloaded = True
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    assert conn.handle_readable() is False
    assert answer(transport.output()) == (b'', p.FCGI_OVERLOADED)


def test_a_protocol_error_still_serves_what_came_before_it():
    conn, transport = served()
    transport.feed(c.encode_request(1, cgi_params('/before'), keep_conn=True)
                   + b'\x09' + bytes(7))      # version 9
    assert conn.handle_readable() is False
    assert body_of(answer(transport.output())[0]) == b'hello /before'
    assert conn.state is State.CLOSED


def test_pending_params_are_counted_and_refused_over_budget():
    conn, transport = served()
    transport.feed(c.encode_begin_request(1) + p.encode_record(
        p.FCGI_PARAMS, 1, p.encode_pairs({'HTTP_X': 'x' * 1000})))
    assert conn.handle_readable() is True
    assert conn.held_params() >= 1000
    conn.refuse_pending(500)
    assert answer(transport.output()) == (b'', p.FCGI_OVERLOADED)
    assert conn.state is State.CLOSED


# -- the response ----------------------------------------------------------------------

def test_wsgi_errors_as_stderr_records_when_asked():
    def logs(environ, start_response):
        environ['wsgi.errors'].write('for the error log\n')
        return hello(environ, start_response)
    conn, transport = served(logs, fcgi_stderr=True)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    conn.handle_readable()
    stderr = [r.content for r in records(transport.output()) if r.type == p.FCGI_STDERR]
    assert stderr == [b'for the error log\n']


def test_an_error_after_the_headers_ends_without_end_request():
    conn, transport = served(wsgi_apps.error_after_body)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    assert conn.handle_readable() is False
    assert answer(transport.output())[1] is None


def test_a_block_crossing_the_declared_length_is_cut_at_it():
    conn, transport = served(wsgi_apps.crosses_length)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    conn.handle_readable()
    assert body_of(answer(transport.output())[0]) == b'12345'


def test_a_web_server_that_reads_nothing_is_dropped():
    conn, transport = served(lambda e, s: (s('200 OK', []), [b'x' * 100])[1])
    transport.stalled = True
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    assert conn.handle_readable() is False
    assert conn.state is State.CLOSED


# -- a request past --timeout -------------------------------------------------------------

def test_a_request_with_nothing_sent_is_answered_504():
    answered = []

    def hangs(environ, start_response):
        answered.append(conn.answer_overdue(31.0, 30.0))
        start_response('200 OK', [])
        return [b'too late']
    conn, transport = served(hangs)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    transport.close_input()
    conn.handle_readable()
    out, status = answer(transport.output())
    assert answered == [True] and status == p.FCGI_REQUEST_COMPLETE
    assert out.startswith(b'Status: 504 Gateway Timeout\r\n') and b'too late' not in out


def test_a_request_whose_response_started_is_cut():
    def streams(environ, start_response):
        start_response('200 OK', [])
        yield b'first'
        assert conn.answer_overdue(31.0, 30.0)
        yield b'second'
    conn, transport = served(streams)
    transport.feed(c.encode_request(1, cgi_params('/'), keep_conn=True))
    conn.handle_readable()
    out, status = answer(transport.output())
    assert status is None and b'first' in out and b'second' not in out
    assert 'both' in transport.shut


def test_no_request_running_nothing_to_answer():
    conn, transport = served()
    assert conn.answer_overdue(31.0, 30.0) is False and transport.sent == []


def test_a_504_is_logged_when_sent_and_not_again_when_its_thread_comes_back(tmp_path):
    """--timeout's 504 (answer_overdue, from the worker's signal handler, here
    on top of the request as with one thread) writes its access-log line at
    once: the worker may exit there, or the thread never come back."""
    from gateway.fastcgi.accesslog import AccessLog
    from gateway.fastcgi.logfiles import LogFile
    path = tmp_path / 'access.log'
    access_log = AccessLog(LogFile(str(path)), '%U %s %b')
    seen = []

    def overdue(environ, start_response):
        assert conn.answer_overdue(2.0, 1.0)
        seen.append(path.read_text())
        start_response('200 OK', [('Content-Length', '8')])
        return [b'too late']
    conn, transport = served(overdue, access_log=access_log)
    transport.feed(c.encode_request(1, cgi_params('/late'), keep_conn=True))
    conn.handle_readable()
    access_log.flush()
    line = '/late 504 %d' % len(body_of(answer(transport.output())[0]))
    assert seen == [line + '\n'] and path.read_text() == line + '\n'


"""Misbehaving applications on every serving path, end to end.

Each application in tests/apps/badapps.py runs
(a) as a CGI program (``python -m gateway cgi``, a real CGI environment),
(b) under the FastCGI server over a real socket (one worker),
(c) as CGI under a real Apache (ScriptAlias, mod_cgid), and
(d) under the FastCGI server behind a real nginx.

Whatever the application does, the client gets either a clean 500 (the
error page, nothing of the cause) or, once headers went out, the part that
was sent and no more: never a second status line, never a traceback. The
log has the exception's line (with its traceback), close() was called
exactly once when there was an iterable to close, and the FastCGI worker
that served it serves the next request.

An error after the headers is a truncated response. FastCGI closes the
connection without END_REQUEST, so nginx (d) cuts the client's response
short and the client can tell. A CGI program can only end its output: Apache
2.4.59 and later also drop a CGI program's Content-Length (CVE-2024-24795;
``SetEnv ap_trust_cgilike_cl 1`` restores it), so under Apache (c) the
client gets a response that looks complete; only the log says otherwise.
"""

import http.client
import re
import shutil
from typing import NamedTuple

import pytest

from apps.badapps import CLOSED, SECRET
from support.cgi_support import cgi_env, run_gateway_cgi
from support.helpers import unavailable, wait_until
from support.fcgi_client import ServerProcess, cgi_params, connect
from support.front_contract import ERROR_BODY
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p

APP = 'apps.badapps:app'

ERROR_PAGE = (b'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n'
              b'Content-Length: 59\r\n\r\n' + ERROR_BODY)
SENT_HEADERS = b'Status: 200 OK\r\nContent-Type: text/plain\r\n'
ABORTED = 'error after the response headers were sent; response aborted'

# What the client gets.
ERROR = 'a clean 500'
TRUNCATED = 'headers and b"partial ", then the end'
COMPLETE = 'the whole response'


class Case(NamedTuple):
    name: str
    outcome: str
    log: str            # the line the log must hold ('' when nothing is wrong)
    closes: bool        # the application returned an iterable with close()
    length: bytes = b''  # a Content-Length header the application declared

    def __str__(self):
        return self.name


def _bad_status(text):
    return f'AssertionError: {text}'


CASES = [
    Case('raise_before_start', ERROR, 'RuntimeError: raised before start_response: ' + SECRET,
         False),
    Case('raise_after_start', ERROR, 'RuntimeError: raised after start_response: ' + SECRET, False),
    Case('raise_in_first_block', ERROR, 'RuntimeError: raised before the first block: ' + SECRET,
         True),
    Case('raise_mid_body', TRUNCATED, 'RuntimeError: raised mid-body: ' + SECRET, True),
    Case('raise_mid_body_with_length', TRUNCATED, 'RuntimeError: raised mid-body: ' + SECRET, True,
         b'Content-Length: 100\r\n'),
    Case('exits', ERROR, 'SystemExit: the application called sys.exit(): ' + SECRET, False),
    Case('returns_bytes', ERROR, 'AssertionError: The application returned bytes instead of an '
         'iterable of bytes; return [body] instead', False),
    Case('returns_str', ERROR, 'AssertionError: The application returned str instead of an '
         'iterable of bytes; return [body] instead', False),
    Case('returns_none', ERROR, "TypeError: 'NoneType' object is not iterable", False),
    Case('yields_str', ERROR, 'AssertionError: write() argument must be a bytes instance, not str',
         True),
    Case('yields_str_mid_body', TRUNCATED,
         'AssertionError: write() argument must be a bytes instance, not str', True),
    Case('non_latin1_value', ERROR, "ValueError: Header value 'snow\u2603man' holds a character "
         "outside ISO-8859-1", False),
    Case('non_latin1_name', ERROR, "ValueError: Header name 'X-Snow\u2603' holds a character "
         "outside ISO-8859-1", False),
    Case('non_latin1_status', ERROR, "ValueError: Status '200 Snow\u2603man' holds a character "
         "outside ISO-8859-1", False),
    Case('crlf_in_value', ERROR, "ValueError: Header value 'a\\r\\nSet-Cookie: stolen=1' holds a "
         "control character", False),
    Case('lf_in_value', ERROR, "ValueError: Header value 'a\\nSet-Cookie: stolen=1' holds a "
         "control character", False),
    Case('nul_in_value', ERROR, "ValueError: Header value 'a\\x00b' holds a control character",
         False),
    Case('crlf_in_name', ERROR, "ValueError: Header name 'X-Evil\\r\\nSet-Cookie' is not a valid "
         "HTTP field name", False),
    Case('del_in_name', ERROR, "ValueError: Header name 'X-Ev\\x7fil' is not a valid HTTP field "
         "name", False),
    Case('crlf_in_status', ERROR, "ValueError: Status '200 OK\\r\\nSet-Cookie: stolen=1' holds a "
         "control character", False),
    Case('status_header', ERROR, "ValueError: Header 'Status: 302 Found' not allowed: the "
         "status is the first argument of start_response()", False),
    Case('status_header_added_after_start', ERROR, "ValueError: Header 'Status: 403 Forbidden' "
         "not allowed: the status is the first argument of start_response()", True),
    Case('hop_by_hop_header', ERROR,
         "AssertionError: Hop-by-hop header, 'Connection: close', not allowed", False),
    Case('start_response_twice', ERROR, 'AssertionError: Headers already set: start_response()'
         ' was called again without exc_info', False),
    Case('status_without_reason', ERROR, _bad_status('Status must be at least 4 characters'),
         False),
    Case('status_not_numeric', ERROR, _bad_status('Status message must begin w/3-digit code'),
         False),
    Case('status_without_space', ERROR,
         _bad_status('Status message must have a space after code'), False),
    Case('status_as_bytes', ERROR, _bad_status("Status must be of type str (got b'200 OK')"),
         False),
    Case('status_as_int', ERROR, _bad_status('Status must be of type str (got 200)'), False),
    Case('headers_as_dict', ERROR, _bad_status("Headers must be a list of (name, value) tuples "
                                               "(got {'Content-Type': 'text/plain'})"), False),
    Case('close_raises', COMPLETE, 'RuntimeError: close() failed: ' + SECRET, True,
         b'Content-Length: 8\r\n'),
    Case('headers_changed_after_start', ERROR, "ValueError: Header value 'a\\r\\nSet-Cookie: "
         "stolen=1' holds a control character", True),
]


def check_log(case, log):
    """The log of one request: the case's line (the last of its traceback),
    close() exactly once when there was an iterable, nothing when all was well."""
    lines = log.splitlines()
    if case.log:
        assert any(line.startswith(case.log) for line in lines), (case.log, log)
        assert 'Traceback (most recent call last)' in log
    else:
        assert 'Traceback' not in log and 'Error' not in log, log
    if case.outcome == TRUNCATED:
        assert ABORTED in log
    closed = [line for line in lines if line.endswith(CLOSED % case.name)]
    assert len(closed) == (1 if case.closes else 0), log


def check_nothing_leaked(data):
    assert SECRET.encode() not in data and b'Traceback' not in data and b'stolen' not in data


# (a) CGI: one process per request ------------------------------------------

@pytest.mark.parametrize('case', CASES, ids=str)
def test_cgi_process(case):
    out, err, rc = run_gateway_cgi(cgi_env({'PATH_INFO': '/' + case.name}), args=(APP,))
    check_nothing_leaked(out)
    if case.outcome == ERROR:
        assert out == ERROR_PAGE
    elif case.outcome == TRUNCATED:
        assert out == SENT_HEADERS + case.length + b'\r\npartial '
    elif case.name == 'close_raises':
        assert out == SENT_HEADERS + case.length + b'\r\ncomplete'
    else:
        assert out == SENT_HEADERS + b'\r\ncomplete'
    check_log(case, err)
    assert rc == 0   # the gateway answered; the application's failure is in the log


def test_cgi_latin1_header_value_goes_out_as_its_byte():
    out, err, rc = run_gateway_cgi(cgi_env({'PATH_INFO': '/latin1_value'}), args=(APP,))
    assert out == SENT_HEADERS + b'X-Name: caf\xe9\r\n\r\ncomplete'
    assert (err, rc) == (CLOSED % 'latin1_value' + '\n', 0)


# (b) FastCGI over a real socket, one worker ----------------------------------

@pytest.fixture(scope='module')
def fastcgi():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        server.wait_booted(1)
        server.address()
        yield server


def fcgi_exchange(sock, path, request_id=1, keep_conn=False):
    """(stdout, END_REQUEST content or None if the server closed first)."""
    sock.sendall(c.encode_begin_request(request_id, p.FCGI_RESPONDER, keep_conn)
                 + c.encode_params(request_id, cgi_params(path))
                 + c.encode_stdin(request_id, b''))
    reader = c.RecordReader()
    stdout = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b''.join(stdout), None
        for record in reader.feed(data):
            if record.type == p.FCGI_STDOUT:
                stdout.append(record.content)
            elif record.type == p.FCGI_END_REQUEST:
                return b''.join(stdout), c.decode_end_request(record.content)


def fcgi_body(sock, path):
    out, end = fcgi_exchange(sock, path, keep_conn=True)
    assert end == (0, p.FCGI_REQUEST_COMPLETE), out
    return out.partition(b'\r\n\r\n')[2]


@pytest.mark.parametrize('case', CASES, ids=str)
def test_fastcgi_server(fastcgi, case):
    worker = fastcgi.booted_pids()[0]
    mark = fastcgi.mark()
    with connect(fastcgi.address()) as sock:
        out, end = fcgi_exchange(sock, '/' + case.name, keep_conn=True)
        check_nothing_leaked(out)
        if case.outcome == TRUNCATED:
            # No END_REQUEST: the web server must see that the response failed.
            assert (out, end) == (SENT_HEADERS + case.length + b'\r\npartial ', None)
            with connect(fastcgi.address()) as again:
                assert fcgi_body(again, '/pid') == str(worker).encode()
        else:
            assert end == (0, p.FCGI_REQUEST_COMPLETE)
            if case.outcome == ERROR:
                assert out == ERROR_PAGE
            else:
                assert out.endswith(b'\r\n\r\ncomplete') and out.startswith(SENT_HEADERS)
            # The same worker, on the same connection, serves the next request.
            assert fcgi_body(sock, '/pid') == str(worker).encode()
    fastcgi.wait_for_log(re.escape(CLOSED % 'pid'), start=mark)
    log = '\n'.join(fastcgi.lines[mark:])
    check_log(case, log)
    if case.log:
        assert f'GET /{case.name}: the application raised' in log
    assert fastcgi.booted_pids() == [worker]


# (c) CGI under Apache (ScriptAlias, mod_cgid) -------------------------------

@pytest.fixture(scope='module')
def apache(tmp_path_factory):
    from test_apache_cgi import start_apache
    server = start_apache(tmp_path_factory.mktemp('apache'), APP)
    yield server
    server.stop()


def http_get(port, path):
    """(status, body) of GET *path*; body is the part received when the
    response was cut short, and *complete* says whether it was."""
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        connection.request('GET', path)
        response = connection.getresponse()
        try:
            return response.status, response.getheaders(), response.read(), True
        except http.client.IncompleteRead as error:
            return response.status, response.getheaders(), error.partial, False
    finally:
        connection.close()


def check_front_response(case, status, headers, body, complete, cuts_short):
    check_nothing_leaked(body + repr(headers).encode())
    if case.outcome == ERROR:
        assert (status, body, complete) == (500, ERROR_BODY, True)
    elif case.outcome == TRUNCATED:
        assert (status, body) == (200, b'partial ')
        assert complete is not cuts_short
    else:
        assert (status, body, complete) == (200, b'complete', True)


@pytest.mark.parametrize('case', CASES, ids=str)
def test_apache_cgi(apache, case):
    mark = len(apache.log())
    status, headers, body, complete = http_get(apache.port, '/app/' + case.name)
    # Apache >= 2.4.59 drops the program's Content-Length: no way for the
    # client to see a CGI response cut short (see the module docstring).
    check_front_response(case, status, headers, body, complete, cuts_short=False)
    if case.log:
        wait_until(lambda: case.log in apache.log()[mark:], what=f'{case.log!r} in the error log')
    if case.closes:
        wait_until(lambda: CLOSED % case.name in apache.log()[mark:], what='close() in the log')
    check_log(case, apache.log()[mark:])


# (d) nginx in front of the FastCGI server ----------------------------------

@pytest.fixture(scope='module')
def nginx(fastcgi, tmp_path_factory):
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')
    from test_nginx_fastcgi import nginx_site
    from support.webservers import Nginx
    host, port = fastcgi.address()
    server = Nginx(tmp_path_factory.mktemp('nginx')).start(nginx_site(f'{host}:{port}', True))
    yield server
    server.stop()


@pytest.mark.parametrize('case', CASES, ids=str)
def test_nginx_fastcgi(fastcgi, nginx, case):
    worker = fastcgi.booted_pids()[0]
    mark = fastcgi.mark()
    status, headers, body, complete = http_get(nginx.port, '/app/' + case.name)
    check_front_response(case, status, headers, body, complete, cuts_short=True)
    assert http_get(nginx.port, '/app/pid')[2] == str(worker).encode()
    fastcgi.wait_for_log(re.escape(CLOSED % 'pid'), start=mark)
    check_log(case, '\n'.join(fastcgi.lines[mark:]))
    assert fastcgi.booted_pids() == [worker]


def test_every_bad_app_is_in_the_table():
    # A misbehaving application added to the module is run on every path.
    import apps.badapps as module
    apps = {name for name, value in vars(module).items()
            if callable(value) and getattr(value, '__module__', '') == module.__name__
            and not isinstance(value, type) and not name.startswith('_')}
    assert apps - {case.name for case in CASES} == {'app', 'pid', 'latin1_value'}
    assert len({case.name for case in CASES}) == len(CASES)

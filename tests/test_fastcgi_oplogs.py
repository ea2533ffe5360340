"""The access log and the slow-request log, on a real server; the access
log's format and escaping in this process; their bad input."""

import os
import re
import textwrap

import pytest

from support.helpers import in_background
from support.fcgi_client import ServerProcess, cgi_params, get, request, wait_until
from gateway import cli
from gateway.fastcgi.accesslog import DEFAULT_FORMAT, AccessLog, escape

APP = 'apps.fcgiapps:router'


class Lines:
    """A LogFile stand-in that keeps what is written (only for the format)."""

    def __init__(self):
        self.lines = []

    def write(self, data):
        self.lines.append(data.decode('ascii'))


# ---------------------------------------------------------------------------
# The format, in this process
# ---------------------------------------------------------------------------

def test_every_code_of_the_format():
    out = Lines()
    access = AccessLog(out, '%a|%h|%u|%m|%U|%q|%H|%s|%b|%B|%D|%p|%{X-Trace}i|%{SERVER_NAME}e|%%')
    params = {'REMOTE_ADDR': '10.0.0.7', 'REQUEST_METHOD': 'POST', 'REQUEST_URI': '/a/b?x=1',
              'QUERY_STRING': 'x=1', 'SERVER_PROTOCOL': 'HTTP/1.1', 'HTTP_X_TRACE': 'abc',
              'SERVER_NAME': 'example.org'}
    access.write(params, '201 Created', 0, 0.0, 1234)
    assert out.lines == [f'10.0.0.7|10.0.0.7|-|POST|/a/b?x=1|x=1|HTTP/1.1|201|-|0|1234|'
                         f'{os.getpid()}|abc|example.org|%\n']


def test_the_uri_without_request_uri_and_the_time():
    out = Lines()
    access = AccessLog(out, '%U %t %M')
    access.write({'SCRIPT_NAME': '/app', 'PATH_INFO': '/x', 'QUERY_STRING': 'q'}, None, 5,
                 86400 * 365.25 * 30, 1)
    match = re.fullmatch(r'(\S+) (\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]) (\d+)\n',
                         out.lines[0])
    assert match, out.lines
    uri, rss = match.group(1), match.group(3)
    assert uri == '/app/x?q'
    assert int(rss) > 1000      # KiB: a Python process is bigger than a MiB


def test_a_hostile_request_cannot_forge_a_line_or_break_the_quotes():
    out = Lines()
    access = AccessLog(out)
    params = {'REMOTE_ADDR': '1.2.3.4', 'REQUEST_METHOD': 'GET',
              'REQUEST_URI': '/x"\n1.2.3.4 - - [x] "GET /admin HTTP/1.1" 200 1 "-" "-" 1\r\\',
              'SERVER_PROTOCOL': 'HTTP/1.1', 'HTTP_USER_AGENT': 'ua"\x1b[31m\xe9',
              'HTTP_REFERER': ''}
    access.write(params, '200 OK', 3, 0.0, 7)
    (line,) = out.lines
    assert line.count('\n') == 1 and line.endswith(' 7\n')
    # The quotes left are the format's own six.
    assert line.count('"') == 6
    assert '\\x22' in line and '\\x0a' in line and '\\x0d' in line and '\\x5c' in line
    assert '\\x1b' in line and '\\xe9' in line
    assert '"-"' in line        # an empty Referer, as the combined format writes it
    assert escape('plain /path?a=b') == 'plain /path?a=b'


def test_a_hostile_path_without_request_uri_is_escaped_once_byte_for_byte():
    out = Lines()
    access = AccessLog(out, '%a "%r" %s %b %D "%{User-Agent}i" %{X}e %%')
    params = {'REMOTE_ADDR': '1.2.3.4', 'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '/a"b',
              'PATH_INFO': '/\\\n\x7f\xe9', 'QUERY_STRING': 'q="1"', 'SERVER_PROTOCOL': 'HTTP/1.0',
              'HTTP_USER_AGENT': '{ua}', 'X': '%s'}
    access.write(params, '404 Not Found', 0, 0.0, 12)
    assert out.lines == ['1.2.3.4 "GET /a\\x22b/\\x5c\\x0a\\x7f\\xe9?q=\\x221\\x22 HTTP/1.0" '
                         '404 - 12 "{ua}" %s %\n']


@pytest.mark.parametrize('fmt, says', [('%Z', 'unknown code %Z'), ('%{X}z', 'unknown code %{X}z'),
                                       ('%a %', 'a lone %')])
def test_a_bad_format_is_refused(fmt, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        AccessLog(Lines(), fmt)


def test_the_default_format_is_combined_plus_the_duration():
    assert DEFAULT_FORMAT == '%a - %u %t "%r" %s %b "%{Referer}i" "%{User-Agent}i" %D'


# ---------------------------------------------------------------------------
# Bad input: one line naming the option, exit 2, nothing started
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('args, says', [
    (['--access-log', '/nonexistent/dir/access.log'],
     '--access-log /nonexistent/dir/access.log: No such file or directory'),
    (['--slow-log', '/nonexistent/dir/slow.log', '--slow-request', '1'],
     '--slow-log /nonexistent/dir/slow.log: No such file or directory'),
    (['--access-log', '-', '--access-log-format', '%a %Q'], '--access-log-format: unknown code %Q'),
    (['--access-log-format', '%a'], '--access-log-format needs --access-log'),
    (['--slow-request', 'later'], "'later' is not a number of seconds"),
])
def test_bad_log_options_are_one_line_and_exit_2(args, says, capsys):
    assert cli.fastcgi_main([APP, '--bind', '127.0.0.1:0', *args]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('gateway fastcgi: error:'), err
    assert says in err


# ---------------------------------------------------------------------------
# On a real server
# ---------------------------------------------------------------------------

def test_the_access_log_has_a_line_per_request_written_by_its_worker(tmp_path):
    access_log = tmp_path / 'access.log'
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2', '--access-log',
                        str(access_log), '--access-log-format',
                        '%a "%r" %s %b %D %p "%{User-Agent}i"']) as server:
        address = server.address()
        pids = server.wait_booted(2)
        replies = [request(address, cgi_params('/echo', method='POST', HTTP_USER_AGENT='t"1',
                                               CONTENT_LENGTH='5'), b'hello')
                   for _ in range(3)]
        replies.append(get(address, '/missing-is-hello', query='a=1'))
        # Written a batch at a time: within two seconds when traffic stops.
        lines = wait_until(lambda: len(access_log.read_text().splitlines()) == 4
                           and access_log.read_text().splitlines(), what='four lines')
        lines.sort(key=lambda line: 'missing' in line)
    assert [r.status for r in replies] == [200] * 4
    assert len(lines) == 4
    for line in lines[:3]:
        match = re.fullmatch(r'127\.0\.0\.1 "POST /echo HTTP/1\.1" 200 5 (\d+) (\d+) "t\\x221"',
                             line)
        assert match, line
        assert int(match.group(2)) in pids
    assert re.fullmatch(r'127\.0\.0\.1 "GET /missing-is-hello\?a=1 HTTP/1\.1" 200 13 \d+ \d+ "-"',
                        lines[3]), lines[3]


def test_the_access_log_off_by_default_and_on_stdout_with_a_dash(tmp_path):
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1', '--access-log', '-',
                        '--access-log-format', 'ACCESS %U %s']) as server:
        address = server.address()
        server.wait_booted(1)
        get(address, '/pid')
        server.wait_for_log(r'^ACCESS /pid 200$')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        mark = server.mark()
        get(address, '/pid')
        get(address, '/slow', query='0')
        server.wait_for_log('slow request started', start=mark)
        assert not server.count(r'/pid', start=mark)


STUCK_APP = textwrap.dedent('''\
    import threading
    release = threading.Event()

    def application(environ, start_response):
        if environ.get('PATH_INFO') == '/release':
            release.set()
        else:
            release.wait(float(environ.get('QUERY_STRING') or 30))  # STUCK HERE
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'done']
    ''')


def stuck_line():
    return 1 + STUCK_APP.splitlines().index(
        next(line for line in STUCK_APP.splitlines() if 'STUCK HERE' in line))


@pytest.mark.parametrize('workers, threads', [(1, 1), (1, 3), (0, 1)])
def test_a_slow_request_logs_where_it_is_stuck_once_and_goes_on(tmp_path, workers, threads):
    (tmp_path / 'stuck.py').write_text(STUCK_APP)
    slow_log = tmp_path / 'slow.log'
    with ServerProcess(['stuck', '--bind', '127.0.0.1:0', '--workers', str(workers), '--threads',
                        str(threads), '--chdir', str(tmp_path), '--slow-request', '0.3',
                        '--slow-log', str(slow_log)]) as server:
        address = server.address()
        reply = in_background(get, address, '/wait', query='2')

        def logged():
            return slow_log.exists() and 'STUCK HERE' in slow_log.read_text()
        wait_until(logged, what='the slow request logged')
        assert reply().body == b'done'      # it was not stopped
        text = slow_log.read_text()
    assert text.count('running for') == 1, text
    head = text.splitlines()[0]
    assert re.search(r'GET /wait\?2: running for 0\.\d+s \(--slow-request 0\.3s\); its thread '
                     r'is at:$', head), head
    assert f'stuck.py", line {stuck_line()}, in application' in text
    # From the application's call on, not the server's frames below it.
    assert 'arbiter.py' not in text and 'run_worker_process' not in text


@pytest.mark.parametrize('threads', [1, 2])
def test_the_timeout_path_logs_the_stack_before_its_504(tmp_path, threads):
    (tmp_path / 'stuck.py').write_text(STUCK_APP)
    with ServerProcess(['stuck', '--bind', '127.0.0.1:0', '--workers', '1', '--threads',
                        str(threads), '--chdir', str(tmp_path), '--timeout', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        reply = get(address, '/wait', query='30', timeout=20)
        assert reply.status == 504
        server.wait_for_log(r'answered 504')
        log = server.log
    stack_at = log.index('(--timeout 1s; answering 504); its thread is at:')
    assert log.index(f'stuck.py", line {stuck_line()}, in application', stack_at) \
        < log.index('answered 504 Gateway Timeout')


@pytest.mark.parametrize('threads', [1, 2])
def test_a_request_answered_504_has_its_access_log_line_once(tmp_path, threads):
    """With one thread the worker exits on top of the overdue request, with
    more its thread may never return: the line is written with the 504."""
    access_log = tmp_path / 'access.log'
    with ServerProcess(['apps.faultapps:router', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--threads', str(threads), '--timeout', '1', '--access-log',
                        str(access_log), '--access-log-format', '"%r" %s %b']) as server:
        address = server.address()
        (stuck,) = server.wait_booted(1)
        reply = get(address, '/hang', timeout=20)
        assert reply.status == 504
        server.wait_for_log(rf'pid {stuck}\) (exited|was killed)')
        wait_until(lambda: access_log.exists() and access_log.read_text(), what='a line')
        assert get(address, '/pid').status == 200      # the replacement logs its own
        wait_until(lambda: len(access_log.read_text().splitlines()) == 2, what='two lines')
    assert access_log.read_text().splitlines()[0] == f'"GET /hang HTTP/1.1" 504 {len(reply.body)}'


"""A query's words on a CGI command line are the visitor's, never the gateway's options.

RFC 3875 4.4: for a query without "=", a server may split it on "+" and put
one word per piece on the program's command line. Apache's mod_cgid does so
for every method, with the words unescaped, shell characters backslashed and
a word cut at %00. `apache/cgi.conf` points ScriptAlias at the gateway
program itself, so each of these words would otherwise be parsed as a
subcommand or an option. Through a real Apache, whatever the query says, the
configured application answers, nothing else is imported or started, and no
file appears.
"""

import os
import struct
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.helpers import REPO, TESTS
from test_apache_cgi import start_apache

CONFIGURED = b'default /app|'      # apps.cliapps:application answers SCRIPT_NAME|PATH_INFO


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    """A directory holding a module that leaves a mark when anything imports it."""
    directory = tmp_path_factory.mktemp('planted')
    marker = directory / 'imported'
    (directory / 'evil.py').write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'evil']\n"
        "app = application\n")
    return directory


@pytest.fixture(scope='module')
def apache(tmp_path_factory):
    server = start_apache(tmp_path_factory.mktemp('apache'), 'apps.cliapps:application')
    yield server
    server.stop()


def _descendants(pid):
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as stream:
                fields = stream.read().rsplit(b')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _gateway_processes(apache):
    """Processes under Apache still running the gateway: a CGI request's
    process ends with its response, so any left is one the request started."""
    left = []
    for pid in _descendants(apache.process.pid):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as stream:
                command = stream.read().replace(b'\0', b' ')
        except OSError:
            continue
        if b'gateway' in command:
            left.append(command.decode('latin-1'))
    return left


def _fastcgi_request(params, stdin=b''):
    """One FastCGI RESPONDER request, as a body a forged server would read."""
    def record(kind, content):
        return struct.pack('>BBHHBB', 1, kind, 1, len(content), 0, 0) + content

    def pair(name, value):
        return bytes([len(name), len(value)]) + name + value
    body = record(1, struct.pack('>HB5x', 1, 0))
    body += record(4, b''.join(pair(k, v) for k, v in params.items())) + record(4, b'')
    return body + record(5, stdin) + record(5, b'')


def assert_configured_app_answers(apache, planted, path, query, method='GET', body=None):
    status, _, answer = apache.request(method, f'{path}?{query}', body=body)
    assert (status, answer) == (200, CONFIGURED + path[len('/app'):].encode()), \
        (query, status, answer[:300], apache.log()[-2000:])
    assert not (planted / 'imported').exists(), f'{query!r} imported the planted module'
    assert not (planted / 'visitor.log').exists(), f'{query!r} created a file'
    assert _gateway_processes(apache) == [], f'{query!r} left a process running'


# {dir}: the planted module's directory; {log}: a file the visitor names.
ATTACKS = [
    ('/app/env', 'cgi+gateway.demo'),
    ('/app/x', 'cgi+--chdir+{dir}+evil'),
    ('/app/x', '--chdir+{dir}+evil'),
    ('/app/x', 'cgi+--chdir%3D{dir}+evil:app'),
    ('/app/x', 'cgi+--log-file+{log}+x'),
    ('/app/x', 'cgi+--log-file+{log}'),
    ('/app/app/x', 'cgi+--iis+apps.cliapps:app'),
    ('/app/x', 'fastcgi+--workers+6+--bind+127.0.0.1:0'),
    ('/app/x', 'fastcgi+--workers+0'),
    ('/app/x', 'cgi%3B+--chdir+{dir}+evil'),
    ('/app/x', '%3B'),
    ('/app/x', 'cgi%00+--chdir+{dir}+evil'),
    ('/app/x', '%00'),
    ('/app/x', 'cgi%20--chdir%20{dir}%20evil'),
    ('/app/x', '%20'),
    ('/app/x', '--'),
    ('/app/x', '-h'),
    ('/app/x', '--help'),
    ('/app/x', 'help'),
    ('/app/x', '+'),
    ('/app/x', '++'),
    ('/app/x', 'cgi'),
    ('/app/x', 'x+' * 3000 + 'x'),
    ('/app/x', 'cgi+' * 1000 + '--chdir+{dir}+evil'),
    ('/app/x', '%2D%2Dchdir+{dir}+evil'),
    ('/app/x', 'cgi+%E2%80%90%E2%80%90chdir+{dir}+evil'),
]


@pytest.mark.parametrize('path, query', ATTACKS, ids=[f'{i}-{q[:40]}' for i, (_, q) in enumerate(ATTACKS)])
def test_attack_corpus(apache, planted, path, query):
    query = query.format(dir=urllib.parse.quote(str(planted), safe=''),
                         log=urllib.parse.quote(str(planted / 'visitor.log'), safe=''))
    assert_configured_app_answers(apache, planted, path, query)


def test_forged_fastcgi_records_in_a_post_body_run_nothing(apache, planted):
    # Under mod_cgid the program's stdin is a socket: `fastcgi --workers 0`
    # would serve these records as a web server's, with the visitor's
    # REMOTE_USER.
    body = _fastcgi_request({b'REQUEST_METHOD': b'GET', b'SERVER_PROTOCOL': b'HTTP/1.1',
                             b'SCRIPT_NAME': b'/app', b'PATH_INFO': b'/x',
                             b'REMOTE_USER': b'admin', b'HTTPS': b'on'})
    for query in ('fastcgi+--workers+0', 'fastcgi+--workers+0+apps.cliapps:app',
                  f'fastcgi+--workers+0+--chdir+{urllib.parse.quote(str(planted), safe="")}+evil'):
        assert_configured_app_answers(apache, planted, '/app/x', query, 'POST', body)


_WORD = st.text(st.sampled_from('-=+%;:./\\ ab0cgifastcgi\x00\u2010é'), max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(_WORD, min_size=1, max_size=8), raw=st.booleans())
def test_generated_query_words(apache, planted, words, raw):
    # Either percent-encoded words joined by "+", or the characters as they
    # come (a "+" inside a word then splits it, an "=" turns the words off).
    if raw:
        query = urllib.parse.quote('+'.join(words), safe='+=-:;./\\')
    else:
        query = '+'.join(urllib.parse.quote(word, safe='') for word in words)
    assert_configured_app_answers(apache, planted, '/app/x', query)


def test_the_configured_application_still_gets_the_query(apache):
    status, _, _ = apache.request('GET', '/app/x?cgi+--iis')
    assert status == 200
    # The query itself is untouched: only the command line ignores it.
    server_log = apache.log()
    assert 'unknown option' not in server_log and 'Traceback' not in server_log


def test_repo_layout_assumption():
    # The configured application lives where PYTHONPATH points in start_apache().
    assert os.path.exists(os.path.join(TESTS, 'apps', 'cliapps.py')) and os.path.isdir(REPO)


def test_a_wrapper_keeps_its_own_options(tmp_path, planted):
    # A deployment's wrapper passes Apache's words on ("$@"): its own
    # options come first and survive; the query's, after them, do not.
    from test_apache_cgi import gateway_program
    wrapper = tmp_path / 'wrapper.sh'
    wrapper.write_text(f'#!/bin/sh\nexec {gateway_program()} cgi --chdir {TESTS} '
                       'apps.cliapps:app "$@"\n')
    wrapper.chmod(0o755)
    server = start_apache(tmp_path, 'no_such_module:app', program=str(wrapper))
    try:
        for query in ('', 'a=1', 'x', '--iis+apps.cliapps:application',
                      f'cgi+--chdir+{planted}+evil'):
            status, _, body = server.request('GET', f'/app/x?{query}')
            assert (status, body) == (200, b'app /app|/x'), (query, server.log()[-1500:])
    finally:
        server.stop()
    assert not (planted / 'imported').exists()


def test_an_argv_given_to_main_is_the_deployments_own():
    import subprocess
    import sys
    from support.cgi_support import cgi_env, split_cgi_response
    code = ('import sys\nfrom gateway.__main__ import main\n'
            "sys.exit(main(['cgi', 'apps.cliapps:app']))\n")
    env = cgi_env({'QUERY_STRING': 'x', 'PATH_INFO': '/x', 'GATEWAY_APP': 'no_such_module:app',
                   'PYTHONPATH': f'{REPO}:{TESTS}'})
    proc = subprocess.run([sys.executable, '-c', code, 'x'], env=env, capture_output=True,
                          timeout=30)
    assert split_cgi_response(proc.stdout)[2] == b'app /app|/x', proc.stderr


@pytest.mark.parametrize('args', [('fastcgi', '--workers', '0'),
                                  ('fastcgi', 'apps.cliapps:app', '--bind', '127.0.0.1:0')])
def test_the_fastcgi_server_never_starts_inside_a_cgi_request(args):
    import subprocess
    import sys
    from support.cgi_support import cgi_env
    env = cgi_env({'PYTHONPATH': f'{REPO}:{TESTS}'})
    proc = subprocess.run([sys.executable, '-c', 'import sys\nfrom gateway.__main__ import main\n'
                           'sys.exit(main(sys.argv[1:]))', *args],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == ('gateway: refusing to start the FastCGI server inside a CGI request '
                           '(GATEWAY_INTERFACE and REQUEST_METHOD are set)\n')

"""CGI programs given a broken environment: ``python -m gateway cgi`` (and
``--iis``) and plain ``CGIHandler().run(app)`` scripts, in a subprocess.

The rule, and why:

* Everything in a CGI environment is the web server's doing. RFC 3875 4.1
  has the server set REQUEST_METHOD and SERVER_PROTOCOL (PEP 3333 promises
  both to the application), and CONTENT_LENGTH is ``"" | 1*digit``
  (4.1.2). A client cannot make a conforming server break that (a web
  server answers 400 to a bad Content-Length itself: RFC 9110 8.6), so a
  broken environment is a server-side failure: **500**, never 400. The
  application is not called with an environ PEP 3333 does not allow; the
  log says which variable is wrong, in one line; ``gateway cgi`` exits 1,
  as for an application it cannot load. (An empty SERVER_NAME, which nginx
  sends for a server block without server_name, is served.)
* A body shorter than CONTENT_LENGTH (the client or the server stopped
  sending) makes ``wsgi.input`` raise OSError, as mod_wsgi does, instead of
  passing a short upload off as the whole one: the application's error,
  so a 500 with its traceback unless the application handles it.
* Bytes that are not valid UTF-8 are no error at all. PEP 3333 environ
  values are latin-1 native strings, so every byte has a character: the
  application sees exactly the request's bytes, with or without ``--iis``.
  Variables that do not come from the request (paths such as
  DOCUMENT_ROOT) keep Python's own decoding (surrogate escapes, which
  ``os`` functions turn back into the same bytes).

Whatever the case, stdout holds a CGI response (a ``Status:`` line) and
the process ends normally: never a Python crash without output.
"""

import os
import subprocess
import sys

import pytest

from support.cgi_support import BASE_CGI_ENV, split_cgi_response
from support.helpers import REPO, TESTS
from test_cgi_cli import ERROR_BODY

# The application: echoes what it got as latin-1 bytes (PEP 3333), and the
# body it read (all of it, by read() or by lines).
APP_CODE = '''
def app(environ, start_response):
    if environ.get('QUERY_STRING') == 'lines':
        body = b''.join(environ['wsgi.input'])
    else:
        body = environ['wsgi.input'].read()
    names = ('PATH_INFO', 'QUERY_STRING', 'HTTP_X_FOO', 'DOCUMENT_ROOT')
    text = '|'.join(environ.get(name, '-') for name in names)
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [text.encode('latin-1', 'backslashreplace') + b'|' + body]
'''

GATEWAY_CGI = [sys.executable, '-m', 'gateway', 'cgi']
CGI_HANDLER = [sys.executable, '-c', APP_CODE + 'from gateway.handlers import CGIHandler\n'
               'CGIHandler().run(app)\n']
IIS_CGI_HANDLER = [sys.executable, '-c', APP_CODE + 'from gateway.handlers import IISCGIHandler\n'
                   'IISCGIHandler().run(app)\n']


@pytest.fixture(scope='module')
def app_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp('app')
    (directory / 'echo_app.py').write_text(APP_CODE)
    return directory


def environb(changes=(), base=BASE_CGI_ENV):
    """A CGI environment as the bytes a web server puts there: *base* with
    *changes* applied (a value of None removes the variable)."""
    env = {name.encode(): value.encode() for name, value in base.items()}
    for name, value in dict(changes).items():
        name = name.encode() if isinstance(name, str) else name
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.encode() if isinstance(value, str) else value
    # How the test finds the package: not part of the CGI environment.
    env[b'PYTHONPATH'] = os.pathsep.join((REPO, TESTS)).encode()
    return env


def run(command, env, cwd, stdin=b''):
    proc = subprocess.run(command, input=stdin, env=env, capture_output=True, timeout=30,
                          cwd=str(cwd))
    return proc.stdout, proc.stderr.decode('utf-8', 'backslashreplace'), proc.returncode


def gateway_cgi(app_dir, env, stdin=b'', args=()):
    return run(GATEWAY_CGI + [*args, 'echo_app:app'], env, app_dir, stdin)


def check_500(out, err, message):
    """A CGI 500 on stdout, and *message* as one line of the log."""
    status, headers, body = split_cgi_response(out)
    assert (status, body) == ('500 Internal Server Error', ERROR_BODY)
    assert any(line.endswith(message) for line in err.splitlines()), err


# Environments the web server got wrong: 500, the app never called.
BROKEN = [
    ('no REQUEST_METHOD', {'REQUEST_METHOD': None},
     'answered 500 Internal Server Error: the web server set no REQUEST_METHOD: not a CGI request '
     '(RFC 3875 4.1, PEP 3333)'),
    ('empty REQUEST_METHOD', {'REQUEST_METHOD': ''}, 'set no REQUEST_METHOD: not a CGI request '
                                                     '(RFC 3875 4.1, PEP 3333)'),
    ('no SERVER_PROTOCOL', {'SERVER_PROTOCOL': None}, 'set no SERVER_PROTOCOL: not a CGI request '
                                                      '(RFC 3875 4.1, PEP 3333)'),
    ('CONTENT_LENGTH abc', {'CONTENT_LENGTH': 'abc'},
     "answered 500 Internal Server Error: CONTENT_LENGTH is not a non-negative integer: 'abc'"),
    ('CONTENT_LENGTH -1', {'CONTENT_LENGTH': '-1'}, "integer: '-1'"),
    ('CONTENT_LENGTH 1e3', {'CONTENT_LENGTH': '1e3'}, "integer: '1e3'"),
    ('CONTENT_LENGTH +5', {'CONTENT_LENGTH': '+5'}, "integer: '+5'"),
    ('CONTENT_LENGTH with spaces', {'CONTENT_LENGTH': ' 5 '}, "integer: ' 5 '"),
    # b'\xb2' is latin-1 '\xb2' (superscript two), a digit to str.isdigit().
    ('CONTENT_LENGTH superscript digit', {'CONTENT_LENGTH': b'\xb2'}, "integer: '\xb2'"),
]


@pytest.mark.parametrize('changes, message', [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_gateway_cgi_refuses_a_broken_environment(app_dir, changes, message):
    out, err, rc = gateway_cgi(app_dir, environb(changes), stdin=b'hello')
    check_500(out, err, message)
    assert 'Traceback' not in err     # the gateway's own traceback says nothing more
    assert rc == 1


@pytest.mark.parametrize('changes, message', [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_cgi_handler_script_refuses_a_broken_environment(app_dir, changes, message):
    out, err, rc = run(CGI_HANDLER, environb(changes), app_dir, stdin=b'hello')
    check_500(out, err, message)
    assert rc == 0     # the script's own exit status: it ran to its end


def test_empty_server_name_is_served(app_dir):
    # nginx sends SERVER_NAME empty for a server block without server_name:
    # a required variable to PEP 3333, but no reason to refuse the request.
    out, err, rc = gateway_cgi(app_dir, environb({'SERVER_NAME': '', 'SERVER_PORT': None}))
    assert split_cgi_response(out)[0] == '200 OK'
    assert (err, rc) == ('', 0)


def test_empty_environment(app_dir):
    env = environb(base={})
    assert set(env) == {b'PYTHONPATH'}
    for command in (GATEWAY_CGI + ['echo_app:app'], GATEWAY_CGI, CGI_HANDLER):
        out, err, rc = run(command, env, app_dir)
        check_500(out, err, 'set no REQUEST_METHOD: not a CGI request (RFC 3875 4.1, PEP 3333)')
        assert rc == (0 if command is CGI_HANDLER else 1)


def test_iis_mode_logs_a_broken_environment_to_its_log_file(app_dir, tmp_path):
    log = tmp_path / 'gateway.log'
    out, err, rc = gateway_cgi(app_dir, environb({'REQUEST_METHOD': None}),
                               args=('--iis', '--log-file', str(log)))
    check_500(out, log.read_text(), 'set no REQUEST_METHOD: not a CGI request '
                                    '(RFC 3875 4.1, PEP 3333)')
    assert (err, rc) == ('', 1)     # IIS would read stderr as part of the response


# A body shorter than CONTENT_LENGTH: wsgi.input raises.

SHORT = 'OSError: the request body ended {} bytes short of its CONTENT_LENGTH: the client or ' \
        'the web server stopped sending'


@pytest.mark.parametrize('length, missing', [('10', 5), ('9' * 30, int('9' * 30) - 5)],
                         ids=['10', 'beyond any memory'])
@pytest.mark.parametrize('query', ['', 'lines'], ids=['read()', 'by lines'])
@pytest.mark.parametrize('command', ['gateway cgi', 'CGIHandler'])
def test_body_shorter_than_content_length(app_dir, command, query, length, missing):
    env = environb({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': length, 'QUERY_STRING': query})
    if command == 'gateway cgi':
        # A query without "=" also ends the command line, as Apache puts it
        # there (RFC 3875 4.4), and the gateway drops it from there.
        words = [query] if query else []
        out, err, rc = run(GATEWAY_CGI + ['echo_app:app'] + words, env, app_dir, stdin=b'hello')
    else:
        out, err, rc = run(CGI_HANDLER, env, app_dir, stdin=b'hello')
    check_500(out, err, SHORT.format(missing))
    assert 'Traceback (most recent call last)' in err    # the application's error
    assert rc == 0


def test_exact_and_longer_bodies_are_read_up_to_content_length(app_dir):
    for stdin in (b'hello', b'helloEXTRA'):
        env = environb({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '5'})
        out, err, rc = gateway_cgi(app_dir, env, stdin=stdin)
        assert split_cgi_response(out)[2].endswith(b'|hello')
        assert (err, rc) == ('', 0)


def test_body_read_in_steps_beyond_the_single_read_limit(app_dir):
    from gateway.handlers.streams import _READ_STEP
    body = os.urandom(_READ_STEP + 12345)
    env = environb({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': str(len(body))})
    out, err, rc = gateway_cgi(app_dir, env, stdin=body + b'not the body')
    assert split_cgi_response(out)[2].endswith(b'|' + body)
    assert (err, rc) == ('', 0)


# Bytes that are not UTF-8: passed through, latin-1 as PEP 3333 says.

UNDECODABLE = {
    'PATH_INFO': b'/caf\xe9/\xff\xfe',
    'QUERY_STRING': b'q=\xff\xfe%ff',
    'HTTP_X_FOO': b'\xff\xfe\x80 bar',
    'DOCUMENT_ROOT': b'/srv/\xff',
}
SEEN = b'/caf\xe9/\xff\xfe|q=\xff\xfe%ff|\xff\xfe\x80 bar|/srv/\\udcff|'


@pytest.mark.parametrize('command', ['gateway cgi', 'gateway cgi --iis', 'CGIHandler',
                                     'IISCGIHandler'])
@pytest.mark.parametrize('locale', [None, 'C', 'C.UTF-8'])
def test_undecodable_bytes_reach_the_app_unchanged(app_dir, command, locale):
    changes = dict(UNDECODABLE)
    if locale:
        changes['LC_ALL'] = locale
    if 'iis' in command.lower():
        changes['SERVER_SOFTWARE'] = 'Microsoft-IIS/10.0'
        changes['SCRIPT_NAME'] = '/app.py'
        changes['PATH_INFO'] = b'/app.py' + UNDECODABLE['PATH_INFO']
    env = environb(changes)
    if command.startswith('gateway'):
        out, err, rc = gateway_cgi(app_dir, env, args=command.split()[2:])
    else:
        out, err, rc = run(CGI_HANDLER if command == 'CGIHandler' else IIS_CGI_HANDLER, env,
                           app_dir)
    assert split_cgi_response(out)[:1] == ('200 OK',), (out, err)
    assert split_cgi_response(out)[2] == SEEN
    assert (err, rc) == ('', 0)


def test_undecodable_variable_name_is_no_crash(app_dir):
    out, err, rc = gateway_cgi(app_dir, environb({b'HTTP_X_\xff': b'1'}))
    assert split_cgi_response(out)[0] == '200 OK'
    assert (err, rc) == ('', 0)


def test_undecodable_application_name_is_a_500_with_a_log_line(app_dir):
    env = environb({'GATEWAY_APP': b'echo_app:\xff'})
    out, err, rc = run(GATEWAY_CGI, env, app_dir)
    check_500(out, err, "'echo_app:\\udcff' is not of the form MODULE:CALLABLE "
                        "(e.g. myproject.wsgi:application)")
    assert rc == 1


def test_undecodable_bytes_in_the_log_of_a_failing_request(app_dir, tmp_path):
    # The request line of a truncated response goes to the log as text.
    (tmp_path / 'failing_app.py').write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    yield b'partial'\n"
        "    raise RuntimeError('late')\n")
    env = environb({'PATH_INFO': b'/\xff\xfe'})
    out, err, rc = run(GATEWAY_CGI + ['failing_app:app'], env, tmp_path)
    assert out == b'Status: 200 OK\r\n\r\npartial'
    assert 'GET /app/\xff\xfe: error after the response headers were sent' in err
    assert rc == 0

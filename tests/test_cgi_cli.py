"""`python -m gateway cgi` and the `gateway` command as a CGI script."""

import os
import subprocess
import sys

import pytest

from support.cgi_support import cgi_env, run_gateway_cgi, split_cgi_response
from support.helpers import REPO, unavailable

ERROR_BODY = b'A server error occurred.  Please contact the administrator.'


@pytest.mark.parametrize('spec, body', [
    ('apps.cliapps:app', b'app /app|/x'),
    ('apps.cliapps', b'default /app|/x'),
    ('apps.cliapps:Namespace.inner', b'app /app|/x'),
    ('apps.cliapps:create()', b'from a factory'),
])
def test_app_named_on_the_command_line(spec, body):
    out, err, rc = run_gateway_cgi(cgi_env({'PATH_INFO': '/x'}), args=(spec,))
    assert (rc, err) == (0, '')
    assert split_cgi_response(out)[2] == body


def test_app_from_gateway_app_variable_with_no_arguments():
    env = cgi_env({'GATEWAY_APP': 'apps.cliapps:app', 'PATH_INFO': '/y'})
    proc = subprocess.run([sys.executable, '-m', 'gateway'], env=env, capture_output=True,
                          timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert split_cgi_response(proc.stdout) == ('200 OK', [('Status', '200 OK'),
                                                          ('Content-Type', 'text/plain'),
                                                          ('Content-Length', '11')],
                                               b'app /app|/y')


@pytest.mark.parametrize('how', ['flag', 'variable'])
def test_iis_mode(how):
    env = cgi_env({'SCRIPT_NAME': '/app.py', 'PATH_INFO': '/app.py/a/b',
                   'GATEWAY_APP': 'apps.cliapps:app'})
    args = ('--iis',) if how == 'flag' else ()
    if how == 'variable':
        env['GATEWAY_IIS'] = '1'
    out, err, rc = run_gateway_cgi(env, args=args)
    assert split_cgi_response(out)[2] == b'app /app.py|/a/b'


def test_chdir_option(tmp_path):
    (tmp_path / 'elsewhere_app.py').write_text(
        "def app(e, sr):\n    sr('200 OK', [])\n    return [b'from elsewhere']\n")
    out, err, rc = run_gateway_cgi(cgi_env(), args=('--chdir', str(tmp_path), 'elsewhere_app:app'))
    assert split_cgi_response(out)[2] == b'from elsewhere', err


@pytest.mark.parametrize('spec, message, traceback', [
    ('no_such_module:app', "cannot import 'no_such_module': no such module on sys.path", False),
    ('apps.broken:app', "importing 'apps.broken' failed: RuntimeError: the application module is broken", True),
    ('apps.cliapps:missing', "has no 'missing'", False),
    ('apps.cliapps:not_callable', 'apps.cliapps:not_callable is a int, not a WSGI callable', False),
    ('not a spec', "'not a spec' is not of the form MODULE:CALLABLE", False),
    ('', 'no WSGI application given: pass MODULE:CALLABLE or set GATEWAY_APP', False),
])
def test_broken_app_gives_500_and_a_clear_message(spec, message, traceback):
    env = cgi_env()
    env['GATEWAY_APP'] = spec
    out, err, rc = run_gateway_cgi(env)
    status, headers, body = split_cgi_response(out)
    assert status == '500 Internal Server Error'
    assert body == ERROR_BODY                       # nothing about the cause reaches the client
    assert err.startswith(f'gateway: cannot load the WSGI application {spec!r}: ')
    assert message in err
    assert ('Traceback (most recent call last)' in err) is traceback
    assert rc == 1


def test_help_and_unknown_command():
    proc = subprocess.run([sys.executable, '-m', 'gateway', '--help'], capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0 and 'GATEWAY_APP' in proc.stdout and '--iis' in proc.stdout
    proc = subprocess.run([sys.executable, '-m', 'gateway', 'bogus'], capture_output=True,
                          text=True, timeout=30, cwd=REPO, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 2 and "unknown command 'bogus'" in proc.stderr
    proc = subprocess.run([sys.executable, '-m', 'gateway', 'cgi', '--bogus'], capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    assert proc.returncode != 0 and "unknown option '--bogus'" in proc.stderr


def test_no_arguments_outside_a_web_server_prints_usage():
    env = {k: v for k, v in os.environ.items() if k != 'GATEWAY_INTERFACE'}
    proc = subprocess.run([sys.executable, '-m', 'gateway'], capture_output=True, text=True,
                          timeout=30, cwd=REPO, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith('usage: gateway cgi')


def test_cgi_path_imports_only_what_it_needs():
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "from gateway.__main__ import main\n"
            "sys.argv = ['gateway', 'cgi', 'apps.cliapps:app']\n"
            "import io\n"
            "main()\n"
            "sys.stderr.write(' '.join(sorted(set(sys.modules) - before)))\n")
    env = cgi_env()
    proc = subprocess.run([sys.executable, '-S', '-c', code], env=env, capture_output=True,
                          text=True, timeout=30, cwd=os.path.join(REPO, 'tests'))
    loaded = set(proc.stderr.split())
    assert 'gateway.handlers.base' in loaded
    heavy = {'re', 'argparse', 'traceback', 'email', 'socket', 'selectors', 'threading',
             'logging', 'typing', 'urllib', 'warnings', 'gateway.handlers.fastcgi', 'gateway.fastcgi'}
    assert not (loaded & heavy), loaded & heavy


def test_console_script_answers_as_cgi_with_no_arguments():
    from test_apache_cgi import gateway_program
    if not gateway_program():
        unavailable('the gateway command is not installed (pip install -e .)')
    env = cgi_env({'GATEWAY_APP': 'apps.cliapps:app', 'PATH_INFO': '/z'})
    proc = subprocess.run([gateway_program()], env=env, capture_output=True, timeout=30,
                          cwd=os.path.join(REPO, 'tests'))
    assert split_cgi_response(proc.stdout)[2] == b'app /app|/z', proc.stderr


def test_log_file_takes_the_traceback_and_stderr_stays_empty(tmp_path):
    log = tmp_path / 'gateway.log'
    out, err, rc = run_gateway_cgi(cgi_env({'PATH_INFO': '/x'}),
                                   args=('--log-file', str(log), 'apps.wsgi_apps:error_before_start'))
    assert split_cgi_response(out)[0] == '500 Internal Server Error'
    assert err == '' and 'RuntimeError: boom before start_response' in log.read_text()


def test_iis_mode_never_writes_to_stderr():
    env = cgi_env({'GATEWAY_APP': 'no_such_module:app'})
    out, err, rc = run_gateway_cgi(env, args=('--iis',))
    assert split_cgi_response(out)[0] == '500 Internal Server Error' and err == ''


def test_isindex_query_words_on_the_command_line_are_not_options():
    # RFC 3875 4.4: a query without "=" may be passed as command-line words.
    env = cgi_env({'QUERY_STRING': 'hello+--bogus+w%6Frld'})
    out, err, rc = run_gateway_cgi(env, args=('apps.cliapps:app', 'hello', '--bogus', 'world'))
    assert (rc, err) == (0, '') and split_cgi_response(out)[2] == b'app /app|/'

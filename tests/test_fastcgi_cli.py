"""``gateway fastcgi``: options, help, and one clear line for each way
starting can fail (exit status 2: the command line, 1: could not run)."""

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from support.helpers import unavailable
from support.fcgi_client import TESTS, ServerProcess, get, server_env
from gateway import cli

APP = 'apps.fcgiapps:router'


def run_cli(*args, env=None, stdin=subprocess.DEVNULL, timeout=20):
    """Run ``python -m gateway fastcgi ARGS`` that is expected to stop by
    itself; (exit status, stderr text)."""
    done = subprocess.run([sys.executable, '-m', 'gateway', 'fastcgi', *args], cwd=TESTS,
                          env=server_env() if env is None else env, stdin=stdin,
                          capture_output=True, timeout=timeout)
    return done.returncode, done.stderr.decode('utf-8', 'replace') + done.stdout.decode()


def error_lines(output):
    return [line for line in output.splitlines() if 'error' in line.lower()]


def test_help_explains_every_option_and_its_default(capsys):
    assert cli.fastcgi_main(['--help']) == 0
    text = capsys.readouterr().out
    for option in ('--bind', '--workers', '--threads', '--max-requests', '--timeout',
                   '--graceful-timeout', '--max-connections', '--read-timeout',
                   '--max-params-size', '--fcgi-stderr', '--unix-mode', '--unix-group',
                   '--chdir', '--log-level', '--backlog', '--web-server-addrs',
                   '--max-pending-params', '--request-read-timeout'):
        assert option in text
    for mention in ('GATEWAY_APP', 'GATEWAY_CHDIR', 'FCGI_WEB_SERVER_ADDRS', 'WEB_CONCURRENCY',
                    'default: 30', 'default: 1024', 'unix:PATH', 'fd://N', 'SIGHUP', 'HUP',
                    'mod_fcgid', 'IIS', '+x'):
        assert mention in text, mention


def test_help_through_the_gateway_command():
    status, output = run_cli('--help')
    assert status == 0 and 'usage: gateway fastcgi' in output


@pytest.mark.parametrize('args, says', [
    (['--bind', '127.0.0.1'], "bad --bind '127.0.0.1'"),
    (['--bind', '[::1]:x'], 'port must be a number'),
    (['--workers', '-1'], "'-1' is not a number of workers"),
    (['--threads', '0'], "'0' is not a number of threads"),
    (['--unix-mode', '999'], 'not an octal permission mode'),
    (['--timeout', 'soon'], "'soon' is not a number of seconds"),
    (['--boot-timeout', '-1'], "--boot-timeout: '-1' is not a number of seconds"),
    (['--max-body-size', '10Q'], "--max-body-size: '10Q' is not a number of bytes"),
    (['--max-body-size', '-5'], "--max-body-size: '-5' is not a number of bytes"),
    (['--log-level', 'loud'], "invalid choice: 'loud'"),
    (['--max-pending-params', '1000'], "--max-pending-params 1000 is below --max-params-size"),
    (['--no-such-option'], 'unrecognized arguments'),
])
def test_usage_errors_are_one_line_and_exit_2(args, says, capsys):
    assert cli.fastcgi_main([APP, *args]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('gateway fastcgi: error:'), err
    assert says in err


def test_no_application_given(capsys):
    env_app = os.environ.pop('GATEWAY_APP', None)
    try:
        assert cli.fastcgi_main(['--bind', '127.0.0.1:0']) == 2
    finally:
        if env_app is not None:
            os.environ['GATEWAY_APP'] = env_app
    assert 'no WSGI application given: pass MODULE:CALLABLE or set GATEWAY_APP' in capsys.readouterr().err


def test_bad_web_server_addrs_is_a_usage_error():
    status, output = run_cli(APP, '--bind', '127.0.0.1:0',
                             env=server_env(FCGI_WEB_SERVER_ADDRS='10.0.0.1,nginx.local'))
    assert status == 2
    assert "FCGI_WEB_SERVER_ADDRS: 'nginx.local' is not an IP address" in output


EVERYWHERE = 'listens on every interface'


@pytest.mark.parametrize('bind', ['0.0.0.0:0', '[::]:0', '0:0'])
def test_a_bind_on_every_interface_needs_an_allow_list(bind, tmp_path):
    """Anyone who reaches such a port could send the PARAMS of their
    choice (REMOTE_USER, HTTPS, REMOTE_ADDR): refused before anything is
    bound or forked, unless --web-server-addrs says who may connect."""
    path = tmp_path / 'first.sock'
    status, output = run_cli(APP, '--bind', f'unix:{path}', '--bind', bind, '--workers', '1')
    assert status == 2, output
    [line] = error_lines(output)
    assert line.startswith(f'gateway fastcgi: error: --bind {bind} {EVERYWHERE}'), line
    assert '--web-server-addrs' in line and "'any'" in line
    assert 'listening on' not in output and 'worker' not in output
    assert not path.exists(), 'a socket was bound before the refusal'


def test_an_inherited_socket_on_every_interface_needs_an_allow_list():
    with socket.create_server(('0.0.0.0', 0)) as inherited:
        fd = inherited.fileno()
        done = subprocess.run([sys.executable, '-m', 'gateway', 'fastcgi', APP, '--bind',
                               f'fd://{fd}', '--workers', '1'], cwd=TESTS, env=server_env(),
                              pass_fds=[fd], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert EVERYWHERE in line and '--web-server-addrs' in line and f'(fd://{fd})' in line
    assert 'worker' not in done.stderr


@pytest.mark.parametrize('setting', [
    ['--web-server-addrs', ''], ['--web-server-addrs', ' , '],
    {'FCGI_WEB_SERVER_ADDRS': ''}, {'FCGI_WEB_SERVER_ADDRS': ','},
])
def test_an_empty_allow_list_is_an_error_not_anyone(setting):
    args, env = (setting, {}) if isinstance(setting, list) else ([], setting)
    status, output = run_cli(APP, '--bind', '127.0.0.1:0', *args, env=server_env(**env))
    assert status == 2
    [line] = error_lines(output)
    name = '--web-server-addrs' if args else 'FCGI_WEB_SERVER_ADDRS'
    assert line.startswith(f'gateway fastcgi: error: {name}: empty'), line


@pytest.mark.parametrize('how', ['range', 'any'])
def test_a_bind_on_every_interface_with_an_allow_list_serves(how):
    env = server_env(FCGI_WEB_SERVER_ADDRS='any') if how == 'any' else None
    args = [] if how == 'any' else ['--web-server-addrs', '127.0.0.0/8']
    with ServerProcess([APP, '--bind', '0.0.0.0:0', '--workers', '1', *args], env=env) as server:
        _, port = server.address()
        assert get(('127.0.0.1', port), '/peer').status == 200
        said = ('TCP connections accepted from anyone (FCGI_WEB_SERVER_ADDRS=any)' if how == 'any'
                else 'TCP connections accepted only from 127.0.0.0/8 (--web-server-addrs)')
        assert said in server.log


def test_missing_application_module_is_named_with_the_reason():
    status, output = run_cli('no_such_module:app', '--bind', '127.0.0.1:0', '--workers', '3')
    assert status == 1
    assert ("cannot load the WSGI application 'no_such_module:app': cannot import "
            "'no_such_module': no such module") in output
    assert output.count('cannot load the WSGI application') == 1, 'said once, not per worker'
    assert 'no worker could start' in output


def test_missing_callable_is_named():
    status, output = run_cli('apps.fcgiapps:nothing_here', '--bind', '127.0.0.1:0')
    assert status == 1
    assert "module 'apps.fcgiapps'" in output and "has no 'nothing_here'" in output


def test_application_that_fails_to_import_shows_its_traceback():
    status, output = run_cli('apps.broken:app', '--bind', '127.0.0.1:0', '--workers', '1')
    assert status == 1
    assert "cannot load the WSGI application 'apps.broken:app'" in output
    assert 'RuntimeError: the application module is broken' in output
    assert 'Traceback' in output and 'broken.py' in output


def test_address_in_use():
    with socket.create_server(('127.0.0.1', 0)) as taken:
        port = taken.getsockname()[1]
        status, output = run_cli(APP, '--bind', f'127.0.0.1:{port}')
    assert status == 1
    assert error_lines(output) == [f'gateway fastcgi: error: address already in use: '
                                   f'127.0.0.1:{port} (another server is listening there)']


def test_socket_path_that_cannot_be_created(tmp_path):
    status, output = run_cli(APP, '--bind', f'unix:{tmp_path}/missing/dir/app.sock')
    assert status == 1
    assert len(error_lines(output)) == 1
    assert f'the directory {tmp_path}/missing/dir does not exist' in output


def test_socket_path_that_is_a_regular_file(tmp_path):
    victim = tmp_path / 'important.conf'
    victim.write_text('keep me')
    status, output = run_cli(APP, '--bind', f'unix:{victim}')
    assert status == 1
    assert 'exists and is not a socket; refusing to delete it' in output
    assert victim.read_text() == 'keep me'


def test_second_bind_failing_releases_the_first(tmp_path):
    path = tmp_path / 'first.sock'
    with socket.create_server(('127.0.0.1', 0)) as taken:
        port = taken.getsockname()[1]
        status, output = run_cli(APP, '--bind', f'unix:{path}', '--bind', f'127.0.0.1:{port}')
    assert status == 1 and 'address already in use' in output
    assert not path.exists()


def test_without_bind_stdin_must_be_a_socket():
    status, output = run_cli(APP)       # stdin is /dev/null
    assert status == 1
    assert 'no --bind given, and fd 0 (stdin) is not a socket: pass --bind ADDRESS' in output


def test_bad_chdir():
    status, output = run_cli(APP, '--chdir', '/no/such/dir', '--bind', '127.0.0.1:0')
    assert status == 1 and '--chdir /no/such/dir: No such file or directory' in output


def test_gateway_app_and_chdir_from_the_environment(tmp_path):
    (tmp_path / 'envapp.py').write_text(
        'def application(environ, start_response):\n'
        '    start_response("200 OK", [])\n'
        '    return [b"from the environment"]\n')
    env = server_env(GATEWAY_APP='envapp', GATEWAY_CHDIR=str(tmp_path))
    with ServerProcess(['--bind', '127.0.0.1:0', '--workers', '1'], env=env) as server:
        assert get(server.address()).body == b'from the environment'
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_a_module_planted_in_the_socket_directory_is_not_imported(tmp_path):
    """The images ran the server in its socket directory, which it can
    write, and that directory came first on sys.path: a module written
    there ran in the next worker. A directory this user can write is on
    sys.path only when --chdir or PYTHONPATH names it."""
    sockets = tmp_path / 'run'
    sockets.mkdir()
    os.chmod(sockets, 0o2750)
    with ServerProcess([APP, '--bind', f'unix:{sockets}/fcgi.sock', '--workers', '1'],
                       cwd=str(sockets)) as server:
        server.wait_booted(1)
        (sockets / 'planted_module.py').write_text('raise SystemExit("planted code ran")\n')
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_booted(1, start=mark)
        server.wait_for_log('reload complete', start=mark)
        response = get(str(sockets / 'fcgi.sock'), '/importable', query='planted_module')
        assert response.body == b'not found'


def test_an_application_left_off_sys_path_says_why(tmp_path):
    (tmp_path / 'here_app.py').write_text('application = None\n')
    done = subprocess.run([sys.executable, '-m', 'gateway', 'fastcgi', 'here_app',
                           '--bind', '127.0.0.1:0', '--workers', '1'], cwd=str(tmp_path),
                          env=server_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "cannot import 'here_app': no such module" in done.stderr
    assert (f'({tmp_path} is left off it because this user can write there: name it with '
            f'--chdir or PYTHONPATH') in done.stderr


def test_a_directory_named_by_chdir_is_imported_even_when_writable(tmp_path):
    (tmp_path / 'chosen_app.py').write_text(
        'def application(environ, start_response):\n'
        '    start_response("200 OK", [])\n'
        '    return [b"chosen"]\n')
    with ServerProcess(['chosen_app', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--chdir', str(tmp_path)]) as server:
        assert get(server.address()).body == b'chosen'


def test_a_start_directory_this_user_cannot_write_is_still_imported(tmp_path):
    """As gunicorn: the application may live where the server is started,
    when that directory is not this user's to write. (Immutable here, so
    that even root cannot write it.)"""
    home = tmp_path / 'release'
    home.mkdir()
    (home / 'start_app.py').write_text('def application(environ, start_response):\n'
                                       '    start_response("200 OK", [])\n'
                                       '    return [b"from the start directory"]\n')
    chattr = shutil.which('chattr')
    if chattr is None or subprocess.run([chattr, '+i', str(home)], capture_output=True).returncode:
        unavailable('chattr +i (e2fsprogs, on a file system that supports it) is needed to make a '
                    'directory nobody can write')
    try:
        assert not os.access(home, os.W_OK)
        with ServerProcess(['start_app', '--bind', '127.0.0.1:0', '--workers', '1'],
                           cwd=str(home)) as server:
            assert get(server.address()).body == b'from the start directory'
    finally:
        subprocess.run([chattr, '-i', str(home)], check=True)


def test_a_writable_start_directory_named_by_pythonpath_is_imported(tmp_path):
    (tmp_path / 'pathapp.py').write_text(
        'def application(environ, start_response):\n'
        '    start_response("200 OK", [])\n'
        '    return [b"on PYTHONPATH"]\n')
    env = server_env()
    env['PYTHONPATH'] += os.pathsep + str(tmp_path)
    with ServerProcess(['pathapp', '--bind', '127.0.0.1:0', '--workers', '1'], env=env,
                       cwd=str(tmp_path)) as server:
        assert get(server.address()).body == b'on PYTHONPATH'


def test_options_reach_the_server(tmp_path):
    path = tmp_path / 'opts.sock'
    with ServerProcess([APP, '--bind', f'unix:{path}', '--workers', '2', '--threads', '3',
                        '--unix-mode', '600', '--log-level', 'debug']) as server:
        server.wait_booted(2)
        assert 'arbiter started' in server.log and '2 workers, 3 threads each' in server.log
        assert 'mode 0600' in server.log
        assert '[DEBUG] worker 1 spawned' in server.log
        assert get(str(path), '/peer').status == 200


def test_log_file_takes_the_log_and_wsgi_errors(tmp_path):
    import socket
    from support.fcgi_client import ServerProcess, cgi_params, read_until_end_request
    from gateway.fastcgi import client as c
    log = tmp_path / 'gateway.log'
    ours, theirs = socket.socketpair()
    with ServerProcess(['apps.fcgiapps:errors', '--log-file', str(log)],
                       stdin=theirs.fileno()) as server:
        theirs.close()
        ours.settimeout(10)
        ours.sendall(c.encode_begin_request(1, keep_conn=True)
                     + c.encode_params(1, cgi_params('/')) + c.encode_stdin(1, b''))
        assert read_until_end_request(ours).status == 200
        ours.close()
        assert server.wait() == 0
        assert server.log == ''
    assert 'written to wsgi.errors' in log.read_text()


def test_log_file_gets_the_start_up_failure(tmp_path):
    import subprocess
    import sys
    from support.helpers import TESTS
    log = tmp_path / 'gateway.log'
    done = subprocess.run([sys.executable, '-m', 'gateway', 'fastcgi', 'no_such_module:app',
                           '--bind', '127.0.0.1:0', '--log-file', str(log)],
                          capture_output=True, text=True, timeout=60, cwd=TESTS)
    assert done.returncode == 1
    assert "no_such_module" in log.read_text()

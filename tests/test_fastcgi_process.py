"""The FastCGI server's process model, on real processes: signals, reload,
worker replacement, --max-requests, --timeout, and the flup-style API."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from support.helpers import in_background
from support.fcgi_client import TESTS, ServerProcess, get, pid_alive, refused, server_env, wait_until
from gateway.fastcgi.compat import WSGIServer

APP = 'apps.fcgiapps:router'


# ---------------------------------------------------------------------------
# Signals to the arbiter
# ---------------------------------------------------------------------------

def test_sigterm_lets_the_request_in_flight_finish_then_exits_0():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        response = in_background(get, address, '/slow', query='1.5')
        server.wait_for_log('slow request started')
        server.send_signal(signal.SIGTERM)
        server.wait_for_log('shutting down: waiting')
        wait_until(lambda: refused(address), what='new connections refused')
        reply = response()
        assert (reply.status, reply.body[:5]) == (200, b'slept')
        assert server.wait() == 0
        assert 'arbiter stopped' in server.log


def test_sigint_stops_at_once():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2']) as server:
        address = server.address()
        pids = server.wait_booted(2)
        response = in_background(get, address, '/slow', query='60')
        server.wait_for_log('slow request started')
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
        server.wait_for_log('arbiter stopped')
        # Every worker left when told to, none had to be killed.
        assert 'shutting down now' in server.log and 'killing it' not in server.log
        with pytest.raises(ConnectionError, match='before END_REQUEST|reset by peer'):
            response()
        assert not any(pid_alive(pid) for pid in pids)


def test_sighup_replaces_every_worker_and_loads_new_code(tmp_path):
    module = tmp_path / 'reloadable.py'
    source = textwrap.dedent('''\
        import os
        VERSION = %r
        def application(environ, start_response):
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return [('%%s %%d' %% (VERSION, os.getpid())).encode()]
        ''')
    module.write_text(source % 'one')
    with ServerProcess(['reloadable', '--bind', '127.0.0.1:0', '--workers', '2',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        old_pids = set(server.wait_booted(2))
        assert get(address).body.startswith(b'one ')
        module.write_text(source % 'two, longer')
        mark = server.mark()

        statuses, bodies = [], set()

        def keep_asking(stop):
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline and len(statuses) < 5000:
                reply = get(address)
                statuses.append(reply.status)
                bodies.add(reply.body)
        stop = threading.Event()
        asking = in_background(keep_asking, stop)
        wait_until(lambda: len(statuses) > 10, what='requests before the reload')
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload complete', timeout=20, start=mark)
        stop.set()
        asking()

        new_pids = set(server.booted_pids(mark))
        assert len(new_pids) == 2 and not new_pids & old_pids
        assert statuses and set(statuses) == {200}, 'a request failed during the reload'
        for pid in old_pids:
            wait_until(lambda: not pid_alive(pid), what=f'old worker {pid} to exit')
        after = {get(address).body for _ in range(6)}
        assert all(body.startswith(b'two, longer ') for body in after)
        assert {int(body.split()[-1]) for body in after} <= new_pids
        assert any(body.startswith(b"one ") for body in bodies)


def test_reload_with_broken_new_code_keeps_the_old_workers(tmp_path):
    module = tmp_path / 'fragile.py'
    module.write_text('def application(environ, start_response):\n'
                      '    start_response("200 OK", [])\n'
                      '    return [b"fine"]\n')
    with ServerProcess(['fragile', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        old = server.wait_booted(1)
        module.write_text('raise ImportError("half-deployed")\n')
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload abandoned: the old workers keep serving')
        assert 'half-deployed' in server.log
        assert get(address).body == b'fine'
        assert pid_alive(old[0])
        assert server.proc.poll() is None


def test_a_killed_worker_is_replaced():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        first = int(get(address, '/pid').body)
        mark = server.mark()
        os.kill(first, signal.SIGKILL)
        server.wait_for_log(rf'pid {first}\) was killed by SIGKILL; replacing it', start=mark)
        (second,) = server.wait_booted(1, start=mark)
        assert second != first
        assert int(get(address, '/pid').body) == second


def test_replacements_that_cannot_start_are_retried_with_a_back_off(tmp_path):
    module = tmp_path / 'flaky.py'
    good = ('def application(environ, start_response):\n'
            '    start_response("200 OK", [])\n'
            '    return [b"back"]\n')
    module.write_text(good)
    with ServerProcess(['flaky', '--bind', '127.0.0.1:0', '--workers', '1',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        (first,) = server.wait_booted(1)
        module.write_text('raise RuntimeError("disk full")\n')
        mark = server.mark()
        os.kill(first, signal.SIGKILL)
        server.wait_for_log(r'next try in 0\.5s', start=mark)
        server.wait_for_log(r'next try in 1s', start=mark)        # it doubles
        assert 'disk full' in server.log and server.proc.poll() is None
        module.write_text(good + '\n')
        server.wait_booted(1, start=mark)
        assert get(address).body == b'back'


def test_max_requests_recycles_workers():
    # At least N requests each, and the replacement is ready before the
    # worker it replaces stops taking requests (tests/test_fastcgi_pool.py).
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--max-requests', '3']) as server:
        address = server.address()
        first = server.wait_booted(1)[0]
        pids = []

        def replaced():
            pids.append(int(get(address, '/pid').body))
            return pids[-1] != first
        wait_until(replaced, what='a request served by the replacement')
        assert pids[:3] == [first] * 3
        server.wait_for_log(r'served 3 requests \(--max-requests\); asking for a replacement')
        server.wait_for_log(r'replaced after --max-requests; stopping it gracefully')
        wait_until(lambda: not pid_alive(first), what='the recycled worker gone')

def test_timeout_replaces_a_worker_stuck_in_a_request():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--timeout', '1']) as server:
        address = server.address()
        (stuck,) = server.wait_booted(1)
        reply = get(address, '/slow', query='60', timeout=15)
        assert reply.status == 504 and b'Gateway Timeout' in reply.body
        server.wait_for_log(rf'worker 1 \(pid {stuck}\): a request has run for .*longer than '
                            r'--timeout 1s')
        reply = get(address, '/pid')
        assert reply.status == 200 and int(reply.body) != stuck


def test_workers_stop_when_the_arbiter_is_killed():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2']) as server:
        pids = server.wait_booted(2)
        server.proc.kill()
        server.proc.wait(5)
        for pid in pids:
            wait_until(lambda: not pid_alive(pid), timeout=10, what=f'orphan {pid} to exit')
        assert 'the arbiter is gone' in server.log


def test_a_worker_holds_no_module_only_start_up_needs():
    # Every module the arbiter imports before the fork is in each worker's
    # memory: typing, ipaddress, shutil (with bz2 and lzma), the IDNA codec
    # (with unicodedata), random, json and html cost a worker some 3 MiB,
    # and serving needs none of them (json and html only for a status page).
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        server.wait_booted(1)
        held = set(get(address, '/modules').body.decode().split())
    # What the interpreter loads at start-up (site-packages' .pth files may
    # import some of them) is no gateway's doing.
    start_up = set(subprocess.run([sys.executable, '-c', 'import sys; print(*sys.modules)'],
                                  env=server_env(), capture_output=True, text=True,
                                  check=True).stdout.split())
    assert 'gateway.fastcgi.worker' in held
    assert not (held - start_up) & {'typing', 'ipaddress', 'shutil', 'bz2', 'lzma',
                                    'encodings.idna', 'unicodedata', 'random', 'json', 'html'}


def test_threads_serve_requests_side_by_side():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--threads', '4']) as server:
        address = server.address()
        server.wait_booted(1)
        # Each waits in the application until all four are there.
        replies = [in_background(get, address, '/barrier', query='4') for _ in range(4)]
        assert [(r().status, r().body) for r in replies] == [(200, b'together')] * 4


# ---------------------------------------------------------------------------
# Without an arbiter
# ---------------------------------------------------------------------------

def test_wsgi_multiprocess_with_one_worker_as_a_reload_runs_two(tmp_path):
    # PEP 3333: wsgi.multiprocess is true if another process may run the
    # application at the same time. With --workers 1 that happens during a
    # reload: the old worker finishes its request while the fresh one serves.
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        (old,) = server.wait_booted(1)
        assert get(address, '/flags').body == b'%d True False' % old
        held = in_background(get, address, '/slow', query='60')
        server.wait_for_log('slow request started')
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('replaced by a fresh worker', start=mark)
        (new,) = server.booted_pids(mark)
        assert get(address, '/flags').body == b'%d True False' % new
        assert pid_alive(old), 'the old worker still runs its request'
        server.kill()
        with pytest.raises(ConnectionError):
            held()


@pytest.mark.parametrize('where, multiprocess', [('bind', b'False'), ('fd 0', b'True')])
def test_wsgi_multiprocess_with_no_arbiter(tmp_path, where, multiprocess):
    # Alone on its own address; on a socket a process manager (mod_fcgid,
    # lighttpd, spawn-fcgi) handed over, beside the others it starts.
    path = str(tmp_path / 'alone.sock')
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(path)
    listening.listen(8)
    args, stdin = ([APP, '--workers', '0', '--bind', 'unix:' + path + '2'], subprocess.DEVNULL) \
        if where == 'bind' else ([APP, '--workers', '0'], listening.fileno())
    try:
        with ServerProcess(args, stdin=stdin) as server:
            server.wait_for_log('serving in this process')
            target = path + '2' if where == 'bind' else path
            assert get(target, '/flags').body == b'%d %s False' % (server.proc.pid, multiprocess)
    finally:
        listening.close()


def test_workers_0_serves_in_the_process_itself(tmp_path):
    path = str(tmp_path / 'single.sock')
    with ServerProcess([APP, '--bind', 'unix:' + path, '--workers', '0']) as server:
        server.wait_for_log('serving in this process')
        assert int(get(path, '/pid').body) == server.proc.pid
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert 'arbiter' not in server.log
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# The flup-style API
# ---------------------------------------------------------------------------

FLUP_PROGRAM = '''\
import sys
from gateway.fastcgi import compat

def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('%s %s' % (environ.get('DEPLOYMENT'), environ['PATH_INFO'])).encode()]

server = compat.WSGIServer(application, bindAddress=sys.argv[1], environ={'DEPLOYMENT': 'prod'},
                           maxChildren=2, maxSpare=5, minSpare=1, maxRequests=100)
print('run returned', server.run(), flush=True)
'''


def _flup_program(path, *args):
    return subprocess.Popen([sys.executable, '-c', FLUP_PROGRAM, path, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server_env(),
                            cwd=TESTS, start_new_session=True)


@pytest.mark.parametrize('sig, returned', [(signal.SIGHUP, b'True'), (signal.SIGTERM, b'False')])
def test_flup_style_server_runs_until_a_signal(tmp_path, sig, returned):
    path = str(tmp_path / 'flup.sock')
    program = _flup_program(path)
    try:
        wait_until(lambda: os.path.exists(path) or program.poll() is not None,
                   what='the socket')
        reply = wait_until(lambda: _try_get(path), what='a first answer')
        assert reply.body == b'prod /'
        # maxChildren=2 -> two workers; the first may answer before the
        # second is ready, and one stopped before it is ready is not logged.
        log = []
        reader = threading.Thread(target=lambda: log.extend(iter(program.stderr.readline, b'')),
                                  daemon=True)
        reader.start()
        wait_until(lambda: any(b'worker 2 booted' in line for line in log),
                   what='the second worker ready')
        program.send_signal(sig)
        out = program.stdout.read()
        assert program.wait(15) is not None
        reader.join(15)
        err = b''.join(log)
        assert out.strip() == b'run returned ' + returned, err
        assert b'worker 1 ' in err and b'worker 3 ' not in err, err
        assert not os.path.exists(path)
    finally:
        if program.poll() is None:
            os.killpg(program.pid, signal.SIGKILL)
            program.wait()


def _try_get(path):
    try:
        return get(path, timeout=5)
    except OSError:
        return None


def test_flup_arguments_map_onto_settings():
    app = lambda environ, start_response: []        # noqa: E731
    threaded = WSGIServer(app, bindAddress=('127.0.0.1', 9000), maxThreads=16)
    assert (threaded.config.workers, threaded.config.threads) == (1, 16)
    assert threaded.config.binds == ['127.0.0.1:9000']
    assert threaded.config.timeout == 0
    forked = WSGIServer(app, bindAddress='/run/x.sock', umask=0o007, maxChildren=3,
                        maxRequests=50, timeout=20, multiplexed=True, debug=True)
    assert (forked.config.workers, forked.config.threads) == (3, 1)
    assert forked.config.max_requests == 50 and forked.config.timeout == 20
    assert forked.config.binds == ['unix:/run/x.sock'] and forked.config.unix_mode == 0o770
    assert WSGIServer(app, bindAddress=('::1', 9000)).config.binds == ['[::1]:9000']
    assert WSGIServer(app, multithreaded=False).config.threads == 1
    assert WSGIServer(app, workers=4).config.workers == 4
    with pytest.raises(TypeError, match='maxChilren'):
        WSGIServer(app, maxChilren=3)


def test_flup_style_server_answers_as_cgi_when_stdin_is_not_a_socket():
    program = '''\
from gateway.fastcgi.compat import WSGIServer
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'as CGI: ' + environ['PATH_INFO'].encode()]
print(WSGIServer(application).run())
'''
    env = server_env(GATEWAY_INTERFACE='CGI/1.1', REQUEST_METHOD='GET', PATH_INFO='/cgi',
                     SERVER_NAME='localhost', SERVER_PORT='80', SERVER_PROTOCOL='HTTP/1.1')
    done = subprocess.run([sys.executable, '-c', program], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, timeout=15)
    assert done.returncode == 0, done.stderr
    assert b'Status: 200 OK' in done.stdout and b'as CGI: /cgi' in done.stdout


def test_serve_in_process_api(tmp_path):
    """serve() on a Config, in a child, as an embedding program would."""
    program = textwrap.dedent('''\
        import sys
        from gateway.fastcgi.server import serve
        from gateway.fastcgi.server import configure_logging
        from gateway.fastcgi.config import Config
        configure_logging()
        outcome = serve(Config(app='apps.fcgiapps:router', binds=[sys.argv[1]], workers=1))
        print('outcome', outcome.status, outcome.signal, flush=True)
        ''')
    path = str(tmp_path / 'api.sock')
    child = subprocess.Popen([sys.executable, '-c', program, 'unix:' + path], cwd=TESTS,
                             env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        wait_until(lambda: child.poll() is not None or _try_get(path), what='an answer')
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=15)
        assert out.strip() == b'outcome 0 %d' % signal.SIGTERM, err
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()

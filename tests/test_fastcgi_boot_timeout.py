"""--boot-timeout, on real processes: a worker whose import of the
application hangs is killed and the traceback of where it hung is logged;
at start the server exits 1, a reload is abandoned with the old workers
serving on, a replacement is retried.

The application waits at import while a file the test controls exists.
"""

import os
import re
import signal
import textwrap

from support.fcgi_client import ServerProcess, get, pid_alive

SOURCE = textwrap.dedent('''\
    import os
    import time
    while os.path.exists(os.path.join(os.path.dirname(__file__), 'hold')):
        time.sleep(0.05)
    def application(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [str(os.getpid()).encode()]
    ''')
BLOCKING_LINE = 4       # the time.sleep() above


def hanging_app(directory, hold):
    (directory / 'hanging.py').write_text(SOURCE)
    if hold:
        (directory / 'hold').write_text('')
    return directory / 'hold'


def start(directory, *extra):
    return ServerProcess(['hanging', '--bind', '127.0.0.1:0', '--chdir', str(directory),
                          '--boot-timeout', '1', *extra])


def assert_traceback_names_the_line(server, directory, start=0):
    # faulthandler's form: File "PATH", line N in FUNCTION
    server.wait_for_log('did not load the application within --boot-timeout 1s', start=start)
    where = f'File "{directory / "hanging.py"}", line {BLOCKING_LINE} in <module>'
    server.wait_for_log('^ *' + re.escape(where), start=start)


def reload_while_the_import_hangs(server, hold):
    """SIGHUP once serving, the import held: (address, the old worker's pid,
    the log's mark before the SIGHUP) once the reload is abandoned."""
    address = server.address()
    (old,) = server.wait_booted(1)
    hold.write_text('')
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log('reload abandoned: the old workers keep serving', timeout=30, start=mark)
    return address, old, mark


def test_a_first_start_whose_import_hangs_exits_1_naming_the_line(tmp_path):
    hanging_app(tmp_path, hold=True)
    with start(tmp_path, '--workers', '2') as server:
        assert server.wait(timeout=30) == 1
        assert_traceback_names_the_line(server, tmp_path)
        assert 'no worker could start; shutting down' in server.log
        assert server.booted_pids() == []


def test_a_reload_whose_import_hangs_is_abandoned_and_a_later_one_succeeds(tmp_path):
    hold = hanging_app(tmp_path, hold=False)
    with start(tmp_path, '--workers', '1') as server:
        address, old, mark = reload_while_the_import_hangs(server, hold)
        assert_traceback_names_the_line(server, tmp_path, start=mark)
        assert server.booted_pids(mark) == []
        assert {int(get(address).body) for _ in range(3)} == {old}
        # Unblocked, the next reload goes through.
        hold.unlink()
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload complete', timeout=30, start=mark)
        (new,) = server.booted_pids(mark)
        assert int(get(address).body) == new != old


def test_a_replacement_whose_import_hangs_is_killed_and_retried(tmp_path):
    hold = hanging_app(tmp_path, hold=False)
    with start(tmp_path, '--workers', '1') as server:
        address = server.address()
        (first,) = server.wait_booted(1)
        hold.write_text('')
        mark = server.mark()
        os.kill(first, signal.SIGKILL)
        assert_traceback_names_the_line(server, tmp_path, start=mark)
        server.wait_for_log(r'next try in 0\.5s', start=mark)
        assert server.proc.poll() is None
        hold.unlink()
        (second,) = server.wait_booted(1, start=mark)
        assert int(get(address).body) == second and not pid_alive(first)


# -- --preload: the arbiter's own import -----------------------------------------

def assert_preload_traceback_names_the_line(server, directory, start=0):
    server.wait_for_log(r'its import in the arbiter \(--preload\) did not finish within '
                        r'--boot-timeout 1s', start=start)
    where = f'File "{directory / "hanging.py"}", line {BLOCKING_LINE}, in <module>'
    server.wait_for_log('^ *' + re.escape(where), start=start)


def test_a_preload_whose_import_hangs_at_start_exits_1_naming_the_line(tmp_path):
    """The arbiter imports the application itself: while it does, it
    supervises nothing, so its import obeys --boot-timeout too."""
    hanging_app(tmp_path, hold=True)
    with start(tmp_path, '--workers', '2', '--preload') as server:
        assert server.wait(timeout=30) == 1
        assert_preload_traceback_names_the_line(server, tmp_path)
        assert 'arbiter started' not in server.log and server.booted_pids() == []


def test_a_preload_reload_whose_import_hangs_is_abandoned_and_a_later_one_succeeds(tmp_path):
    hold = hanging_app(tmp_path, hold=False)
    with start(tmp_path, '--workers', '1', '--preload') as server:
        address, old, mark = reload_while_the_import_hangs(server, hold)
        assert_preload_traceback_names_the_line(server, tmp_path, start=mark)
        assert {int(get(address).body) for _ in range(3)} == {old}
        # Supervising again: a worker killed is replaced, with the old code.
        os.kill(old, signal.SIGKILL)
        (replacement,) = server.wait_booted(1, start=mark)
        assert int(get(address).body) == replacement
        hold.unlink()
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload complete', timeout=30, start=mark)
        (new,) = server.booted_pids(mark)
        assert int(get(address).body) == new != replacement


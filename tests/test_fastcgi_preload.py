"""--preload on real processes: the application imported once, in the
arbiter, before forking; SIGHUP imports it again there, so new code is
served; a broken new version leaves the old one serving."""

import signal
import textwrap

from support.fcgi_client import ServerProcess, get, wait_until

SOURCE = textwrap.dedent('''\
    import os
    VERSION = %r
    # Where this module was imported: one line per import.
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imports.log'), 'a') as f:
        f.write('%%d\\n' %% os.getpid())

    def application(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [('%%s %%d' %% (VERSION, os.getpid())).encode()]
    ''')


def imports(tmp_path):
    path = tmp_path / 'imports.log'
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def versions(address, count):
    return {get(address).body.split()[0] for _ in range(count)}


def test_preload_imports_the_application_once_in_the_arbiter(tmp_path):
    (tmp_path / 'preloaded.py').write_text(SOURCE % 'one')
    with ServerProcess(['preloaded', '--bind', '127.0.0.1:0', '--workers', '3', '--preload',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        workers = server.wait_booted(3)
        server.wait_for_log(r'application imported in the arbiter \(--preload\): 1 module of '
                            r'its own')
        served_by = {int(get(address).body.split()[1]) for _ in range(9)}
        assert served_by <= set(workers)
        assert imports(tmp_path) == [server.proc.pid]


def test_without_preload_each_worker_imports_it(tmp_path):
    # The difference the option makes, seen the same way.
    (tmp_path / 'preloaded.py').write_text(SOURCE % 'one')
    with ServerProcess(['preloaded', '--bind', '127.0.0.1:0', '--workers', '3',
                        '--chdir', str(tmp_path)]) as server:
        server.address()
        workers = server.wait_booted(3)
        assert sorted(imports(tmp_path)) == sorted(workers)


def test_sighup_with_preload_serves_the_changed_module(tmp_path):
    module = tmp_path / 'preloaded.py'
    module.write_text(SOURCE % 'one')
    with ServerProcess(['preloaded', '--bind', '127.0.0.1:0', '--workers', '2', '--preload',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        server.wait_booted(2)
        assert versions(address, 4) == {b'one'}
        module.write_text(SOURCE % 'two, longer')
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload complete: every worker runs fresh code', start=mark)
        assert versions(address, 6) == {b'two,'}
        # Imported again by the arbiter, not by the fresh workers.
        assert imports(tmp_path) == [server.proc.pid] * 2


def test_a_broken_new_version_leaves_the_old_one_serving(tmp_path):
    module = tmp_path / 'preloaded.py'
    module.write_text(SOURCE % 'one')
    with ServerProcess(['preloaded', '--bind', '127.0.0.1:0', '--workers', '2', '--preload',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        old = server.wait_booted(2)
        module.write_text('def application(:\n')
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload abandoned: the old workers keep serving', start=mark)
        assert 'SyntaxError' in server.log
        assert versions(address, 4) == {b'one'}
        assert server.booted_pids() == old
        # Fixed, the next SIGHUP loads it.
        module.write_text(SOURCE % 'three')
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log('reload complete', start=mark)
        wait_until(lambda: versions(address, 4) == {b'three'}, what='the fixed version served')


def test_an_application_that_cannot_preload_stops_the_start(tmp_path):
    (tmp_path / 'broken_at_import.py').write_text('raise RuntimeError("no database")\n')
    with ServerProcess(['broken_at_import', '--bind', '127.0.0.1:0', '--workers', '2',
                        '--preload', '--chdir', str(tmp_path)]) as server:
        assert server.wait() == 1
        assert 'no database' in server.log
        assert 'arbiter started' not in server.log and 'booted' not in server.log

"""Signals an operator sends to a running server: none of them ends it by
its default action; SIGUSR1 reopens every log file (tested with a real
logrotate run while requests flow); SIGTTIN and SIGTTOU resize the pool."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from support.helpers import in_background, unavailable
from support.fcgi_client import ServerProcess, get, pid_alive, wait_until

APP = 'apps.fcgiapps:router'


@pytest.mark.parametrize('name', ['SIGUSR2', 'SIGWINCH', 'SIGALRM', 'SIGPIPE'])
def test_a_signal_sent_by_habit_never_stops_the_server(name):
    sig = getattr(signal, name)
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2']) as server:
        address = server.address()
        pids = server.wait_booted(2)
        server.send_signal(sig)
        for pid in pids:
            os.kill(pid, sig)   # a worker too, as `kill -s SIG 0` would
        if sig != signal.SIGPIPE:
            server.wait_for_log(f'{name} ignored')
        # Still the same processes, serving.
        assert {get(address, '/pid').status for _ in range(4)} == {200}
        assert server.proc.poll() is None and all(pid_alive(pid) for pid in pids)
        assert server.booted_pids() == pids


def test_sigttin_adds_a_worker_and_sigttou_removes_one_down_to_one():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        address = server.address()
        first = server.wait_booted(1)
        mark = server.mark()
        server.send_signal(signal.SIGTTIN)
        server.wait_for_log('SIGTTIN: one worker more, 2 now', start=mark)
        second = server.wait_booted(1, start=mark)
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log(r'SIGTTOU: one worker fewer, 1 now', start=mark)
        gone = server.wait_for_log(r'\(pid (\d+)\) no longer needed by the pool', start=mark)
        # The idle newest one goes, gracefully.
        assert int(gone.group(1)) == second[0]
        wait_until(lambda: not pid_alive(second[0]), what='the removed worker gone')
        mark = server.mark()
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log('SIGTTOU ignored: the pool is at its minimum of one worker',
                            start=mark)
        assert get(address, '/pid').body == str(first[0]).encode()
        assert pid_alive(first[0]) and server.proc.poll() is None


def test_sigusr1_reopens_the_server_log_in_the_arbiter_and_every_worker(tmp_path):
    log_file = tmp_path / 'server.log'
    socket_path = str(tmp_path / 'fcgi.sock')
    with ServerProcess([APP, '--bind', f'unix:{socket_path}', '--workers', '2',
                        '--log-file', str(log_file)]) as server:
        wait_until(lambda: log_file.exists() and log_file.read_text().count(' booted ') == 2,
                   what='two workers booted')
        os.rename(log_file, tmp_path / 'server.log.1')
        server.send_signal(signal.SIGUSR1)
        # The new file is opened by the arbiter and by both workers.
        wait_until(lambda: log_file.exists()
                   and log_file.read_text().count('SIGUSR1: log files reopened') == 3,
                   what=lambda: 'three reopen lines in the new log')
        assert get(socket_path, '/slow', query='0').status == 200
        text = log_file.read_text()
        assert 'slow request started' in text
        assert 'slow request started' not in (tmp_path / 'server.log.1').read_text()
        assert server.proc.poll() is None


def test_logrotate_while_requests_flow_loses_and_repeats_no_line(tmp_path):
    logrotate = shutil.which('logrotate') or '/usr/sbin/logrotate'
    if not os.access(logrotate, os.X_OK):
        unavailable('logrotate is not installed (apt-get install logrotate)')
    access_log = tmp_path / 'access.log'
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2', '--threads', '2',
                        '--access-log', str(access_log), '--access-log-format', '%U %s']) \
            as server:
        address = server.address()
        server.wait_booted(2)
        config = tmp_path / 'logrotate.conf'
        config.write_text(f'''\
{access_log} {{
    rotate 10
    missingok
    nocompress
    sharedscripts
    postrotate
        kill -USR1 {server.proc.pid}
    endscript
}}
''')
        sent, stop = [], threading.Event()

        def ask():
            # Bounded: at most 3000 requests, at most 60 seconds.
            deadline = time.monotonic() + 60
            for number in range(3000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                assert get(address, '/n', query=str(number)).status == 200
                sent.append(number)
        asking = in_background(ask)
        for rotation in range(1, 4):
            wait_until(lambda: len(sent) >= 50 * rotation, what='requests flowing')
            mark = server.mark()
            done = subprocess.run([logrotate, '--force', '--state', str(tmp_path / 'state'),
                                   str(config)], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            # The arbiter and its two workers each reopen.
            wait_until(lambda: server.count('SIGUSR1: log files reopened', start=mark) == 3,
                       what=lambda: 'every process reopened; log:\n' + server.log)
        count_at_rotation = len(sent)
        wait_until(lambda: len(sent) >= count_at_rotation + 50, what='requests after rotating')
        stop.set()
        asking()
        files = sorted(tmp_path.glob('access.log*'))
        assert [f.name for f in files] == ['access.log', 'access.log.1', 'access.log.2',
                                           'access.log.3']

        def logged():
            found = []
            for path in files:
                found += re.findall(r'^/n\?(\d+) 200$', path.read_text(), re.M)
            return sorted(map(int, found))
        # The last batches are written within two seconds of the last request.
        wait_until(lambda: len(logged()) >= len(sent), what='every request logged')
        assert logged() == sent
        # Every file got lines: each process wrote on into the new file.
        newest = re.findall(r'^/n\?(\d+) 200$', access_log.read_text(), re.M)
        assert str(sent[-1]) in newest
        assert all(re.search(r'^/n', f.read_text(), re.M) for f in files)

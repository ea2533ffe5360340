"""Out of file descriptors: a worker whose accept() fails for want of them
pauses accepting (no spin), logs a line now and then with a count, keeps
serving, and accepts again once descriptors are free; and the open-file
limit at start (raised to the hard limit, a warning when --max-connections
cannot fit in it).

The server runs as a real process with RLIMIT_NOFILE set low for it alone.
"""

import logging
import os
import re
import socket
import time

import pytest

from gateway.fastcgi.client import encode_begin_request
from gateway.fastcgi.config import Config
from gateway.fastcgi.limits import AcceptBackoff, fds_per_worker, warn_if_fds_short
from support.fcgi_client import ServerProcess, get

resource = pytest.importorskip('resource')

APP = 'apps.fcgiapps:router'
LIMIT = 40
HELD = 80
WINDOW = 3.0        # seconds over which the worker's log lines and CPU time are measured
_TICK = os.sysconf('SC_CLK_TCK')


def _open_file_limit(soft, hard):
    def apply():    # in the child, before it runs the server
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def cpu_seconds(pid):
    """User and system CPU time *pid* has used, from /proc."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rpartition(')')[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def hold_connections(address, count):
    """*count* connections that each sent a BEGIN_REQUEST and nothing more:
    the server accepts them (TCP_DEFER_ACCEPT waits for a first byte) and
    holds them, waiting for PARAMS."""
    held = []
    try:
        for _ in range(count):
            sock = socket.create_connection(address, timeout=5)
            held.append(sock)
            sock.sendall(encode_begin_request(1, keep_conn=True))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def test_a_worker_out_of_descriptors_pauses_accepting_and_serves_again():
    args = [APP, '--bind', '127.0.0.1:0', '--workers', '1', '--read-timeout', '0',
            '--request-read-timeout', '0']
    with ServerProcess(args, preexec_fn=_open_file_limit(LIMIT, LIMIT)) as server:
        (pid,) = server.wait_booted(1)
        # The default --max-connections cannot fit in 40 descriptors: said once, at start.
        warning = server.wait_for_log(r'--max-connections 1024 needs about \d+ file descriptors '
                                      r'per worker, but the open-file limit .* is 40')
        assert warning
        held = hold_connections(server.address(), HELD)
        try:
            first = server.wait_for_log(r'accept\(\) failed: \[Errno 24\]')
            assert 'open-file limit is 40' in first.string, first.string
            start = server.mark()
            cpu_before = cpu_seconds(pid)
            time.sleep(WINDOW)      # the measurement window, not a wait for an event
            cpu = cpu_seconds(pid) - cpu_before
            lines = server.count(r'accept\(\) failed', start)
            # Before the fix: the worker spun at 100% CPU and logged
            # thousands of lines in this window.
            assert lines <= 2, server.log[-3000:]
            assert cpu < 0.2 * WINDOW, f'{cpu:.2f}s of CPU in {WINDOW}s'
        finally:
            for sock in held:
                sock.close()
        # The descriptors are free again: the worker accepts, and serves.
        response = get(server.address(), '/hello', timeout=15)
        assert response.status == 200 and response.body == b'Hello, World!'
        assert server.booted_pids() == [pid], 'the worker was replaced, not resumed'


def test_the_soft_limit_is_raised_to_the_hard_one_at_start():
    args = [APP, '--bind', '127.0.0.1:0', '--workers', '1', '--max-connections', '100']
    with ServerProcess(args, preexec_fn=_open_file_limit(LIMIT, 4096)) as server:
        (pid,) = server.wait_booted(1)
        server.wait_for_log(r'open-file limit \(RLIMIT_NOFILE\) raised from 40 to 4096')
        with open(f'/proc/{pid}/limits') as f:
            line = next(line for line in f if line.startswith('Max open files'))
        assert line.split()[3:5] == ['4096', '4096'], line
        assert server.count('--max-connections') == 0, server.log
        assert get(server.address(), '/hello').status == 200


def test_the_warning_names_the_option_and_the_limit(caplog):
    config = Config(max_connections=1000)
    needed = fds_per_worker(config, 2)
    with caplog.at_level(logging.WARNING, logger='gateway'):
        assert not warn_if_fds_short(config, 2, needed)
        assert warn_if_fds_short(config, 2, needed - 1)
        assert not warn_if_fds_short(Config(max_connections=0), 2, 64)
    (record,) = caplog.records
    assert '--max-connections 1000' in record.getMessage()
    assert f'limit (RLIMIT_NOFILE, ulimit -n) is {needed - 1}' in record.getMessage()


def test_the_back_off_doubles_to_a_second_and_the_log_counts(caplog):
    backoff = AcceptBackoff()
    error = OSError(24, 'Too many open files')
    pauses = []
    with caplog.at_level(logging.ERROR, logger='gateway'):
        now = 100.0
        for _ in range(40):
            pauses.append(backoff.failed(error, now, 7))
            now += pauses[-1]
        backoff.succeeded()
        assert backoff.failed(error, now, 7) == AcceptBackoff.FIRST_PAUSE
    assert pauses[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert set(pauses[5:]) == {1.0}
    # 41 failures over about 36 seconds: the first, then one line per 5 s.
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 + int((now - 100.0) // AcceptBackoff.LOG_EVERY), messages
    counted = sum(int(re.search(r'\((\d+) times', m).group(1)) for m in messages[1:])
    assert 1 + counted + backoff.unlogged == 41
    assert '7 connections open' in messages[0]

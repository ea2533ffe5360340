"""--timeout behind a real nginx: a request that runs too long is answered
504 Gateway Timeout by the gateway (the client never hangs), its worker is
replaced, the log names the request, and the next request is served.

Waits are generous bounds, not timings: the point is that an answer
arrives, and which one.
"""

import http.client
import shutil

import pytest

from support.helpers import unavailable
from support.webservers import FastCGIBehindNginx

APP = 'apps.faultapps:router'
TIMEOUT = '1'


@pytest.fixture(autouse=True)
def _needs_nginx():
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')


def _worker_pid(front):
    status, headers, body = front.request('GET', '/app/pid')
    assert status == 200, (status, body)
    return int(body)


@pytest.mark.parametrize('path, threads, keep_conn', [
    ('/app/hang', 1, True),
    ('/app/spin', 1, True),
    ('/app/hang', 1, False),
    ('/app/hang', 2, True),
    ('/app/spin', 2, False),
], ids=['sleep', 'busy-loop', 'sleep-conn-per-request', 'sleep-2-threads',
        'busy-loop-2-threads'])
def test_a_hanging_app_gets_504_and_its_worker_is_replaced(tmp_path, path, threads, keep_conn):
    args = [APP, '--workers', '1', '--threads', str(threads), '--timeout', TIMEOUT]
    with FastCGIBehindNginx(tmp_path, args, keep_conn=keep_conn) as front:
        server = front.server
        (stuck,) = server.wait_booted(1)
        assert _worker_pid(front) == stuck
        mark = server.mark()

        status, headers, body = front.request('GET', path, timeout=30)

        assert status == 504
        assert body == b'Gateway Timeout: the application did not answer in time.\n'
        server.wait_for_log(rf'GET {path}: no response after [\d.]+s \(--timeout {TIMEOUT}s\);'
                            r' answered 504 Gateway Timeout', start=mark)
        server.wait_for_log(rf'worker 1 \(pid {stuck}\): a request has run for [\d.]+s, longer'
                            rf' than --timeout {TIMEOUT}s', start=mark)
        # The next request is served at once (with more threads, maybe by
        # the old worker still finishing what it was sent, as in a graceful
        # stop); once the old worker is gone, by its replacement.
        assert front.request('GET', '/app/pid')[0] == 200
        (replacement,) = server.wait_booted(1, start=mark)
        server.wait_for_log(rf'pid {stuck}\) exited with status 0 after --timeout', start=mark)
        assert replacement != stuck
        assert _worker_pid(front) == replacement
        assert 'killing it' not in server.log


def test_a_response_already_started_is_cut(tmp_path):
    args = [APP, '--workers', '1', '--timeout', TIMEOUT]
    with FastCGIBehindNginx(tmp_path, args) as front:
        server = front.server
        (stuck,) = server.wait_booted(1)
        mark = server.mark()
        connection = http.client.HTTPConnection('127.0.0.1', front.port, timeout=30)
        try:
            connection.request('GET', '/app/hang-after-headers')
            response = connection.getresponse()
            assert response.status == 200      # the headers had gone out
            with pytest.raises(http.client.IncompleteRead, match='bytes read'):
                response.read()                # ... and the body never ends
        finally:
            connection.close()
        server.wait_for_log(r'GET /app/hang-after-headers: still running after [\d.]+s'
                            r' \(--timeout 1s\) with its response started; connection closed',
                            start=mark)
        (replacement,) = server.wait_booted(1, start=mark)
        assert _worker_pid(front) == replacement != stuck


def test_a_worker_that_cannot_answer_is_killed_after_the_grace(tmp_path):
    args = [APP, '--workers', '1', '--timeout', TIMEOUT]
    with FastCGIBehindNginx(tmp_path, args) as front:
        server = front.server
        (stuck,) = server.wait_booted(1)
        mark = server.mark()

        status, headers, body = front.request('GET', '/app/deaf', timeout=30)

        # Killed: nginx sees the connection close without an answer.
        assert status == 502
        server.wait_for_log(rf'worker 1 \(pid {stuck}\) did not answer its overdue request'
                            r' within 2s; killing it', start=mark)
        server.wait_for_log(rf'pid {stuck}\) was killed by SIGKILL after --timeout', start=mark)
        (replacement,) = server.wait_booted(1, start=mark)
        assert _worker_pid(front) == replacement != stuck

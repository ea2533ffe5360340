"""Faults under load, through a real nginx in front of ``gateway fastcgi``:
a worker killed with SIGKILL, a reload (SIGHUP), a graceful stop (SIGTERM)
with a slow request in flight, and a client that goes away mid-response.

The load is a few client threads sending GET requests to nginx over
keep-alive connections, bounded by a request count and by time; every
request is recorded with when it started and ended, its status and the
worker that answered (the application puts its pid in X-Worker-Pid).
"""

import http.client
import itertools
import os
import shutil
import signal
import socket
import threading
import time
from typing import NamedTuple, Optional

import pytest

from apps.faultapps import SLOW_BODY_SIZE
from support.helpers import in_background, unavailable
from support.fcgi_client import pid_alive
from support.webservers import FastCGIBehindNginx, wait_until

APP = 'apps.faultapps:router'


@pytest.fixture(autouse=True)
def _needs_nginx():
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')


# ---------------------------------------------------------------------------
# A bounded load
# ---------------------------------------------------------------------------

class Outcome(NamedTuple):
    started: int                # Load.tick() when it was sent...
    ended: int                  # ...and when its answer (or error) came
    status: Optional[int]       # None: no HTTP response (error says why)
    pid: Optional[int]          # the worker that answered
    error: Optional[str]

    @property
    def ok(self):
        return self.status == 200 and self.error is None


class Load:
    """*clients* threads sending GET *path* to 127.0.0.1:*port*, until
    stop(), *max_requests* in all, or *max_seconds*, whichever comes first."""

    def __init__(self, port, path, clients=4, max_requests=20000, max_seconds=40.0):
        self.port = port
        self.path = path
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.outcomes = []
        self._ticks = itertools.count(1)    # orders the requests with the test's events
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True, name=f'load-{n}')
                         for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _claim(self):
        with self._lock:
            if self._stop.is_set() or time.monotonic() > self.deadline \
                    or len(self.outcomes) >= self.max_requests:
                return False
            return True

    def _client(self):
        connection = None
        while self._claim():
            if connection is None:
                connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=20)
            began = self.tick()
            status = pid = error = None
            try:
                connection.request('GET', self.path)
                response = connection.getresponse()
                body = response.read()
                status = response.status
                pid = int(response.getheader('X-Worker-Pid') or 0) or None
                if status == 200 and body != str(pid).encode():
                    error = f'unexpected body {body[:80]!r}'
            except (OSError, http.client.HTTPException) as exc:
                error = f'{type(exc).__name__}: {exc}'
                connection.close()
                connection = None
            with self._lock:
                self.outcomes.append(Outcome(began, next(self._ticks), status, pid, error))
        if connection is not None:
            connection.close()

    def tick(self):
        """A number after every request sent or answered so far, and before
        every one to come: when an event of the test happened."""
        with self._lock:
            return next(self._ticks)

    def snapshot(self):
        with self._lock:
            return list(self.outcomes)

    def served_by(self, pid):
        return any(o.pid == pid and o.ok for o in self.snapshot())

    def successes(self):
        return sum(1 for o in self.snapshot() if o.ok)

    def stop(self):
        """Stop, wait for the clients, and return every outcome."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), 'a load client is stuck'
        return self.snapshot()


def _describe(failures):
    return '\n'.join(f'  {o.status} {o.error}' for o in failures[:10])


# ---------------------------------------------------------------------------
# SIGKILL of a worker
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('keep_conn', [True, False], ids=['keepconn', 'conn-per-request'])
def test_kill_9_of_a_worker_under_load_costs_at_most_its_request_in_flight(tmp_path, keep_conn):
    # nginx retries a request that fails on a reused connection; on a fresh
    # one it answers 502: then the killed worker's request is lost.
    threads_per_worker = 1
    with FastCGIBehindNginx(tmp_path, [APP, '--workers', '2', '--threads',
                                       str(threads_per_worker)],
                            keep_conn=keep_conn) as front:
        server = front.server
        victim, survivor = server.wait_booted(2)
        load = Load(front.port, '/app/pid', clients=4)
        try:
            wait_until(lambda: load.served_by(victim) and load.successes() >= 50,
                       what='load reaching the worker to be killed')
            mark = server.mark()
            killed_at = load.tick()
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: not pid_alive(victim), what=f'worker {victim} to die')
            dead_at = load.tick()
            (replacement,) = server.wait_booted(1, start=mark)
            wait_until(lambda: load.served_by(replacement), timeout=20,
                       what=f'the replacement worker {replacement} to serve')
            wait_until(lambda: sum(o.ok and o.started > dead_at for o in load.snapshot()) >= 20,
                       what='requests after the kill')
        finally:
            outcomes = load.stop()

    assert replacement not in (victim, survivor)
    failures = [o for o in outcomes if not o.ok]
    # What the kill may cost: the requests the worker was running. A
    # request that began once the worker was dead never reached it.
    in_flight = [o for o in outcomes if o.started < dead_at and o.ended > killed_at]
    assert all(o.started < dead_at for o in failures), _describe(failures)
    assert len(failures) <= threads_per_worker, _describe(failures)
    assert len(failures) <= len(in_flight)
    assert all(o.status in (200, 502) for o in outcomes if o.status is not None)


# ---------------------------------------------------------------------------
# SIGHUP: reload under load
# ---------------------------------------------------------------------------

def test_sighup_under_load_refuses_no_request_and_replaces_every_worker(tmp_path):
    with FastCGIBehindNginx(tmp_path, [APP, '--workers', '2']) as front:
        server = front.server
        old = set(server.wait_booted(2))
        load = Load(front.port, '/app/pid', clients=4)
        try:
            wait_until(lambda: load.successes() >= 50, what='load before the reload')
            mark = server.mark()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log('reload complete', timeout=30, start=mark)
            new = set(server.booted_pids(mark))
            for pid in old:
                wait_until(lambda: not pid_alive(pid), what=f'old worker {pid} to exit')
            wait_until(lambda: all(load.served_by(pid) for pid in new), timeout=20,
                       what='both fresh workers to serve')
            reloaded_at = load.tick()
            wait_until(lambda: sum(o.ok and o.started > reloaded_at for o in load.snapshot())
                       >= 20, what='requests after the reload')
        finally:
            outcomes = load.stop()

    assert len(new) == 2 and not new & old
    failures = [o for o in outcomes if not o.ok]
    assert not failures, f'{len(failures)} of {len(outcomes)} requests failed:\n' \
        + _describe(failures)
    after = {o.pid for o in outcomes if o.started > reloaded_at}
    assert after <= new
    assert len(outcomes) > 100


# ---------------------------------------------------------------------------
# SIGTERM with a slow request in flight
# ---------------------------------------------------------------------------

def test_sigterm_under_load_completes_the_slow_request_then_exits_0(tmp_path):
    with FastCGIBehindNginx(tmp_path, [APP, '--workers', '2']) as front:
        server = front.server
        server.wait_booted(2)
        load = Load(front.port, '/app/pid', clients=3)
        try:
            wait_until(lambda: load.successes() >= 30, what='load before the slow request')
            slow = in_background(front.request, 'GET', '/app/slow?2')
            started = server.wait_for_log(r'slow request started in pid (\d+)')
            server.send_signal(signal.SIGTERM)
            server.wait_for_log('shutting down: waiting')
            status, headers, body = slow()
            exit_status = server.wait(30)
        finally:
            outcomes = load.stop()

    assert status == 200
    assert len(body) == SLOW_BODY_SIZE and body.endswith(b'end\n')
    assert body.startswith(b'slept in %s\n' % started.group(1).encode())
    assert exit_status == 0
    assert 'arbiter stopped' in server.log
    assert sum(o.ok for o in outcomes) >= 30


# ---------------------------------------------------------------------------
# The client goes away mid-response
# ---------------------------------------------------------------------------

def test_client_gone_mid_response_closes_the_iterable_and_frees_the_worker(tmp_path):
    markers = tmp_path / 'markers'
    markers.mkdir()
    blocks = 4096      # 256 MiB: far more than the buffers on the way hold
    # No response buffering to disk: nginx reads the gateway's response only
    # as fast as the client takes it (and nothing fills /tmp).
    with FastCGIBehindNginx(tmp_path, [APP, '--workers', '1'],
                            extra='fastcgi_max_temp_file_size 0;',
                            env={'FAULT_MARKERS': str(markers)}) as front:
        server = front.server
        (worker,) = server.wait_booted(1)
        with socket.create_connection(('127.0.0.1', front.port), timeout=20) as client:
            client.sendall(b'GET /app/stream?gone:%d HTTP/1.1\r\nHost: localhost\r\n\r\n'
                           % blocks)
            received = b''
            while len(received) < 256 * 1024:
                chunk = client.recv(65536)
                assert chunk, 'nginx closed the connection early'
                received += chunk
            assert received.startswith(b'HTTP/1.1 200 ')
        marker = markers / 'closed-gone'
        wait_until(marker.exists, timeout=20, what='the iterable to be closed')
        pid, produced = map(int, marker.read_text().split())
        assert pid == worker
        assert produced < blocks
        status, headers, body = front.request('GET', '/app/pid')
        assert status == 200 and int(body) == worker     # the same worker, free again
        status, headers, body = front.request('GET', '/app/stream?after:2')
        assert status == 200 and len(body) == 2 * 65536
        wait_until((markers / 'closed-after').exists, what='the next iterable closed')
        assert pid_alive(worker)

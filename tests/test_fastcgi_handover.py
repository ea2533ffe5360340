"""A worker that leaves while others stay hands its connections over.

A web server that reuses connections (nginx's upstream ``keepalive`` pool
with ``fastcgi_keep_conn on``, Apache mod_proxy_fcgi with
``enablereuse=on``) may be writing a request on a pooled connection at the
moment a worker closes it; nginx retries only idempotent requests, so a
POST was answered 502. A leaving worker now gives every connection it holds
to a worker that stays (idle ones at once, busy ones as their request ends),
so a reload or a --max-requests recycle under POST load loses nothing.

Each test runs ``wrk`` POSTing through the real front, changes the workers
while it runs (waiting on the log for each change to be done) and reads
wrk's report: every request answered 2xx, no socket error.
"""

import json
import os
import re
import shutil
import signal
import socket

import pytest

from gateway.fastcgi import handover
from gateway.fastcgi.client import encode_request
from gateway.fastcgi.protocol import FCGI_OVERLOADED
from support.fcgi_client import Client, ServerProcess, cgi_params, get, pid_alive
from support.helpers import unavailable, wait_until
from support.load import PostLoad
from support.webservers import Apache, FastCGIBehindNginx, repo_file

APP = 'apps.faultapps:router'
RELOADS = 10
RECYCLES = 16
# Apache's event MPM closes every idle keep-alive client connection of a
# child whose threads are all busy (25 by default, fewer than wrk's 32
# connections), and wrk counts the one it was writing on as a read error:
# the front's own doing, between the client and Apache, so it is kept out.
APACHE_THREADS = '\nThreadsPerChild 64\nMaxRequestWorkers 256\n'


class FastCGIBehindApache:
    """``gateway fastcgi ARGS`` on loopback behind Apache with the shipped
    apache/proxy-fcgi.conf as it is (enablereuse=on)."""

    def __init__(self, directory, args):
        if not shutil.which('apache2'):
            unavailable('apache2 is not installed (scripts/test installs it)')
        self.server = ServerProcess(['--bind', '127.0.0.1:0', *args])
        try:
            host, port = self.server.address()
            with open(repo_file('apache', 'proxy-fcgi.conf')) as stream:
                site = stream.read() + APACHE_THREADS
            self.apache = Apache(directory).start(
                site, env={'GATEWAY_FASTCGI_URL': f'fcgi://{host}:{port}'},
                modules=('proxy', 'proxy_fcgi'))
        except BaseException:
            self.server.kill()
            raise
        self.port = self.apache.port

    def close(self):
        try:
            self.log = self.apache.stop()
        finally:
            self.server.kill()


def _front(kind, directory, args):
    if kind == 'nginx':
        if not shutil.which('nginx'):
            unavailable('nginx is not installed (scripts/test installs it)')
        # A pool as large as wrk's connections: every connection is reused.
        return FastCGIBehindNginx(directory, args, keep_conn=True, keepalive=32)
    return FastCGIBehindApache(directory, args)


def _front_log(front):
    return front.log if isinstance(front, FastCGIBehindApache) else front.nginx.log()


def _first_post(server, pid, start=0):
    server.wait_for_log(rf'first POST request started in pid {pid}\b', timeout=30, start=start)


def _assert_lossless(figures, what, front_log):
    assert figures['requests'] > 0, figures
    assert figures['non2xx'] == 0 and figures['socket_errors'] == 0, \
        f'{what}: {figures["non2xx"]} non-2xx answers and {figures["socket_errors"]} socket ' \
        f'errors in {figures["requests"]} requests ({figures}); the front\'s log:\n' \
        + front_log[-3000:]


@pytest.mark.parametrize('kind', ['nginx', 'apache'])
def test_reloads_under_post_load_lose_no_request_and_replace_every_worker(tmp_path, kind):
    front = _front(kind, tmp_path, [APP, '--workers', '2'])
    load = None
    try:
        server = front.server
        workers = server.wait_booted(2)
        load = PostLoad(tmp_path, front.port, '/app/consume')
        for pid in workers:
            _first_post(server, pid)
        for _ in range(RELOADS):
            mark = server.mark()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log('reload complete', timeout=60, start=mark)
            fresh = server.booted_pids(mark)
            assert len(fresh) == 2 and not set(fresh) & set(workers), server.log
            for pid in workers:
                wait_until(lambda: not pid_alive(pid), timeout=30,
                           what=f'the replaced worker {pid} to exit')
            for pid in fresh:
                _first_post(server, pid, mark)
            workers = fresh
            assert load.running(), 'wrk ended before the reloads did'
        figures = load.stop()
    finally:
        if load is not None:
            load.kill()
        front.close()
    _assert_lossless(figures, f'{RELOADS} reloads behind {kind}', _front_log(front))


@pytest.mark.parametrize('kind', ['nginx', 'apache'])
def test_max_requests_recycling_under_post_load_loses_no_request(tmp_path, kind):
    front = _front(kind, tmp_path, [APP, '--workers', '2', '--max-requests', '200'])
    load = None
    try:
        server = front.server
        server.wait_booted(2)
        load = PostLoad(tmp_path, front.port, '/app/consume')
        wait_until(lambda: server.count(r'replaced after --max-requests; stopping it gracefully')
                   >= RECYCLES, timeout=60, what=f'{RECYCLES} workers recycled')
        booted = server.booted_pids()
        _first_post(server, booted[-1])
        assert load.running(), 'wrk ended before the recycling did'
        figures = load.stop()
    finally:
        if load is not None:
            load.kill()
        front.close()
    _assert_lossless(figures, f'{RECYCLES} --max-requests recycles behind {kind}',
                     _front_log(front))


# ---------------------------------------------------------------------------
# One kept connection, followed from the worker that leaves to the next
# ---------------------------------------------------------------------------

def _pid_on(client):
    """POST /consume on *client*'s kept connection: the pid that answered,
    or None when it was refused OVERLOADED (--max-connections)."""
    body = b'field=value'
    response = client.request(cgi_params('/consume', 'POST', body=body), body, keep_conn=True)
    if response.protocol_status == FCGI_OVERLOADED:
        return None
    assert response.status == 200 and response.body == b'%d' % len(body), response
    pid = re.search(r'^X-Worker-Pid: (\d+)', response.head, re.M)
    return int(pid.group(1))


@pytest.mark.parametrize('how', ['sighup', 'sighup-threads', 'max-requests', 'timeout'])
def test_a_kept_connection_outlives_the_worker_that_served_it(how):
    """One worker, one kept connection: the worker leaves (replaced by a
    reload, recycled by --max-requests, replaced after --timeout while
    another connection's request hangs) and the next request on the same
    connection is answered by its successor. Before, the connection was
    closed under the web server."""
    args = {'sighup': [], 'sighup-threads': ['--threads', '3'],
            'max-requests': ['--max-requests', '2'], 'timeout': ['--timeout', '1']}[how]
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1', *args]) as server:
        address = server.address()
        (first,) = server.wait_booted(1)
        with Client(address) as client:
            assert _pid_on(client) == first
            mark = server.mark()
            if how.startswith('sighup'):
                server.send_signal(signal.SIGHUP)
                server.wait_for_log('reload complete', start=mark)
            elif how == 'max-requests':
                assert _pid_on(client) == first     # its second: it leaves
            else:
                with Client(address) as hung:
                    hung.sock.sendall(encode_request(1, cgi_params('/hang')))
                    assert hung.response().status == 504
            (second,) = server.wait_booted(1, start=mark)
            wait_until(lambda: not pid_alive(first), what=f'worker {first} to exit')
            assert _pid_on(client) == second


def test_a_hand_over_is_logged_and_counted_in_the_status():
    """One line per batch says how many connections went from which worker
    to which, and the status page counts them (text, JSON, OpenMetrics)."""
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1', '--status-path',
                        '/status']) as server:
        address = server.address()
        (first,) = server.wait_booted(1)
        with Client(address) as client:
            assert _pid_on(client) == first
            mark = server.mark()
            server.send_signal(signal.SIGHUP)
            (second,) = server.wait_booted(1, start=mark)
            server.wait_for_log(rf'handed over 1 connection from worker pid {first} to worker'
                                rf' pid {second}$', start=mark)
            assert _pid_on(client) == second

        def counted(form):
            return get(address, '/status', query=form).body.decode()
        document = wait_until(lambda: (lambda d: d if d['handed over conn'] else None)(
            json.loads(counted('json'))), what='the hand-over counted')
        assert document['handed over conn'] == 1
        assert re.search(r'^handed over conn: +1$', counted(''), re.M)
        assert re.search(r'^gateway_handed_over_connections_total\{pool="[^"]+"\} 1$',
                         counted('openmetrics'), re.M)


# ---------------------------------------------------------------------------
# The relay, in this process, over real sockets
# ---------------------------------------------------------------------------

def _connected_pair():
    """A connection's two ends: (the web server's, the one a worker holds)."""
    return socket.socketpair()


def test_connections_given_to_a_worker_that_never_took_them_come_back():
    """A worker that dies with connections waiting for it: the arbiter
    still holds that worker's end, takes them back and gives them to the
    next worker, the very same connections."""
    relay = handover.Relay()
    dying, staying = relay.new_pair(), relay.new_pair()
    relay.add(1, dying)
    relay.add(2, staying)
    web_server, held = _connected_pair()
    relay.held.append((os.dup(held.fileno()), 12.5))
    held.close()
    relay.forward([1])
    assert not relay.held
    relay.drop(1)       # worker 1 exited without reading its end
    assert [when for _, when in relay.held] == [12.5]
    assert relay.forward([2]) == 1
    ((adopted, when),) = handover.WorkerEnd(staying[1]).adopt()
    assert when == 12.5
    web_server.sendall(b'still there')
    assert adopted.recv(64) == b'still there'
    adopted.close()
    web_server.close()
    relay.close()


def test_a_leaving_workers_connections_reach_the_arbiter_and_a_full_stop_closes_them():
    relay = handover.Relay()
    pair = relay.new_pair()
    relay.add(7, pair)
    end = handover.WorkerEnd(pair[1])
    web_server, held = _connected_pair()

    class Kept:
        sock, last_active = held, 3.0
    assert end.hand_over([Kept]) == [Kept]
    held.close()
    relay.receive(7)
    ((fd, when),) = relay.held
    assert when == 3.0
    with socket.socket(fileno=os.dup(fd)) as taken:
        web_server.sendall(b'x')
        assert taken.recv(1) == b'x'
    relay.close()       # a full stop: nobody takes it, so it is closed
    assert not relay.held
    assert web_server.recv(1) == b''
    assert end.hand_over([Kept]) == [] and not end.open
    web_server.close()


@pytest.mark.parametrize('limit', [[], ['--max-connections', '1']], ids=['unlimited', 'full'])
def test_a_pool_that_shrinks_keeps_the_connections_of_the_worker_it_lets_go(limit):
    """SIGTTOU lets one of two workers go: a kept connection on each, and
    both answered afterwards by the one that stays, even past its own
    --max-connections (the adopted one was counted against the other's)."""
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2', *limit]) as server:
        address = server.address()
        server.wait_booted(2)
        kept = {}
        try:
            for _ in range(200):    # until the two workers each hold one
                client = Client(address)
                pid = _pid_on(client)
                if pid is None or pid in kept:
                    client.close()
                    continue
                kept[pid] = client
                if len(kept) == 2:
                    break
            assert len(kept) == 2, 'every connection went to one worker'
            mark = server.mark()
            server.send_signal(signal.SIGTTOU)
            gone = int(server.wait_for_log(r'\(pid (\d+)\) no longer needed by the pool',
                                           start=mark).group(1))
            wait_until(lambda: not pid_alive(gone), what=f'worker {gone} to exit')
            (staying,) = set(kept) - {gone}
            assert [_pid_on(client) for client in kept.values()] == [staying, staying]
        finally:
            for client in kept.values():
                client.close()

"""How a worker leaves while others stay: the connections it holds go, by
way of the arbiter, to a worker that stays.

Web servers keep FastCGI connections open and reuse them (nginx's upstream
``keepalive`` pool with ``fastcgi_keep_conn on``, Apache mod_proxy_fcgi's
``enablereuse=on``). A worker that closes one may do so just as the web
server writes a request on it; the web server retries only idempotent
requests, so a POST would be answered 502. So a leaving worker closes
nothing a web server may still use: it stops accepting and passes each
connection it holds, as a file descriptor over a unix socket (SCM_RIGHTS),
to the arbiter, which passes it to a worker that stays. A worker leaves
while others stay one way, a graceful stop under an arbiter: the arbiter's
``_retire`` (a reload, --max-requests, --max-rss, the pool shrinking) or
--timeout's replacement.

Idle connections go at once, busy ones when their request has ended. A
connection goes only between records with no request begun: nothing read
from it is left unparsed, and whatever the web server has sent since is
still in the socket, where the adopting worker reads it. FCGI_KEEP_CONN
requests are independent of each other, so nothing else need travel but
when the connection was last active (for --read-timeout).

The arbiter makes one socket pair per worker before forking it, keeps both
ends, and gives the worker one. Each message, either way, is up to _BATCH
connections (the descriptors ride along) and when each was last active.
The arbiter gives them in turn to the workers that are ready and not
retiring, the freshest code first, and holds them while there is none. A
worker that dies before taking what it was given is no loss: the arbiter
still has that worker's end and takes the connections back. Only at a full
stop (SIGTERM, SIGINT), with nobody to take them, are connections closed:
the arbiter then closes its ends, and a worker whose hand-over fails closes
them itself.
"""

import itertools
import logging
import os
import selectors
import socket
import struct
from collections import deque

from .connection import OPEN, ServedConnection

__all__ = ['HandsOver', 'Relay', 'WorkerEnd']

log = logging.getLogger('gateway')

_BATCH = 64                 # descriptors per message (Linux takes up to 253)
_MESSAGE = 8 * _BATCH
_SEQPACKET = getattr(socket, 'SOCK_SEQPACKET', None)


def available():
    """Whether connections can be handed over here (unix sockets and
    descriptor passing: not on Windows)."""
    return _SEQPACKET is not None and hasattr(socket, 'send_fds')


def _send(sock, items):
    """Send up to _BATCH ``(fd, last_active)``; BlockingIOError when the
    peer's queue is full, another OSError when it is gone."""
    fds = [fd for fd, _ in items]
    times = struct.pack('%dd' % len(items), *(when for _, when in items))
    socket.send_fds(sock, [times], fds)


def _receive(sock):
    """Every ``(fd, last_active)`` waiting on *sock*; EOFError once the
    peer has closed its end."""
    items = []
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MESSAGE, _BATCH)
        except (BlockingIOError, InterruptedError):
            return items
        except OSError:
            data, fds = b'', []
        if not data and not fds:
            if items:
                return items        # the end, once these are dealt with
            raise EOFError
        times = struct.unpack('%dd' % (len(data) // 8), data[:len(data) // 8 * 8])
        if len(times) != len(fds):  # cannot happen between our own ends
            for fd in fds:
                os.close(fd)
            continue
        items.extend(zip(fds, times))


class WorkerEnd:
    """A worker's end of its pair: connections adopted through it, its own
    handed over through it. ``open`` turns false once the arbiter is no
    longer there to take them (a full stop, or it is gone)."""

    def __init__(self, sock):
        self.sock = sock
        self.open = True

    def adopt(self):
        """The connections given to this worker: ``[(socket, last_active)]``."""
        try:
            items = _receive(self.sock)
        except EOFError:
            self.open = False
            return []
        return [(socket.socket(fileno=fd), when) for fd, when in items]

    def hand_over(self, connections):
        """Pass *connections* (``.sock``, ``.last_active``) on; the ones
        sent, which the caller closes (its descriptors only: the connection
        lives on in the message). Those not sent wait for another try."""
        sent = []
        while self.open and len(sent) < len(connections):
            batch = connections[len(sent):len(sent) + _BATCH]
            try:
                _send(self.sock, [(conn.sock.fileno(), conn.last_active) for conn in batch])
            except BlockingIOError:
                break       # the arbiter is behind: next turn
            except OSError:
                self.open = False
                break
            sent.extend(batch)
        return sent

    def close(self):
        self.open = False
        self.sock.close()


class HandsOver:
    """A worker's part, mixed into worker.Worker: the connections it adopts
    through its ``handover`` (a WorkerEnd, or None), and its own handed over
    when it leaves."""

    def _adopt(self):
        """Take the connections a leaving worker handed over. They were
        counted against its --max-connections, so none is refused here."""
        threaded = self.config.threads > 1
        for sock, last_active in self.handover.adopt():
            conn = ServedConnection(sock, self.app, self.config, self.values,
                                    multithread=threaded, multiprocess=self.multiprocess)
            conn.last_active = last_active
            self.connections.add(conn)
            self.selector.register(sock, selectors.EVENT_READ, conn)
        if not self.handover.open:
            self.selector.unregister(self.handover.sock)

    def _hand_over(self):
        """While leaving: pass every connection between requests (nothing
        read and unparsed, no request begun) to a worker that stays. What
        the web server sent meanwhile is still in the socket, for the new
        owner to read; one in the middle of a request stays until it ends."""
        between = [conn for conn in self.connections
                   if conn.channel is None and conn.state is OPEN and conn.idle()
                   and self._is_registered(conn)]
        if between:
            for conn in self.handover.hand_over(between):
                self._forget(conn)

    def leave_at_once(self):
        """This process exits now (its one thread stuck past --timeout):
        the connections between requests go to a worker that stays first."""
        if self.handover is not None:
            self._hand_over()


class Relay:
    """The arbiter's side: a pair per worker, the connections held until a
    worker that stays can take them, and the round of who takes the next."""

    def __init__(self):
        self.pairs = {}             # pid -> (arbiter's end, the worker's end)
        self.held = deque()         # (fd, last_active) waiting for a worker
        self._source = {}           # fd held -> the pid of the worker it came from
        self._turn = itertools.count()

    @staticmethod
    def new_pair():
        """A pair for the worker about to be forked."""
        pair = socket.socketpair(socket.AF_UNIX, _SEQPACKET)
        for end in pair:
            end.setblocking(False)
        return pair

    def child_side(self, pair):
        """In the forked worker: its end, with everything else of the
        relay closed (a connection held here must close when its adopter
        closes it, and the arbiter's ends must be the arbiter's alone)."""
        for ours, theirs in self.pairs.values():
            ours.close()
            theirs.close()
        self.pairs.clear()
        while self.held:
            os.close(self.held.popleft()[0])
        self._source.clear()
        pair[0].close()
        return WorkerEnd(pair[1])

    def add(self, pid, pair):
        self.pairs[pid] = pair

    def fds(self):
        """``{fileno: pid}`` of the ends that workers write to."""
        return {pair[0].fileno(): pid for pid, pair in self.pairs.items()}

    def receive(self, pid):
        """Take what worker *pid* handed over."""
        pair = self.pairs.get(pid)
        if pair is not None:
            try:
                self._hold(_receive(pair[0]), pid)
            except EOFError:
                pass        # it exited: drop() takes the rest

    def _hold(self, items, pid):
        self.held.extend(items)
        for fd, _ in items:
            self._source[fd] = pid

    def pass_on(self, workers, generation):
        """Give the connections held to the *workers* (children.WorkerProcess)
        that stay, those of *generation* (the freshest code) if any; how
        many were given."""
        if not self.held:
            return 0
        staying = [w for w in workers if w.ready and not (w.retiring or w.timed_out)]
        fresh = [w.pid for w in staying if w.generation == generation]
        return self.forward(fresh or [w.pid for w in staying])

    def forward(self, pids):
        """Give the connections held to the workers *pids*, in turn; how
        many were given. One log line a batch says from whom to whom."""
        if not self.held or not pids:
            return 0
        given = 0
        full = set()
        while self.held and len(full) < len(pids):
            pid = pids[next(self._turn) % len(pids)]
            if pid in full:
                continue
            batch = [self.held.popleft() for _ in range(min(_BATCH, len(self.held)))]
            try:
                _send(self.pairs[pid][0], batch)
            except OSError:
                self.held.extendleft(reversed(batch))
                full.add(pid)
                continue
            sources = sorted({self._source.pop(fd, 0) for fd, _ in batch})
            for fd, _ in batch:
                os.close(fd)
            given += len(batch)
            log.info('handed over %d connection%s from worker pid %s to worker pid %d',
                     len(batch), 's' * (len(batch) != 1),
                     ', '.join(str(source) for source in sources if source) or '?', pid)
        return given

    def drop(self, pid):
        """Worker *pid* has exited: keep what it sent and what it was sent
        but never took; close its pair."""
        pair = self.pairs.pop(pid, None)
        if pair is None:
            return
        for end in pair:
            try:
                self._hold(_receive(end), pid)
            except EOFError:
                pass
            end.close()

    def close(self):
        """A full stop: nobody takes connections any more."""
        for pid in list(self.pairs):
            for end in self.pairs.pop(pid):
                end.close()
        while self.held:
            os.close(self.held.popleft()[0])
        self._source.clear()

"""How a worker accepts a connection (``Accepts``, a part of worker.Worker):
the listener's plan read once (the C-level accept, TCP_NODELAY inherited or
set, TCP_DEFER_ACCEPT), the peer checked against --web-server-addrs, the
connection's first request served at once with one thread; and, out of file
descriptors, the listeners out of the selector for a back-off (limits.py).
"""

import logging
import os
import selectors
import socket
import time

from .connection import ServedConnection
from .limits import NEW_CONNECTION_FAILED
from .peers import peer_allowed

__all__ = ['Accepts', 'ACCEPT']

log = logging.getLogger('gateway')

ACCEPT = object()       # the selector's mark on a listening socket


class Accepts:
    """Uses the Worker's ``listeners``, ``selector``, ``connections``,
    ``_accepting``, ``_backoff`` and ``_resume_accepting_at``."""

    @staticmethod
    def _accept_plan(listener):
        """[accept, family, type, proto, TCP_NODELAY to set on each connection]"""
        family = int(listener.family)
        # socket.accept() looks up the listener's family and type as enums
        # (slow Python code) on every call; the C-level _accept() with the
        # numbers read once here builds the same socket object.
        accept = getattr(listener, '_accept', None) if type(listener) is socket.socket else None
        nodelay = family in (socket.AF_INET, getattr(socket, 'AF_INET6', None))
        if nodelay:
            # Where connections inherit TCP_NODELAY from their listening
            # socket (Linux does), setting it there spares a system call per
            # connection; _accept() checks on the first connection.
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nodelay = 'check'
            except OSError:
                pass
        if nodelay and hasattr(socket, 'TCP_DEFER_ACCEPT'):
            # Linux: wake us for a connection only once its first bytes have
            # arrived (a web server always speaks first in FastCGI), so that
            # _accept() finds the request there and serves it at once,
            # instead of a trip through the selector, and an idle worker is
            # not woken by a bare handshake. A connection that stays silent
            # is still accepted after about a second.
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
            except OSError:
                pass
        return [accept, family, int(listener.type), listener.proto, nodelay]

    def _accept(self, listener):
        """Accept one connection (and serve it, if its request is there).
        False when there was none to accept."""
        plan = self._accepting[listener]
        accept, family, kind, proto, nodelay = plan
        try:
            if accept is not None:
                fd, address = accept()
                try:
                    sock = socket.socket(family, kind, proto, fileno=fd)
                except BaseException:
                    os.close(fd)
                    raise
            else:
                sock, address = listener.accept()
        except BlockingIOError:
            return False    # none left, or another worker took it
        except (InterruptedError, ConnectionAbortedError):
            return True     # the peer gave up: there may be more
        except OSError as error:
            if error.errno in NEW_CONNECTION_FAILED:
                return True
            self._pause_accepting(error)
            return False
        if self._backoff.pause:
            self._backoff.succeeded()
        if self.allowed_peers is not None and family != socket.AF_UNIX:
            if not peer_allowed(address, self.allowed_peers):
                log.warning('connection from %s refused: not in %s', address[0],
                            self.allowed_peers.source)
                sock.close()
                return True
        if nodelay:
            if nodelay == 'check':
                try:
                    inherited = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                except OSError:
                    inherited = 0
                plan[4] = nodelay = not inherited
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = self.config
        limit = config.max_connections
        threaded = config.threads > 1
        conn = ServedConnection(sock, self.app, config, self.values,
                                multithread=threaded,
                                multiprocess=self.multiprocess,
                                overloaded=bool(limit) and len(self.connections) >= limit,
                                peer=address)
        conn.own_paths = self.own_paths
        conn.last_active = time.monotonic()
        self.connections.add(conn)
        if not threaded:
            # Web servers send the request right after connecting, so it is
            # usually there already: serve it now, and a connection that is
            # closed after its one request never enters the selector (two
            # epoll_ctl calls and a trip through select() saved).
            conn.on_request = self._on_request[0]
            self._serving[0] = conn
            still_open = conn.handle_readable(wait=False)
            conn.last_active = time.monotonic()
            if not still_open:
                self.connections.discard(conn)
                conn.close()
                self._check_max_requests()
                return True
        self.selector.register(sock, selectors.EVENT_READ, conn)
        if not threaded:
            self._count_pending(conn)
        return True

    def _pause_accepting(self, error):
        """accept() failed, most likely for want of file descriptors: the
        listening sockets stay readable, so they leave the selector for a
        while (AcceptBackoff) rather than spin the worker; the connections
        it has are served meanwhile."""
        now = time.monotonic()
        pause = self._backoff.failed(error, now, len(self.connections))
        self._resume_accepting_at = now + pause
        for listener in self.listeners:
            try:
                self.selector.unregister(listener)
            except (KeyError, ValueError):
                pass

    def _resume_accepting(self, wait):
        """The listening sockets back in the selector once their pause is
        over (not when stopping); how long select() may wait meanwhile."""
        left = self._resume_accepting_at - time.monotonic()
        if left > 0 and not self.stopping:
            return min(wait, left)
        self._resume_accepting_at = 0.0
        if not self.stopping:
            for listener in self.listeners:
                self.selector.register(listener, selectors.EVENT_READ, ACCEPT)
        return wait

"""--status-bind: the arbiter's own FastCGI listener for status and ping.

The workers answer --status-path and --ping-path on the pool's addresses,
which takes a free worker; when every worker is busy or hung (just when an
operator wants to know) nobody would. The arbiter never runs application
code, so here it answers those two paths itself, from the scoreboard, in
its own loop: the listener and its connections are non-blocking, served a
read at a time whenever select() says so, a handful at once, each dropped
after a few silent seconds. The same --web-server-addrs rule applies.
"""

import logging
import socket
import time

from .config import Config
from .connection import ServedConnection
from .peers import allowed_peers, peer_allowed
from .status import OwnAnswers
from .worker import server_values

__all__ = ['StatusListener']

log = logging.getLogger('gateway')

MAX_CONNECTIONS = 8     # at once; the oldest goes for a new one
SILENCE = 5.0           # seconds a connection may stay silent, or take to send a request


class StatusListener:
    """Serves --status-path and --ping-path on *listener* (a listeners.Listener)."""

    def __init__(self, listener, config, scoreboard, pool_listeners):
        self.listener = listener
        self.app = OwnAnswers(config, scoreboard, pool_listeners)
        allowed = allowed_peers(config.web_server_addrs)
        self.allowed = None if allowed is None or allowed.anyone else allowed
        # Short limits, no access log: a status request is small, and the
        # arbiter must never wait long on anyone.
        settings = {**vars(config), 'read_timeout': SILENCE, 'request_read_timeout': SILENCE,
                    'access_log': None, 'fcgi_stderr': False, 'max_connections': 0}
        self.config = Config(**settings)
        self.values = server_values(self.config, 1)
        self.connections = {}       # fd -> ServedConnection
        listener.sock.setblocking(False)

    def fds(self):
        """The descriptors to select() on for reading."""
        return [self.listener.sock.fileno(), *self.connections]

    def handle(self, fd):
        """*fd* (one of ``fds()``) is readable: accept, or serve a read."""
        if fd == self.listener.sock.fileno():
            self._accept()
            return
        conn = self.connections.get(fd)
        if conn is not None:
            self._serve(fd, conn)

    def _accept(self):
        try:
            sock, address = self.listener.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            log.error('--status-bind: accept() failed: %s', error)
            return
        if self.allowed is not None and sock.family != socket.AF_UNIX \
                and not peer_allowed(address, self.allowed):
            log.warning('--status-bind: connection from %s refused: not in %s', address[0],
                        self.allowed.source)
            sock.close()
            return
        if len(self.connections) >= MAX_CONNECTIONS:
            oldest = min(self.connections, key=lambda fd: self.connections[fd].last_active)
            self._drop(oldest)
        conn = ServedConnection(sock, self.app, self.config, self.values, multiprocess=True,
                                peer=address)
        conn.last_active = time.monotonic()
        self.connections[sock.fileno()] = conn
        self._serve(sock.fileno(), conn)

    def _serve(self, fd, conn):
        if conn.handle_readable(wait=False):
            conn.last_active = time.monotonic()
        else:
            self._drop(fd)

    def _drop(self, fd):
        conn = self.connections.pop(fd, None)
        if conn is not None:
            conn.close()

    def sweep(self, now):
        """Close the connections silent for longer than SILENCE."""
        for fd, conn in list(self.connections.items()):
            if now - conn.last_active > SILENCE:
                self._drop(fd)

    def close(self, in_child=False):
        """Close the listener and every connection; in a forked worker,
        only this process's copies (the socket file stays)."""
        for fd in list(self.connections):
            if in_child:
                self.connections.pop(fd).sock.close()
            else:
                self._drop(fd)
        self.listener.close()
        if not in_child:
            self.listener.remove_socket_file()

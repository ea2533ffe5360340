"""How a served connection moves bytes: a socket, or IIS's pipe.

A connection (``connection.ServedConnection``) reads, sends and hangs up
through one of these two, and never looks at which it has:

``SocketTransport``  a socket, never blocking: each recv() and send() is
                     tried at once (MSG_DONTWAIT) and waits in poll() only
                     when it would block, within the read timeout; the last
                     write of a connection may share the FIN's segment
                     (MSG_MORE); the write side can be shut down alone.
``PipeTransport``    a blocking stream with recv/sendall (the named pipe IIS
                     gives a FastCGI process on Windows): reads wait as long
                     as they must, nothing can be polled, nothing half-closed.
"""

import select
import socket
import time

__all__ = ['SocketTransport', 'PipeTransport', 'transport_for']

RECV_SIZE = 1 << 16
# Reads per call of discard() with wait false: a web server that keeps
# sending after its answer must not keep the worker from its other connections.
DISCARD_READS = 16

_poll = getattr(select, 'poll', None)
_MSG_DONTWAIT = getattr(socket, 'MSG_DONTWAIT', 0)
_MSG_MORE = getattr(socket, 'MSG_MORE', 0)
_AF_UNIX = getattr(socket, 'AF_UNIX', None)


def transport_for(stream, timeout, peer=None):
    """The transport for *stream*: a socket, or a blocking stream (a pipe)."""
    if isinstance(stream, socket.socket):
        return SocketTransport(stream, timeout, peer)
    return PipeTransport(stream, peer)


class SocketTransport:
    """A connected socket. *timeout* (seconds, or None) bounds each wait for
    the peer to send, and each wait for it to read what we send."""

    __slots__ = ('sock', 'timeout', 'peer', '_nowait')
    pollable = True

    def __init__(self, sock, timeout, peer=None):
        self.sock = sock
        self.timeout = timeout
        # The address accept() returned, for the log; found when a log line
        # needs it when not given (or empty, as for a unix socket).
        self.peer = peer
        # Every recv() and send() is non-blocking, and the timeout is applied
        # by _wait() only when one would block: a socket with a timeout polls
        # before every recv() and send(), two system calls per request that
        # the usual case (the data is there, the buffer has room) does not
        # need. Where the flag exists, MSG_DONTWAIT makes each call
        # non-blocking and the socket itself stays blocking, which spares the
        # ioctl that setblocking(False) costs per connection.
        self._nowait = _MSG_DONTWAIT
        if _MSG_DONTWAIT:
            if sock.gettimeout() is not None:
                sock.settimeout(None)
        else:
            sock.setblocking(False)

    def recv(self, wait=True, deadline=None):
        """Bytes the peer sent (b'': it closed). With *wait* false, None when
        nothing has arrived; else wait, at most the timeout and never past
        *deadline* (a time.monotonic() value): socket.timeout."""
        sock = self.sock
        while True:
            try:
                return sock.recv(RECV_SIZE, self._nowait)
            except BlockingIOError:
                if not wait:
                    return None
                limit = None if self.timeout is None else time.monotonic() + self.timeout
                if deadline is not None and (limit is None or deadline < limit):
                    limit = deadline
                self._wait(False, limit)

    def send(self, data, last=False):
        """Send all of *data*; socket.timeout when the peer reads nothing of
        it for the timeout. *last*: the connection is closed right after, so
        TCP may carry the data in the segment that has the FIN (one packet
        fewer for the web server and for us)."""
        sock = self.sock
        nowait = self._nowait | _MSG_MORE if last else self._nowait
        try:
            sent = sock.send(data, nowait)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return      # the usual case: one system call
        # As sendall() on a socket with a timeout: the timeout bounds the
        # whole send.
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        view = memoryview(data)[sent:]
        while view:
            self._wait(True, deadline)
            try:
                view = view[sock.send(view, nowait):]
            except BlockingIOError:
                pass

    def send_now(self, data):
        """Send what fits of *data* without waiting: for a peer being shed,
        which must not hold up the worker that sheds it."""
        self.sock.send(data, self._nowait)

    def discard(self, wait, deadline=None):
        """Read and drop what the peer sends: 'closed' once it closed (or the
        connection failed), 'expired' at *deadline*, or, with *wait* false,
        None when nothing more has arrived yet, or after a few reads."""
        sock = self.sock
        reads = 0
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    return 'expired'
                if reads == DISCARD_READS and not wait:
                    return None
                try:
                    data = sock.recv(RECV_SIZE, self._nowait)
                except BlockingIOError:
                    if not wait:
                        return None
                    self._wait(False, deadline)
                    continue
                reads += 1
                if not data:
                    return 'closed'
        except socket.timeout:
            return 'expired'
        except OSError:
            return 'closed'

    def shutdown_write(self):
        """Say we are done sending; the peer may still send (OSError if gone)."""
        self.sock.shutdown(socket.SHUT_WR)

    def shutdown(self):
        """Hang up both ways, waking whoever waits on the socket (OSError if gone)."""
        self.sock.shutdown(socket.SHUT_RDWR)

    def _wait(self, writing, deadline):
        """Until the socket is writable (or readable); socket.timeout at
        *deadline* (a time.monotonic() value, or None: no limit)."""
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise socket.timeout('timed out')
        if _poll is not None:
            poller = _poll()
            poller.register(self.sock, select.POLLOUT if writing else select.POLLIN)
            ready = poller.poll(None if timeout is None else max(timeout * 1000, 1))
        else:   # Windows: no poll(); sockets there are not limited to FD_SETSIZE numbers
            sock = [self.sock]
            ready = (select.select((), sock, sock, timeout) if writing
                     else select.select(sock, (), sock, timeout))
            ready = ready[0] or ready[1] or ready[2]
        if not ready:
            raise socket.timeout('timed out')

    def peer_name(self):
        """The peer's address, for the log."""
        peer = self.peer
        if not peer:
            sock = self.sock
            try:
                peer = sock.getpeername()
            except OSError:
                peer = ''
            if not peer and sock.family == _AF_UNIX:
                # A client of a unix socket has no name: name the socket.
                try:
                    name = sock.getsockname()
                except OSError:
                    name = ''
                peer = 'unix:%s' % name if name else ''
            self.peer = peer
        if isinstance(peer, tuple):
            host, port = peer[:2]
            return ('[%s]:%d' if ':' in host else '%s:%d') % (host, port)
        return peer or 'the web server'

    def closed(self):
        return self.sock.fileno() < 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class PipeTransport:
    """A blocking stream with recv/sendall/close: every read waits for the
    peer, every write for the whole of it, and no deadline can be kept."""

    __slots__ = ('stream', 'peer', '_closed')
    pollable = False
    timeout = None

    def __init__(self, stream, peer=None):
        self.stream = stream
        self.peer = peer
        self._closed = False

    def recv(self, wait=True, deadline=None):
        return self.stream.recv(RECV_SIZE)

    def send(self, data, last=False):
        self.stream.sendall(data)

    send_now = send

    def discard(self, wait, deadline=None):
        try:
            while self.stream.recv(RECV_SIZE):
                pass
        except OSError:
            pass
        return 'closed'

    def shutdown_write(self):
        pass    # a pipe has no half-close; close() ends it

    def shutdown(self):
        pass

    def peer_name(self):
        return self.peer or 'the web server'

    def closed(self):
        return self._closed

    def close(self):
        self._closed = True
        try:
            self.stream.close()
        except OSError:
            pass

"""A transport for ServedConnection that is a script, not a socket.

It has the interface of gateway.fastcgi.transports (our own seam): what the
"web server" sends is queued with ``feed()``, what the connection sends is
collected in ``sent``, and ``close_input()`` is the web server hanging up.
A read that finds nothing queued is the web server staying silent: it
raises socket.timeout at once, or, with a deadline, once that has passed.
"""

import socket
import time
from collections import deque


class FakeTransport:
    pollable = True

    def __init__(self, timeout=5.0, pollable=True, peer='the test'):
        self.timeout = timeout
        self.pollable = pollable
        self.peer = peer
        self.incoming = deque()
        self.input_closed = False
        self.sent = []              # each send() as it came: (data, last)
        self.shut = []              # 'write', 'both'
        self.is_closed = False
        self.stalled = False        # sends time out: the web server reads nothing
        self.on_send = None         # called with each sent block, may feed more input

    # -- the test's side -----------------------------------------------------

    def feed(self, *chunks):
        self.incoming.extend(chunks)

    def close_input(self):
        self.input_closed = True

    def output(self):
        return b''.join(data for data, _ in self.sent)

    # -- the connection's side -----------------------------------------------

    def recv(self, wait=True, deadline=None):
        if self.incoming:
            return self.incoming.popleft()
        if self.input_closed:
            return b''
        if not wait:
            return None
        if deadline is not None:
            time.sleep(max(0.0, deadline - time.monotonic()))
        raise socket.timeout('timed out')

    def send(self, data, last=False):
        if self.is_closed or 'write' in self.shut or 'both' in self.shut:
            raise BrokenPipeError(32, 'Broken pipe')
        if self.stalled:
            raise socket.timeout('timed out')
        self.sent.append((bytes(data), last))
        if self.on_send is not None:
            self.on_send(bytes(data))

    def send_now(self, data):
        self.send(data)

    def discard(self, wait, deadline=None):
        self.incoming.clear()
        if self.input_closed:
            return 'closed'
        return 'expired' if wait else None

    def shutdown_write(self):
        self.shut.append('write')

    def shutdown(self):
        self.shut.append('both')

    def peer_name(self):
        return self.peer

    def closed(self):
        return self.is_closed

    def close(self):
        self.is_closed = True

"""A transport for ServedConnection that is a script, not a socket.

It has the interface of gateway.fastcgi.transports (our own seam): what the
"web server" sends is queued with ``feed()``, what the connection sends is
collected in ``sent``, and ``close_input()`` is the web server hanging up.
A read that finds nothing queued is the web server staying silent: it
raises socket.timeout at once, or, with a deadline, once that has passed.

``FakeChannel`` is the same one level up: what a connection lends a
FastCGIHandler (gateway.handlers.fastcgi), as a script.
"""

import socket
import time
from collections import deque

from gateway.handlers.fastcgi import RequestAborted


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


class FakeChannel:
    """What a connection lends a handler, as a script: *body* is the
    request body in the blocks read() gives; every call is recorded."""

    def __init__(self, body_blocks=(), abort_at_read=None):
        self.blocks = list(body_blocks)
        self.abort_at_read = abort_at_read
        self.calls = []             # ('write', data), ('finish', data), ('abort',), ...
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.reads == self.abort_at_read:
            raise RequestAborted(1)
        return self.blocks.pop(0) if self.blocks else b''

    def write(self, data):
        self.calls.append(('write', data))

    def stderr(self, data):
        self.calls.append(('stderr', data))

    def finish(self, data=b''):
        self.calls.append(('finish', data))

    def abort(self):
        self.calls.append(('abort',))

    def sent(self):
        return b''.join(call[1] for call in self.calls if call[0] in ('write', 'finish'))

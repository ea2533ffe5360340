"""``wsgi.input``: request bodies as the application reads them.

PEP 3333 asks the same of every input stream: ``read()`` without a size
returns the rest of the body, every method returns ``b''`` once the body is
over, and nothing is read past its end. The streams here do that over a
pipe or a connection:

* ``LimitedInput``: the body of a CGI request, ``CONTENT_LENGTH`` bytes of
  stdin;
* ``FixedLengthBody`` and ``ChunkedBody``: the body of an HTTP request as
  ``gateway.simple_server`` reads it from the connection, by its
  Content-Length or de-chunked as it is read;
* ``InputLines``: the line methods all of them (and the FastCGI server's
  stream) build on ``readline()``.
"""

import sys

__all__ = ['body_cut_short', 'InputLines', 'LimitedInput', 'FixedLengthBody', 'ChunkedBody', 'ChunkedBodyError']

# A CONTENT_LENGTH is only a claim: a read of more than this is done in
# steps, so the memory taken grows with what arrives, not with the claim
# (read(n) sets n bytes aside first).
_READ_STEP = 1 << 24

# Body bytes read at a time when a whole chunked body is asked for.
_CHUNKED_STEP = 1 << 16

_HEX_DIGITS = frozenset(b'0123456789abcdefABCDEF')


def body_cut_short(missing):
    """The OSError a body stream raises when it ends *missing* bytes
    before its CONTENT_LENGTH: a body cut short must not pass for the whole."""
    return OSError(f"the request body ended {missing} bytes short of its CONTENT_LENGTH:"
                   " the client or the web server stopped sending")


class InputLines:
    """``readlines()`` and line iteration for a stream with ``readline()``."""

    __slots__ = ()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readlines(self, hint=-1):
        lines = []
        size = 0
        for line in self:
            lines.append(line)
            size += len(line)
            if 0 < hint <= size:
                break
        return lines


class LimitedInput(InputLines):
    """The first *length* bytes of the binary stream *stream*, then the end.

    A server may keep its end of the pipe open after the body, so ``read()``
    stops at *length* instead of waiting for an end of file. A stream that
    ends before *length* bytes raises ``OSError`` (as mod_wsgi does): a body
    cut short must not pass for the whole upload.
    """

    __slots__ = ('stream', 'remaining')

    def __init__(self, stream, length):
        self.stream = stream
        self.remaining = length

    def _wanted(self, size):
        if size is None or size < 0 or size > self.remaining:
            return self.remaining
        return size

    def read(self, size=-1):
        size = self._wanted(size)
        if not size:
            return b''
        if size <= _READ_STEP:
            data = self.stream.read(size)
        else:
            data = self._read_in_steps(size)
        self.remaining -= len(data)
        if len(data) < size:
            self._cut_short()
        return data

    def _read_in_steps(self, size):
        parts = []
        while size:
            part = self.stream.read(min(size, _READ_STEP))
            if not part:
                break
            parts.append(part)
            size -= len(part)
        return b''.join(parts)

    def readline(self, size=-1):
        size = self._wanted(size)
        if not size:
            return b''
        # min(): a claimed length may not even fit in a C ssize_t.
        line = self.stream.readline(min(size, sys.maxsize))
        self.remaining -= len(line)
        if not line:
            self._cut_short()
        return line

    def _cut_short(self):
        missing = self.remaining
        self.remaining = 0
        raise body_cut_short(missing)

    def close(self):
        """The stream belongs to the server: closing ``wsgi.input`` does nothing."""


class ChunkedBodyError(ValueError):
    """``wsgi.input`` met a malformed or incomplete chunked request body.

    Raised by the read methods; if the application lets it through, the
    client gets ``400 Bad Request``.
    """


class _ConnectionBody:
    """What the HTTP server needs to know of a body it reads from a
    connection that may carry another request after it.

    *before_first_read*, when given, runs once before the first byte is
    read (the server sends ``100 Continue`` there); if it returns false, the
    body is taken as empty.
    """

    ended = False       # no more bytes will be returned
    complete = False    # the body was read to its end, so the next request follows

    def _may_read(self):
        if self.ended:
            return False
        hook = self._before_first_read
        if hook is not None:
            self._before_first_read = None
            if not hook():
                self.ended = True
                return False
        return True

    def _over(self, complete):
        self.ended = True
        self.complete = complete

    def readable(self):
        return True

    def drain(self, limit):
        """Read and drop what is left of the body, *limit* bytes at most;
        return whether the body has now been read to its end."""
        while limit > 0 and not self.ended:
            dropped = len(self.read(min(limit, _CHUNKED_STEP)))
            if not dropped:
                break
            limit -= dropped
        return self.complete


class FixedLengthBody(_ConnectionBody, LimitedInput):
    """A request body of *length* bytes (its Content-Length; 0 without one)."""

    def __init__(self, stream, length, before_first_read=None):
        LimitedInput.__init__(self, stream, length)
        self._before_first_read = before_first_read
        self.ended = self.complete = not length

    def read(self, size=-1):
        return self._counted(LimitedInput.read, size)

    def readline(self, size=-1):
        return self._counted(LimitedInput.readline, size)

    def _counted(self, method, size):
        if size == 0 or not self._may_read():
            return b''
        try:
            data = method(self, size)
        except OSError:
            self._over(False)
            raise
        if not self.remaining:
            self._over(True)
        return data


class ChunkedBody(_ConnectionBody, InputLines):
    """A ``Transfer-Encoding: chunked`` request body, de-chunked as it is read.

    The framing is read strictly (CRLF line ends, at most 16 hexadecimal
    digits of size, bounded line and trailer lengths): request smuggling
    lives on parsers that read the framing more loosely than a proxy in
    front of them. Trailer fields are read and dropped.
    """

    max_line = 4096         # a chunk-size line, extensions included
    max_trailers = 16384    # the trailer section

    def __init__(self, stream, before_first_read=None):
        self.stream = stream
        self._before_first_read = before_first_read
        self._chunk_left = 0        # data bytes of the current chunk not yet read
        self._crlf_due = False      # the current chunk's data is read, its CRLF is not

    def _fail(self, reason):
        self._over(False)
        raise ChunkedBodyError(reason)

    def _framing_line(self, what):
        line = self.stream.readline(self.max_line + 1)
        if not line:
            self._fail("incomplete chunked body: the client closed the connection")
        if len(line) > self.max_line:
            self._fail(f"{what} longer than {self.max_line} bytes")
        if line[-2:] != b'\r\n' or b'\r' in line[:-2]:
            self._fail(f"{what} does not end with CRLF: {line[:80]!r}")
        return line[:-2]

    def _next_chunk(self):
        if self._crlf_due:
            if self.stream.read(2) != b'\r\n':
                self._fail("chunk data not followed by CRLF")
            self._crlf_due = False
        line = self._framing_line("chunk-size line")
        digits = line.split(b';', 1)[0].rstrip(b' \t')
        if not 0 < len(digits) <= 16 or not _HEX_DIGITS.issuperset(digits):
            self._fail(f"invalid chunk size: {line[:80]!r}")
        self._chunk_left = int(digits, 16)
        if not self._chunk_left:
            self._skip_trailers()
            self._over(True)

    def _skip_trailers(self):
        size = 0
        while True:
            line = self._framing_line("trailer line")
            if not line:
                return
            size += len(line) + 2
            if size > self.max_trailers:
                self._fail(f"trailer section longer than {self.max_trailers} bytes")

    def _from_chunk(self, size, line):
        """At most *size* (> 0) data bytes of the current chunk, the next
        one begun when this one is used up; b'' once the body is over."""
        while not self._chunk_left:
            if self.ended:
                return b''
            self._next_chunk()
        size = min(size, self._chunk_left)
        data = self.stream.readline(size) if line else self.stream.read(size)
        if not data:
            self._fail("incomplete chunked body: the client closed the connection")
        self._chunk_left -= len(data)
        self._crlf_due = not self._chunk_left
        return data

    def _gather(self, size, line):
        if size == 0 or not self._may_read():
            return b''
        unlimited = size is None or size < 0
        parts = []
        while unlimited or size > 0:
            data = self._from_chunk(_CHUNKED_STEP if unlimited else size, line)
            if not data:
                break
            parts.append(data)
            if not unlimited:
                size -= len(data)
            if line and data[-1:] == b'\n':
                break
        return b''.join(parts)

    def read(self, size=-1):
        return self._gather(size, line=False)

    def readline(self, size=-1):
        return self._gather(size, line=True)

    def close(self):
        """The connection belongs to the server: closing ``wsgi.input`` does nothing."""

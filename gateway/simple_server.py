"""BaseHTTPServer that implements the Python WSGI protocol (PEP 3333)

This is both an example of how WSGI can be implemented, and a basis for running
simple web applications on a local machine, such as might be done when testing
or debugging an application.  It has not been reviewed for security issues,
however, and we strongly recommend that you use a "real" web server for
production use.

By default it behaves as ``wsgiref.simple_server`` does, byte for byte: one
request per connection, HTTP/1.0 responses, one request at a time. It differs
only where wsgiref is unsafe or breaks PEP 3333:

* A request header whose name holds ``_`` is dropped. ``X-Foo`` and
  ``X_Foo`` would both become ``HTTP_X_FOO``, so a client could pass a value
  off as one a proxy set (the header spoofing Django fixed as CVE-2015-0219;
  nginx and Apache drop these too). ``Proxy:`` is dropped as well: as
  ``HTTP_PROXY`` it is the variable HTTP clients take their proxy from
  (httpoxy, CVE-2016-5385).
* ``wsgi.input`` ends at CONTENT_LENGTH (at once when there is none), so
  ``read()`` with no size returns the body instead of blocking until the
  client closes. A body sent with ``Transfer-Encoding: chunked`` is
  de-chunked as the application reads it (``wsgi.input_terminated`` is then
  set and CONTENT_LENGTH is empty); a malformed chunked body gets a 400. A
  request whose length cannot be known safely (a Content-Length that is not
  a number, both Content-Length and Transfer-Encoding, a transfer coding
  other than chunked) gets a 400 (501 for an unknown coding) and the
  application is not called.
* CONTENT_TYPE is the request's Content-Type, or empty when the request has
  none. wsgiref puts ``text/plain`` there, a type the client never sent; PEP
  3333 says CONTENT_TYPE "may be empty or absent" and the CGI specification
  (RFC 3875, 4.1.3) that it has no default. It stays in the environ, empty,
  so code that indexes ``environ['CONTENT_TYPE']`` keeps working.
* An incomplete response closes the connection so the client can tell (see
  ``ServerHandler.abort_response``). When the response has a Content-Length
  or is chunked, an ordinary close shows it: the body is short, or the last
  chunk is missing. A response whose end is the end of the connection
  (HTTP/1.0 without Content-Length, wsgiref's default for a body of several
  parts) would look complete after an ordinary close, so the connection is
  reset instead (SO_LINGER 0): the client gets a connection-reset error.
  Bytes not yet delivered may be discarded by the reset; the response is
  broken either way.
* A HEAD response carries no body (wsgiref sends the application's body).

Opt-in, with ``make_server(..., threaded=True, http11=True)``:

* ``threaded``: a thread per connection (``ThreadingWSGIServer``; daemon
  threads, ``wsgi.multithread`` true).
* ``http11``: the request handler speaks HTTP/1.1 (``protocol_version =
  'HTTP/1.1'``, which a ``WSGIRequestHandler`` subclass may also set):
  responses without a Content-Length are chunked for HTTP/1.1 clients,
  ``Expect: 100-continue`` is answered with ``HTTP/1.1 100 Continue`` when
  the application first reads ``wsgi.input`` (never if it answers without
  reading), and connections persist between requests. Persistent
  connections need a server that serves connections side by side (threads,
  or ``socketserver.ForkingMixIn``): on a single thread one idle client
  would hold up every other, so without ``threaded`` each response says
  ``Connection: close``. A connection also closes on ``Connection: close``,
  for HTTP/1.0 clients, after ``keep_alive_timeout`` seconds idle, and
  whenever the request body cannot be skipped safely (the application left
  more than ``ServerHandler.max_discard`` bytes of it unread, or never
  asked for a body the client was told to wait with).

For example usage, see the 'if __name__=="__main__"' block at the end of the
module.  See also the BaseHTTPServer module docs for other API information.
"""

import socket
import socketserver
import struct
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from platform import python_implementation
from socketserver import ThreadingMixIn

from .handlers.base import SimpleHandler
from .handlers.cgi import LimitedInput

__version__ = "0.2"
__all__ = ['WSGIServer', 'WSGIRequestHandler', 'demo_app', 'make_server']


server_version = "WSGIServer/" + __version__
sys_version = python_implementation() + "/" + sys.version.split()[0]
software_version = server_version + ' ' + sys_version

_HEX_DIGITS = frozenset(b'0123456789abcdefABCDEF')

# Servers that serve connections side by side, so that a persistent
# connection waiting for its next request holds up no one else.
_FORKING = tuple(getattr(socketserver, name) for name in ('ForkingMixIn',)
                 if hasattr(socketserver, name))     # POSIX only
_CONCURRENT = (ThreadingMixIn,) + _FORKING


class ChunkedBodyError(ValueError):
    """wsgi.input met a malformed or incomplete chunked request body.

    Raised by the read methods of ``wsgi.input``; if the application lets it
    propagate, the client gets ``400 Bad Request``.
    """


class _RequestBody(LimitedInput):
    """Base of wsgi.input: the request body, never read past its end.

    *before_read*, if given, is called once, just before the first read
    from the client; when it returns false the body is treated as empty
    (the 100-continue interim response could not be sent).
    """

    def __init__(self, stream, length, before_read=None):
        super().__init__(stream, length)
        self._before_read = before_read
        self.complete = False   # the whole body has been read
        self.ended = False      # no more bytes will be returned

    def _may_read(self):
        if self.ended:
            return False
        hook, self._before_read = self._before_read, None
        if hook is not None and not hook():
            self.ended = True
            return False
        return True

    def _end(self, complete):
        self.ended = True
        self.complete = complete

    def readable(self):
        return True

    def drain(self, limit):
        """Read and drop the rest of the body, up to *limit* bytes; return
        whether the whole body has now been read."""
        while not self.ended and limit > 0:
            data = self.read(min(limit, 65536))
            if not data:
                break
            limit -= len(data)
        return self.complete


class _LengthBody(_RequestBody):
    """A body of *length* bytes (Content-Length; 0 when there is none)."""

    def __init__(self, stream, length, before_read=None):
        super().__init__(stream, length, before_read)
        if not length:
            self._end(True)

    def _track(self, method, size):
        left = self.remaining
        if size == 0 or not self._may_read():
            return b''
        data = method(self, size)
        if not self.remaining:
            # LimitedInput zeroes the count when the client closes early.
            self._end(len(data) == left)
        return data

    def read(self, size=-1):
        return self._track(LimitedInput.read, size)

    def readline(self, size=-1):
        return self._track(LimitedInput.readline, size)


class _ChunkedBody(_RequestBody):
    """A ``Transfer-Encoding: chunked`` body, de-chunked as it is read.

    Chunk framing is parsed strictly (CRLF line ends, hexadecimal sizes of
    at most 16 digits, bounded line and trailer lengths): a lenient parser
    behind a proxy that reads the framing differently is how request
    smuggling works. Trailer fields are read and dropped.
    """

    max_line = 4096         # a chunk-size line, extensions included
    max_trailers = 16384    # all trailer lines together

    def __init__(self, stream, before_read=None):
        super().__init__(stream, None, before_read)     # no length: chunks end it
        self._left = 0          # bytes left in the current chunk
        self._crlf = False      # a CRLF must follow the chunk just read

    def _fail(self, message):
        self._end(False)
        raise ChunkedBodyError(message)

    def _line(self, what):
        line = self.stream.readline(self.max_line + 1)
        if not line.endswith(b'\r\n') or b'\r' in line[:-2]:
            if not line:
                self._fail("incomplete chunked body: the client closed the connection")
            if len(line) > self.max_line:
                self._fail("%s longer than %d bytes" % (what, self.max_line))
            self._fail("%s does not end with CRLF: %r" % (what, line[:80]))
        return line[:-2]

    def _next_chunk(self):
        if self._crlf:
            if self.stream.read(2) != b'\r\n':
                self._fail("chunk data not followed by CRLF")
            self._crlf = False
        line = self._line("chunk-size line")
        size = line.split(b';', 1)[0].rstrip(b' \t')
        if not size or len(size) > 16 or not _HEX_DIGITS.issuperset(size):
            self._fail("invalid chunk size: %r" % line[:80])
        self._left = int(size, 16)
        if not self._left:
            total = 0
            while True:
                trailer = self._line("trailer line")
                if not trailer:
                    break
                total += len(trailer) + 2
                if total > self.max_trailers:
                    self._fail("trailer section longer than %d bytes" % self.max_trailers)
            self._end(True)

    def _take(self, size, readline=False):
        """Up to *size* (> 0) body bytes from the current chunk; b'' at the end."""
        while not self._left:
            if self.ended:
                return b''
            self._next_chunk()
        size = min(size, self._left)
        data = self.stream.readline(size) if readline else self.stream.read(size)
        if not data:
            self._fail("incomplete chunked body: the client closed the connection")
        self._left -= len(data)
        self._crlf = not self._left
        return data

    def _collect(self, size, readline):
        if size is not None and size == 0 or not self._may_read():
            return b''
        want = None if size is None or size < 0 else size
        parts = []
        while want is None or want > 0:
            data = self._take(65536 if want is None else want, readline)
            if not data:
                break
            parts.append(data)
            if want is not None:
                want -= len(data)
            if readline and data.endswith(b'\n'):
                break
        return b''.join(parts)

    def read(self, size=-1):
        return self._collect(size, False)

    def readline(self, size=-1):
        return self._collect(size, True)


def _request_framing(environ):
    """How the request body is delimited: ``(body, error)``.

    *body* is the number of bytes to read or ``'chunked'``; *error*, when
    not None, is the ``(status, reason)`` to answer instead of calling the
    application (RFC 9112, 6.1 and 6.3).
    """
    length = environ.get('CONTENT_LENGTH', '').strip()
    coding = environ.get('HTTP_TRANSFER_ENCODING')
    if coding is not None:
        codings = [part.strip().lower() for part in coding.split(',')]
        if environ.get('SERVER_PROTOCOL', '').upper() != 'HTTP/1.1':
            return 0, ('400 Bad Request', 'Transfer-Encoding in a request older than HTTP/1.1')
        if length:
            return 0, ('400 Bad Request', 'Both Content-Length and Transfer-Encoding given')
        if codings == ['chunked']:
            return 'chunked', None
        if codings[-1] == 'chunked' and all(codings) and 'chunked' not in codings[:-1]:
            return 0, ('501 Not Implemented', 'Unsupported transfer coding: %s' % coding)
        return 0, ('400 Bad Request', 'The last transfer coding must be chunked')
    if not length:
        return 0, None
    if length.isdigit() and length.isascii():
        return int(length), None
    return 0, ('400 Bad Request', 'Invalid Content-Length: %s' % length)


def _refusal(status, reason):
    """A WSGI application that answers *status* with *reason* as its body."""
    body = (reason + '\n').encode('iso-8859-1', 'replace')

    def refuse(environ, start_response):
        start_response(status, [('Content-Type', 'text/plain'),
                                ('Content-Length', str(len(body)))])
        return [body]
    return refuse


def _reset(sock):
    """Close *sock* at once with a TCP reset (SO_LINGER 0).

    The socket's own close() waits until the request handler's file objects
    are closed too; closing the descriptor underneath them makes their later
    reads and writes fail instead of reaching a reused descriptor.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    super(socket.socket, sock).close()


class ServerHandler(SimpleHandler):

    server_software = software_version

    # The most bytes of request body the application left unread that are
    # read and dropped to keep a persistent connection open; with more
    # left, the connection is closed instead.
    max_discard = 65536

    # Per-request state, set by run().
    _input = None               # the wsgi.input object
    _body = 0                   # bytes of request body, or 'chunked'
    _expect_continue = False    # a 100 Continue is owed before reading
    _closed = False             # close() ran

    def run(self, application):
        self._input = None
        self._closed = False
        self._body, error = _request_framing(self.base_env)
        rh = getattr(self, 'request_handler', None)
        if getattr(rh, '_expect_continue', False):
            rh._expect_continue = False
            self._expect_continue = self._body != 0
        if error is not None:
            self._close_connection()
            application = _refusal(*error)
        super().run(application)
        if not self._closed:
            # The client went away, or the handler gave up: the connection
            # is in an unknown state.
            self._close_connection()

    def setup_environ(self):
        super().setup_environ()
        if self._body == 'chunked':
            # The server ends the stream itself: read it to its end
            # (the key Werkzeug, gunicorn and mod_wsgi use for this).
            self.environ['wsgi.input_terminated'] = True

    def get_stdin(self):
        if self._input is None:
            hook = self._send_continue if self._expect_continue else None
            if self._body == 'chunked':
                self._input = _ChunkedBody(self.stdin, hook)
            else:
                self._input = _LengthBody(self.stdin, self._body, hook)
        return self._input

    def _send_continue(self):
        """Send the 100 Continue the client waits for; False if too late."""
        self._expect_continue = False
        if self.headers_sent:
            # The final response is on its way: an interim one can no
            # longer be sent, and the client may never send the body.
            self._close_connection()
            return False
        self._write(b'HTTP/1.1 100 Continue\r\n\r\n')
        self._flush()
        return True

    def _close_connection(self):
        rh = getattr(self, 'request_handler', None)
        if rh is not None:
            rh.close_connection = True

    def _can_keep_alive(self):
        rh = getattr(self, 'request_handler', None)
        if rh is None or rh.close_connection:
            return False
        if not isinstance(getattr(rh, 'server', None), _CONCURRENT):
            return False
        if self.environ.get('SERVER_PROTOCOL', '').upper() != 'HTTP/1.1':
            return False
        if self._expect_continue:
            return False    # the client may or may not send the body now
        body = self._input
        if body is not None and body.ended and not body.complete:
            return False    # the body was cut short or malformed
        if not self.body_allowed:
            return True
        return self.chunked or 'Content-Length' in self.headers

    def cleanup_headers(self):
        super().cleanup_headers()
        if not self._can_keep_alive():
            self._close_connection()
            if self.http_version != "1.0" and 'Connection' not in self.headers:
                self.headers['Connection'] = 'close'

    def abort_response(self):
        """Close the connection so the client sees the response is broken.

        A response delimited by Content-Length or chunked encoding shows it
        through an ordinary close; one delimited by the end of the
        connection needs a reset.
        """
        delimited = self.chunked or self.content_length is not None or not self.body_allowed
        super().abort_response()
        self._close_connection()
        if self._input is not None:
            self._input.ended = True    # stop reading a connection given up on
        if delimited:
            return
        sock = getattr(getattr(self, 'request_handler', None), 'connection', None)
        if isinstance(sock, socket.socket):
            try:
                self._flush()
            except OSError:
                pass
            _reset(sock)

    def handle_error(self):
        if isinstance(sys.exc_info()[1], ChunkedBodyError):
            self._close_connection()
            self.error_status = "400 Bad Request"
            self.error_body = b"Bad Request: malformed chunked request body"
        super().handle_error()

    def _body_finished(self):
        """Skip what the application left of the request body; True if the
        connection can carry another request."""
        body = self._input
        if body is None:
            return self._body == 0
        if self._expect_continue:
            return body.complete
        try:
            return body.drain(self.max_discard)
        except (OSError, ValueError):
            return False

    def close(self):
        self._closed = True
        try:
            status = self.status.split(' ', 1)[0] if self.status else '-'
            self.request_handler.log_request(status, self.bytes_sent)
            if not self.request_handler.close_connection and not self._body_finished():
                self._close_connection()
        finally:
            SimpleHandler.close(self)


class WSGIServer(HTTPServer):

    """BaseHTTPServer that implements the Python WSGI protocol"""

    application = None

    def server_bind(self):
        """Override server_bind to store the server name."""
        HTTPServer.server_bind(self)
        self.setup_environ()

    def setup_environ(self):
        # Set up base environment
        env = self.base_environ = {}
        env['SERVER_NAME'] = self.server_name
        env['GATEWAY_INTERFACE'] = 'CGI/1.1'
        env['SERVER_PORT'] = str(self.server_port)
        env['REMOTE_HOST'] = ''
        env['CONTENT_LENGTH'] = ''
        env['SCRIPT_NAME'] = ''

    def get_app(self):
        return self.application

    def set_app(self, application):
        self.application = application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """A WSGIServer that serves each connection in its own daemon thread."""

    daemon_threads = True


class WSGIRequestHandler(BaseHTTPRequestHandler):

    server_version = "WSGIServer/" + __version__

    # Seconds a persistent connection may stay idle between requests.
    keep_alive_timeout = 5.0

    _expect_continue = False

    def get_environ(self):
        env = self.server.base_environ.copy()
        env['SERVER_PROTOCOL'] = self.request_version
        env['SERVER_SOFTWARE'] = self.server_version
        env['REQUEST_METHOD'] = self.command
        if '?' in self.path:
            path, query = self.path.split('?', 1)
        else:
            path, query = self.path, ''

        env['PATH_INFO'] = urllib.parse.unquote(path, 'iso-8859-1')
        env['QUERY_STRING'] = query
        env['REMOTE_ADDR'] = self.client_address[0]

        # No invented default: see the module docstring.
        env['CONTENT_TYPE'] = self.headers.get('content-type', '')

        lengths = self.headers.get_all('content-length') or []
        if len(set(value.strip() for value in lengths)) > 1:
            # Disagreeing lengths: left for the handler to refuse.
            env['CONTENT_LENGTH'] = ', '.join(lengths)
        elif lengths and lengths[0]:
            env['CONTENT_LENGTH'] = lengths[0]

        for k, v in self.headers.items():
            if '_' in k:
                continue                    # X_Foo would pass for X-Foo
            k = k.replace('-', '_').upper()
            v = v.strip()
            if k in env or k == 'PROXY':
                continue                    # skip content length, type, etc.
            if 'HTTP_' + k in env:
                env['HTTP_' + k] += ',' + v     # comma-separate multiple headers
            else:
                env['HTTP_' + k] = v
        return env

    def get_stderr(self):
        return sys.stderr

    def handle_expect_100(self):
        """Put off the 100 Continue until the application reads the body."""
        self._expect_continue = True
        return True

    def handle(self):
        """Handle the requests of one connection (one, unless HTTP/1.1)"""
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and self._next_request_arrives():
            self.handle_one_request()

    def _next_request_arrives(self):
        peek = getattr(self.rfile, 'peek', None)
        if peek is None:
            return True
        try:
            self.connection.settimeout(self.keep_alive_timeout)
            try:
                return bool(peek(1))
            finally:
                self.connection.settimeout(self.timeout)
        except OSError:     # idle too long, or the client went away
            return False

    def handle_one_request(self):
        """Handle a single HTTP request"""
        self._expect_continue = False
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ''
            self.request_version = ''
            self.command = ''
            self.send_error(414)
            return

        if not self.parse_request():  # An error code has been sent, just exit
            return

        handler = ServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
            multithread=isinstance(self.server, ThreadingMixIn),
            multiprocess=isinstance(self.server, _FORKING),
        )
        handler.request_handler = self      # backpointer for logging
        if self.protocol_version >= "HTTP/1.1":
            handler.http_version = "1.1"
            handler.chunked_encoding = True
        handler.run(self.server.get_app())


def demo_app(environ, start_response):
    from io import StringIO
    stdout = StringIO()
    print("Hello world!", file=stdout)
    print(file=stdout)
    h = sorted(environ.items())
    for k, v in h:
        print(k, '=', repr(v), file=stdout)
    start_response("200 OK", [('Content-Type', 'text/plain; charset=utf-8')])
    return [stdout.getvalue().encode("utf-8")]


def make_server(
    host, port, app, server_class=WSGIServer, handler_class=WSGIRequestHandler,
    *, threaded=False, http11=False,
):
    """Create a new WSGI server listening on `host` and `port` for `app`

    ``threaded=True`` serves each connection in a daemon thread (a
    ``ThreadingMixIn`` subclass of *server_class*); ``http11=True`` speaks
    HTTP/1.1 (a subclass of *handler_class* with ``protocol_version =
    'HTTP/1.1'``): chunked responses, 100-continue and, with ``threaded``,
    persistent connections.
    """
    if threaded and not issubclass(server_class, ThreadingMixIn):
        if server_class is WSGIServer:
            server_class = ThreadingWSGIServer
        else:
            server_class = type('Threading' + server_class.__name__,
                                (ThreadingMixIn, server_class),
                                {'daemon_threads': True, '__module__': server_class.__module__})
    if http11 and handler_class.protocol_version < "HTTP/1.1":
        handler_class = type(handler_class.__name__, (handler_class,),
                             {'protocol_version': 'HTTP/1.1',
                              '__module__': handler_class.__module__})
    server = server_class((host, port), handler_class)
    server.set_app(app)
    return server


if __name__ == '__main__':
    with make_server('', 8000, demo_app) as httpd:
        sa = httpd.socket.getsockname()
        print("Serving HTTP on", sa[0], "port", sa[1], "...")
        import webbrowser
        webbrowser.open('http://localhost:8000/xyz?abc')
        httpd.handle_request()  # serve one request, then exit

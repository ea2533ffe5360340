"""A small HTTP server for WSGI applications (the ``wsgiref.simple_server`` API).

For development and tests on one's own machine, not for the open
internet: ``make_server(host, port, app).serve_forever()``.

By default the server answers as ``wsgiref.simple_server`` does, byte for
byte: one request per connection, HTTP/1.0 responses, one connection at a
time. It departs from that where wsgiref is unsafe or breaks PEP 3333:

* Request header fields with ``_`` in their names are dropped: ``X-User``
  and ``X_User`` both become ``HTTP_X_USER``, so the second could pass for
  a field a proxy set (Django's CVE-2015-0219; nginx and Apache drop them
  too). ``Proxy:`` is dropped as well: as ``HTTP_PROXY`` it is where HTTP
  clients look for their proxy (httpoxy, CVE-2016-5385).
* ``wsgi.input`` ends with the body: at Content-Length bytes, at once when
  there is none, so ``read()`` returns instead of waiting for the client to
  close. A ``Transfer-Encoding: chunked`` body is de-chunked as it is read
  (CONTENT_LENGTH is then empty and ``wsgi.input_terminated`` true); bad
  chunk framing is a 400. A request whose body has no knowable end (a
  Content-Length that is no number, two that differ, Content-Length with
  Transfer-Encoding, a coding other than chunked) is answered 400 (501 for
  an unknown coding) without calling the application.
* CONTENT_TYPE is the request's Content-Type, empty when it has none
  (RFC 3875, 4.1.3: there is no default); wsgiref says ``text/plain``.
* A response that breaks off closes the connection so that the client can
  tell. A body delimited by its length or by chunks shows it after an
  ordinary close; one delimited by the end of the connection would look
  complete, so that connection is reset instead (SO_LINGER 0).
* A HEAD response has no body.

Opt-in, ``make_server(..., threaded=True, http11=True)``:

* ``threaded``: a daemon thread per connection (``ThreadingWSGIServer``).
* ``http11``: the request handler speaks HTTP/1.1, as any
  ``WSGIRequestHandler`` subclass with ``protocol_version = 'HTTP/1.1'``
  does: a body of unknown length is chunked for HTTP/1.1 clients,
  ``Expect: 100-continue`` is answered when the application first reads
  ``wsgi.input`` (never if it answers without reading), and connections
  stay open between requests when the server serves connections side by
  side (threads, or ``socketserver.ForkingMixIn``; on a single thread one
  idle client would hold up all others, so there every answer says
  ``Connection: close``). A connection closes after ``Connection: close``,
  for HTTP/1.0 clients, after ``keep_alive_timeout`` idle seconds, and
  when the rest of the request body cannot be skipped safely (more than
  ``ServerHandler.max_discard`` bytes left unread, or a body the client was
  told to hold back and the application never asked for).
"""

import os
import socket
import socketserver
import struct
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from platform import python_implementation
from urllib.parse import unquote

from .handlers.base import SimpleHandler
from .handlers.streams import ChunkedBody, ChunkedBodyError, FixedLengthBody

__version__ = "0.2"
__all__ = ['WSGIServer', 'WSGIRequestHandler', 'demo_app', 'make_server']

server_version = "WSGIServer/" + __version__
sys_version = f"{python_implementation()}/{sys.version.split()[0]}"
software_version = f"{server_version} {sys_version}"

# The longest request line read; a longer one is answered 414.
_MAX_REQUEST_LINE = 65536

# Servers that run connections side by side, where a connection waiting
# for its next request holds up no one (forking is POSIX only).
_FORKING = (socketserver.ForkingMixIn,) if hasattr(socketserver, 'ForkingMixIn') else ()
_CONCURRENT = (socketserver.ThreadingMixIn,) + _FORKING


def _body_framing(environ):
    """``(body, refusal)``: how the request body ends, as a byte count or
    ``'chunked'``, and, when it cannot be known safely, the ``(status,
    reason)`` to answer instead of running the application (RFC 9112, 6)."""
    coding = environ.get('HTTP_TRANSFER_ENCODING')
    length = environ.get('CONTENT_LENGTH', '').strip()
    if coding is None:
        if not length:
            return 0, None
        if length.isdigit() and length.isascii():
            return int(length), None
        return 0, ('400 Bad Request', f'Invalid Content-Length: {length}')
    if environ.get('SERVER_PROTOCOL', '').upper() != 'HTTP/1.1':
        return 0, ('400 Bad Request', 'Transfer-Encoding in a request older than HTTP/1.1')
    if length:
        return 0, ('400 Bad Request', 'Both Content-Length and Transfer-Encoding given')
    codings = [part.strip().lower() for part in coding.split(',')]
    if codings == ['chunked']:
        return 'chunked', None
    if all(codings) and codings[-1] == 'chunked' and codings.count('chunked') == 1:
        return 0, ('501 Not Implemented', f'Unsupported transfer coding: {coding}')
    return 0, ('400 Bad Request', 'The last transfer coding must be chunked')


def _refusal(status, reason):
    """An application that answers *status* with *reason* as a text body."""
    body = (reason + '\n').encode('iso-8859-1', 'replace')

    def refuse(environ, start_response):
        start_response(status, [('Content-Type', 'text/plain'),
                                ('Content-Length', str(len(body)))])
        return [body]
    return refuse


def _reset(sock):
    """Close the connection *sock* with a TCP reset.

    The descriptor is taken from the socket object first: the request
    handler's files still refer to that object, and their later calls then
    fail instead of reaching whatever socket reuses the number.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    os.close(sock.detach())


class ServerHandler(SimpleHandler):
    """Runs the application for one request of a ``WSGIRequestHandler``
    (set as ``request_handler`` after construction), and decides whether
    the connection can carry another request."""

    server_software = software_version

    # Request body bytes left unread by the application that are read and
    # dropped to keep the connection open; with more left, it closes.
    max_discard = 65536

    _body = 0                   # the request body's length, or 'chunked'
    _input = None               # the wsgi.input given out
    _continue_owed = False      # the client waits for a 100 Continue
    _finished = False           # close() ran: the response is complete

    def run(self, application):
        self._input = None
        self._finished = False
        self._body, refusal = _body_framing(self.base_env)
        request = getattr(self, 'request_handler', None)
        if getattr(request, '_expect_continue', False):
            request._expect_continue = False
            self._continue_owed = self._body != 0
        if refusal is not None:
            self._close_connection()
            application = _refusal(*refusal)
        super().run(application)
        if not self._finished:
            # The response failed or the client left: the request goes to
            # the access log all the same, and the connection is done.
            self._close_connection()
            self._log_request()

    def setup_environ(self):
        super().setup_environ()
        if self._body == 'chunked':
            # The stream ends by itself; read it to its end (the key
            # Werkzeug, gunicorn and mod_wsgi read for this).
            self.environ['wsgi.input_terminated'] = True

    def get_stdin(self):
        if self._input is None:
            before_first_read = self._send_continue if self._continue_owed else None
            if self._body == 'chunked':
                self._input = ChunkedBody(self.stdin, before_first_read)
            else:
                self._input = FixedLengthBody(self.stdin, self._body, before_first_read)
        return self._input

    def _send_continue(self):
        self._continue_owed = False
        if self.headers_sent:
            # The final answer is on its way: too late for an interim one,
            # and the client may never send the body.
            self._close_connection()
            return False
        self._write(b'HTTP/1.1 100 Continue\r\n\r\n')
        self._flush()
        return True

    def _close_connection(self):
        request = getattr(self, 'request_handler', None)
        if request is not None:
            request.close_connection = True

    def _connection_reusable(self):
        request = getattr(self, 'request_handler', None)
        body = self._input
        return (request is not None and not request.close_connection
                and isinstance(request.server, _CONCURRENT)
                and self.environ.get('SERVER_PROTOCOL', '').upper() == 'HTTP/1.1'
                and not self._continue_owed
                and not (body is not None and body.ended and not body.complete)
                and self.body_is_delimited())

    def cleanup_headers(self):
        super().cleanup_headers()
        if not self._connection_reusable():
            self._close_connection()
            if self.http_version != '1.0' and 'Connection' not in self.headers:
                self.headers['Connection'] = 'close'

    def abort_response(self):
        """Close the connection so the client sees the response broke off:
        an ordinary close where the body's end is delimited, a reset where
        the end of the connection is the end of the body."""
        delimited = self.body_is_delimited()
        super().abort_response()
        self._close_connection()
        if self._input is not None:
            self._input.ended = True        # read no more from a connection given up
        connection = getattr(getattr(self, 'request_handler', None), 'connection', None)
        if not delimited and isinstance(connection, socket.socket):
            try:
                self._flush()
            except OSError:
                pass
            _reset(connection)

    def handle_error(self):
        if isinstance(sys.exc_info()[1], ChunkedBodyError):
            self._close_connection()
            self.error_status = "400 Bad Request"
            self.error_body = b"Bad Request: malformed chunked request body"
        super().handle_error()

    def _body_read(self):
        """Skip what the application left of the request body; whether the
        connection is now at the start of the next request."""
        body = self._input
        if body is None:
            return self._body == 0
        if self._continue_owed:
            return body.complete
        try:
            return body.drain(self.max_discard)
        except (OSError, ValueError):
            return False

    def _log_request(self):
        request = getattr(self, 'request_handler', None)
        if request is not None:
            code = self.status.split(' ', 1)[0] if self.status else '-'
            request.log_request(code, self.bytes_sent)

    def close(self):
        self._finished = True
        try:
            self._log_request()
            request = getattr(self, 'request_handler', None)
            if request is not None and not request.close_connection and not self._body_read():
                self._close_connection()
        finally:
            SimpleHandler.close(self)


class WSGIServer(HTTPServer):
    """An ``http.server.HTTPServer`` that serves one WSGI application."""

    application = None

    def server_bind(self):
        HTTPServer.server_bind(self)
        self.setup_environ()

    def setup_environ(self):
        """The CGI variables every request of this server starts with."""
        self.base_environ = {
            'SERVER_NAME': self.server_name,
            'GATEWAY_INTERFACE': 'CGI/1.1',
            'SERVER_PORT': str(self.server_port),
            'REMOTE_HOST': '',
            'CONTENT_LENGTH': '',
            'SCRIPT_NAME': '',
        }

    def get_app(self):
        return self.application

    def set_app(self, application):
        self.application = application


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A ``WSGIServer`` that serves each connection in a daemon thread."""

    daemon_threads = True


class WSGIRequestHandler(BaseHTTPRequestHandler):
    """Reads HTTP requests from one connection and has ``ServerHandler``
    answer each."""

    server_version = server_version

    # Seconds a persistent connection may wait for its next request.
    keep_alive_timeout = 5.0

    _expect_continue = False

    def get_environ(self):
        """The request's CGI variables (PEP 3333, RFC 3875) over the
        server's ``base_environ``."""
        environ = self.server.base_environ.copy()
        path, _, query = self.path.partition('?')
        environ.update(SERVER_PROTOCOL=self.request_version, SERVER_SOFTWARE=self.server_version,
                       REQUEST_METHOD=self.command, PATH_INFO=unquote(path, 'iso-8859-1'),
                       QUERY_STRING=query, REMOTE_ADDR=self.client_address[0],
                       CONTENT_TYPE=self.headers.get('Content-Type', ''))
        host = self.address_string()
        if host != self.client_address[0]:
            environ['REMOTE_HOST'] = host
        lengths = self.headers.get_all('Content-Length') or []
        if len({value.strip() for value in lengths}) > 1:
            environ['CONTENT_LENGTH'] = ', '.join(lengths)     # refused by ServerHandler
        elif lengths and lengths[0]:
            environ['CONTENT_LENGTH'] = lengths[0]
        for field, value in self.headers.items():
            if '_' in field:
                continue        # X_User must not pass for X-User
            name = field.replace('-', '_').upper()
            if name in environ or name == 'PROXY':
                continue        # Content-Type and -Length are there already; httpoxy
            key = 'HTTP_' + name
            value = value.strip()
            environ[key] = environ[key] + ',' + value if key in environ else value
        return environ

    def get_stderr(self):
        return sys.stderr

    def handle_expect_100(self):
        # The 100 Continue waits until the application reads the body: one
        # that answers without reading should not have the client send it.
        self._expect_continue = True
        return True

    def handle(self):
        """Serve the connection: one request, more while it stays open."""
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
        except OSError:         # idle too long, or the client left
            return False

    def handle_one_request(self):
        """Read one request and run the application for it."""
        self._expect_continue = False
        self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > _MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ''
            self.send_error(414)
            return
        if not self.parse_request():
            return              # parse_request() has answered
        handler = ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                                multithread=isinstance(self.server, socketserver.ThreadingMixIn),
                                multiprocess=isinstance(self.server, _FORKING))
        handler.request_handler = self
        if self.protocol_version >= 'HTTP/1.1':
            handler.http_version = '1.1'
            handler.chunked_encoding = True
        handler.run(self.server.get_app())


def demo_app(environ, start_response):
    """A page that says hello and lists the environ it was given."""
    lines = ['Hello world!', '']
    lines += [f'{key} = {value!r}' for key, value in sorted(environ.items())]
    start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8')])
    return [('\n'.join(lines) + '\n').encode('utf-8')]


def make_server(host, port, app, server_class=WSGIServer, handler_class=WSGIRequestHandler,
                *, threaded=False, http11=False):
    """A *server_class* listening on *host* and *port* that serves *app*
    with *handler_class*.

    ``threaded=True`` serves each connection in a daemon thread (a
    ``ThreadingMixIn`` subclass of *server_class*); ``http11=True`` speaks
    HTTP/1.1 (a subclass of *handler_class*): chunked responses,
    100-continue and, with ``threaded``, persistent connections.
    """
    if threaded and not issubclass(server_class, socketserver.ThreadingMixIn):
        server_class = ThreadingWSGIServer if server_class is WSGIServer else type(
            'Threading' + server_class.__name__, (socketserver.ThreadingMixIn, server_class),
            {'daemon_threads': True, '__module__': server_class.__module__})
    if http11 and handler_class.protocol_version < 'HTTP/1.1':
        handler_class = type(handler_class.__name__, (handler_class,),
                             {'protocol_version': 'HTTP/1.1',
                              '__module__': handler_class.__module__})
    server = server_class((host, port), handler_class)
    server.set_app(app)
    return server


if __name__ == '__main__':
    # python -m gateway.simple_server: the demo page, for one request.
    demo_server = make_server('', 8000, demo_app)
    print(f"Serving the demo page on port {demo_server.server_port}; one request, then exit.")
    try:
        demo_server.handle_request()
    finally:
        demo_server.server_close()

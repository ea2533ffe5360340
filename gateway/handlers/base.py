"""``BaseHandler`` and ``SimpleHandler``: one WSGI application run for one request.

``run(app)`` builds the environ, calls the application and sends its answer
through hooks a transport fills in (``_write``, ``_flush``, ``get_stdin``,
``get_stderr``, ``add_cgi_vars``) and hooks a server may change
(``cleanup_headers``, ``send_preamble``, ``error_output``, ...). The bytes on
the wire are wsgiref's except where wsgiref breaks PEP 3333 or HTTP (the
README lists those places). Headers are checked by ``gateway.headers``; how
the body is framed is decided by the "body framing" methods below, and
nowhere else.
"""

import sys
import time

from ..headers import Headers, check_headers, check_status

__all__ = ['BaseHandler', 'SimpleHandler', 'FileWrapper', 'format_date_time', 'guess_scheme']

_WEEKDAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')

# Raised by a write to a client that has gone: the request ends quietly.
_CLIENT_GONE = (ConnectionAbortedError, BrokenPipeError, ConnectionResetError)

# What BaseHandler.close() forgets of a request.
_REQUEST_STATE = ('environ', 'status', 'result', 'headers', 'headers_sent', 'bytes_sent',
                  'content_length', 'body_allowed', 'chunked', 'body_written', '_checked_fields',
                  '_closed_iterable')


def format_date_time(timestamp):
    """*timestamp* (seconds since the epoch) as an HTTP date, e.g.
    ``Thu, 01 Jan 1970 00:00:00 GMT`` (RFC 9110, 5.6.7)."""
    utc = time.gmtime(timestamp)
    return (f'{_WEEKDAYS[utc.tm_wday]}, {utc.tm_mday:02d} {_MONTHS[utc.tm_mon - 1]}'
            f' {utc.tm_year:4d} {utc.tm_hour:02d}:{utc.tm_min:02d}:{utc.tm_sec:02d} GMT')


class FileWrapper:
    """``wsgi.file_wrapper``: a file read *blksize* bytes at a time, as a
    response iterable; ``close()`` is the file's. A handler that gets one
    back may send the file its own way (``sendfile()``)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, 'close', None)
        if close is not None:
            self.close = close

    def __iter__(self):
        return self

    def __next__(self):
        block = self.filelike.read(self.blksize)
        if not block:
            raise StopIteration
        return block


class _ProcessEnviron:
    # BaseHandler.os_environ until first used, then read_environ() in its
    # place. CGI handlers have their own (empty) os_environ, so a CGI
    # process reads its environment once, not twice.

    def __get__(self, handler, owner):
        from . import read_environ     # the CGI rules, in the package
        BaseHandler.os_environ = environ = read_environ()
        return environ


def guess_scheme(environ):
    """``'https'`` if the web server's HTTPS variable says the request came
    over TLS (``on``, ``yes`` or ``1``), else ``'http'``."""
    return 'https' if environ.get('HTTPS') in ('on', 'yes', '1') else 'http'


def describe_request(environ):
    """The request, as every log line names it: ``GET /path?query`` (the
    REQUEST_URI, else SCRIPT_NAME and PATH_INFO), or 'a request'."""
    if not environ:
        return 'a request'
    return '%s %s' % (environ.get('REQUEST_METHOD') or '-', environ.get('REQUEST_URI')
                      or environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', ''))


def _carries_no_content(status):
    # RFC 9110, 6.4.1: a 1xx, 204 or 304 response ends with its headers, so
    # no Content-Length computed from a body may describe it (gh-62299).
    return status[0] == '1' or status[:3] in ('204', '304')


class BaseHandler:
    """Runs a WSGI application for one request; subclasses give the transport."""

    wsgi_version = (1, 0)
    wsgi_multithread = True
    wsgi_multiprocess = True
    wsgi_run_once = False

    origin_server = True        # talking HTTP to the client, not CGI to a web server
    # Whether nothing may follow the headers of a HEAD, 1xx, 204 or 304
    # answer. None: where this handler speaks HTTP (origin_server); a CGI
    # program may leave the body to its web server, which strips it.
    omits_forbidden_body = None
    http_version = "1.0"        # of the status line an origin server sends
    server_software = None      # SERVER_SOFTWARE and the Server field, for an origin server
    chunked_encoding = False    # may an origin server chunk a body of unknown length

    # Under every request's variables: the process's environment, read the
    # first time a handler asks (see _ProcessEnviron); shared, so never to
    # be changed in place.
    os_environ = _ProcessEnviron()

    wsgi_file_wrapper = FileWrapper     # None: no wsgi.file_wrapper
    headers_class = Headers

    traceback_limit = None
    error_status = "500 Internal Server Error"
    error_headers = [('Content-Type', 'text/plain')]
    error_body = b"A server error occurred.  Please contact the administrator."

    # The request in progress lives in instance attributes over these
    # class defaults; close() removes them (_REQUEST_STATE).
    environ = status = result = headers = None
    headers_sent = False
    bytes_sent = 0              # body bytes the application has given so far
    content_length = None       # what the Content-Length field promises, as an int
    body_allowed = True         # false for a HEAD, 1xx, 204 or 304 answer (omits_forbidden_body)
    chunked = False             # the body goes out in chunks
    body_written = 0            # body bytes handed to _write()
    _checked_fields = None      # a copy of the list start_response() checked
    _closed_iterable = None

    def run(self, application):
        """Serve the request with *application*."""
        # close() runs only once the response is complete: a server that
        # sends the rest later returns from here with the iterable still
        # open, and a handler that failed keeps its state to be looked at.
        try:
            self.setup_environ()
            self.result = application(self.environ, self.start_response)
            self.finish_response()
        except _CLIENT_GONE:
            return      # no one to answer; finish_response() closed the iterable
        except BaseException:       # whatever the application does ends in a 500
            try:
                self.handle_error()
            except BaseException:
                self.close()
                raise

    def setup_environ(self):
        """``self.environ``: ``os_environ``, ``add_cgi_vars()``, ``wsgi.*``."""
        environ = self.environ = self.os_environ.copy()
        self.add_cgi_vars()
        environ.update({
            'wsgi.input': self.get_stdin(),
            'wsgi.errors': self.get_stderr(),
            'wsgi.version': self.wsgi_version,
            'wsgi.run_once': self.wsgi_run_once,
            'wsgi.url_scheme': self.get_scheme(),
            'wsgi.multithread': self.wsgi_multithread,
            'wsgi.multiprocess': self.wsgi_multiprocess,
        })
        file_wrapper = self.wsgi_file_wrapper
        if file_wrapper is not None:
            environ['wsgi.file_wrapper'] = file_wrapper
        software = self.server_software
        if software and self.origin_server:
            environ.setdefault('SERVER_SOFTWARE', software)

    def get_scheme(self):
        """``wsgi.url_scheme``, from the request's HTTPS variable."""
        return guess_scheme(self.environ)

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333's ``start_response``: checked status and headers, kept
        until the first body byte."""
        if not exc_info:
            if self.headers is not None:
                raise AssertionError("Headers already set: start_response() was called again"
                                     " without exc_info")
        elif self.headers_sent:
            # Too late for another status: the application's own error ends
            # the request (PEP 3333). The traceback is dropped here so that
            # it makes no reference cycle with this frame.
            error, exc_info = exc_info[1], None
            raise error.with_traceback(error.__traceback__)
        check_status(status)
        check_headers(headers, cgi=not self.origin_server)
        self.status = status
        fields_class = self.headers_class
        if fields_class is Headers:
            self._checked_fields = headers[:]
            self.headers = Headers._trusted(headers)
        else:
            self.headers = fields_class(headers)
        return self.write

    def write(self, data):
        """PEP 3333's ``write``: *data*, after the headers if they are still here."""
        if type(data) is not bytes:
            raise AssertionError(
                f"write() argument must be a bytes instance, not {type(data).__name__}")
        if not self.status:
            raise AssertionError("write() called before start_response()")
        if self.headers_sent:
            self.bytes_sent += len(data)
        else:
            self.bytes_sent = len(data)     # what a one-block body's Content-Length says
            self.send_headers()
        if data and self.body_allowed:
            self._write_body(data)
        self._flush()

    def finish_response(self):
        """Send the iterable, then ``close()``. (An asynchronous server sends
        it as the client takes it instead, and calls ``close()`` at the end.)"""
        result = self.result
        try:
            if isinstance(result, (bytes, bytearray, str)) and result:
                # Iterated, bytes give ints and str characters: an error far
                # from its cause (gh-110001).
                raise AssertionError(f"The application returned {type(result).__name__} instead"
                                     " of an iterable of bytes; return [body] instead")
            sent_as_file = self.result_is_file() and self.sendfile()
            if not sent_as_file:
                headers_sent = self.headers_sent
                for data in result:
                    # Empty blocks before the first real one send nothing
                    # (PEP 3333), so an error after them can still be a 500.
                    if data or headers_sent or type(data) is not bytes:
                        self.write(data)
                        headers_sent = self.headers_sent
                self.finish_content()
        except BaseException:
            self._close_iterable()      # PEP 3333: on error too
            raise
        self.close()

    def finish_content(self):
        """Send the headers if no body block did, then end the body."""
        if not self.headers_sent:
            # A length the application declared stays (a HEAD answer needs
            # the GET's); else an empty body says so.
            if not _carries_no_content(self.status):
                self.headers.setdefault('Content-Length', '0')
            self.send_headers()
        self._end_body()

    def send_headers(self):
        """Send the status and headers, ``cleanup_headers()`` done."""
        headers = self.headers
        if type(headers) is Headers and headers._headers != self._checked_fields:
            # wsgiref sends the application's list as it is now: fields
            # added since start_response() must pass the same checks.
            check_headers(headers._headers, cgi=not self.origin_server)
        self._frame_body()
        self.cleanup_headers()
        self.content_length = self._declared_length()
        self.headers_sent = True
        if self.origin_server and not self.client_is_modern():
            return      # HTTP/0.9: the body is the whole answer
        self.send_preamble()
        self._write(bytes(self.headers))

    def cleanup_headers(self):
        """Last changes to the headers: a Content-Length, when it is known."""
        headers = self.headers
        if type(headers) is Headers:
            for name, _ in headers._headers:
                if name.lower() == 'content-length':
                    return
        elif 'Content-Length' in headers:
            return
        self.set_content_length()

    def send_preamble(self):
        """The status line, Date and Server (origin server), or ``Status:`` (CGI)."""
        if not self.origin_server:
            self._write(f'Status: {self.status}\r\n'.encode('iso-8859-1'))
        elif self.client_is_modern():
            fields = self.headers
            preamble = f'HTTP/{self.http_version} {self.status}\r\n'
            if 'Date' not in fields:
                preamble += f'Date: {format_date_time(time.time())}\r\n'
            software = self.server_software
            if software and 'Server' not in fields:
                preamble += f'Server: {software}\r\n'
            self._write(preamble.encode('iso-8859-1'))

    def client_is_modern(self):
        """False for an HTTP/0.9 request, whose answer is the body alone."""
        return self.environ.get('SERVER_PROTOCOL', '').upper() != 'HTTP/0.9'

    # -- body framing ---------------------------------------------------------
    # Everything that decides how many body bytes go out, and how the client
    # learns where they end.

    def set_content_length(self):
        """Content-Length for a one-block iterable, else chunks if allowed."""
        if _carries_no_content(self.status):
            return
        try:
            blocks = len(self.result)
        except (TypeError, AttributeError, NotImplementedError):
            blocks = None
        if blocks == 1:
            # The one block is the first write's, whose length is bytes_sent.
            self.headers['Content-Length'] = '%d' % self.bytes_sent
        elif (self.chunked_encoding and self.origin_server and self.http_version == '1.1'
              and self.environ.get('SERVER_PROTOCOL', '').upper() == 'HTTP/1.1'):
            self.headers['Transfer-Encoding'] = 'chunked'
            self.chunked = self.body_allowed

    def _frame_body(self):
        omits = self.omits_forbidden_body
        if self.origin_server if omits is None else omits:
            # RFC 9110, 9.3.2 and 6.4.1: nothing follows the headers of a
            # HEAD, 1xx, 204 or 304 answer; a CGI web server knows that.
            self.body_allowed = (self.environ.get('REQUEST_METHOD', '').upper() != 'HEAD'
                                 and not _carries_no_content(self.status))

    def _declared_length(self):
        headers = self.headers
        if type(headers) is Headers:
            declared = [value for name, value in headers._headers
                        if name.lower() == 'content-length']
        else:
            declared = headers.get_all('Content-Length')
        if not declared:
            return None
        length = declared[0].strip()
        if (len(declared) > 1 and any(value.strip() != length for value in declared)) \
                or not (length.isdigit() and length.isascii()):
            raise AssertionError(
                f"Invalid Content-Length header(s) from the application: {declared!r}")
        return int(length)

    def _write_body(self, data):
        # PEP 3333: never more than the Content-Length promised; the excess
        # would be read as the start of the next response.
        promised = self.content_length
        if promised is not None and self.body_written + len(data) > promised:
            room = promised - self.body_written
            self.log_message(f"{self._request_line()}: the application sent more than its"
                             f" Content-Length of {promised}; {len(data) - room} bytes dropped")
            data = data[:room]
            if not data:
                return
        self.body_written += len(data)
        if self.chunked:
            data = b'%x\r\n%s\r\n' % (len(data), data)
        self._write(data)

    def _end_body(self):
        if self.chunked:
            self._write(b'0\r\n\r\n')
            self._flush()
        elif (self.content_length is not None and self.body_allowed
              and self.bytes_sent < self.content_length):
            self.log_message(f"{self._request_line()}: response truncated: Content-Length"
                             f" {self.content_length} declared, {self.bytes_sent} bytes sent")
            self.abort_response()

    def body_is_delimited(self):
        """Whether the body's end shows without a close: no body, chunks, a length."""
        return not self.body_allowed or self.chunked or 'Content-Length' in self.headers

    def body_is_complete(self):
        """Whether no more body bytes may go out."""
        return not self.body_allowed or (self.content_length is not None
                                         and self.body_written >= self.content_length)

    def abort_response(self):
        """The response on the wire is incomplete (an error after the headers,
        a body short of its Content-Length): make it show. A handler that owns
        the connection closes it; here a chunked body loses its last chunk."""
        self.chunked = False

    # -- ending ---------------------------------------------------------------

    def close(self):
        """The response is complete: close the iterable and forget the request."""
        try:
            self._close_iterable()
        finally:
            state = vars(self)
            for name in _REQUEST_STATE:
                state.pop(name, None)

    def _close_iterable(self):
        # PEP 3333: close() once, on success, error or disconnect. The
        # response is decided by then, so a close() that fails is logged
        # rather than answered with a second response.
        result = self.result
        if result is None or result is self._closed_iterable:
            return
        self._closed_iterable = result
        close = getattr(result, 'close', None)
        if close is not None:
            try:
                close()
            except Exception as error:
                self.log_exception((type(error), error, error.__traceback__))

    def result_is_file(self):
        """Whether the iterable is a ``wsgi_file_wrapper``, for ``sendfile()``."""
        file_wrapper = self.wsgi_file_wrapper
        return file_wrapper is not None and isinstance(self.result, file_wrapper)

    def sendfile(self):
        """Send a ``wsgi_file_wrapper`` result a faster way and return True, or
        False to iterate it. An override sends the headers first."""
        return False

    # -- errors ---------------------------------------------------------------

    def handle_error(self):
        """Log the error; answer ``error_output`` or, too late, abort."""
        self.log_exception(sys.exc_info())
        if not self.headers_sent:
            error_page = self.error_output(self.environ, self.start_response)
            self.result = error_page
            self.finish_response()
        else:
            self.log_message(f"{self._request_line()}: error after the response headers were"
                             " sent; response aborted")
            self.abort_response()

    def error_output(self, environ, start_response):
        """The answer to a failed request: ``error_status``, ``error_headers``,
        ``error_body``; the cause goes to the log, never to the client."""
        start_response(self.error_status, self.error_headers[:], sys.exc_info())
        return [self.error_body]

    def log_exception(self, exc_info):
        """Write the traceback of *exc_info* to the server log (``get_stderr()``)."""
        from traceback import print_exception
        errors = self.get_stderr()
        try:
            print_exception(exc_info[0], exc_info[1], exc_info[2], self.traceback_limit,
                            errors)
            errors.flush()
        finally:
            exc_info = None

    def log_message(self, text):
        """Write one line about this request to the server log."""
        errors = self.get_stderr()
        errors.write(text + '\n')
        errors.flush()

    def _request_line(self):
        return describe_request(self.environ)

    # -- what a transport must provide ------------------------------------------

    def _write(self, data):
        """Send (or buffer) the bytes *data*."""
        raise NotImplementedError

    def _flush(self):
        """Send whatever ``_write()`` buffered (nothing to do if it buffers nothing)."""
        raise NotImplementedError

    def get_stdin(self):
        """The request body stream: ``wsgi.input``."""
        raise NotImplementedError

    def get_stderr(self):
        """The server log stream: ``wsgi.errors``."""
        raise NotImplementedError

    def add_cgi_vars(self):
        """Put the request's CGI variables into ``self.environ``."""
        raise NotImplementedError


class SimpleHandler(BaseHandler):
    """An HTTP origin server over the streams and CGI variables given:
    ``SimpleHandler(stdin, stdout, stderr, environ).run(app)``."""

    def __init__(self, stdin, stdout, stderr, environ, multithread=True, multiprocess=False):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.base_env = environ
        self.wsgi_multithread, self.wsgi_multiprocess = multithread, multiprocess

    def get_stdin(self):
        return self.stdin

    def get_stderr(self):
        return self.stderr

    def add_cgi_vars(self):
        self.environ.update(self.base_env)

    def _write(self, data):
        sent = self.stdout.write(data)
        if sent is None or sent == len(data):
            return
        # A raw stream may take part of the data; send the rest after it.
        from warnings import warn
        warn("SimpleHandler.stdout.write() should not do partial writes", DeprecationWarning)
        while sent is not None and sent < len(data):
            data = data[sent:]
            sent = self.stdout.write(data)

    def _flush(self):
        self.stdout.flush()

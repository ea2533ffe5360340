"""The WSGI side of a response: BaseHandler and SimpleHandler.

``BaseHandler.run`` is a template method: it builds the environ, calls the
application and sends what it returns through small hooks (``_write``,
``_flush``, ``get_stdin``, ``get_stderr``, ``add_cgi_vars``, ...) that
subclasses fill in for one transport. The defaults reproduce
``wsgiref.handlers`` byte for byte, except where wsgiref breaks PEP 3333 or
HTTP; each such place says which rule it enforces.
"""

import sys
import time

from ..headers import Headers, check_header_name, check_header_value
from ..util import FileWrapper, _hoppish, guess_scheme
from .environ import CGIEnvironmentError, read_environ

__all__ = ['BaseHandler', 'SimpleHandler', 'format_date_time']

# Weekday and month names for HTTP date/time formatting; always English.
_weekdayname = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_monthname = [None,  # 1-based month numbers
              "Jan", "Feb", "Mar", "Apr", "May", "Jun",
              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def format_date_time(timestamp):
    year, month, day, hh, mm, ss, wd, y, z = time.gmtime(timestamp)
    return "%s, %02d %3s %4d %02d:%02d:%02d GMT" % (
        _weekdayname[wd], day, _monthname[month], year, hh, mm, ss
    )


def _checked_headers(headers):
    # A Headers object around a list that start_response() has validated
    # item by item, built without Headers.__init__ validating it again.
    result = Headers.__new__(Headers)
    result._headers = headers
    return result


def _check_latin1(text, what):
    # PEP 3333: status and headers are native strings of ISO-8859-1
    # characters. Found only when the headers are encoded, a character
    # beyond U+00FF would leave half a response on the wire.
    try:
        text.encode('iso-8859-1')
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} holds a character outside ISO-8859-1 (PEP 3333):"
                         " encode it first, e.g. as RFC 8187 or %-encoding") from None


def _check_header_items(headers, to_a_web_server=False):
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise AssertionError(f"Headers must be a list of (name, value) tuples (got {item!r})")
        name, value = item
        # This runs for every header of every response: when the fast test
        # shows a name or value valid (a str, ASCII and printable: no control
        # character, so no CR or LF; and for a name no space or colon either)
        # the full check is skipped; anything else gets the full check and
        # its exact error.
        if not (type(name) is str and name.isascii() and name.isprintable() and name
                and ' ' not in name and ':' not in name):
            _check_latin1(check_header_name(name), "Header name")
        if not (type(value) is str and value.isascii() and value.isprintable()):
            _check_latin1(check_header_value(value), "Header value")
        lowered = name.lower()
        if _hoppish(lowered):
            raise AssertionError(f"Hop-by-hop header, '{name}: {value}', not allowed")
        if to_a_web_server and lowered == 'status':
            # RFC 3875 6.3.3: a web server takes a CGI response's Status
            # header as the status line; an application could override its
            # own status with it, or Apache's handling of a redirect.
            raise ValueError(f"Header 'Status: {value}' not allowed: the status is the first "
                             "argument of start_response()")


# RFC 9110 6.4.1: these responses never carry content, so a Content-Length
# computed from the body would be wrong (CPython gh-62299).
def _status_has_no_content(status):
    return status[0] == '1' or status[:3] in ('204', '304')


class BaseHandler:
    """Manage the invocation of a WSGI application"""

    # Configuration parameters; can override per-subclass or per-instance
    wsgi_version = (1, 0)
    wsgi_multithread = True
    wsgi_multiprocess = True
    wsgi_run_once = False

    origin_server = True    # We are transmitting direct to client
    http_version = "1.0"    # Version that should be used for response
    server_software = None  # String name of server software, if any

    # Send a response whose length is unknown in chunks (origin server,
    # HTTP/1.1 on both sides). Off by default, as wsgiref never chunks.
    chunked_encoding = False

    # os_environ supplies configuration from the OS environment: by default
    # a copy of 'os.environ' as of import time, but you can override this in
    # e.g. your __init__ method.
    os_environ = read_environ()

    # Collaborator classes
    wsgi_file_wrapper = FileWrapper     # set to None to disable
    headers_class = Headers             # must be a Headers-like class

    # Error handling (also per-subclass or per-instance)
    traceback_limit = None  # Print entire traceback to self.get_stderr()
    error_status = "500 Internal Server Error"
    error_headers = [('Content-Type', 'text/plain')]
    error_body = b"A server error occurred.  Please contact the administrator."

    # State variables (don't mess with these)
    status = result = None
    headers_sent = False
    headers = None
    _headers_as_checked = None   # a copy of the list start_response() checked
    bytes_sent = 0          # body bytes the application produced
    content_length = None   # the Content-Length the headers promised, as int
    body_allowed = True     # False for HEAD, 1xx, 204 and 304 (origin server)
    chunked = False         # True while sending Transfer-Encoding: chunked
    _body_written = 0       # body bytes actually passed to _write()

    def run(self, application):
        """Invoke the application"""
        # Do not move the close(): asynchronous servers must be able to
        # return from run() with output still to iterate over, so only the
        # double-error branch here closes.
        try:
            self.setup_environ()
            self.result = application(self.environ, self.start_response)
            self.finish_response()
        except (ConnectionAbortedError, BrokenPipeError, ConnectionResetError):
            # The client went away; finish_response() closed the iterable,
            # this resets the handler for whatever the server does next.
            self.close()
            return
        except:  # noqa: E722 -- anything the application raises becomes a 500
            try:
                self.handle_error()
            except:  # noqa: E722
                # An error while handling an error: give up, let the server decide.
                self.close()
                raise

    def setup_environ(self):
        """Set up the environment for one request"""
        env = self.environ = self.os_environ.copy()
        self.add_cgi_vars()

        env['wsgi.input'] = self.get_stdin()
        env['wsgi.errors'] = self.get_stderr()
        env['wsgi.version'] = self.wsgi_version
        env['wsgi.run_once'] = self.wsgi_run_once
        env['wsgi.url_scheme'] = self.get_scheme()
        env['wsgi.multithread'] = self.wsgi_multithread
        env['wsgi.multiprocess'] = self.wsgi_multiprocess

        if self.wsgi_file_wrapper is not None:
            env['wsgi.file_wrapper'] = self.wsgi_file_wrapper

        if self.origin_server and self.server_software:
            env.setdefault('SERVER_SOFTWARE', self.server_software)

    def finish_response(self):
        """Send any iterable data, then close self and the iterable

        Subclasses intended for use in asynchronous servers will
        want to redefine this method, such that it sets up callbacks
        in the event loop to iterate over the data, and to call
        'self.close()' once the response is finished.
        """
        try:
            result = self.result
            if isinstance(result, (bytes, bytearray, str)) and result:
                # Iterating bytes yields ints and str yields characters: both
                # end in a baffling error far from the cause (CPython gh-110001).
                raise AssertionError(
                    "The application returned %s instead of an iterable of bytes;"
                    " return [body] instead" % type(result).__name__)
            if not self.result_is_file() or not self.sendfile():
                for data in result:
                    # PEP 3333: headers wait for the first non-empty block, so
                    # an error after an empty one can still become a 500.
                    if data or self.headers_sent:
                        self.write(data)
                self.finish_content()
        except:  # noqa: E722 -- PEP 3333: close() is called on error too
            self._close_result()
            raise
        else:
            # Only on success: close() resets status, headers and environ,
            # which handle_error() still needs (bpo-29183).
            self.close()

    def get_scheme(self):
        """Return the URL scheme being used"""
        return guess_scheme(self.environ)

    def set_content_length(self):
        """Compute Content-Length or switch to chunked encoding if possible"""
        if _status_has_no_content(self.status):
            return
        try:
            blocks = len(self.result)
        except (TypeError, AttributeError, NotImplementedError):
            pass
        else:
            if blocks == 1:
                self.headers['Content-Length'] = str(self.bytes_sent)
                return
        if (self.chunked_encoding and self.origin_server and self.http_version == "1.1"
                and self.environ.get('SERVER_PROTOCOL', '').upper() == 'HTTP/1.1'):
            self.headers['Transfer-Encoding'] = 'chunked'
            self.chunked = self.body_allowed

    def cleanup_headers(self):
        """Make any necessary header changes or defaults

        Subclasses can extend this to add other defaults.
        """
        headers = self.headers
        if type(headers) is Headers:
            # The `in` test without its three method calls: this runs for
            # every response.
            for name, _ in headers._headers:
                if name.lower() == 'content-length':
                    return
            self.set_content_length()
        elif 'Content-Length' not in headers:
            self.set_content_length()

    def start_response(self, status, headers, exc_info=None):
        """'start_response()' callable as specified by PEP 3333"""
        if exc_info:
            try:
                if self.headers_sent:
                    # PEP 3333: too late to change the response; re-raise the
                    # application's own error so it ends the request.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None        # avoid dangling circular ref
        elif self.headers is not None:
            raise AssertionError("Headers already set!")

        # These checks are not asserts: with python -O a CR or LF would
        # otherwise reach the wire and split the response.
        status = self._convert_string_type(status, "Status")
        self._validate_status(status)
        if type(headers) is not list:
            raise AssertionError(f"Headers must be a list of (name, value) tuples (got {headers!r})")
        _check_header_items(headers, not self.origin_server)

        self.status = status
        self._headers_as_checked = headers[:]
        if self.headers_class is Headers:
            # Every header was checked just above; Headers() would check
            # each one again.
            self.headers = _checked_headers(headers)
        else:
            self.headers = self.headers_class(headers)
        return self.write

    def _validate_status(self, status):
        if len(status) < 4:
            raise AssertionError("Status must be at least 4 characters")
        if not status[:3].isdigit():
            raise AssertionError("Status message must begin w/3-digit code")
        if status[3] != " ":
            raise AssertionError("Status message must have a space after code")
        _check_latin1(check_header_value(status, "Status"), "Status")

    def _convert_string_type(self, value, title):
        """Convert/check value type."""
        if type(value) is str:
            return value
        raise AssertionError(
            "{0} must be of type str (got {1})".format(title, repr(value))
        )

    def send_preamble(self):
        """Transmit version/status/date/server, via self._write()"""
        if self.origin_server:
            if self.client_is_modern():
                self._write(('HTTP/%s %s\r\n' % (self.http_version, self.status)).encode('iso-8859-1'))
                if 'Date' not in self.headers:
                    self._write(
                        ('Date: %s\r\n' % format_date_time(time.time())).encode('iso-8859-1')
                    )
                if self.server_software and 'Server' not in self.headers:
                    self._write(('Server: %s\r\n' % self.server_software).encode('iso-8859-1'))
        else:
            self._write(('Status: %s\r\n' % self.status).encode('iso-8859-1'))

    def write(self, data):
        """'write()' callable as specified by PEP 3333"""
        if type(data) is not bytes:
            raise AssertionError(
                "write() argument must be a bytes instance, not %s" % type(data).__name__)

        if not self.status:
            raise AssertionError("write() before start_response()")
        elif not self.headers_sent:
            # Before the first output, send the stored headers
            self.bytes_sent = len(data)    # make sure we know content-length
            self.send_headers()
        else:
            self.bytes_sent += len(data)

        if self.body_allowed and data:
            limit = self.content_length
            if limit is not None and self._body_written + len(data) > limit:
                # PEP 3333: a server must never send more than it declared;
                # the excess would be read as the start of the next response.
                allowed = limit - self._body_written
                self.log_message(
                    "%s: the application sent more than its Content-Length of %d;"
                    " %d bytes dropped" % (self._request_line(), limit, len(data) - allowed))
                data = data[:allowed]
            if data:
                self._body_written += len(data)
                if self.chunked:
                    self._write(b'%x\r\n' % len(data) + data + b'\r\n')
                else:
                    self._write(data)
        self._flush()

    def sendfile(self):
        """Platform-specific file transmission

        Override this method in subclasses to support platform-specific
        file transmission.  It is only called if the application's
        return iterable ('self.result') is an instance of
        'self.wsgi_file_wrapper'.

        This method should return a true value if it was able to actually
        transmit the wrapped file-like object using a platform-specific
        approach.  It should return a false value if normal iteration
        should be used instead.  An exception can be raised to indicate
        that transmission was attempted, but failed.

        NOTE: this method should call 'self.send_headers()' if
        'self.headers_sent' is false and it is going to attempt direct
        transmission of the file.
        """
        return False   # No platform-specific transmission by default

    def finish_content(self):
        """Ensure headers and content have both been sent"""
        if not self.headers_sent:
            # Only zero Content-Length if not set by the application (so that
            # HEAD requests can be satisfied properly, see #3839), and never
            # on a response that has no content by definition.
            if not _status_has_no_content(self.status):
                self.headers.setdefault('Content-Length', "0")
            self.send_headers()
        if self.chunked:
            self._write(b'0\r\n\r\n')
            self._flush()
        elif (self.content_length is not None and self.body_allowed
              and self.bytes_sent < self.content_length):
            self.log_message(
                "%s: response truncated: Content-Length %d declared, %d bytes sent"
                % (self._request_line(), self.content_length, self.bytes_sent))
            self.abort_response()

    def close(self):
        """Close the iterable (if needed) and reset all instance vars

        Subclasses may want to also drop the client connection.
        """
        try:
            self._close_result()
        finally:
            self.result = self.headers = self.status = self.environ = None
            self._headers_as_checked = None
            self.bytes_sent = 0
            self.headers_sent = False
            self.content_length = None
            self.body_allowed = True
            self.chunked = False
            self._body_written = 0

    def _close_result(self):
        # PEP 3333: close() is called exactly once, on success, on error and
        # on disconnect. The response is complete (or already failed) by now,
        # so an error in close() is logged, not turned into a second response.
        result, self.result = self.result, None
        close = getattr(result, 'close', None)
        if close is not None:
            try:
                close()
            except Exception:
                self.log_exception(sys.exc_info())

    def send_headers(self):
        """Transmit headers to the client, via self._write()"""
        if self.origin_server:
            # RFC 9110 9.3.2 and 6.4.1: no content after HEAD, 1xx, 204, 304.
            method = self.environ.get('REQUEST_METHOD', '').upper()
            self.body_allowed = method != 'HEAD' and not _status_has_no_content(self.status)
        if type(self.headers) is Headers:
            # As in wsgiref, the application's own list is what is sent, and
            # it may have changed since start_response() checked it: a CR/LF
            # added since would split the response. (What the handler adds
            # below goes through Headers, which checks it.) Comparing with a
            # copy costs a tenth of checking again.
            if self.headers._headers != self._headers_as_checked:
                _check_header_items(self.headers._headers, not self.origin_server)
        self.cleanup_headers()
        self._check_declared_length()
        self.headers_sent = True
        if not self.origin_server or self.client_is_modern():
            self.send_preamble()
            self._write(bytes(self.headers))

    def _check_declared_length(self):
        headers = self.headers
        if type(headers) is Headers:
            # get_all() without its method calls: this runs for every response.
            declared = [v for k, v in headers._headers if k.lower() == 'content-length']
        else:
            declared = headers.get_all('Content-Length')
        if declared:
            values = {value.strip() for value in declared}
            value = values.pop()
            if values or not value.isdigit() or not value.isascii():
                raise AssertionError(
                    "Invalid Content-Length header(s) from the application: %r" % declared)
            self.content_length = int(value)

    def result_is_file(self):
        """True if 'self.result' is an instance of 'self.wsgi_file_wrapper'"""
        wrapper = self.wsgi_file_wrapper
        return wrapper is not None and isinstance(self.result, wrapper)

    def client_is_modern(self):
        """True if client can accept status and headers"""
        return self.environ['SERVER_PROTOCOL'].upper() != 'HTTP/0.9'

    def log_exception(self, exc_info):
        """Log the 'exc_info' tuple in the server log

        Subclasses may override to retarget the output or change its format.
        """
        if isinstance(exc_info[1], CGIEnvironmentError):
            self.log_message("%s: answered %s: %s"
                             % (self._request_line(), self.error_status, exc_info[1]))
            return
        try:
            from traceback import print_exception
            stderr = self.get_stderr()
            print_exception(
                exc_info[0], exc_info[1], exc_info[2],
                self.traceback_limit, stderr
            )
            stderr.flush()
        finally:
            exc_info = None

    def log_message(self, message):
        """Write one line about this response to the server log."""
        stderr = self.get_stderr()
        stderr.write(message + "\n")
        stderr.flush()

    def _request_line(self):
        env = self.environ or {}
        return "%s %s%s" % (env.get('REQUEST_METHOD', '-'), env.get('SCRIPT_NAME', ''),
                            env.get('PATH_INFO', ''))

    def handle_error(self):
        """Log current error, and send error output to client if possible"""
        self.log_exception(sys.exc_info())
        if not self.headers_sent:
            self.result = self.error_output(self.environ, self.start_response)
            self.finish_response()
        else:
            # Part of the response is on the wire; an error page cannot be
            # sent any more, so the truncation must be made visible instead.
            self.log_message("%s: error after the response headers were sent;"
                             " response aborted" % self._request_line())
            self.abort_response()
            self.close()

    def abort_response(self):
        """The response on the wire is incomplete; make sure the client can tell.

        Called after an error once headers were sent, and when the body fell
        short of the declared Content-Length. A handler that owns the
        connection overrides this to close it (without ending a chunked
        body), so the client sees a broken response rather than a short one
        that looks complete. The base handler has no connection to close.
        """
        self.chunked = False  # a missing last chunk is how HTTP/1.1 says so

    def error_output(self, environ, start_response):
        """WSGI mini-app to create error output

        By default, this just uses the 'error_status', 'error_headers',
        and 'error_body' attributes to generate an output page.  It can
        be overridden in a subclass to dynamically generate diagnostics,
        choose an appropriate message for the user's preferred language, etc.

        Diagnostics are not sent to the client by default, on purpose: a
        traceback tells an attacker too much.
        """
        start_response(self.error_status, self.error_headers[:], sys.exc_info())
        return [self.error_body]

    # Pure abstract methods; *must* be overridden in subclasses

    def _write(self, data):
        """Override in subclass to buffer data for send to client

        It's okay if this method actually transmits the data; BaseHandler
        just separates write and flush operations for greater efficiency
        when the underlying system actually has such a distinction.
        """
        raise NotImplementedError

    def _flush(self):
        """Override in subclass to force sending of recent '_write()' calls

        It's okay if this method is a no-op (i.e., if '_write()' actually
        sends the data.
        """
        raise NotImplementedError

    def get_stdin(self):
        """Override in subclass to return suitable 'wsgi.input'"""
        raise NotImplementedError

    def get_stderr(self):
        """Override in subclass to return suitable 'wsgi.errors'"""
        raise NotImplementedError

    def add_cgi_vars(self):
        """Override in subclass to insert CGI variables in 'self.environ'"""
        raise NotImplementedError


class SimpleHandler(BaseHandler):
    """Handler that's just initialized with streams, environment, etc.

    This handler subclass is intended for synchronous HTTP/1.0 origin servers,
    and handles sending the entire response output, given the correct inputs.

    Usage::

        handler = SimpleHandler(
            inp,out,err,env, multithread=False, multiprocess=True
        )
        handler.run(app)"""

    def __init__(self, stdin, stdout, stderr, environ,
                 multithread=True, multiprocess=False):
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.base_env = environ
        self.wsgi_multithread = multithread
        self.wsgi_multiprocess = multiprocess

    def get_stdin(self):
        return self.stdin

    def get_stderr(self):
        return self.stderr

    def add_cgi_vars(self):
        self.environ.update(self.base_env)

    def _write(self, data):
        result = self.stdout.write(data)
        if result is None or result == len(data):
            return
        from warnings import warn
        warn("SimpleHandler.stdout.write() should not do partial writes",
             DeprecationWarning)
        while True:
            data = data[result:]
            if not data:
                break
            result = self.stdout.write(data)

    def _flush(self):
        self.stdout.flush()
        self._flush = self.stdout.flush

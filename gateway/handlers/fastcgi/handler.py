"""One FastCGI request run through the WSGI handler machinery.

The environ comes from the request's PARAMS by the same rules as CGI
(``BaseCGIHandler``: CGI-style ``Status:`` output, the same header checks,
the same error page, HTTP_PROXY dropped). Input is pulled from STDIN records
only as the application reads, so TCP back-pressure holds the rest of a large
body in the web server, never here.
"""

import logging

from .. import BaseCGIHandler, CGIEnvironmentError, iis_path_info
from ..streams import InputLines

log = logging.getLogger('gateway')

# Small responses are sent in one write with END_REQUEST; beyond this the
# buffered output goes out as it comes.
_BATCH_LIMIT = 1 << 16


def with_iis_path_info(app):
    """*app*, seeing the PATH_INFO IIS meant: IISCGIHandler's fix-up, for the
    FastCGI server that IIS runs (``--iis``)."""
    def application(environ, start_response):
        environ['PATH_INFO'] = iis_path_info(environ)
        return app(environ, start_response)
    application.__wrapped__ = app
    return application


class RequestAborted(ConnectionAbortedError):
    """The web server aborted the request (ABORT_REQUEST, hung up, or went
    silent mid-request). A ConnectionAbortedError, so that BaseHandler.run
    treats it as the client going away: the iterable is closed, nothing is
    logged as an application error."""


class RequestTimedOut(RequestAborted):
    """The request did not all arrive within --request-read-timeout; the
    server has answered it 408, or cut its response."""


class RequestInput(InputLines):
    """``wsgi.input``: the request's STDIN stream, read on demand.

    PEP 3333: read() with no size returns the rest of the body, every read
    returns b'' at the end, and nothing is read past the end of the stream.
    """

    __slots__ = ('_connection', '_request_id', '_buffer', '_ended', 'received')

    def __init__(self, connection, request_id):
        self._connection = connection
        self._request_id = request_id
        self._buffer = bytearray()
        self._ended = False
        self.received = 0       # body bytes that came, for the log

    # The connection calls these as records for this request arrive.
    def feed(self, data):
        self._buffer += data
        self.received += len(data)

    def end(self):
        self._ended = True

    @property
    def ended(self):
        return self._ended

    def _fill(self, wanted):
        """Pull records until *wanted* bytes are buffered or the stream ends."""
        while not self._ended and (wanted < 0 or len(self._buffer) < wanted):
            self._connection.pump(self._request_id)

    def _take(self, size):
        buffer = self._buffer
        if size < 0 or size >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        return data

    def read(self, size=-1):
        size = -1 if size is None else size
        self._fill(size)
        return self._take(size)

    def readline(self, size=-1):
        size = -1 if size is None else size
        while True:
            end = self._buffer.find(b'\n') + 1
            if end or self._ended or 0 <= size <= len(self._buffer):
                break
            self._connection.pump(self._request_id)
        if end and (size < 0 or end < size):
            size = end
        return self._take(size)


class ServerLog:
    """``wsgi.errors`` by default: lines go to the server's log, not to the
    web server (nginx logs every FCGI_STDERR record as an error; IIS turns
    stderr into a 500)."""

    __slots__ = ('_pending',)

    def __init__(self):
        self._pending = ''

    def write(self, text):
        self._pending += text
        if '\n' in self._pending:
            *lines, self._pending = self._pending.split('\n')
            for line in lines:
                log.error('%s', line)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._pending:
            log.error('%s', self._pending)
            self._pending = ''


class RecordErrors:
    """``wsgi.errors`` as FCGI_STDERR records, for web servers that want it."""

    __slots__ = ('_connection', '_request_id')

    def __init__(self, connection, request_id):
        self._connection = connection
        self._request_id = request_id

    def write(self, text):
        if text:
            self._connection.send(self._connection.protocol.stderr(
                self._request_id, text.encode('utf-8', 'backslashreplace')))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass


class FastCGIHandler(BaseCGIHandler):
    """Runs one FastCGI RESPONDER request over a served connection."""

    os_environ = {}   # the request's PARAMS alone, as for CGIHandler
    require_cgi_environ = True
    error_status = BaseCGIHandler.error_status

    def __init__(self, connection, request_id, params, errors, multithread, multiprocess):
        BaseCGIHandler.__init__(self, RequestInput(connection, request_id), None, errors,
                                params, multithread=multithread, multiprocess=multiprocess)
        self.connection = connection
        self.request_id = request_id
        self.aborted = False
        self._pending = []
        self._pending_size = 0
        self._batch = False
        # The request the connection is running, for a worker answering it
        # 504 when it overruns --timeout (worker.py: answer_overdue).
        connection.handler = self

    def finish_response(self):
        # PEP 3333 asks that a block be sent before the next is requested;
        # the items of a list or tuple can be requested without running any
        # application code, so such a response goes out in one write.
        self._batch = type(self.result) in (list, tuple)
        BaseCGIHandler.finish_response(self)

    def _write(self, data):
        self._pending.append(data)
        self._pending_size += len(data)

    def _flush(self):
        if self._batch and self._pending_size <= _BATCH_LIMIT:
            return
        if self._pending_size <= _BATCH_LIMIT and self.body_is_complete():
            # Nothing more can follow (HEAD, or the declared length is
            # reached): keep the end for END_REQUEST's write. A web server
            # whose client closes on the last body byte would otherwise drop
            # a reusable connection that END_REQUEST had not reached yet.
            return
        if self._pending:
            self.connection.send(self.take_output())
        # A streamed response may run for long: notice an ABORT_REQUEST
        # between blocks rather than after the last one.
        self.connection.check_abort(self.request_id)

    def take_output(self):
        """The buffered output as STDOUT records, and empty the buffer."""
        return self.connection.protocol.stdout(self.request_id, self.take_data())

    def take_data(self):
        """The buffered output (bytes), and empty the buffer."""
        pending = self._pending
        if not pending:
            return b''
        data = pending[0] if len(pending) == 1 else b''.join(pending)
        pending.clear()
        self._pending_size = 0
        return data

    def abort_response(self):
        # The web server must not see END_REQUEST after a broken response:
        # closing the connection without it is what makes nginx and Apache
        # treat the response as failed instead of complete.
        self.aborted = True

    def log_exception(self, exc_info):
        if isinstance(exc_info[1], CGIEnvironmentError):
            BaseCGIHandler.log_exception(self, exc_info)    # one line, by log_message()
            return
        log.error('%s: the application raised', self._request_line(), exc_info=exc_info)

    def log_message(self, message):
        log.warning('%s', message)

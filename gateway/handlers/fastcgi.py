"""The FastCGI adaptor: one FastCGI request run through the WSGI handler machinery.

The environ comes from the request's PARAMS by the same rules as CGI
(``BaseCGIHandler``: CGI-style ``Status:`` output, the same header checks,
the same error page, HTTP_PROXY dropped). Everything the handler says to
the web server goes through the request's *channel*, which the server's
connection (``gateway.fastcgi.connection``) owns and lends for one request:

    channel.read()         the next block of the body (STDIN), b'' at its end
    channel.write(data)    response bytes as STDOUT; then, between the blocks
                           of a streamed response, raises RequestAborted if
                           the web server has aborted the request (as
                           read() does; RequestTimedOut: it came too late)
    channel.stderr(data)   bytes for the web server's error log (STDERR)
    channel.finish(data)   the last block and the end of the request
    channel.abort()        the response is incomplete: no END_REQUEST

Input is pulled from STDIN only as the application reads, so TCP
back-pressure holds the rest of a large body in the web server, never here.
The server itself is ``gateway.fastcgi``; for flup's users::

    from gateway.handlers.fastcgi import WSGIServer   # was: from flup.server.fcgi import ...
    WSGIServer(app, bindAddress=('127.0.0.1', 9000)).run()
"""

import logging

from ..headers import Headers
from . import BaseCGIHandler, CGIEnvironmentError
from .base import describe_request
from .streams import InputLines, body_cut_short

__all__ = ['FastCGIHandler', 'RequestInput', 'ServerLog', 'RecordErrors', 'RequestAborted',
           'RequestTimedOut', 'RequestTooLarge', 'declared_length']

log = logging.getLogger('gateway')

# Small responses are sent in one write with END_REQUEST; beyond this the
# buffered output goes out as it comes.
_BATCH_LIMIT = 1 << 16

# The roles a request may have (BEGIN_REQUEST's number), as FCGI_ROLE names them.
RESPONDER, AUTHORIZER = 1, 2
ROLE_NAMES = {RESPONDER: 'RESPONDER', AUTHORIZER: 'AUTHORIZER'}


def __getattr__(name):
    # Lazy: the adaptor is imported without the process model.
    if name == 'WSGIServer':
        from ..fastcgi.compat import WSGIServer
        return WSGIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RequestAborted(ConnectionAbortedError):
    """What the channel raises when the web server aborted the request
    (ABORT_REQUEST, hung up, or went silent mid-request). A
    ConnectionAbortedError, so that BaseHandler.run treats it as the client
    going away: the iterable is closed, nothing is logged as an application
    error."""


class RequestTimedOut(RequestAborted):
    """The request did not all arrive within --request-read-timeout; the
    server has answered it 408, or cut its response."""


class RequestTooLarge(RequestAborted):
    """The body passed --max-body-size as it came; the server has answered
    413 Content Too Large, or cut the response."""


def declared_length(params):
    """The request's CONTENT_LENGTH as a number; 0 when there is none, or
    none that is a number (the handler refuses those)."""
    text = params.get('CONTENT_LENGTH')
    return int(text) if text and text.isascii() and text.isdigit() else 0


class RequestInput(InputLines):
    """``wsgi.input``: the request's STDIN stream, read on demand.

    PEP 3333: read() with no size returns the rest of the body, every read
    returns b'' at the end, and nothing is read past the end of the stream.
    A stream that ends before the *declared* CONTENT_LENGTH raises OSError,
    as the CGI handlers' input does: a body cut short must not pass for the
    whole upload.
    """

    __slots__ = ('_channel', '_buffer', '_ended', '_missing')

    def __init__(self, channel, declared=0):
        self._channel = channel
        self._buffer = bytearray()
        self._ended = False
        self._missing = declared        # bytes still owed by CONTENT_LENGTH

    def _more(self):
        data = self._channel.read()
        if data:
            self._buffer += data
            self._missing -= len(data)
        else:
            self._ended = True
            if self._missing > 0:
                missing, self._missing = self._missing, 0
                raise body_cut_short(missing)

    def _fill(self, wanted):
        """Read until *wanted* bytes are buffered or the stream ends."""
        while not self._ended and (wanted < 0 or len(self._buffer) < wanted):
            self._more()

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
            self._more()
        if end and (size < 0 or end < size):
            size = end
        return self._take(size)


class _NoBody(RequestInput):
    """``wsgi.input`` of a request that has no body: at its end already."""

    __slots__ = ()

    def __init__(self):
        RequestInput.__init__(self, None)
        self._ended = True


_NO_BODY = _NoBody()


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

    __slots__ = ('_channel',)

    def __init__(self, channel):
        self._channel = channel

    def write(self, text):
        if text:
            self._channel.stderr(text.encode('utf-8', 'backslashreplace'))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass


# What the shortcut for the usual answer (FastCGIHandler._send_whole) does
# not call: a subclass that changes one of them is not given it.
_SHORTCUT_SKIPS = ('write', 'send_headers', 'cleanup_headers', 'send_preamble',
                   'set_content_length', 'finish_content', 'result_is_file', 'sendfile', '_write',
                   '_flush', '_frame_body', '_write_body', '_end_body', '_declared_length',
                   '_take_pending')


class FastCGIHandler(BaseCGIHandler):
    """Runs one FastCGI request over the *channel* its connection lends.

    *role* is the request's (its number in BEGIN_REQUEST), RESPONDER or
    AUTHORIZER by name, which the application
    finds in ``environ['FCGI_ROLE']`` (as under flup), set from
    BEGIN_REQUEST whatever the PARAMS said. An AUTHORIZER request has no
    body (the web server sends no STDIN) and no SCRIPT_NAME or PATH_INFO;
    its answer decides: 200 lets the request through, its ``Variable-NAME``
    headers becoming the variable NAME of the protected resource's
    environment, and any other answer is sent to the client as it is.
    """

    os_environ = {}   # the request's PARAMS alone, as for CGIHandler
    require_cgi_environ = True
    # A HEAD answer is the GET's headers, Content-Length included, and
    # nothing more, as PHP-FPM sends it: some web servers pass on what
    # follows the headers as it comes (HAProxy answers 502 to a body after
    # HEAD), where CGI's always strip it.
    omits_forbidden_body = True
    _takes_shortcut = True

    def __init__(self, channel, params, errors, multithread, multiprocess, role=RESPONDER):
        # The web server sends an authorizer no STDIN at all: a read must
        # not wait for one.
        stdin = RequestInput(channel, declared_length(params)) if role == RESPONDER else _NO_BODY
        # The role the web server began the request with, over whatever the
        # PARAMS said (mod_authnz_fcgi sends FCGI_ROLE too).
        params['FCGI_ROLE'] = ROLE_NAMES[role]
        BaseCGIHandler.__init__(self, stdin, None, errors, params,
                                multithread=multithread, multiprocess=multiprocess)
        self.channel = channel
        self._pending = []
        self._pending_size = 0
        self._batch = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass that changes how a response is written takes the long way.
        cls._takes_shortcut = all(getattr(cls, name) is getattr(FastCGIHandler, name)
                                  for name in _SHORTCUT_SKIPS)

    def finish_response(self):
        result = self.result
        if type(result) is list and len(result) == 1 and self._takes_shortcut \
                and self._send_whole(result[0]):
            return
        # PEP 3333 asks that a block be sent before the next is requested;
        # the items of a list or tuple can be requested without running any
        # application code, so such a response goes out in one write.
        self._batch = type(result) in (list, tuple)
        BaseCGIHandler.finish_response(self)
        # Complete, the iterable closed: what is still buffered goes out
        # with END_REQUEST (nothing, after abort_response()).
        self.channel.finish(self._take_pending())

    def _send_whole(self, block):
        """The usual answer, one block of a list, sent in one write, its
        bytes those the long way (finish_response, write, send_headers,
        cleanup_headers...) would send; False, and nothing done, for any
        answer that is not plainly the usual one."""
        if type(block) is not bytes or not block or len(block) > _BATCH_LIMIT \
                or self.headers_sent:
            return False
        headers, status = self.headers, self.status
        if type(headers) is not Headers or headers._headers != self._checked_fields \
                or status[0] == '1' or status[:3] in ('204', '304') \
                or self.environ.get('REQUEST_METHOD', '').upper() == 'HEAD':
            return False
        fields = headers._headers
        size = '%d' % len(block)
        declared = None
        head = f'Status: {status}\r\n'
        for name, value in fields:
            if name.lower() == 'content-length':
                if declared is not None:
                    return False
                declared = value
            head += f'{name}: {value}\r\n'
        if declared is None:
            fields.append(('Content-Length', size))     # as set_content_length() adds it
            head += f'Content-Length: {size}\r\n'
        elif declared.strip() != size:
            return False
        self.headers_sent = True
        self.bytes_sent = self.body_written = self.content_length = len(block)
        self.close()
        self.channel.finish((head + '\r\n').encode('iso-8859-1') + block)
        return True

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
        # Sent, then an ABORT_REQUEST noticed between the blocks of a
        # response that may stream for long, not after the last one.
        self.channel.write(self._take_pending())

    def _take_pending(self):
        pending = self._pending
        if not pending:
            return b''
        data = pending[0] if len(pending) == 1 else b''.join(pending)
        pending.clear()
        self._pending_size = 0
        return data

    def close(self):
        # A handler serves one request and is dropped with it: closing the
        # iterable is all there is to do (no state to forget for a next one).
        self._close_iterable()

    def abort_response(self):
        # The web server must not see END_REQUEST after a broken response:
        # closing the connection without it is what makes nginx and Apache
        # treat the response as failed instead of complete.
        self.channel.abort()

    def log_exception(self, exc_info):
        if isinstance(exc_info[1], CGIEnvironmentError):
            BaseCGIHandler.log_exception(self, exc_info)    # one line, by log_message()
            return
        log.error('%s: the application raised', describe_request(self.environ), exc_info=exc_info)

    def log_message(self, message):
        log.warning('%s', message)

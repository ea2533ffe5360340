"""One web-server connection: records in, WSGI requests run one at a time.

The connection does not multiplex (FCGI_MPXS_CONNS=0, as nginx, Apache and
IIS never do): a BEGIN_REQUEST while a request runs is answered
CANT_MPX_CONN. Management records (GET_VALUES, unknown types) are answered
whenever they arrive, even in the middle of a request.
"""

import logging
import select
import socket
import time
from collections import deque

from . import protocol as fcgi
from .handler import FastCGIHandler, RecordErrors, RequestAborted, RequestTimedOut, ServerLog

log = logging.getLogger('gateway')

_RECV_SIZE = 1 << 16
_poll = getattr(select, 'poll', None)
_MSG_DONTWAIT = getattr(socket, 'MSG_DONTWAIT', 0)
_MSG_MORE = getattr(socket, 'MSG_MORE', 0)
# Reads per wake-up while lingering: a web server that keeps sending after
# its answer must not keep the worker from its other connections.
_LINGER_READS = 16

_LATE_BODY = b'Request Timeout: the request did not arrive in time.\n'
_LATE_RESPONSE = (b'Status: 408 Request Timeout\r\nContent-Type: text/plain\r\n'
                  b'Content-Length: %d\r\n\r\n' % len(_LATE_BODY)) + _LATE_BODY


class ServedConnection:
    """Serves the requests a web server sends over one socket.

    The owner calls ``handle_readable()`` when the socket has data; it runs
    every request that is complete enough to start and returns whether the
    connection is still open. While an application runs, its reads of
    ``wsgi.input`` pull more records through ``pump()``.

    Malformed input ends the connection: what the records before the bad one
    made complete is still served (as if the bad record had come in a later
    read), a request still waiting for input is given up, and the log names
    the web server and what was wrong. A web server that reads nothing of a
    response for read_timeout is dropped the same way as one that sends
    nothing.
    """

    def __init__(self, sock, app, config, values, multithread=False, multiprocess=True,
                 overloaded=False, on_request=None, idle_timeout=True, sole=False, peer=None):
        self.sock = sock
        # The address accept() returned, for the log; when not given (or
        # empty, as for a unix socket), found when a log line needs it.
        self.peer = peer
        self.app = app
        self.config = config
        self.values = values            # the answers to GET_VALUES
        self.multithread = multithread
        self.multiprocess = multiprocess
        self.overloaded = overloaded
        self.on_request = on_request    # called (started: bool) around each request
        self.protocol = fcgi.Connection(max_params_size=config.max_params_size)
        self.events = deque()
        self.input = None               # the running request's RequestInput
        self.running_id = None
        self.aborted_id = None
        self.open = True
        # The web server broke the protocol: what came before the bad record
        # is still served, nothing more is read.
        self.failed = False
        self.lingering = False          # answered for the last time; see _close_after_response
        self.linger_deadline = None
        self.last_active = 0.0
        self.served = 0                 # requests answered on this connection
        self.pending_counted = 0        # what the worker counts against --max-pending-params
        # A plain socket can be polled for an ABORT_REQUEST between blocks of
        # a streamed response; a Windows pipe cannot.
        self.pollable = isinstance(sock, socket.socket)
        # Where the peer may rightly stay silent between requests (the
        # single IIS connection), only a request in progress times out.
        self.timeout = config.read_timeout if idle_timeout and config.read_timeout else None
        # When the request in progress must have arrived (--request-read-
        # timeout), on a socket: a pipe's reads cannot be bounded.
        self.arrival_limit = config.request_read_timeout if self.pollable else 0
        self.arrival_deadline = None
        self.late = False               # the running request missed it: answered or cut
        # The process's only connection (IIS's pipe): it lasts as long as the
        # process, whatever FCGI_KEEP_CONN says, as wfastcgi has it.
        self.sole = sole
        # Every recv() and send() on a socket is non-blocking, and the
        # timeout is applied by _wait() only when one would block: a socket
        # with a timeout polls before every recv() and send(), two system
        # calls per request that the usual case (the data is there, the
        # buffer has room) does not need. Where the flag exists, MSG_DONTWAIT
        # makes each call non-blocking and the socket itself stays blocking,
        # which spares the ioctl that setblocking(False) costs per connection.
        self._nowait = _MSG_DONTWAIT
        if self.pollable:
            if _MSG_DONTWAIT:
                if sock.gettimeout() is not None:
                    sock.settimeout(None)
            else:
                sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    # -- driving ------------------------------------------------------------

    def handle_readable(self, wait=True):
        """Read what the web server sent and serve it. False once closed.

        With *wait* false, return True at once when nothing has arrived yet
        (a connection just accepted, or a spurious wake-up).
        """
        if self.lingering:
            self._linger(wait)
            return self.open
        try:
            if self.pollable:
                try:
                    data = self.sock.recv(_RECV_SIZE, self._nowait)
                except BlockingIOError:
                    if not wait:
                        return True
                    data = self._recv()
            else:
                data = self.sock.recv(_RECV_SIZE)
            if not data:
                self._peer_closed()
                self.close()
                return False
            self.events.extend(self._receive(data))
            while self.events and self.open:
                self._dispatch(self.events.popleft())
            if self.failed:
                self.close()
        except socket.timeout:
            if self.open:
                log.warning('closing the connection from %s: the web server sent nothing'
                            ' for %gs', self.peer_name(), self.config.read_timeout)
            self.close()
        except OSError as error:
            if self.open:
                log.info('connection from %s lost: %s', self.peer_name(), error)
            self.close()
        except Exception:
            # A defect here must cost this connection, not the worker and
            # every other connection it serves.
            log.exception('unexpected error serving the connection from %s; closing it',
                          self.peer_name())
            self.close()
        return self.open

    def _receive(self, data):
        """The events *data* completes. After a protocol error: those the
        records before the bad one completed; the connection is then failed
        and closes once they are served."""
        try:
            return self.protocol.receive_data(data)
        except fcgi.ProtocolError as error:
            log.warning('FastCGI protocol error from %s: %s; connection closed',
                        self.peer_name(), error)
            self.failed = True
            return error.events

    def _peer_closed(self):
        """The web server closed its side: say what that cut short."""
        try:
            cut_short = self.protocol.receive_eof()
        except fcgi.ProtocolError as error:
            log.warning('FastCGI protocol error from %s: %s', self.peer_name(), error)
            return
        for event in cut_short:
            log.info('connection from %s closed by the web server before request %d'
                     ' was complete', self.peer_name(), event.request_id)

    def _dispatch(self, event):
        kind = type(event)
        if kind is fcgi.Params:
            # The records of one read are parsed before any is served, so a
            # request may have been answered already (a refused role) when
            # its PARAMS come up.
            if event.request_id in self.protocol.active_requests:
                self._run_request(event)
        elif kind is fcgi.BeginRequest:
            if self.overloaded:
                log.warning('request %d from %s refused with OVERLOADED: %d connections is'
                            ' this worker\'s limit (--max-connections)', event.request_id,
                            self.peer_name(), self.config.max_connections)
                # Closed whatever FCGI_KEEP_CONN says: this connection is the
                # one over the limit.
                self._end_unserved(event.request_id, fcgi.FCGI_OVERLOADED, keep=False)
            elif event.role != fcgi.FCGI_RESPONDER:
                log.warning('request %d from %s refused with UNKNOWN_ROLE: role %d is not'
                            ' served (only RESPONDER)', event.request_id, self.peer_name(),
                            event.role)
                self._end_unserved(event.request_id, fcgi.FCGI_UNKNOWN_ROLE)
            elif self.arrival_limit:
                self.arrival_deadline = time.monotonic() + self.arrival_limit
        elif kind is fcgi.AbortRequest:
            # Aborted before its PARAMS were complete, nothing ran: answered
            # here. Aborted after it was answered (the ABORT_REQUEST came in
            # the same read as the rest of the request): already ended, and a
            # second END_REQUEST would be taken for the next request's.
            if event.request_id in self.protocol.active_requests:
                log.info('request %d from %s aborted by the web server before it started',
                         event.request_id, self.peer_name())
                self._end_unserved(event.request_id, fcgi.FCGI_REQUEST_COMPLETE)
        else:
            self._answer_out_of_band(event)

    def held_params(self):
        """Bytes held for a request that has not started: what a peer that
        never finishes its PARAMS keeps in this worker's memory."""
        if not self.open or self.running_id is not None or self.lingering:
            return 0
        return self.protocol.pending_params

    def refuse_pending(self, budget):
        """The worker holds more than *budget* bytes for requests not
        started, and this connection is among those holding the most:
        OVERLOADED, and closed."""
        ids = list(self.protocol.active_requests)
        log.warning('%s from %s refused with OVERLOADED: %d bytes of PARAMS not complete yet'
                    ' would keep this worker past its %d (--max-pending-params)',
                    'request %s' % ', '.join(map(str, ids)) if ids else 'a connection',
                    self.peer_name(), self.held_params(), budget)
        data = b''.join(self.protocol.end_request(rid, 0, fcgi.FCGI_OVERLOADED) for rid in ids)
        if data:
            try:
                # Never waits: a peer that reads nothing must not hold up the
                # worker that is shedding it.
                self.sock.send(data, self._nowait) if self.pollable else self.sock.sendall(data)
            except OSError:
                pass
        self.close()

    def _end_unserved(self, request_id, status, keep=True):
        keep = keep and self.protocol.keep_conn(request_id)
        self.send(self.protocol.end_request(request_id, 0, status))
        if not keep:
            self.close()

    def _answer_out_of_band(self, event):
        """Records that may come at any time, even while a request runs."""
        kind = type(event)
        if kind is fcgi.GetValues:
            values = self.values
            self.send(self.protocol.get_values_result(
                {name: values[name] for name in event.names if name in values}))
        elif kind is fcgi.RejectedBeginRequest:
            self.send(self.protocol.end_request(event.request_id, 0, fcgi.FCGI_CANT_MPX_CONN))
        elif kind is fcgi.UnknownManagementRecord:
            self.send(self.protocol.unknown_type(event.record_type))
        # STDIN/DATA of a request that is not running (a refused role) and
        # DATA of any request: nothing reads them.

    # -- one request ----------------------------------------------------------

    def _run_request(self, event):
        request_id = event.request_id
        keep_conn = self.protocol.keep_conn(request_id) or self.sole
        errors = RecordErrors(self, request_id) if self.config.fcgi_stderr else ServerLog()
        handler = FastCGIHandler(self, request_id, event.params, errors,
                                 self.multithread, self.multiprocess)
        self.input = handler.stdin
        self.running_id = request_id
        self.aborted_id = None
        self.late = False
        on_request = self.on_request
        if on_request is not None:
            on_request(True)
        try:
            handler.run(self.app)
            if not self.open:   # the web server hung up or went silent
                self.close()
                return
            ended = self.input.ended or self._stdin_end_queued(request_id)
            if self.late:
                # Answered (or cut) when it ran late; whatever the
                # application made of its failed read stays here, and the
                # rest of the body may still be on its way.
                keep_conn = ended = False
            elif handler.aborted:
                log.warning('%s from %s: response incomplete; closing the connection so the'
                            ' web server sees it failed', _describe(event.params),
                            self.peer_name())
                # Closed below as after any last response: input still on
                # its way would otherwise make the close a reset, which can
                # destroy the part of the response in flight.
                keep_conn = False
            else:
                self.send(self.protocol.end_response(request_id, handler.take_data()),
                          last=ended and not keep_conn)
        except OSError as error:
            # The web server hung up (or timed out) mid-response.
            if self.open:
                log.info('%s from %s: connection lost while answering: %s',
                         _describe(event.params), self.peer_name(), error)
            self.close()
            return
        except Exception:
            # The handler gave up (an error while reporting an error): the
            # web server sees the connection close without END_REQUEST.
            log.exception('%s from %s: unexpected error while answering; closing the'
                          ' connection', _describe(event.params), self.peer_name())
            self.close()
            return
        finally:
            self.input = None
            self.running_id = None
            self.served += 1
            if on_request is not None:
                on_request(False)
        if not keep_conn:
            self._close_after_response(ended)

    def _stdin_end_queued(self, request_id):
        # An application that does not read its input leaves the end of
        # STDIN among the parsed events (nginx sends BEGIN_REQUEST, PARAMS
        # and the empty STDIN record in one write): the input has then all
        # been read from the socket, and closing at once is safe. Without
        # this check every such request would wait for the web server to
        # close first.
        for event in self.events:
            if type(event) is fcgi.StdinEnd and event.request_id == request_id:
                return True
        return False

    def _close_after_response(self, input_ended):
        if input_ended:
            self.close()
            return
        # Closing with unread STDIN in the socket buffer would reset the
        # connection, and a reset can destroy the response in flight:
        # say we are done, then read until the web server closes too.
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.lingering = True
        # As long as the timeout at most, silent or not: a web server that
        # goes on sending (a body nobody reads, without end) is not owed more.
        if self.timeout is not None:
            self.linger_deadline = time.monotonic() + self.timeout
        # On a socket, without holding up the worker meanwhile: what is
        # there now is read at once, the rest as the owner finds the socket
        # readable again (its idle sweep closes the connection if the web
        # server never does).
        self._linger(wait=not self.pollable)

    def _linger(self, wait):
        """Discard what the web server still sends; close once it closes
        (or stays silent for the timeout, or fails, or the lingering time is
        up). With *wait* false, return when nothing more has arrived yet, or
        after a few reads."""
        deadline = self.linger_deadline
        try:
            reads = 0
            while True:
                if not self.pollable:
                    data = self.sock.recv(_RECV_SIZE)
                else:
                    if deadline is not None and time.monotonic() > deadline:
                        log.info('closing the connection from %s: still sending %gs after'
                                 ' the last answer', self.peer_name(), self.timeout)
                        break
                    if reads == _LINGER_READS and not wait:
                        return
                    try:
                        data = self.sock.recv(_RECV_SIZE, self._nowait)
                    except BlockingIOError:
                        if not wait:
                            return
                        self._wait(False, deadline)
                        continue
                    reads += 1
                if not data:
                    break
        except OSError:     # including socket.timeout
            pass
        self.close()

    # -- called by the running request ----------------------------------------

    def pump(self, request_id):
        """Process records until some STDIN for *request_id* has arrived.

        Raises RequestAborted when the web server aborts the request, hangs
        up or stays silent for read_timeout.
        """
        events = self.events
        progressed = False
        while not progressed:
            if not events:
                if self.failed:     # the rest of the input is not coming
                    self._abandon(request_id)
                try:
                    data = self._recv(self.arrival_deadline)
                except socket.timeout:
                    if self.arrival_deadline is not None \
                            and time.monotonic() >= self.arrival_deadline:
                        self._body_late(request_id)
                    log.warning('request %d from %s: the web server sent no input for %gs;'
                                ' aborting it', request_id, self.peer_name(),
                                self.config.read_timeout)
                    self._abandon(request_id)
                except OSError as error:
                    log.info('request %d from %s: connection lost while reading its input: %s',
                             request_id, self.peer_name(), error)
                    self._abandon(request_id)
                if not data:
                    self._peer_closed()
                    self._abandon(request_id)
                events.extend(self._receive(data))
                continue
            event = events.popleft()
            kind = type(event)
            if kind is fcgi.StdinData and event.request_id == request_id:
                self.input.feed(event.data)
                progressed = True
            elif kind is fcgi.StdinEnd and event.request_id == request_id:
                self.input.end()
                progressed = True
            elif kind is fcgi.AbortRequest and event.request_id == request_id:
                self._aborted(request_id)
            else:
                self._answer_out_of_band(event)

    def _body_late(self, request_id):
        """The application waits for a body that has not all come within
        --request-read-timeout: 408 if nothing of the response went out,
        else the response is cut; no more output either way."""
        handler = self.handler
        started = handler.headers_sent
        environ = handler.environ or {}
        log.warning('%s from %s: body not complete after %gs (--request-read-timeout): %d of %s'
                    ' bytes received; %s', _describe(environ), self.peer_name(),
                    self.arrival_limit, self.input.received,
                    environ.get('CONTENT_LENGTH') or 'an unknown number of',
                    'its response had started: cut' if started
                    else 'answered 408 Request Timeout')
        self.input.end()
        self.late = True
        self._answer_late(request_id, started)
        raise RequestTimedOut(request_id)

    def _answer_late(self, request_id, started):
        try:
            if not started:
                self.send(self.protocol.end_response(request_id, _LATE_RESPONSE))
            # Whatever the application sends after this fails as if the
            # web server had gone.
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.open = False

    def params_late(self, now):
        """From the worker's sweep: whether this connection's request, not
        started, has not got its PARAMS within --request-read-timeout; if
        so it is answered 408, and the connection left to close."""
        if self.arrival_deadline is None or now < self.arrival_deadline \
                or not self.protocol.active_requests or self.lingering:
            return False
        request_id = next(iter(self.protocol.active_requests))
        log.warning('request %d from %s: PARAMS not complete after %gs (--request-read-timeout):'
                    ' %d bytes received; answered 408 Request Timeout', request_id,
                    self.peer_name(), self.arrival_limit, self.protocol.pending_params)
        self._answer_late(request_id, False)
        if self.open:
            # Read what still comes until the web server closes: closing
            # with input unread could reset the 408 away.
            self.lingering = True
            self.linger_deadline = now + (self.timeout or self.arrival_limit)
        return True

    def _aborted(self, request_id):
        """The web server aborted the running request: end its input."""
        log.info('request %d from %s aborted by the web server', request_id, self.peer_name())
        self.input.end()
        self.aborted_id = request_id
        raise RequestAborted(request_id)

    def _abandon(self, request_id):
        """The web server is gone (or silent): end the input and the connection."""
        self.input.end()
        self.open = False
        raise RequestAborted(request_id)

    def check_abort(self, request_id):
        """Between blocks of a streamed response: has the request been aborted?"""
        if self.aborted_id == request_id:
            raise RequestAborted(request_id)
        if self.pollable:
            # Is there input? (The socket is non-blocking: this does not wait.)
            if self.failed:
                self._abandon(request_id)
            try:
                data = self.sock.recv(_RECV_SIZE, self._nowait)
            except BlockingIOError:
                return
            if not data:
                self._peer_closed()
                self._abandon(request_id)
            events = self.events
            events.extend(self._receive(data))
            # Take out this request's ABORT_REQUEST only: the records around
            # it (GET_VALUES, the next request) are still to be answered.
            for event in events:
                if type(event) is fcgi.AbortRequest and event.request_id == request_id:
                    events.remove(event)
                    self._aborted(request_id)
            if self.failed:
                self._abandon(request_id)

    def send(self, data, last=False):
        """Send all of *data*. *last*: the connection is closed right after,
        so TCP may carry the data in the segment that has the FIN (one
        packet fewer for the web server and for us)."""
        if not self.pollable:
            self.sock.sendall(data)
            return
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
            try:
                self._wait(True, deadline)
            except socket.timeout:
                raise self._stopped_reading() from None
            try:
                view = view[sock.send(view, nowait):]
            except BlockingIOError:
                pass

    def _stopped_reading(self):
        """The web server has read nothing of what we send for the timeout:
        the connection is dropped, and the error says so to whoever sent.

        A ConnectionAbortedError, so that a response in progress ends as when
        the client goes away (the iterable closed, no application error)."""
        running = self.running_id
        log.warning('%s from %s: the web server read nothing we sent for %gs; connection'
                    ' closed', 'connection' if running is None else 'request %d' % running,
                    self.peer_name(), self.timeout)
        self.open = False
        if self.input is not None:
            self.input.end()
        return ConnectionAbortedError('the web server stopped reading for %gs' % self.timeout)

    def _recv(self, deadline=None):
        """recv(), waiting at most the timeout for data, and never past
        *deadline* (socket.timeout)."""
        if not self.pollable:
            return self.sock.recv(_RECV_SIZE)
        while True:
            try:
                return self.sock.recv(_RECV_SIZE, self._nowait)
            except BlockingIOError:
                wait = None if self.timeout is None else time.monotonic() + self.timeout
                if deadline is not None and (wait is None or deadline < wait):
                    wait = deadline
                self._wait(False, wait)

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
        """The web server's address, for the log."""
        peer = self.peer
        if not peer:
            try:
                peer = self.sock.getpeername()
            except (AttributeError, OSError):
                peer = ''
            if not peer and getattr(self.sock, 'family', None) == getattr(socket, 'AF_UNIX', None):
                # A client of a unix socket has no name: name the socket.
                try:
                    name = self.sock.getsockname()
                except OSError:
                    name = ''
                peer = 'unix:%s' % name if name else ''
            self.peer = peer
        if isinstance(peer, tuple):
            host, port = peer[:2]
            return ('[%s]:%d' if ':' in host else '%s:%d') % (host, port)
        return peer or 'the web server'

    def log_silence(self, timeout):
        """Log why this connection, silent for more than *timeout* seconds,
        is about to be closed: between requests that is routine, in the
        middle of a record or of a request it is a stalled web server."""
        partial = self.protocol.partial_record
        if partial is not None:
            log.warning('closing the connection from %s: silent for more than %gs in the middle'
                        ' of a record (%d of %d bytes received)', self.peer_name(), timeout,
                        *partial)
        elif self.protocol.active_requests and not self.lingering:
            log.warning('closing the connection from %s: silent for more than %gs with request'
                        ' %s incomplete', self.peer_name(), timeout,
                        ', '.join(map(str, self.protocol.active_requests)))
        else:
            log.info('closing the connection from %s: idle for more than %gs',
                     self.peer_name(), timeout)

    def close(self):
        if self.open or self.sock.fileno() >= 0:
            self.open = False
            try:
                self.sock.close()
            except OSError:
                pass


def _describe(params):
    return '%s %s' % (params.get('REQUEST_METHOD', '-'),
                      params.get('REQUEST_URI') or params.get('SCRIPT_NAME', '') + params.get('PATH_INFO', ''))

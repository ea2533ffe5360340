"""One web-server connection: records in, WSGI requests run one at a time.

The connection does not multiplex (FCGI_MPXS_CONNS=0, as nginx, Apache and
IIS never do): a BEGIN_REQUEST while a request runs is answered
CANT_MPX_CONN. Management records (GET_VALUES, unknown types) are answered
whenever they arrive, even in the middle of a request.

One request's path: ``handle_readable()`` reads and parses (``_receive``,
the one routine that reads); a complete PARAMS starts the request
(``_run_request``), whose ``RequestChannel`` the connection lends to a
``FastCGIHandler`` (gateway.handlers.fastcgi) running the application. Its
reads of ``wsgi.input`` come back through ``channel.read()`` to
``_receive``; its response goes out through ``channel.write()`` and
``channel.finish()``, encoded by the codec (protocol.py), sent by the
transport (transports.py).
"""

import logging
import socket
import time
from collections import deque

from ..handlers.base import describe_request
from ..handlers.fastcgi import (RESPONDER, FastCGIHandler, RecordErrors, RequestAborted,
                                ServerLog, declared_length)
from . import protocol as fcgi
from .answers import GATEWAY_TIMEOUT, AnswersOnOwnAccount, outcome_of
from .channel import ABORTED, BROKEN, FINISHED, RUNNING, RequestChannel
from .connection_state import CLOSED, FAILED, LINGERING, OPEN, State
from .transports import transport_for

__all__ = ['ServedConnection', 'RequestChannel', 'State']

log = logging.getLogger('gateway')

class _PeerClosed(Exception):
    """The web server closed its side."""


class ServedConnection(AnswersOnOwnAccount):
    """Serves the requests a web server sends over one connection.

    The owner calls ``handle_readable()`` when the socket has data; it runs
    every request that is complete enough to start and returns whether the
    connection is still open (see ``State``). Malformed input ends the
    connection, what came before it still served (as if the bad record had
    come in a later read), and the log names the web server and what was
    wrong. A web server that reads nothing of a response for read_timeout is
    dropped as one that sends nothing.
    """

    # path -> the WSGI application that answers it instead of ``app`` (the
    # worker sets it for --status-path and --ping-path); None: no such path.
    own_paths = None

    def __init__(self, sock, app, config, values, multithread=False, multiprocess=True,
                 overloaded=False, on_request=None, idle_timeout=True, sole=False, peer=None,
                 transport=None):
        self.sock = sock                # for the worker's selector; I/O goes through transport
        self.app = app
        self.config = config
        self.values = values            # the answers to GET_VALUES
        self.multithread = multithread
        self.multiprocess = multiprocess
        self.overloaded = overloaded
        # Called around each request: with its PARAMS when it starts, None when it ends.
        self.on_request = on_request
        # Where the peer may rightly stay silent between requests (the
        # single IIS connection), only a request in progress times out.
        self.timeout = config.read_timeout if idle_timeout and config.read_timeout else None
        self.transport = transport = transport or transport_for(sock, self.timeout, peer)
        self.codec = fcgi.Connection(max_params_size=config.max_params_size)
        self.events = deque()
        self.state = OPEN
        self.channel = None             # the running request's (lent to its handler), or None
        self.linger_deadline = None
        self.last_active = 0.0
        self.served = 0                 # requests answered on this connection
        self.pending_counted = 0        # what the worker counts against --max-pending-params
        # When the request in progress must have arrived (--request-read-
        # timeout), where reads can be bounded: not on a pipe.
        self.arrival_limit = config.request_read_timeout if transport.pollable else 0
        self.arrival_deadline = None
        # The process's only connection (IIS's pipe): it lasts as long as the
        # process, whatever FCGI_KEEP_CONN says, as wfastcgi has it.
        self.sole = sole

    def idle(self):
        """Nothing parsed and waiting, no request begun, no partial record."""
        return not self.events and self.codec.idle

    # -- reading ----------------------------------------------------------------

    def _receive(self, wait=True, deadline=None):
        """Read once and parse: what the records complete joins ``events``.
        False when *wait* is false and nothing has arrived. Raises
        _PeerClosed, socket.timeout (the read timeout, or *deadline*) and
        OSError. After a protocol error the connection is FAILED: the events
        of the records before the bad one are kept, and nothing more is read."""
        data = self.transport.recv(wait, deadline)
        if data is None:
            return False
        if not data:
            # The web server closed its side: say what that cut short.
            try:
                cut_short = self.codec.receive_eof()
            except fcgi.ProtocolError as error:
                log.warning('FastCGI protocol error from %s: %s', self.peer_name(), error)
                cut_short = ()
            for event in cut_short:
                log.info('connection from %s closed by the web server before request %d'
                         ' was complete', self.peer_name(), event.request_id)
            raise _PeerClosed()
        try:
            self.events.extend(self.codec.receive_data(data))
        except fcgi.ProtocolError as error:
            log.warning('FastCGI protocol error from %s: %s; connection closed',
                        self.peer_name(), error)
            self.state = FAILED
            self.events.extend(error.events)
        return True

    # -- driving ------------------------------------------------------------

    def handle_readable(self, wait=True):
        """Read what the web server sent and serve it. False once closed.

        With *wait* false, return True at once when nothing has arrived yet
        (a connection just accepted, or a spurious wake-up).
        """
        if self.state is LINGERING:
            self._linger(wait)
            return self.state is not CLOSED
        try:
            if not self._receive(wait):
                return True
            events = self.events
            while events and self.state is not CLOSED:
                self._dispatch(events.popleft())
            if self.state is FAILED:
                self.close()
        except _PeerClosed:
            self.close()
        except socket.timeout:
            if self.state is not CLOSED:
                log.warning('closing the connection from %s: the web server sent nothing'
                            ' for %gs', self.peer_name(), self.config.read_timeout)
            self.close()
        except OSError as error:
            if self.state is not CLOSED:
                log.info('connection from %s lost: %s', self.peer_name(), error)
            self.close()
        except Exception:
            # A defect here must cost this connection, not the worker and
            # every other connection it serves.
            log.exception('unexpected error serving the connection from %s; closing it',
                          self.peer_name())
            self.close()
        return self.state is not CLOSED

    def _dispatch(self, event):
        kind = type(event)
        if kind is fcgi.Params:
            # The records of one read are parsed before any is served, so a
            # request may have been answered already (a refused role) when
            # its PARAMS come up.
            if event.request_id in self.codec.active_requests:
                self._run_request(event)
        elif kind is fcgi.BeginRequest:
            self.role = event.role      # for its handler, if it runs (one request at a time)
            if self.overloaded:
                log.warning('request %d from %s refused with OVERLOADED: %d connections is'
                            ' this worker\'s limit (--max-connections)', event.request_id,
                            self.peer_name(), self.config.max_connections)
                # Closed whatever FCGI_KEEP_CONN says: this connection is the
                # one over the limit.
                self._end_unserved(event.request_id, fcgi.FCGI_OVERLOADED, keep=False)
            elif event.role not in self.config.roles:
                log.warning('request %d from %s refused with UNKNOWN_ROLE: role %d is not'
                            ' served (--roles)', event.request_id, self.peer_name(), event.role)
                self._end_unserved(event.request_id, fcgi.FCGI_UNKNOWN_ROLE)
            elif self.arrival_limit:
                self.arrival_deadline = time.monotonic() + self.arrival_limit
        elif kind is fcgi.AbortRequest:
            # Aborted before its PARAMS were complete, nothing ran: answered
            # here. Aborted after it was answered (the ABORT_REQUEST came in
            # the same read as the rest of the request): already ended, and a
            # second END_REQUEST would be taken for the next request's.
            if event.request_id in self.codec.active_requests:
                log.info('request %d from %s aborted by the web server before it started',
                         event.request_id, self.peer_name())
                self._end_unserved(event.request_id, fcgi.FCGI_REQUEST_COMPLETE)
        elif kind is fcgi.StdinEnd:
            pass    # the end of a body no one read, as every GET's: nothing to answer
        else:
            self._answer_out_of_band(event)

    def _end_unserved(self, request_id, status, keep=True):
        keep = keep and self.codec.keep_conn(request_id)
        self._send(self.codec.end_request(request_id, 0, status))
        if not keep:
            self.close()

    def _answer_out_of_band(self, event):
        """Records that may come at any time, even while a request runs."""
        kind = type(event)
        if kind is fcgi.GetValues:
            values = self.values
            self._send(self.codec.get_values_result(
                {name: values[name] for name in event.names if name in values}))
        elif kind is fcgi.RejectedBeginRequest:
            self._send(self.codec.end_request(event.request_id, 0, fcgi.FCGI_CANT_MPX_CONN))
        elif kind is fcgi.UnknownManagementRecord:
            self._send(self.codec.unknown_type(event.record_type))
        # STDIN/DATA of a request that is not running (a refused role) and
        # DATA of any request: nothing reads them.

    # -- one request ----------------------------------------------------------

    def _run_request(self, event):
        request_id = event.request_id
        params = event.params
        limit = self.config.max_body_size
        if limit and self.role == RESPONDER and declared_length(params) > limit:
            self._refuse_body(request_id, params, limit)
            return
        channel = self.channel = RequestChannel(self, request_id, params,
                                                self.sole or self.codec.keep_conn(request_id))
        errors = RecordErrors(channel) if self.config.fcgi_stderr else ServerLog()
        access_log = self.config.access_log
        handler = FastCGIHandler(channel, params, errors, self.multithread, self.multiprocess,
                                 self.role)
        started = time.time() if access_log is not None else 0.0
        app = self.app
        if self.own_paths is not None:
            # --status-path and --ping-path: the gateway answers, never the application.
            app = self.own_paths.get(params.get('SCRIPT_NAME', '') + params.get('PATH_INFO', ''),
                                     app)
        on_request = self.on_request
        if on_request is not None:
            on_request(params)
        try:
            handler.run(app)
        except OSError as error:
            # The web server hung up (or timed out) mid-response.
            if self.state is not CLOSED:
                log.info('%s from %s: connection lost while answering: %s',
                         describe_request(params), self.peer_name(), error)
            self.close()
        except Exception:
            # The handler gave up (an error while reporting an error): the
            # web server sees the connection close without END_REQUEST.
            log.exception('%s from %s: unexpected error while answering; closing the'
                          ' connection', describe_request(params), self.peer_name())
            self.close()
        finally:
            self.channel = None
            self.served += 1
            answer = channel.answer     # a 408 or 413 of ours, not the application's
            # (a 504's line went with it)
            if access_log is not None and answer is not GATEWAY_TIMEOUT:
                if answer is None:
                    access_log.request_ended(params, handler.status or '-', handler.bytes_sent,
                                             started)
                else:
                    access_log.request_ended(params, *outcome_of(answer), started)
            if on_request is not None:
                on_request(None)
        if self.state is CLOSED:    # the web server hung up or went silent
            return
        state = channel.state
        if state is RUNNING or state is ABORTED:
            # Ended without a response (the web server aborted it, or hung
            # up while it was being read): END_REQUEST still tells it so.
            self._finish(channel, b'')
            state = channel.state
        if state is FINISHED:
            if not channel.keep_conn and self.state is not CLOSED:
                self._close_after_response(channel.stdin_ended)   # as _finish found it
        elif state is BROKEN:
            log.warning('%s from %s: response incomplete; closing the connection so the'
                        ' web server sees it failed', describe_request(params),
                        self.peer_name())
            # Closed as after any last response: input still on its way
            # would otherwise make the close a reset, which can destroy the
            # part of the response in flight.
            self._close_after_response(self._stdin_ended(channel))
        else:
            # ANSWERED (or cut) when it ran late; whatever the application
            # made of its failed read stays here, and the rest of the body
            # may still be on its way.
            self._close_after_response(False)

    def _finish(self, channel, data):
        """*data*, the end of STDOUT and END_REQUEST, in one write; the
        channel is FINISHED. A failure to send is logged and closes the
        connection."""
        channel.state = FINISHED
        last = not channel.keep_conn and self._stdin_ended(channel)
        channel.stdin_ended = last or channel.stdin_ended
        try:
            self._send(self.codec.end_response(channel.request_id, data), last)
        except OSError as error:
            if self.state is not CLOSED:
                log.info('%s from %s: connection lost while answering: %s',
                         describe_request(channel.params), self.peer_name(), error)
            self.close()

    def _stdin_ended(self, channel):
        # An application that does not read its input leaves the end of
        # STDIN among the parsed events (nginx sends BEGIN_REQUEST, PARAMS
        # and the empty STDIN record in one write): the input has then all
        # been read from the socket, and closing at once is safe. Without
        # this check every such request would wait for the web server to
        # close first.
        if channel.stdin_ended:
            return True
        request_id = channel.request_id
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
            self.transport.shutdown_write()
        except OSError:
            self.close()
            return
        self.state = LINGERING
        # The timeout at most, silent or not: a web server that goes on
        # sending (a body nobody reads, without end) is not owed more.
        if self.timeout is not None:
            self.linger_deadline = time.monotonic() + self.timeout
        # Where the owner can watch the socket, what is there now is read at
        # once and the rest as it comes (its idle sweep closes the
        # connection if the web server never does): no one is held up.
        self._linger(wait=not self.transport.pollable)

    def _linger(self, wait):
        """Drop what the web server still sends; close once it is done (see
        State). With *wait* false, return when nothing more has arrived yet."""
        outcome = self.transport.discard(wait, self.linger_deadline)
        if outcome is None:
            return
        if outcome == 'expired' and self.timeout is not None:
            log.info('closing the connection from %s: still sending %gs after the last answer',
                     self.peer_name(), self.timeout)
        self.close()

    # -- called through the running request's channel -----------------------------

    def _read_stdin(self, channel):
        """Process records until some STDIN for *channel*'s request has
        arrived: that block, or b'' at the end of the body.

        Raises RequestAborted when the web server aborts the request, hangs
        up or stays silent for read_timeout (RequestTimedOut: the body did
        not come within --request-read-timeout).
        """
        request_id = channel.request_id
        events = self.events
        limit = self.config.max_body_size
        while True:
            if not events:
                if self.state is FAILED:     # the rest of the input is not coming
                    self._abandon(channel)
                try:
                    self._receive(True, self.arrival_deadline)
                except socket.timeout:
                    if self.arrival_deadline is not None \
                            and time.monotonic() >= self.arrival_deadline:
                        self._body_late(channel)
                    log.warning('request %d from %s: the web server sent no input for %gs;'
                                ' aborting it', request_id, self.peer_name(),
                                self.config.read_timeout)
                    self._abandon(channel)
                except OSError as error:
                    log.info('request %d from %s: connection lost while reading its input: %s',
                             request_id, self.peer_name(), error)
                    self._abandon(channel)
                except _PeerClosed:
                    self._abandon(channel)
                continue
            event = events.popleft()
            kind = type(event)
            if kind is fcgi.StdinData and event.request_id == request_id:
                channel.received += len(event.data)
                if channel.received > limit > 0:
                    self._body_too_large(channel, limit)
                return event.data
            if kind is fcgi.StdinEnd and event.request_id == request_id:
                channel.stdin_ended = True
                return b''
            if kind is fcgi.AbortRequest and event.request_id == request_id:
                self._aborted(channel)
            self._answer_out_of_band(event)

    def _check_abort(self, channel):
        """Between blocks of a streamed response: has the request been aborted?"""
        if not self.transport.pollable:
            return      # a pipe cannot be looked at without waiting
        if self.state is FAILED:
            self._abandon(channel)
        try:
            if not self._receive(wait=False):
                return
        except _PeerClosed:
            self._abandon(channel)
        # Take out this request's ABORT_REQUEST only: the records around
        # it (GET_VALUES, the next request) are still to be answered.
        request_id = channel.request_id
        for event in self.events:
            if type(event) is fcgi.AbortRequest and event.request_id == request_id:
                self.events.remove(event)
                self._aborted(channel)
        if self.state is FAILED:
            self._abandon(channel)

    def _aborted(self, channel):
        """The web server aborted the running request: end its input."""
        log.info('request %d from %s aborted by the web server', channel.request_id,
                 self.peer_name())
        channel.stdin_ended = True
        channel.state = ABORTED
        raise RequestAborted(channel.request_id)

    def _abandon(self, channel):
        """The web server is gone (or silent): end the input and the connection."""
        channel.stdin_ended = True
        self.state = CLOSED
        raise RequestAborted(channel.request_id)

    def _send(self, data, last=False):
        try:
            self.transport.send(data, last)
        except socket.timeout:
            # The web server has read nothing of what we send for the
            # timeout: dropped, and the error says so to whoever sent. A
            # ConnectionAbortedError, so that a response in progress ends
            # as when the client goes away (the iterable closed, no
            # application error).
            channel = self.channel
            log.warning('%s from %s: the web server read nothing we sent for %gs; connection'
                        ' closed', 'connection' if channel is None else 'request %d'
                        % channel.request_id, self.peer_name(), self.timeout)
            self.state = CLOSED
            if channel is not None:
                channel.stdin_ended = True
            raise ConnectionAbortedError('the web server stopped reading for %gs'
                                         % self.timeout) from None

    # -- the worker's view ----------------------------------------------------------

    def held_params(self):
        """Bytes held for a request that has not started: what a peer that
        never finishes its PARAMS keeps in this worker's memory."""
        if self.state is not OPEN or self.channel is not None:
            return 0
        return self.codec.pending_params

    def refuse_pending(self, budget):
        """The worker holds more than *budget* bytes for requests not
        started, and this connection is among those holding the most:
        OVERLOADED, and closed."""
        ids = list(self.codec.active_requests)
        log.warning('%s from %s refused with OVERLOADED: %d bytes of PARAMS not complete yet'
                    ' would keep this worker past its %d (--max-pending-params)',
                    'request %s' % ', '.join(map(str, ids)) if ids else 'a connection',
                    self.peer_name(), self.held_params(), budget)
        data = b''.join(self.codec.end_request(rid, 0, fcgi.FCGI_OVERLOADED) for rid in ids)
        if data:
            try:
                self.transport.send_now(data)
            except OSError:
                pass
        self.close()

    def log_silence(self, timeout):
        """Log why this connection, silent for more than *timeout* seconds,
        is about to be closed: between requests that is routine, in the
        middle of a record or of a request it is a stalled web server."""
        partial = self.codec.partial_record
        if partial is not None:
            log.warning('closing the connection from %s: silent for more than %gs in the middle'
                        ' of a record (%d of %d bytes received)', self.peer_name(), timeout,
                        *partial)
        elif self.codec.active_requests and self.state is not LINGERING:
            log.warning('closing the connection from %s: silent for more than %gs with request'
                        ' %s incomplete', self.peer_name(), timeout,
                        ', '.join(map(str, self.codec.active_requests)))
        else:
            log.info('closing the connection from %s: idle for more than %gs',
                     self.peer_name(), timeout)

    def peer_name(self):
        """The web server's address, for the log."""
        return self.transport.peer_name()

    def close(self):
        if self.state is not CLOSED or not self.transport.closed():
            self.state = CLOSED
            self.transport.close()

"""The answers the FastCGI server gives on its own account, in place of the
application's: whole CGI responses (``Status:`` and headers, then a short
text body), ready to be sent as a request's STDOUT; and how a connection
gives them (``AnswersOnOwnAccount``, a part of connection.ServedConnection):
408 past --request-read-timeout, 413 past --max-body-size, 504 past
--timeout."""

import logging
import time

from ..handlers.base import describe_request
from ..handlers.fastcgi import RequestTimedOut, RequestTooLarge
from .channel import ABORTED, ANSWERED, FINISHED, RUNNING
from .connection_state import CLOSED, LINGERING

log = logging.getLogger('gateway')

_LINGER_AFTER_TIMEOUT = 1.0     # seconds to read until the web server closes, after a 504


def plain_answer(status, text):
    body = text.encode('ascii') + b'\n'
    return (b'Status: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n'
            % (status.encode('ascii'), len(body))) + body


def status_of(answer):
    """'408 Request Timeout', of one of these answers."""
    return answer[8:answer.index(b'\r\n')].decode('ascii')


def outcome_of(answer):
    """(status, body bytes) of one of these answers, for the access log."""
    return status_of(answer), len(answer.partition(b'\r\n\r\n')[2])


# --request-read-timeout: the request did not all come in time.
REQUEST_TIMEOUT = plain_answer('408 Request Timeout',
                               'Request Timeout: the request did not arrive in time.')
# --max-body-size: the body is larger than the server takes.
CONTENT_TOO_LARGE = plain_answer('413 Content Too Large',
                                 'Content Too Large: the request body is over the limit.')
# --timeout: the application did not answer in time.
GATEWAY_TIMEOUT = plain_answer('504 Gateway Timeout',
                               'Gateway Timeout: the application did not answer in time.')


class AnswersOnOwnAccount:
    """The answers a ServedConnection gives in place of the application's;
    uses its ``transport``, ``codec``, ``channel`` and ``_send``."""

    def _answer_late(self, request_id, response):
        """*response* as the whole answer to *request_id* (None: none, what
        is on the wire is cut), then our side shut: whatever is sent after
        fails as if the web server had gone. An I/O error closes."""
        try:
            if response is not None:
                self.transport.send(self.codec.end_response(request_id, response))
            self.transport.shutdown_write()
        except OSError:
            self.state = CLOSED

    def _body_late(self, channel):
        """The application waits for a body that has not all come within
        --request-read-timeout. A kept connection stays open, as after a
        413: the rest of the body, if it still comes, is dropped, and the
        connection, back among the idle ones, holds no thread and closes
        after --read-timeout of silence."""
        self._end_body_early(channel, f'body not complete after {self.arrival_limit:g}s'
                             ' (--request-read-timeout)', REQUEST_TIMEOUT, RequestTimedOut,
                             reusable=True)

    def _body_too_large(self, channel, limit):
        """The body read so far passes --max-body-size (it was streamed,
        with no length or more than it declared)."""
        self._end_body_early(channel, f'body over --max-body-size {limit}', CONTENT_TOO_LARGE,
                             RequestTooLarge, reusable=True)

    def _end_body_early(self, channel, why, answer, error, reusable=False):
        """The application gets no more of its body: *answer* (a 408 or
        413) if nothing of its response is on the wire yet, else the
        response is cut; *error* (a RequestAborted) raised to it.

        A *reusable* answer on a kept connection leaves it open, the rest of
        the body dropped as it comes: a web server's pool (Apache
        enablereuse, nginx keepalive) may pick the connection for its next
        request the moment the answer has come, before a shutdown after it
        would arrive, and that request would fail."""
        params = channel.params
        log.warning('%s from %s: %s: %d of %s bytes received; %s', describe_request(params),
                    self.peer_name(), why, channel.received,
                    params.get('CONTENT_LENGTH') or 'an unknown number of',
                    'its response had started: cut' if channel.sent
                    else 'answered ' + status_of(answer))
        channel.stdin_ended = True
        if not channel.sent:
            channel.answer = answer
        if reusable and channel.keep_conn and not channel.sent:
            channel.state = FINISHED
            self._send(self.codec.end_response(channel.request_id, answer))
        else:
            channel.state = ANSWERED
            self._answer_late(channel.request_id, None if channel.sent else answer)
        raise error(channel.request_id)

    def _refuse_body(self, request_id, params, limit):
        """A declared body over --max-body-size: 413, the application not
        run. As for a refused role, the body that still comes is dropped
        unread; a connection not kept is closed once the web server is done."""
        log.warning('%s from %s: CONTENT_LENGTH %s is over --max-body-size %d; answered 413'
                    ' Content Too Large', describe_request(params), self.peer_name(),
                    params['CONTENT_LENGTH'], limit)
        self.served += 1
        if self.config.access_log is not None:
            self.config.access_log.write(params, *outcome_of(CONTENT_TOO_LARGE), time.time(), 0)
        keep = self.sole or self.codec.keep_conn(request_id)
        try:
            self._send(self.codec.end_response(request_id, CONTENT_TOO_LARGE))
        except OSError:
            self.close()
            return
        if not keep:
            self._close_after_response(False)

    def params_late(self, now):
        """From the worker's sweep: whether this connection's request, not
        started, has not got its PARAMS within --request-read-timeout; if
        so it is answered 408, and the connection left to close."""
        if self.arrival_deadline is None or now < self.arrival_deadline \
                or not self.codec.active_requests or self.state is LINGERING:
            return False
        request_id = next(iter(self.codec.active_requests))
        log.warning('request %d from %s: PARAMS not complete after %gs (--request-read-timeout):'
                    ' %d bytes received; answered 408 Request Timeout', request_id,
                    self.peer_name(), self.arrival_limit, self.codec.pending_params)
        self._answer_late(request_id, REQUEST_TIMEOUT)
        if self.state is not CLOSED:
            # Read what still comes until the web server closes: closing
            # with input unread could reset the 408 away.
            self.state = LINGERING
            self.linger_deadline = now + (self.timeout or self.arrival_limit)
        return True

    def answer_overdue(self, seconds, timeout):
        """The running request has run past --timeout (the worker is told so
        from another thread, or on top of the request itself): a 504 when
        nothing of the response is on the wire yet, else the connection cut.
        False when there was no request left to end."""
        channel = self.channel
        if channel is None or channel.state not in (RUNNING, ABORTED):
            return False    # it ended a moment ago, or was answered 408
        channel.state, channel.stdin_ended = ANSWERED, True
        what = describe_request(channel.params)
        transport = self.transport
        try:
            if channel.sent:
                log.error('%s: still running after %.1fs (--timeout %gs) with its response'
                          ' started; connection closed', what, seconds, timeout)
                transport.shutdown()
                return True
            channel.answer = GATEWAY_TIMEOUT
            transport.send(self.codec.end_response(channel.request_id, GATEWAY_TIMEOUT))
            log.error('%s: no response after %.1fs (--timeout %gs); answered 504 Gateway'
                      ' Timeout', what, seconds, timeout)
            access_log = self.config.access_log
            if access_log is not None:
                # Now: with one thread the worker exits on top of the
                # request, with more its thread may never come back
                # (_run_request then writes no second line).
                access_log.write(channel.params, *outcome_of(GATEWAY_TIMEOUT),
                                 time.time() - seconds, int(seconds * 1e6))
            # No further request on this connection: its thread still holds
            # it. Closing with input unread would reset the connection and
            # could destroy the 504 in flight, so read until the web server
            # closes too (it does once it has the END_REQUEST).
            transport.shutdown_write()
            transport.discard(True, time.monotonic() + _LINGER_AFTER_TIMEOUT)
        except OSError as error:
            log.info('%s: connection lost while ending the request: %s', what, error)
        return True

"""One running request's channel: what its handler may say to the web
server (read the body, write the response, end it), lent by the connection
(connection.py) for the request's lifetime; see gateway.handlers.fastcgi
for the handler's side."""

from ..handlers.fastcgi import RequestAborted

__all__ = ['RequestChannel', 'RUNNING', 'ABORTED', 'FINISHED', 'BROKEN', 'ANSWERED']

# A request's channel: the application may read and write (RUNNING, or
# ABORTED by the web server, which it learns on its next read or block);
# FINISHED (END_REQUEST sent), BROKEN (the response is incomplete: no
# END_REQUEST, the connection closes) and ANSWERED (408, 413 or 504 sent, or the
# response cut, on the server's own account) take nothing more.
RUNNING, ABORTED, FINISHED, BROKEN, ANSWERED = 'running', 'aborted', 'finished', 'broken', 'answered'


class RequestChannel:
    """What one running request may say to the web server, lent by its
    connection to the handler for the request's lifetime (see
    ``gateway.handlers.fastcgi``)."""

    __slots__ = ('_conn', 'request_id', 'params', 'keep_conn', 'state', 'received', 'sent',
                 'stdin_ended', 'answer')

    def __init__(self, conn, request_id, params, keep_conn):
        self._conn = conn
        self.request_id = request_id
        self.params = params
        self.keep_conn = keep_conn      # the connection stays open after the request
        self.state = RUNNING
        self.received = 0               # body bytes that came, for the log
        self.sent = False               # STDOUT on the wire: too late for another answer
        self.stdin_ended = False
        self.answer = None              # what the server answered in the application's place

    def read(self):
        """The next block of the request body; b'' once it has all come."""
        if self.stdin_ended:
            return b''
        return self._conn._read_stdin(self)

    def write(self, data):
        """Send *data* as STDOUT; then raise RequestAborted if the web server
        has aborted the request meanwhile."""
        if self.state is not RUNNING:
            raise RequestAborted(self.request_id)
        conn = self._conn
        if data:
            self.sent = True
            conn._send(conn.codec.stdout(self.request_id, data))
        conn._check_abort(self)

    def stderr(self, data):
        """Send *data* as STDERR (the web server's error log)."""
        if self.state is RUNNING or self.state is ABORTED:
            conn = self._conn
            conn._send(conn.codec.stderr(self.request_id, data))

    def finish(self, data=b''):
        """The response is complete: *data*, the end of STDOUT and
        END_REQUEST, in one write. Never raises: a failure shows in the
        connection's state."""
        if self.state is RUNNING or self.state is ABORTED:
            self._conn._finish(self, data)

    def abort(self):
        """The response on the wire is incomplete: no END_REQUEST, so that
        the web server sees it failed when the connection closes."""
        if self.state is RUNNING or self.state is ABORTED:
            self.state = BROKEN

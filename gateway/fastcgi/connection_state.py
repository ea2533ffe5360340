"""Where a web-server connection is (``State``), for the connection
(connection.py) and the answers it gives on its own account (answers.py)."""

import enum

__all__ = ['State', 'OPEN', 'LINGERING', 'FAILED', 'CLOSED']


class State(enum.Enum):
    """Where a connection is; the transitions, and nothing else, are:

    OPEN -> FAILED     the web server broke the protocol: the requests that the
                       records before the bad one made complete are still
                       served, nothing more is read; then CLOSED.
    OPEN -> LINGERING  the last answer is sent (no FCGI_KEEP_CONN, a refused or
                       failed request, a 408 for late PARAMS) and the web
                       server may still be sending: our side is shut down,
                       and what comes is read
                       and dropped until it closes, stays silent for the read
                       timeout, or the lingering time is up (a close with input
                       unread would be a reset, which can destroy the answer in
                       flight); then CLOSED.
    any -> CLOSED      the web server closed or went silent, an I/O error, the
                       last answer sent with all the input read, or the worker
                       shedding or stopping the connection.
    """

    OPEN, LINGERING, FAILED, CLOSED = 'open', 'lingering', 'failed', 'closed'


OPEN, LINGERING, FAILED, CLOSED = State.OPEN, State.LINGERING, State.FAILED, State.CLOSED

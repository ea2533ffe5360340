"""What the FastCGI codec (``protocol.Connection``) tells the server: one
event per thing a web server said, in the order it said it; and
``ProtocolError``, what it raises when the input breaks the format.

Events compare equal by type and fields, and print as their constructor
call, for the tests.
"""

__all__ = ["BeginRequest", "RejectedBeginRequest", "Params", "StdinData", "StdinEnd",
           "Data", "DataEnd", "AbortRequest", "GetValues", "UnknownManagementRecord",
           "ProtocolError"]


class ProtocolError(Exception):
    """The peer sent bytes that break the FastCGI record format.

    The only exception that malformed input raises.  The message says what
    was wrong, for the log; the connection cannot be trusted afterwards and
    should be closed.

    ``events`` holds what the records before the bad one completed, in
    order: they were well formed, and a server that handles them before
    closing behaves the same whatever the split of its input (the bad record
    might as well have arrived in a later read).
    """

    events = ()


class _Event:
    __slots__ = ()
    _fields = ()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f)
                   for f in self._fields)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    # Params holds a dict, so events are not hashable.
    __hash__ = None

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (f, getattr(self, f)) for f in self._fields))


class _RequestEvent(_Event):
    __slots__ = _fields = ("request_id",)

    def __init__(self, request_id):
        self.request_id = request_id


class _ChunkEvent(_Event):
    __slots__ = _fields = ("request_id", "data")

    def __init__(self, request_id, data):
        self.request_id = request_id
        self.data = data


class _BeginEvent(_Event):
    __slots__ = _fields = ("request_id", "role", "keep_conn")

    def __init__(self, request_id, role, keep_conn):
        self.request_id = request_id
        self.role = role
        self.keep_conn = keep_conn


class BeginRequest(_BeginEvent):
    """A request starts.  ``role`` may be any number: a server that does not
    play it answers ``end_request(request_id, protocol_status=
    FCGI_UNKNOWN_ROLE)``.  When ``keep_conn`` is false the server closes the
    connection after the END_REQUEST."""

    __slots__ = ()


class RejectedBeginRequest(_BeginEvent):
    """A BEGIN_REQUEST arrived while another request is active on a
    connection that does not multiplex.  The request is not made active (its
    other records are ignored); the server must answer
    ``end_request(request_id, protocol_status=FCGI_CANT_MPX_CONN)``."""

    __slots__ = ()


class Params(_Event):
    """The whole PARAMS stream of a request, once its empty record arrived.

    ``params`` maps latin-1 ``str`` names to latin-1 ``str`` values (see
    ``decode_pairs``).  For the AUTHORIZER role no STDIN follows, so this is
    the point to run the application.
    """

    __slots__ = _fields = ("request_id", "params")

    def __init__(self, request_id, params):
        self.request_id = request_id
        self.params = params


class StdinData(_ChunkEvent):
    """A piece of the request body (never empty)."""

    __slots__ = ()


class StdinEnd(_RequestEvent):
    """The request body is complete."""

    __slots__ = ()


class Data(_ChunkEvent):
    """A piece of the FILTER role's data stream (never empty)."""

    __slots__ = ()


class DataEnd(_RequestEvent):
    """The FILTER role's data stream is complete."""

    __slots__ = ()


class AbortRequest(_RequestEvent):
    """The web server gave up on the request (or closed the connection).

    Later records for it are ignored.  The server stops the application as
    best it can and answers with ``end_request`` promptly.
    """

    __slots__ = ()


class GetValues(_Event):
    """A GET_VALUES management record: answer with ``get_values_result``,
    giving only the ``names`` the server knows."""

    __slots__ = _fields = ("names",)

    def __init__(self, names):
        self.names = names


class UnknownManagementRecord(_Event):
    """A management record (request id 0) of a type we do not know: answer
    with ``unknown_type(record_type)``."""

    __slots__ = _fields = ("record_type",)

    def __init__(self, record_type):
        self.record_type = record_type

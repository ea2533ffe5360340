"""The FastCGI 1.0 record format, as a state machine that does no I/O.

Everything a FastCGI peer says is a *record*: an 8-byte header, then
``contentLength`` bytes of content, then ``paddingLength`` bytes of padding
that the receiver skips::

    version(1)=1  type(1)  requestId(2)  contentLength(2)
    paddingLength(1)  reserved(1)
    content (0..65535 bytes)
    padding (0..255 bytes)

All integers are big-endian.  Records with ``requestId`` 0 are *management*
records (GET_VALUES and its answer); all others belong to one request.

A request on the application side looks like this (web server -> us)::

    BEGIN_REQUEST  role(2) flags(1) reserved(5); flag 1 is FCGI_KEEP_CONN
    PARAMS ...     name-value pairs, as many records as needed
    PARAMS         empty: end of the PARAMS stream
    STDIN ...      the request body
    STDIN          empty: end of the STDIN stream
    (DATA ...      FILTER role only, also ended by an empty record)

and we answer (us -> web server)::

    STDOUT ...     the response (headers and body, CGI style)
    STDOUT         empty: end of the STDOUT stream
    STDERR ...     optional, for the web server's error log
    END_REQUEST    appStatus(4) protocolStatus(1) reserved(3)

PARAMS and GET_VALUES carry name-value pairs, encoded and decoded by
``pairs``; what malformed input raises, ``ProtocolError``, is in ``events``
(both are importable from here too).

``Connection`` is the application side: feed it the bytes read from the
socket with ``receive_data`` and it returns events; its encoder methods
return the bytes to write, and are the only place the server encodes a
record.  It never touches a socket, so the same code serves a threaded
server, an asyncio one, and the tests.  The web server's side of the same
format (encoders for its records, a reader for ours) is ``client``.
"""

import struct

from .events import (AbortRequest, BeginRequest, Data, DataEnd, GetValues, Params,
                     ProtocolError, RejectedBeginRequest, StdinData, StdinEnd,
                     UnknownManagementRecord)
from .pairs import decode_pairs, encode_pairs

__all__ = [
    "FCGI_VERSION_1", "FCGI_HEADER_LEN", "FCGI_MAX_CONTENT_LENGTH", "FCGI_MAX_PADDING_LENGTH",
    "FCGI_NULL_REQUEST_ID", "FCGI_BEGIN_REQUEST", "FCGI_ABORT_REQUEST", "FCGI_END_REQUEST",
    "FCGI_PARAMS", "FCGI_STDIN", "FCGI_STDOUT", "FCGI_STDERR", "FCGI_DATA", "FCGI_GET_VALUES",
    "FCGI_GET_VALUES_RESULT", "FCGI_UNKNOWN_TYPE", "RECORD_TYPE_NAMES", "FCGI_KEEP_CONN",
    "FCGI_RESPONDER", "FCGI_AUTHORIZER", "FCGI_FILTER", "FCGI_REQUEST_COMPLETE",
    "FCGI_CANT_MPX_CONN", "FCGI_OVERLOADED", "FCGI_UNKNOWN_ROLE", "FCGI_MAX_CONNS",
    "FCGI_MAX_REQS", "FCGI_MPXS_CONNS",
    "ProtocolError", "encode_pairs", "decode_pairs", "encode_record", "Framer", "Connection",
    # the events Connection.receive_data returns (events.py)
    "BeginRequest", "RejectedBeginRequest", "Params", "StdinData", "StdinEnd", "Data",
    "DataEnd", "AbortRequest", "GetValues", "UnknownManagementRecord",
]

# ---------------------------------------------------------------------------
# Constants (names as in the FastCGI 1.0 specification)
# ---------------------------------------------------------------------------

FCGI_VERSION_1 = 1
FCGI_HEADER_LEN = 8
FCGI_MAX_CONTENT_LENGTH = 65535
FCGI_MAX_PADDING_LENGTH = 255
FCGI_NULL_REQUEST_ID = 0

# Record types
FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_DATA = 8
FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11

RECORD_TYPE_NAMES = {
    FCGI_BEGIN_REQUEST: "BEGIN_REQUEST",
    FCGI_ABORT_REQUEST: "ABORT_REQUEST",
    FCGI_END_REQUEST: "END_REQUEST",
    FCGI_PARAMS: "PARAMS",
    FCGI_STDIN: "STDIN",
    FCGI_STDOUT: "STDOUT",
    FCGI_STDERR: "STDERR",
    FCGI_DATA: "DATA",
    FCGI_GET_VALUES: "GET_VALUES",
    FCGI_GET_VALUES_RESULT: "GET_VALUES_RESULT",
    FCGI_UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

# BEGIN_REQUEST flags
FCGI_KEEP_CONN = 1

# Roles
FCGI_RESPONDER = 1
FCGI_AUTHORIZER = 2
FCGI_FILTER = 3

# END_REQUEST protocolStatus
FCGI_REQUEST_COMPLETE = 0
FCGI_CANT_MPX_CONN = 1
FCGI_OVERLOADED = 2
FCGI_UNKNOWN_ROLE = 3

# Names a GET_VALUES record may ask about
FCGI_MAX_CONNS = "FCGI_MAX_CONNS"
FCGI_MAX_REQS = "FCGI_MAX_REQS"
FCGI_MPXS_CONNS = "FCGI_MPXS_CONNS"


def _type_name(record_type):
    return RECORD_TYPE_NAMES.get(record_type, "type %d" % record_type)


# ---------------------------------------------------------------------------
# Fixed layouts
# ---------------------------------------------------------------------------

# version, type, requestId, contentLength, paddingLength (reserved skipped)
_HEADER = struct.Struct(">BBHHBx")
_BEGIN_BODY = struct.Struct(">HB5x")
_BEGIN_RECORD = struct.Struct(">BBHHBxHB5x")
_END_BODY = struct.Struct(">IB3x")
_END_RECORD = struct.Struct(">BBHHBxIB3x")
_UNKNOWN_TYPE_RECORD = struct.Struct(">BBHHBxB7x")
# The empty STDOUT record and END_REQUEST: how every response ends.
_END_RESPONSE = struct.Struct(">BBHHBxBBHHBxIB3x")

# Senders align records to 8 bytes (the specification recommends it, and
# nginx and Go do the same); indexed by the padding length.
_PADDING = [bytes(n) for n in range(8)]


# ---------------------------------------------------------------------------
# Record encoding (shared by both sides)
# ---------------------------------------------------------------------------

def _encode_stream(record_type, request_id, data):
    """Records of ``record_type`` carrying ``data``, each padded to 8 bytes.

    Empty data gives no record at all: an empty record would end the stream.
    """
    n = len(data)
    if n <= FCGI_MAX_CONTENT_LENGTH:
        if not n:
            return b""
        pad = -n & 7
        return b"".join((_HEADER.pack(1, record_type, request_id, n, pad),
                         data, _PADDING[pad]))
    view = memoryview(data).cast("B")
    parts = []
    pack = _HEADER.pack
    for start in range(0, n, FCGI_MAX_CONTENT_LENGTH):
        chunk = view[start:start + FCGI_MAX_CONTENT_LENGTH]
        size = len(chunk)
        pad = -size & 7
        parts += (pack(1, record_type, request_id, size, pad), chunk,
                  _PADDING[pad])
    return b"".join(parts)


def encode_record(record_type, request_id, content=b"", padding=0):
    """One record, exactly as given (``padding`` zero bytes after content)."""
    if len(content) > FCGI_MAX_CONTENT_LENGTH:
        raise ValueError("record content longer than 65535 bytes")
    if not 0 <= padding <= FCGI_MAX_PADDING_LENGTH:
        raise ValueError("padding must be 0 to 255 bytes")
    return b"".join((_HEADER.pack(1, record_type, request_id, len(content),
                                  padding), content, bytes(padding)))


class Framer:
    """Holds the start of a record whose end has not arrived yet.

    Complete records are parsed straight from the bytes handed in, by offset,
    so a read holding whole records is never copied into a buffer.  Only an
    unfinished tail is kept, with the length it needs before it is worth
    looking at again, so feeding a large record a byte at a time stays linear.
    """

    __slots__ = ("_tail", "_need")

    def __init__(self):
        self._tail = bytearray()
        self._need = FCGI_HEADER_LEN

    def _join(self, data):
        """Bytes to parse from, or None while the held record is unfinished."""
        if type(data) is not bytes:
            data = bytes(data)
        tail = self._tail
        if not tail:
            return data
        tail += data
        if len(tail) < self._need:
            return None
        data = bytes(tail)
        tail.clear()
        return data

    def _keep(self, data, pos):
        """Hold ``data[pos:]``, an unfinished record (its header checked)."""
        left = len(data) - pos
        if not left:
            self._need = FCGI_HEADER_LEN
            return
        self._tail += memoryview(data)[pos:]
        if left < FCGI_HEADER_LEN:
            self._need = FCGI_HEADER_LEN
        else:
            _, _, _, clen, plen = _HEADER.unpack_from(data, pos)
            self._need = FCGI_HEADER_LEN + clen + plen

    @property
    def partial_record(self):
        """``(received, needed)`` bytes of the unfinished record held, or
        None between records.  ``needed`` counts the header alone until the
        header is complete."""
        if not self._tail:
            return None
        return len(self._tail), self._need

    def _check_eof(self):
        if self._tail:
            raise ProtocolError(
                "connection closed in the middle of a record "
                "(%d of %d bytes received)" % (len(self._tail), self._need))


def _bad_version(version):
    return ProtocolError("unsupported FastCGI version %d (expected 1)"
                         % version)


# ---------------------------------------------------------------------------
# The application side
# ---------------------------------------------------------------------------

class _Request:
    """What one active request has received so far."""

    __slots__ = ("params", "params_size", "stdin_done", "data_done",
                 "aborted", "keep_conn")

    def __init__(self, keep_conn):
        self.params = b""         # the PARAMS stream so far; None once it ended
        self.params_size = 0
        self.stdin_done = False
        self.data_done = False
        self.aborted = False
        self.keep_conn = keep_conn


class Connection(Framer):
    """One FastCGI connection, seen from the application.

    ``receive_data(bytes)`` returns a list of events; the encoder methods
    return bytes to send.  Any split of the input gives the same events.

    ``multiplex`` says whether several requests may be active at once; when it
    is false (the default) a BEGIN_REQUEST while a request is active gives
    ``RejectedBeginRequest`` instead of ``BeginRequest``.
    ``max_params_size`` bounds the PARAMS stream of one request, in bytes.

    A request is active from its BEGIN_REQUEST until the server calls
    ``end_request`` for it.  After a ProtocolError the connection is broken:
    every later ``receive_data`` raises it again.
    """

    __slots__ = ("_requests", "_multiplex", "_max_params_size", "_eof",
                 "_error")

    def __init__(self, *, max_params_size=1 << 20, multiplex=False):
        Framer.__init__(self)
        self._requests = {}
        self._multiplex = multiplex
        self._max_params_size = max_params_size
        self._eof = False
        self._error = None

    # -- state ------------------------------------------------------------

    @property
    def active_requests(self):
        """The ids of the active requests (a live, read-only view)."""
        return self._requests.keys()

    @property
    def idle(self):
        """No request is active and no partial record is held."""
        return not self._requests and not self._tail

    @property
    def pending_params(self):
        """Bytes held for requests that cannot start yet: their PARAMS so
        far, and the start of a record not complete yet."""
        held = len(self._tail)
        for request in self._requests.values():
            if request.params is not None:
                held += request.params_size
        return held

    def keep_conn(self, request_id):
        """Whether the web server asked to keep the connection after this
        (active) request."""
        return self._requests[request_id].keep_conn

    # -- input ------------------------------------------------------------

    def receive_data(self, data):
        """Consume bytes from the peer; return the events they complete.

        Raises ProtocolError on malformed input; its ``events`` are those the
        records before the bad one completed.
        """
        if self._error is not None:
            raise ProtocolError("connection already failed: %s" % self._error)
        if self._eof:
            raise ProtocolError("data received after the end of input")
        data = self._join(data)
        if data is None:
            return []
        events = []
        try:
            pos = self._parse(data, events)
        except ProtocolError as exc:
            self._error = exc
            exc.events = events
            raise
        self._keep(data, pos)
        return events

    def receive_eof(self):
        """The peer closed its side.

        Raises ProtocolError when that cut a record short.  Otherwise returns
        an AbortRequest for each active request that was not already aborted:
        the web server is gone, so the server handles them as aborted (its
        END_REQUEST has nowhere to go, but ``end_request`` still clears the
        request).  Calling it again returns an empty list.
        """
        if self._error is not None:
            raise ProtocolError("connection already failed: %s" % self._error)
        try:
            self._check_eof()
        except ProtocolError as exc:
            self._error = exc
            raise
        self._eof = True
        events = []
        for request_id, request in self._requests.items():
            if not request.aborted:
                request.aborted = True
                events.append(AbortRequest(request_id))
        return events

    def _parse(self, data, events):
        # The hot loop: one iteration per record, common types inline.
        unpack = _HEADER.unpack_from
        requests = self._requests
        append = events.append
        n = len(data)
        pos = 0
        while n - pos >= FCGI_HEADER_LEN:
            version, rtype, rid, clen, plen = unpack(data, pos)
            if version != FCGI_VERSION_1:
                raise _bad_version(version)
            start = pos + FCGI_HEADER_LEN
            end = start + clen
            if end + plen > n:
                break
            # Padding is skipped, whatever its bytes.
            pos = end + plen

            request = requests.get(rid)
            if request is None:
                if rid == FCGI_NULL_REQUEST_ID:
                    append(self._management(rtype, data[start:end]))
                elif rtype == FCGI_BEGIN_REQUEST:
                    append(self._begin(rid, data[start:end]))
                # Other records for inactive ids are ignored (spec 3.3):
                # they may belong to a request that has just ended.
                continue
            if request.aborted:
                # After ABORT_REQUEST the web server has no use for what the
                # request still receives.
                continue
            if rtype == FCGI_PARAMS:
                held = request.params
                if held is None:
                    raise ProtocolError(
                        "request %d: PARAMS after the end of PARAMS" % rid)
                if clen:
                    size = request.params_size + clen
                    if size > self._max_params_size:
                        raise ProtocolError(
                            "request %d: PARAMS larger than %d bytes"
                            % (rid, self._max_params_size))
                    request.params_size = size
                    if not held:
                        request.params = data[start:end]
                    else:
                        # One buffer, not an object per record: a stream
                        # of tiny records would otherwise hold many times
                        # the bytes counted against the limits.
                        if type(held) is bytes:
                            held = request.params = bytearray(held)
                        held += memoryview(data)[start:end]
                else:
                    # A pair may straddle two records, so the stream is
                    # decoded only once it is complete.
                    request.params = None
                    try:
                        params = decode_pairs(held if type(held) is bytes
                                              else bytes(held))
                    except ProtocolError as exc:
                        raise ProtocolError(
                            "request %d: PARAMS: %s" % (rid, exc)) from None
                    append(Params(rid, params))
            elif rtype == FCGI_STDIN:
                if request.params is not None:
                    raise ProtocolError(
                        "request %d: STDIN before the end of PARAMS" % rid)
                if request.stdin_done:
                    raise ProtocolError(
                        "request %d: STDIN after the end of STDIN" % rid)
                if clen:
                    append(StdinData(rid, data[start:end]))
                else:
                    request.stdin_done = True
                    append(StdinEnd(rid))
            else:
                append(self._other(request, rtype, rid, data[start:end]))
        return pos

    def _management(self, rtype, content):
        if rtype == FCGI_GET_VALUES:
            # The values of a query are empty; only the names matter.
            try:
                return GetValues(list(decode_pairs(content)))
            except ProtocolError as exc:
                raise ProtocolError("GET_VALUES: %s" % exc) from None
        # Spec 4.2: any other management type gets an UNKNOWN_TYPE answer,
        # so newer peers can probe for what we support.
        return UnknownManagementRecord(rtype)

    def _begin(self, rid, content):
        if len(content) != _BEGIN_BODY.size:
            raise ProtocolError(
                "request %d: BEGIN_REQUEST body is %d bytes, not 8"
                % (rid, len(content)))
        role, flags = _BEGIN_BODY.unpack(content)
        keep_conn = bool(flags & FCGI_KEEP_CONN)
        if self._requests and not self._multiplex:
            # Spec 5.5: a connection that takes one request at a time
            # answers the others with CANT_MPX_CONN.
            return RejectedBeginRequest(rid, role, keep_conn)
        self._requests[rid] = _Request(keep_conn)
        return BeginRequest(rid, role, keep_conn)

    def _other(self, request, rtype, rid, content):
        if rtype == FCGI_BEGIN_REQUEST:
            # The web server may reuse an id only after its END_REQUEST.
            raise ProtocolError(
                "request %d: BEGIN_REQUEST for an id already active" % rid)
        if rtype == FCGI_ABORT_REQUEST:
            request.aborted = True
            return AbortRequest(rid)
        if rtype == FCGI_DATA:
            if request.params is not None:
                raise ProtocolError(
                    "request %d: DATA before the end of PARAMS" % rid)
            if request.data_done:
                raise ProtocolError(
                    "request %d: DATA after the end of DATA" % rid)
            if content:
                return Data(rid, content)
            request.data_done = True
            return DataEnd(rid)
        # STDOUT, END_REQUEST and the like only ever travel the other way.
        raise ProtocolError("request %d: unexpected %s record"
                            % (rid, _type_name(rtype)))

    # -- output -----------------------------------------------------------

    @staticmethod
    def stdout(request_id, data):
        """STDOUT records for ``data`` (nothing when ``data`` is empty)."""
        return _encode_stream(FCGI_STDOUT, request_id, data)

    @staticmethod
    def stderr(request_id, data):
        """STDERR records for ``data`` (nothing when ``data`` is empty)."""
        return _encode_stream(FCGI_STDERR, request_id, data)

    def end_request(self, request_id, app_status=0,
                    protocol_status=FCGI_REQUEST_COMPLETE):
        """The END_REQUEST record; the request stops being active.

        ``app_status`` is taken modulo 2**32 (an exit status may be negative).
        Also the answer to RejectedBeginRequest, AbortRequest and unknown
        roles, with the matching ``protocol_status``.
        """
        self._requests.pop(request_id, None)
        return _END_RECORD.pack(1, FCGI_END_REQUEST, request_id, 8, 0,
                                app_status & 0xFFFFFFFF, protocol_status)

    def end_response(self, request_id, data=b"", app_status=0):
        """``stdout(request_id, data)``, the empty STDOUT record that ends the stream, and
        ``end_request(request_id, app_status)`` in one bytes object: a whole
        answer, ready for one write."""
        self._requests.pop(request_id, None)
        end = _END_RESPONSE.pack(1, FCGI_STDOUT, request_id, 0, 0,
                                 1, FCGI_END_REQUEST, request_id, 8, 0,
                                 app_status & 0xFFFFFFFF, FCGI_REQUEST_COMPLETE)
        n = len(data)
        if not n:
            return end
        if n <= FCGI_MAX_CONTENT_LENGTH:
            pad = -n & 7
            return b"".join((_HEADER.pack(1, FCGI_STDOUT, request_id, n, pad),
                             data, _PADDING[pad], end))
        return _encode_stream(FCGI_STDOUT, request_id, data) + end

    @staticmethod
    def get_values_result(values):
        """The GET_VALUES_RESULT record for ``values`` (name -> str or int).

        Give only the names the server knows; the others are left out.
        """
        content = encode_pairs(
            (name, str(value)) for name, value in values.items())
        if len(content) > FCGI_MAX_CONTENT_LENGTH:
            raise ValueError("GET_VALUES_RESULT does not fit one record")
        return encode_record(FCGI_GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID,
                             content, -len(content) & 7)

    @staticmethod
    def unknown_type(record_type):
        """The UNKNOWN_TYPE record answering a management ``record_type``."""
        return _UNKNOWN_TYPE_RECORD.pack(1, FCGI_UNKNOWN_TYPE,
                                         FCGI_NULL_REQUEST_ID, 8, 0,
                                         record_type)

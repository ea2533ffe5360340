"""The web server's side of FastCGI: what nginx, Apache or IIS send an
application server, and a reader for its answers.

Encoders for BEGIN_REQUEST, PARAMS, STDIN, DATA, ABORT_REQUEST and
GET_VALUES; ``RecordReader``, which splits the server's answer into records
whatever the split of the input; and ``Client``, a small blocking client
that sends one request and collects its STDOUT, STDERR and END_REQUEST. The
tests and the tools share it; the server itself never imports it. The
record format is ``protocol``'s.
"""

import re
import socket
from typing import NamedTuple

from .protocol import (FCGI_ABORT_REQUEST, FCGI_BEGIN_REQUEST, FCGI_DATA, FCGI_END_REQUEST,
                       FCGI_GET_VALUES, FCGI_HEADER_LEN, FCGI_KEEP_CONN, FCGI_NULL_REQUEST_ID,
                       FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDERR, FCGI_STDIN, FCGI_STDOUT,
                       FCGI_VERSION_1, Framer, ProtocolError, encode_pairs, encode_record,
                       _BEGIN_RECORD, _END_BODY, _HEADER, _bad_version, _encode_stream)

__all__ = ["Record", "encode_begin_request", "encode_abort_request", "encode_params",
           "encode_stdin", "encode_data", "encode_get_values", "decode_end_request",
           "decode_unknown_type", "RecordReader", "parse_records", "Response", "Client",
           "cgi_params", "connect", "encode_request", "request"]



def encode_begin_request(request_id, role=FCGI_RESPONDER, keep_conn=False):
    """The BEGIN_REQUEST record."""
    return _BEGIN_RECORD.pack(1, FCGI_BEGIN_REQUEST, request_id, 8, 0, role,
                              FCGI_KEEP_CONN if keep_conn else 0)


def encode_abort_request(request_id):
    """The ABORT_REQUEST record."""
    return encode_record(FCGI_ABORT_REQUEST, request_id)


def encode_params(request_id, params):
    """The whole PARAMS stream: pairs split over records as they come (a
    pair may straddle two), then the empty record."""
    return (_encode_stream(FCGI_PARAMS, request_id, encode_pairs(params))
            + encode_record(FCGI_PARAMS, request_id))


def _encode_input(record_type, request_id, data, end):
    out = _encode_stream(record_type, request_id, data)
    return out + encode_record(record_type, request_id) if end else out


def encode_stdin(request_id, data, *, end=True):
    """STDIN records for ``data``, then (with ``end``) the empty record."""
    return _encode_input(FCGI_STDIN, request_id, data, end)


def encode_data(request_id, data, *, end=True):
    """DATA records for ``data``, then (with ``end``) the empty record."""
    return _encode_input(FCGI_DATA, request_id, data, end)


def encode_get_values(names):
    """A GET_VALUES record asking about ``names``."""
    content = encode_pairs((name, b"") for name in names)
    return encode_record(FCGI_GET_VALUES, FCGI_NULL_REQUEST_ID, content,
                         -len(content) & 7)


def decode_end_request(content):
    """``(app_status, protocol_status)`` from an END_REQUEST body."""
    if len(content) != _END_BODY.size:
        raise ProtocolError("END_REQUEST body is %d bytes, not 8"
                            % len(content))
    return _END_BODY.unpack(content)


def decode_unknown_type(content):
    """The record type an UNKNOWN_TYPE body names."""
    if len(content) != 8:
        raise ProtocolError("UNKNOWN_TYPE body is %d bytes, not 8"
                            % len(content))
    return content[0]


class Record(NamedTuple):
    """One record as read: its type, request id and content (no padding)."""

    type: int
    request_id: int
    content: bytes


class RecordReader(Framer):
    """Splits a byte stream into records, whatever the split of the input.

    ``feed(bytes)`` returns the records completed so far; ``eof()`` raises
    ProtocolError when the stream ended inside a record.
    """

    __slots__ = ()

    def feed(self, data):
        """Consume bytes; return the list of records they complete."""
        data = self._join(data)
        if data is None:
            return []
        records = []
        n = len(data)
        pos = 0
        while n - pos >= FCGI_HEADER_LEN:
            version, rtype, rid, clen, plen = _HEADER.unpack_from(data, pos)
            if version != FCGI_VERSION_1:
                raise _bad_version(version)
            start = pos + FCGI_HEADER_LEN
            if start + clen + plen > n:
                break
            records.append(Record(rtype, rid, data[start:start + clen]))
            pos = start + clen + plen
        self._keep(data, pos)
        return records

    def eof(self):
        """Raise ProtocolError if an unfinished record is held."""
        self._check_eof()


def parse_records(data):
    """Yield each Record of complete ``data``; ProtocolError if it is cut."""
    reader = RecordReader()
    yield from reader.feed(data)
    reader.eof()


# ---------------------------------------------------------------------------
# A blocking client: one request at a time
# ---------------------------------------------------------------------------

class Response(NamedTuple):
    """What came back for one request; unpacks as
    ``(stdout, stderr, app_status, protocol_status)``."""

    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int

    @property
    def head(self):
        """The CGI header block of STDOUT, as text."""
        return self.stdout.partition(b'\r\n\r\n')[0].decode('latin-1')

    @property
    def body(self):
        return self.stdout.partition(b'\r\n\r\n')[2]

    @property
    def status(self):
        """The HTTP status as an int (CGI style: 200 when no Status: line)."""
        match = re.search(r'^Status: (\d{3})', self.head, re.M | re.I)
        return int(match.group(1)) if match else 200


def cgi_params(path='/', method='GET', query='', body=b'', **extra):
    """A plausible set of PARAMS, as nginx's fastcgi_params would send."""
    params = {
        'GATEWAY_INTERFACE': 'CGI/1.1', 'SERVER_SOFTWARE': 'gateway-client',
        'REQUEST_METHOD': method, 'SCRIPT_NAME': '', 'PATH_INFO': path,
        'QUERY_STRING': query, 'REQUEST_URI': path + ('?' + query if query else ''),
        'SERVER_NAME': 'localhost', 'SERVER_PORT': '80', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '50000',
    }
    if body:
        params['CONTENT_LENGTH'] = str(len(body))
        params['CONTENT_TYPE'] = 'application/octet-stream'
    params.update(extra)
    return params


def connect(target, timeout=10.0):
    """A socket connected to *target*: a ``(host, port)`` tuple or a unix path."""
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ':' in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def encode_request(request_id, params, stdin=b'', keep_conn=False, role=FCGI_RESPONDER):
    """A whole request, as a web server sends it: BEGIN_REQUEST, PARAMS, STDIN."""
    return (encode_begin_request(request_id, role, keep_conn)
            + encode_params(request_id, params) + encode_stdin(request_id, stdin))


class Client:
    """One connection to a FastCGI server, for requests one at a time.

    *target* is an open socket (left open by ``close()`` unless *owned*),
    a ``(host, port)`` tuple or a unix socket path.
    """

    def __init__(self, target, timeout=10.0, owned=None):
        is_socket = isinstance(target, socket.socket)
        self.sock = target if is_socket else connect(target, timeout)
        self.owned = (not is_socket) if owned is None else owned
        self.reader = RecordReader()

    def request(self, params=None, stdin=b'', keep_conn=False, request_id=1,
                role=FCGI_RESPONDER):
        """Send one request and return its Response. *params* defaults to
        ``cgi_params()`` for GET / (with *stdin* as its body)."""
        if params is None:
            params = cgi_params(body=stdin)
        self.sock.sendall(encode_request(request_id, params, stdin, keep_conn, role))
        return self.response(request_id)

    def response(self, request_id=1):
        """Read records until END_REQUEST for *request_id*: its Response.
        ConnectionError when the server closes the connection first."""
        stdout, stderr = [], []
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('the server closed the connection before END_REQUEST')
            for record in self.reader.feed(data):
                if record.request_id != request_id:
                    continue
                if record.type == FCGI_STDOUT:
                    stdout.append(record.content)
                elif record.type == FCGI_STDERR:
                    stderr.append(record.content)
                elif record.type == FCGI_END_REQUEST:
                    app_status, protocol_status = decode_end_request(record.content)
                    return Response(b''.join(stdout), b''.join(stderr), app_status,
                                    protocol_status)

    def close(self):
        if self.owned:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(target, params=None, stdin=b'', keep_conn=False, request_id=1,
            role=FCGI_RESPONDER, timeout=10.0):
    """Send one request to *target* (as for ``Client``) and return its Response."""
    with Client(target, timeout) as client:
        return client.request(params, stdin, keep_conn, request_id, role)

"""Tests for the FastCGI record format state machine."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fastcgi import events as events_module
from gateway.fastcgi import pairs as pairs_module
from gateway.fastcgi import protocol as p
from gateway.fastcgi.protocol import (
    FCGI_AUTHORIZER, FCGI_BEGIN_REQUEST,
    FCGI_CANT_MPX_CONN, FCGI_DATA, FCGI_END_REQUEST, FCGI_FILTER,
    FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT, FCGI_MAX_CONNS,
    FCGI_MAX_CONTENT_LENGTH, FCGI_MAX_REQS, FCGI_MPXS_CONNS, FCGI_PARAMS,
    FCGI_RESPONDER, FCGI_STDERR, FCGI_STDIN, FCGI_STDOUT, FCGI_UNKNOWN_ROLE,
    FCGI_UNKNOWN_TYPE, AbortRequest, BeginRequest, Connection, Data, DataEnd,
    GetValues, Params, ProtocolError, RejectedBeginRequest, StdinData,
    StdinEnd, UnknownManagementRecord, decode_pairs, encode_pairs,
    encode_record,
)
from gateway.fastcgi.client import (
    Record, RecordReader, decode_end_request, decode_unknown_type,
    encode_abort_request, encode_begin_request, encode_data,
    encode_get_values, encode_params, encode_stdin, parse_records,
)

FAST = settings(max_examples=300,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=1000,
                suppress_health_check=[HealthCheck.too_slow])

latin1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255))
names = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255),
                max_size=40)
values = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255),
                 max_size=300)
param_dicts = st.dictionaries(names, values, max_size=8)

def closed(conn):
    """Whether *conn* takes no more input: the peer closed, or broke the format."""
    try:
        conn.receive_data(b"")
    except ProtocolError:
        return True
    return False


ALL_LATIN1 = bytes(range(256)).decode("latin-1")
HEADER = struct.Struct(">BBHHBB")


def request_bytes(request_id=1, params=None, body=b"", keep_conn=False,
                  role=FCGI_RESPONDER):
    return (encode_begin_request(request_id, role, keep_conn)
            + encode_params(request_id, params or {"REQUEST_METHOD": "GET"})
            + encode_stdin(request_id, body))


def feed_whole(data, **kwargs):
    """Events from feeding ``data`` at once, and the error if any."""
    conn = Connection(**kwargs)
    try:
        return conn.receive_data(data), None
    except ProtocolError as exc:
        return [], str(exc)


def feed_chunks(data, cuts, **kwargs):
    """Events from feeding ``data`` split at ``cuts``, and the error if any."""
    conn = Connection(**kwargs)
    events = []
    bounds = [0] + sorted(set(cuts)) + [len(data)]
    try:
        for a, b in zip(bounds, bounds[1:]):
            events += conn.receive_data(data[a:b])
    except ProtocolError as exc:
        return events, str(exc)
    return events, None


def split_records(data):
    """(type, request_id, content_length, padding_length) of each record."""
    out = []
    pos = 0
    while pos < len(data):
        version, rtype, rid, clen, plen, _ = HEADER.unpack_from(data, pos)
        assert version == 1
        out.append((rtype, rid, clen, plen))
        pos += 8 + clen + plen
    assert pos == len(data)
    return out


def stream_content(data, record_type, request_id):
    return b"".join(r.content for r in parse_records(data)
                    if r.type == record_type and r.request_id == request_id)


# ---------------------------------------------------------------------------
# Name-value pairs
# ---------------------------------------------------------------------------

@FAST
@given(st.dictionaries(latin1, latin1, max_size=10))
def test_pairs_round_trip(pairs):
    assert decode_pairs(encode_pairs(pairs)) == pairs


def test_pair_lengths_one_and_four_bytes():
    assert encode_pairs({"A": "b"}) == b"\x01\x01Ab"
    assert encode_pairs([("N", "x" * 127)])[:2] == b"\x01\x7f"
    long_value = encode_pairs([("N", "x" * 128)])
    assert long_value[:6] == b"\x01\x80\x00\x00\x80N"
    long_name = encode_pairs([("n" * 300, "")])
    assert long_name[:5] == b"\x80\x00\x01\x2c\x00"
    assert decode_pairs(long_name) == {"n" * 300: ""}


def test_pairs_with_every_byte_value():
    pairs = {ALL_LATIN1: ALL_LATIN1[::-1], "K": ALL_LATIN1 * 3}
    encoded = encode_pairs(pairs)
    assert bytes(range(256)) in encoded
    assert decode_pairs(encoded) == pairs


def test_pairs_accept_bytes_and_small_four_byte_lengths():
    assert encode_pairs([(b"a", b"\xff")]) == b"\x01\x01a\xff"
    # A short length may still be sent in the four-byte form.
    assert decode_pairs(b"\x80\x00\x00\x01\x80\x00\x00\x02abc") == {"a": "bc"}


def test_pairs_duplicate_name_keeps_last():
    assert decode_pairs(encode_pairs([("a", "1"), ("a", "2")])) == {"a": "2"}


@pytest.mark.parametrize("raw", [
    b"\x05\x01abc",             # name runs past the data
    b"\x01\x05ab",              # value runs past the data
    b"\x01",                    # value length missing
    b"\x80\x00\x01",            # four-byte name length cut short
    b"\x01\x80\x00",            # four-byte value length cut short
    b"\x01\x01ab\x02",          # second pair cut short
    b"\xff\xff\xff\xff\x00",    # 2**31 - 1 byte name
])
def test_pairs_malformed(raw):
    with pytest.raises(ProtocolError, match="name-value pair"):
        decode_pairs(raw)


def test_pairs_too_long_to_encode():
    class Huge(bytes):
        def __len__(self):
            return 1 << 31

    with pytest.raises(ValueError, match=r'longer than 2\*\*31 - 1 bytes'):
        pairs_module._encode_length(len(Huge()))


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------

def test_events_equality_and_repr():
    assert StdinEnd(1) == StdinEnd(1)
    assert StdinEnd(1) != StdinEnd(2)
    assert StdinEnd(1) != DataEnd(1)
    assert StdinEnd(1) != AbortRequest(1)
    assert BeginRequest(1, 1, True) != RejectedBeginRequest(1, 1, True)
    assert Params(1, {"a": "b"}) == Params(1, {"a": "b"})
    assert repr(BeginRequest(3, FCGI_RESPONDER, False)) == (
        "BeginRequest(request_id=3, role=1, keep_conn=False)")
    assert repr(StdinData(1, b"x")) == "StdinData(request_id=1, data=b'x')"
    with pytest.raises(TypeError, match='unhashable'):
        hash(Params(1, {}))


def test_hello_world_exchange():
    conn = Connection()
    events = conn.receive_data(
        request_bytes(1, {"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                      keep_conn=True))
    assert events == [
        BeginRequest(1, FCGI_RESPONDER, True),
        Params(1, {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}),
        StdinEnd(1),
    ]
    assert list(conn.active_requests) == [1]
    assert conn.keep_conn(1) is True
    assert not conn.idle
    out = (conn.stdout(1, b"Status: 200 OK\r\n\r\nhi") + encode_record(FCGI_STDOUT, 1)
           + conn.end_request(1))
    assert conn.idle
    records = list(parse_records(out))
    assert [r.type for r in records] == [FCGI_STDOUT, FCGI_STDOUT,
                                         FCGI_END_REQUEST]
    assert records[0].content == b"Status: 200 OK\r\n\r\nhi"
    assert records[1].content == b""
    assert decode_end_request(records[2].content) == (0, 0)


def test_stdin_data_and_end():
    events = Connection().receive_data(request_bytes(5, body=b"abc"))
    assert events[2:] == [StdinData(5, b"abc"), StdinEnd(5)]


def test_roles_and_keep_conn():
    for role in (FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER, 77):
        for keep in (False, True):
            event, = Connection().receive_data(
                encode_begin_request(9, role, keep))
            assert event == BeginRequest(9, role, keep)
    # Bits other than KEEP_CONN are not ours to interpret.
    event, = Connection().receive_data(
        encode_record(FCGI_BEGIN_REQUEST, 2, b"\x00\x01\xfe" + bytes(5)))
    assert event == BeginRequest(2, FCGI_RESPONDER, False)


def test_unknown_role_answered_and_cleared():
    conn = Connection()
    event, = conn.receive_data(encode_begin_request(1, role=42))
    assert event.role == 42
    out = conn.end_request(1, protocol_status=FCGI_UNKNOWN_ROLE)
    assert decode_end_request(next(parse_records(out)).content) == (
        0, FCGI_UNKNOWN_ROLE)
    assert conn.idle


def test_filter_data_stream():
    conn = Connection()
    events = conn.receive_data(request_bytes(4, role=FCGI_FILTER, body=b"in")
                               + encode_data(4, b"file"))
    assert events[2:] == [StdinData(4, b"in"), StdinEnd(4), Data(4, b"file"),
                          DataEnd(4)]
    # A second DATA stream for the request is an error.
    with pytest.raises(ProtocolError, match="DATA after the end of DATA"):
        conn.receive_data(encode_data(4, b"more"))


def test_abort_request():
    conn = Connection()
    conn.receive_data(encode_begin_request(1) + encode_params(1, {"A": "1"}))
    assert conn.receive_data(encode_abort_request(1)) == [AbortRequest(1)]
    # The request stays active until END_REQUEST, its records ignored.
    assert list(conn.active_requests) == [1]
    assert conn.receive_data(encode_stdin(1, b"late")) == []
    assert conn.receive_data(encode_abort_request(1)) == []
    out = conn.end_request(1)
    assert next(parse_records(out)) == Record(FCGI_END_REQUEST, 1, bytes(8))
    assert conn.idle


def test_get_values_and_result():
    conn = Connection()
    event, = conn.receive_data(
        encode_get_values([FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS,
                           "OTHER"]))
    assert event == GetValues([FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS,
                               "OTHER"])
    out = conn.get_values_result({FCGI_MAX_CONNS: 10, FCGI_MPXS_CONNS: "0"})
    assert len(out) % 8 == 0
    record, = parse_records(out)
    assert record.type == FCGI_GET_VALUES_RESULT
    assert record.request_id == 0
    assert decode_pairs(record.content) == {FCGI_MAX_CONNS: "10",
                                            FCGI_MPXS_CONNS: "0"}
    assert conn.idle


def test_get_values_result_must_fit_one_record():
    with pytest.raises(ValueError, match='does not fit one record'):
        Connection.get_values_result({"N": "x" * 70000})


def test_unknown_management_record():
    conn = Connection()
    events = conn.receive_data(encode_record(42, 0, b"whatever", 3)
                               + encode_record(FCGI_STDIN, 0, b"x"))
    assert events == [UnknownManagementRecord(42),
                      UnknownManagementRecord(FCGI_STDIN)]
    out = conn.unknown_type(42)
    record, = parse_records(out)
    assert record.type == FCGI_UNKNOWN_TYPE and record.request_id == 0
    assert decode_unknown_type(record.content) == 42
    assert len(out) == 16


def test_padding_is_skipped_whatever_its_bytes():
    pairs = encode_pairs({"A": "b"})
    data = b"".join([
        encode_begin_request(1),
        HEADER.pack(1, FCGI_PARAMS, 1, len(pairs), 255, 0) + pairs
        + b"\xff" * 255,
        HEADER.pack(1, FCGI_PARAMS, 1, 0, 3, 0) + b"\x01\x02\x03",
        HEADER.pack(1, FCGI_STDIN, 1, 2, 6, 0) + b"hi" + b"\x01" * 6,
        encode_record(FCGI_STDIN, 1, b"", 1),
    ])
    for cuts in ([], list(range(len(data)))):
        events, error = feed_chunks(data, cuts)
        assert error is None
        assert events == [BeginRequest(1, FCGI_RESPONDER, False),
                          Params(1, {"A": "b"}), StdinData(1, b"hi"),
                          StdinEnd(1)]


@FAST
@given(param_dicts, st.lists(st.integers(0, 2000), max_size=6))
def test_params_straddling_records(params, cuts):
    raw = encode_pairs(params)
    bounds = [0] + sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]
    records = b"".join(encode_record(FCGI_PARAMS, 1, raw[a:b])
                       for a, b in zip(bounds, bounds[1:]) if b > a)
    events = Connection().receive_data(
        encode_begin_request(1) + records + encode_record(FCGI_PARAMS, 1))
    assert events == [BeginRequest(1, FCGI_RESPONDER, False),
                      Params(1, params)]


def test_params_split_by_encoder_across_records():
    params = {"BIG": "v" * 100000, "X": ALL_LATIN1}
    data = encode_params(3, params)
    kinds = split_records(data)
    assert len(kinds) == 3 and kinds[-1] == (FCGI_PARAMS, 3, 0, 0)
    conn = Connection()
    conn.receive_data(encode_begin_request(3))
    assert conn.receive_data(data) == [Params(3, params)]


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

@FAST
@given(st.integers(0, 3 * FCGI_MAX_CONTENT_LENGTH + 17),
       st.sampled_from(["stdout", "stderr"]))
def test_output_records_bounded_and_padded(size, method):
    data = bytes(i & 0xFF for i in range(size))
    out = getattr(Connection, method)(7, data)
    assert len(out) % 8 == 0
    kinds = split_records(out)
    record_type = FCGI_STDOUT if method == "stdout" else FCGI_STDERR
    assert all(t == record_type and rid == 7 and 0 < clen <= 65535
               and plen < 8 for t, rid, clen, plen in kinds)
    assert stream_content(out, record_type, 7) == data
    assert len(kinds) == -(-size // FCGI_MAX_CONTENT_LENGTH)


def test_empty_output_makes_no_record():
    assert Connection.stdout(1, b"") == b""
    assert Connection.stderr(1, b"") == b""


def test_large_stdout_split():
    data = b"0123456789" * 20000                    # 200000 bytes
    out = Connection.stdout(65535, memoryview(data))
    kinds = split_records(out)
    assert [k[2] for k in kinds] == [65535, 65535, 65535, 3395]
    assert [k[3] for k in kinds] == [1, 1, 1, 5]
    assert stream_content(out, FCGI_STDOUT, 65535) == data


def test_end_request_status():
    conn = Connection()
    conn.receive_data(encode_begin_request(2))
    out = conn.end_request(2, app_status=-1,
                           protocol_status=FCGI_CANT_MPX_CONN)
    assert out == (b"\x01\x03\x00\x02\x00\x08\x00\x00"
                   b"\xff\xff\xff\xff\x01\x00\x00\x00")
    assert decode_end_request(out[8:]) == (0xFFFFFFFF, FCGI_CANT_MPX_CONN)
    assert 2 not in conn.active_requests
    # Ending an id that is not active only encodes.
    assert conn.end_request(9)[:4] == b"\x01\x03\x00\x09"


# ---------------------------------------------------------------------------
# Request ids and connection state
# ---------------------------------------------------------------------------

def test_records_for_inactive_ids_are_ignored():
    conn = Connection()
    data = (encode_params(3, {"A": "b"}) + encode_stdin(3, b"x")
            + encode_data(3, b"y") + encode_abort_request(3)
            + encode_record(FCGI_STDOUT, 3, b"z")
            + encode_record(FCGI_END_REQUEST, 3, b"\x00"))
    assert conn.receive_data(data) == []
    assert conn.idle
    # Also once a request has ended.
    conn.receive_data(request_bytes(1))
    conn.end_request(1)
    assert conn.receive_data(encode_stdin(1, b"again")) == []


def test_busy_connection_rejects_second_request():
    conn = Connection()
    conn.receive_data(encode_begin_request(1))
    events = conn.receive_data(
        encode_begin_request(2, FCGI_RESPONDER, True)
        + encode_params(2, {"A": "b"}) + encode_stdin(2, b"x"))
    assert events == [RejectedBeginRequest(2, FCGI_RESPONDER, True)]
    assert list(conn.active_requests) == [1]
    out = conn.end_request(2, protocol_status=FCGI_CANT_MPX_CONN)
    assert decode_end_request(out[8:]) == (0, FCGI_CANT_MPX_CONN)
    assert list(conn.active_requests) == [1]
    # Once the first is over, a new one is accepted.
    conn.end_request(1)
    assert conn.receive_data(encode_begin_request(2)) == [
        BeginRequest(2, FCGI_RESPONDER, False)]


def test_multiplexed_requests_interleave():
    conn = Connection(multiplex=True)
    events = conn.receive_data(
        encode_begin_request(1) + encode_begin_request(2)
        + encode_params(2, {"N": "2"}) + encode_params(1, {"N": "1"})
        + encode_stdin(1, b"one") + encode_stdin(2, b"two"))
    assert events == [
        BeginRequest(1, FCGI_RESPONDER, False),
        BeginRequest(2, FCGI_RESPONDER, False),
        Params(2, {"N": "2"}), Params(1, {"N": "1"}),
        StdinData(1, b"one"), StdinEnd(1), StdinData(2, b"two"), StdinEnd(2),
    ]
    assert sorted(conn.active_requests) == [1, 2]


def test_eof_between_records():
    conn = Connection(multiplex=True)
    conn.receive_data(encode_begin_request(1) + encode_begin_request(2)
                      + encode_abort_request(2))
    assert not closed(conn)
    assert conn.receive_eof() == [AbortRequest(1)]
    assert closed(conn)
    assert conn.receive_eof() == []
    with pytest.raises(ProtocolError, match="after the end of input"):
        conn.receive_data(b"\x01")


def test_eof_on_idle_connection():
    conn = Connection()
    assert conn.receive_eof() == []
    assert closed(conn) and conn.idle


def test_eof_mid_record():
    conn = Connection()
    data = request_bytes(1)
    assert conn.receive_data(data[:-3]) == [
        BeginRequest(1, FCGI_RESPONDER, False),
        Params(1, {"REQUEST_METHOD": "GET"})]
    assert not conn.idle
    with pytest.raises(ProtocolError, match="middle of a record"):
        conn.receive_eof()
    assert closed(conn)


def test_receive_data_accepts_bytes_like_and_empty():
    conn = Connection()
    data = request_bytes(1)
    assert conn.receive_data(b"") == []
    events = conn.receive_data(bytearray(data[:10]))
    events += conn.receive_data(memoryview(data)[10:])
    assert events[-1] == StdinEnd(1)


def test_large_stdin_in_chunks():
    body = bytes(range(256)) * 4096                # 1 MiB
    data = request_bytes(1, body=body)
    conn = Connection()
    events = []
    for pos in range(0, len(data), 1000):
        events += conn.receive_data(data[pos:pos + 1000])
    chunks = [e.data for e in events if isinstance(e, StdinData)]
    assert b"".join(chunks) == body
    assert max(map(len, chunks)) <= FCGI_MAX_CONTENT_LENGTH
    assert events[-1] == StdinEnd(1)


def test_full_record_fed_one_byte_at_a_time():
    conn = Connection()
    conn.receive_data(encode_begin_request(1) + encode_params(1, {}))
    data = encode_stdin(1, b"x" * FCGI_MAX_CONTENT_LENGTH, end=False)
    for i in range(len(data) - 1):
        assert conn.receive_data(data[i:i + 1]) == []
    assert conn.receive_data(data[-1:]) == [
        StdinData(1, b"x" * FCGI_MAX_CONTENT_LENGTH)]
    assert conn.idle is False


# ---------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------

MALFORMED = [
    ("version",
     b"\x02\x01\x00\x01\x00\x08\x00\x00" + bytes(8),
     "unsupported FastCGI version 2"),
    ("version in a header before its content arrives",
     b"\x00\x05\x00\x01\xff\xff\x00\x00",
     "unsupported FastCGI version 0"),
    ("begin body short",
     encode_record(FCGI_BEGIN_REQUEST, 1, b"\x00\x01\x00"),
     "BEGIN_REQUEST body is 3 bytes"),
    ("begin body long",
     encode_record(FCGI_BEGIN_REQUEST, 1, bytes(9)),
     "BEGIN_REQUEST body is 9 bytes"),
    ("begin for an active id",
     encode_begin_request(1) + encode_begin_request(1),
     "already active"),
    ("pair runs past the params",
     encode_begin_request(1) + encode_record(FCGI_PARAMS, 1, b"\x05\x05ab")
     + encode_record(FCGI_PARAMS, 1),
     "name-value pair"),
    ("pair runs past the get-values",
     encode_record(FCGI_GET_VALUES, 0, b"\x09\x00AB"),
     "name-value pair"),
    ("params after their end",
     encode_begin_request(1) + encode_params(1, {}) + encode_params(1, {}),
     "PARAMS after the end of PARAMS"),
    ("stdin before params end",
     encode_begin_request(1) + encode_stdin(1, b"x"),
     "STDIN before the end of PARAMS"),
    ("stdin after its end",
     request_bytes(1) + encode_stdin(1, b"x"),
     "STDIN after the end of STDIN"),
    ("empty stdin after its end",
     request_bytes(1) + encode_record(FCGI_STDIN, 1),
     "STDIN after the end of STDIN"),
    ("data before params end",
     encode_begin_request(1, FCGI_FILTER) + encode_data(1, b"x"),
     "DATA before the end of PARAMS"),
    ("stdout sent to the application",
     encode_begin_request(1) + encode_record(FCGI_STDOUT, 1, b"x"),
     "unexpected STDOUT record"),
    ("unknown type for an active request",
     encode_begin_request(1) + encode_record(99, 1, b"x"),
     "unexpected type 99 record"),
]


@pytest.mark.parametrize("name, data, message", MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_input(name, data, message):
    conn = Connection()
    with pytest.raises(ProtocolError, match=message):
        conn.receive_data(data)
    assert closed(conn)
    # The connection stays failed.
    with pytest.raises(ProtocolError, match="already failed"):
        conn.receive_data(request_bytes(50))
    with pytest.raises(ProtocolError, match="already failed"):
        conn.receive_eof()
    # Any split of the input fails the same way.
    events, error = feed_chunks(data, range(len(data)))
    assert error is not None and message in error


def test_params_larger_than_limit():
    conn = Connection(max_params_size=100)
    conn.receive_data(encode_begin_request(1))
    conn.receive_data(encode_record(FCGI_PARAMS, 1, b"\x01\x5ea" + b"v" * 94))
    with pytest.raises(ProtocolError, match="PARAMS larger than 100 bytes"):
        conn.receive_data(encode_record(FCGI_PARAMS, 1, b"\x01\x01ab"))
    conn = Connection(max_params_size=100)
    assert conn.receive_data(encode_begin_request(1) + encode_params(
        1, {"a": "v" * 97}))[-1] == Params(1, {"a": "v" * 97})


# ---------------------------------------------------------------------------
# The web server side
# ---------------------------------------------------------------------------

def test_encode_record_exact_and_validated():
    assert encode_record(FCGI_STDIN, 258, b"ab", 3) == (
        b"\x01\x05\x01\x02\x00\x02\x03\x00ab\x00\x00\x00")
    with pytest.raises(ValueError, match='longer than 65535 bytes'):
        encode_record(FCGI_STDIN, 1, bytes(65536))
    with pytest.raises(ValueError, match="padding must be 0 to 255 bytes"):
        encode_record(FCGI_STDIN, 1, b"", 256)
    assert encode_begin_request(1, FCGI_FILTER, True) == (
        b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x03\x01" + bytes(5))
    assert encode_abort_request(4) == b"\x01\x02\x00\x04" + bytes(4)
    assert split_records(encode_stdin(1, b"", end=True)) == [
        (FCGI_STDIN, 1, 0, 0)]
    assert encode_stdin(1, b"", end=False) == b""
    assert split_records(encode_data(1, b"abc", end=False)) == [
        (FCGI_DATA, 1, 3, 5)]


def test_record_reader_any_split_and_errors():
    out = (Connection.stdout(1, b"x" * 70000) + Connection.stderr(1, b"oops")
           + encode_record(FCGI_STDOUT, 1) + Connection().end_request(1, 3))
    expected = list(parse_records(out))
    assert [r.type for r in expected] == [FCGI_STDOUT, FCGI_STDOUT,
                                          FCGI_STDERR, FCGI_STDOUT,
                                          FCGI_END_REQUEST]
    reader = RecordReader()
    got = []
    for i in range(0, len(out), 7):
        got += reader.feed(out[i:i + 7])
    reader.eof()
    assert got == expected and reader.partial_record is None
    reader = RecordReader()
    assert reader.feed(out[:20]) == []
    assert reader.partial_record[0] == 20
    with pytest.raises(ProtocolError, match="middle of a record"):
        reader.eof()
    with pytest.raises(ProtocolError, match="middle of a record"):
        list(parse_records(out[:-1]))
    with pytest.raises(ProtocolError, match="version 9"):
        RecordReader().feed(b"\x09" + out[1:])
    with pytest.raises(ProtocolError, match="END_REQUEST body is 1 bytes, not 8"):
        decode_end_request(b"\x00")
    with pytest.raises(ProtocolError, match="UNKNOWN_TYPE body is 1 bytes, not 8"):
        decode_unknown_type(b"\x00")


# ---------------------------------------------------------------------------
# Properties: any split, arbitrary input
# ---------------------------------------------------------------------------

ids = st.integers(0, 3)
record_ops = st.one_of(
    st.builds(encode_begin_request, st.integers(1, 3),
              st.sampled_from([FCGI_RESPONDER, FCGI_FILTER, 5]),
              st.booleans()),
    st.builds(encode_params, st.integers(1, 3), param_dicts),
    st.builds(encode_stdin, st.integers(1, 3), st.binary(max_size=300),
              end=st.booleans()),
    st.builds(encode_data, st.integers(1, 3), st.binary(max_size=50),
              end=st.booleans()),
    st.builds(encode_abort_request, st.integers(1, 3)),
    st.builds(encode_get_values, st.lists(names, max_size=4)),
    st.builds(encode_record, st.integers(0, 14), ids, st.binary(max_size=40),
              st.integers(0, 255)),
)


@st.composite
def well_formed(draw):
    """Interleaved valid requests on a multiplexed connection, with the
    events each must give."""
    count = draw(st.integers(1, 4))
    scripts = []
    for rid in range(1, count + 1):
        params = draw(param_dicts)
        body = draw(st.binary(max_size=600))
        raw = encode_pairs(params)
        cut = draw(st.integers(0, len(raw)))
        records = [encode_begin_request(rid)]
        records += [encode_record(FCGI_PARAMS, rid, part, draw(
            st.integers(0, 9))) for part in (raw[:cut], raw[cut:]) if part]
        records.append(encode_record(FCGI_PARAMS, rid))
        records.append(encode_stdin(rid, body))
        scripts.append((rid, params, body, records))
    order = draw(st.permutations(
        [i for i, s in enumerate(scripts) for _ in s[3]]))
    positions = [0] * count
    stream = []
    for i in order:
        stream.append(scripts[i][3][positions[i]])
        positions[i] += 1
    return b"".join(stream), scripts


@FAST
@given(well_formed(), st.lists(st.integers(0, 10000), max_size=10))
def test_well_formed_requests_any_split(case, cuts):
    data, scripts = case
    events, error = feed_chunks(data, [c % (len(data) + 1) for c in cuts],
                                multiplex=True)
    assert error is None
    for rid, params, body, _ in scripts:
        mine = [e for e in events if e.request_id == rid]
        assert mine[:2] == [BeginRequest(rid, FCGI_RESPONDER, False),
                            Params(rid, params)]
        assert b"".join(e.data for e in mine[2:-1]) == body
        assert all(isinstance(e, StdinData) for e in mine[2:-1])
        assert mine[-1] == StdinEnd(rid)


@FAST
@given(st.lists(record_ops, max_size=12), st.booleans())
def test_byte_at_a_time_equals_whole(ops, multiplex):
    data = b"".join(ops)
    whole, whole_error = feed_whole(data, multiplex=multiplex)
    single, single_error = feed_chunks(data, range(len(data)),
                                       multiplex=multiplex)
    assert whole_error == single_error
    if whole_error is None:
        assert single == whole


def check_fuzz(data, cuts):
    """Feed ``data`` split at ``cuts`` then end it: events or ProtocolError
    only, and the events keep to their contract."""
    conn = Connection()
    bounds = [0] + sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    events = []
    try:
        for a, b in zip(bounds, bounds[1:]):
            events += conn.receive_data(data[a:b])
        events += conn.receive_eof()
    except ProtocolError as exc:
        assert str(exc)
        assert closed(conn)
    for event in events:
        assert isinstance(event, events_module._Event)
        if isinstance(event, (StdinData, Data)):
            assert event.data and isinstance(event.data, bytes)
        if isinstance(event, Params):
            assert all(isinstance(k, str) and isinstance(v, str)
                       for k, v in event.params.items())
    return events


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_fuzz_arbitrary_bytes(data, cuts):
    check_fuzz(data, cuts)
    check_fuzz(b"\x01" + data, cuts)


mutations = st.lists(st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)


def mutate(data, edits):
    buf = bytearray(data)
    for op, where, byte in edits:
        if not buf:
            break
        i = where % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (byte % 8)
        elif op == "set":
            buf[i] = byte
        elif op == "insert":
            buf[i:i] = bytes((byte,))
        elif op == "delete":
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


@FUZZ
@given(st.lists(record_ops, min_size=1, max_size=8), mutations,
       st.lists(st.integers(0, 4000), max_size=5))
def test_fuzz_mutated_streams(ops, edits, cuts):
    data = mutate(b"".join(ops), edits)
    check_fuzz(data, cuts)
    # Splitting never changes the outcome.
    whole, whole_error = feed_whole(data)
    split, split_error = feed_chunks(data, [c % (len(data) + 1)
                                            for c in cuts])
    assert whole_error == split_error
    if whole_error is None:
        assert split == whole


@FAST
@given(well_formed(), mutations)
def test_fuzz_mutated_requests(case, edits):
    check_fuzz(mutate(case[0], edits), [])

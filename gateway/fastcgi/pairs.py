"""FastCGI name-value pairs (PARAMS, GET_VALUES and its answer): their
encoding, and their decoding into a dict, for the codec (protocol.py).

A pair is ``nameLength valueLength name value``; each length is one byte
when it is at most 127, otherwise four bytes with the high bit set (a
31-bit length).
"""

import struct

from .events import ProtocolError

__all__ = ['encode_pairs', 'decode_pairs']

_U32 = struct.Struct(">I")


def _encode_length(n):
    # One byte up to 127; above, four bytes with the high bit set.
    if n < 128:
        return bytes((n,))
    if n > 0x7FFFFFFF:
        raise ValueError("a name or value longer than 2**31 - 1 bytes "
                         "cannot be encoded")
    return _U32.pack(n | 0x80000000)


def _as_bytes(s):
    # PEP 3333 "bytes in unicode": str travels as latin-1.
    return s.encode("latin-1") if isinstance(s, str) else bytes(s)


def encode_pairs(pairs):
    """Encode name-value pairs (a dict or an iterable of pairs).

    Names and values may be ``str`` (encoded as latin-1) or bytes.
    """
    if isinstance(pairs, dict):
        pairs = pairs.items()
    parts = []
    for name, value in pairs:
        name = _as_bytes(name)
        value = _as_bytes(value)
        parts += (_encode_length(len(name)), _encode_length(len(value)),
                  name, value)
    return b"".join(parts)


def _long_length(data, pos, n):
    # The high bit of the first byte announces a four-byte length.
    if pos + 4 > n:
        raise ProtocolError("name-value pair: four-byte length cut short")
    return _U32.unpack_from(data, pos)[0] & 0x7FFFFFFF, pos + 4


def decode_pairs(data):
    """Decode a name-value pair stream into a dict of latin-1 ``str``.

    A name sent twice keeps its last value.  Raises ProtocolError when a
    length runs past the end of the data.
    """
    # Lengths are read from the bytes; names and values are sliced from a
    # latin-1 copy decoded in one call, which is far cheaper than decoding
    # each one on its own.
    text = data.decode("latin-1")
    pairs = {}
    n = len(data)
    last = n - 1
    pos = 0
    # The hot loop, for pairs whose two lengths are one byte each (web
    # servers' variables but for long headers). A pair that runs past the
    # data ends the loop (pos > n) and is refused below, so the loop need
    # not check each one.
    while pos < last:
        name_len = data[pos]
        value_len = data[pos + 1]
        if (name_len | value_len) > 127:
            pos = _decode_pair(data, text, pos, n, pairs)
            continue
        start = pos + 2
        mid = start + name_len
        pos = mid + value_len
        pairs[text[start:mid]] = text[mid:pos]
    if pos > n:
        raise _past_the_data(name_len, value_len, pos - n)
    if pos < n:
        _decode_pair(data, text, pos, n, pairs)     # one byte left: it raises
    return pairs


def _decode_pair(data, text, pos, n, pairs):
    """Decode the pair at *pos*, whatever the size of its lengths, into
    *pairs*; return where the next one starts."""
    name_len = data[pos]
    if name_len > 127:
        name_len, pos = _long_length(data, pos, n)
    else:
        pos += 1
    if pos >= n:
        raise ProtocolError("name-value pair: value length missing")
    value_len = data[pos]
    if value_len > 127:
        value_len, pos = _long_length(data, pos, n)
    else:
        pos += 1
    mid = pos + name_len
    end = mid + value_len
    if end > n:
        raise _past_the_data(name_len, value_len, end - n)
    pairs[text[pos:mid]] = text[mid:end]
    return end


def _past_the_data(name_len, value_len, beyond):
    return ProtocolError("name-value pair: lengths %d + %d run %d bytes past the data"
                         % (name_len, value_len, beyond))

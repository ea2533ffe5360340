"""Writes the hostile FastCGI corpus: one file of raw bytes per case, as a
web server would send them on one connection, and ``cases.json``, which says
for each what it is and what the server must do.

    python tests/fastcgi_corpus/make_corpus.py      # rewrites the files

The records are built here with struct, not with the gateway's encoders, so
that the corpus does not move when the code under test does.

Each case in cases.json:

    name, file    the bytes (a ``.gz`` file is gzip-compressed)
    what          what is wrong with them (or why they are legal)
    half_close    the client shuts down its sending side after the bytes
                  (the cases about a connection closed mid-way)
    config        server settings the case needs (else the defaults)
    expect        the answer, in order, one line per record:
                      "STDOUT <id> <status> <body>"   (the whole stream)
                      "END_REQUEST <id> <protocolStatus name>"
                      "UNKNOWN_TYPE <type>"
                      "GET_VALUES_RESULT NAME=VALUE ..."
    then          "closed": the server closes the connection by itself;
                  "open": it still serves a request on the same connection
    log           what the server's log line must contain (with the
                  client's address), or null: nothing is wrong, and no
                  warning may be logged

The expected bodies are those of ``corpus_app.application``.
"""

import gzip
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from corpus_app import echo_text  # noqa: E402

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
DATA, GET_VALUES = 8, 9
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
MAX_CONTENT, MAX_PADDING = 65535, 255
DEFAULT_MAX_PARAMS = 1 << 20


# -- records, by hand --------------------------------------------------------

def header(rtype, rid, clen, plen=0, version=1):
    return struct.pack('>BBHHBB', version, rtype, rid, clen, plen, 0)


def record(rtype, rid, content=b'', padding=None, pad_byte=0, version=1):
    """One record; padding to 8 bytes unless given."""
    if padding is None:
        padding = -len(content) & 7
    return header(rtype, rid, len(content), padding, version) + content + bytes(
        [pad_byte]) * padding


def begin(rid=1, role=RESPONDER, keep=False, body=None):
    if body is None:
        body = struct.pack('>HB5x', role, 1 if keep else 0)
    return record(BEGIN_REQUEST, rid, body)


def length(n):
    return bytes([n]) if n < 128 else struct.pack('>I', n | 0x80000000)


def pairs(items):
    out = b''
    for name, value in items.items():
        name, value = name.encode('latin-1'), value.encode('latin-1')
        out += length(len(name)) + length(len(value)) + name + value
    return out


def stream(rtype, rid, data, end=True):
    """*data* in records of at most 65528 bytes (8-aligned), then (with
    *end*) the empty record."""
    out = b''
    for start in range(0, len(data), 65528):
        out += record(rtype, rid, data[start:start + 65528])
    return out + (record(rtype, rid) if end else b'')


def cgi_params(path='/', method='GET', body=b'', **extra):
    params = {'GATEWAY_INTERFACE': 'CGI/1.1', 'REQUEST_METHOD': method, 'SCRIPT_NAME': '',
              'PATH_INFO': path, 'QUERY_STRING': '', 'SERVER_NAME': 'localhost',
              'SERVER_PORT': '80', 'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1'}
    if body or method == 'POST':
        params['CONTENT_LENGTH'] = str(len(body))
    params.update(extra)
    return params


def params(rid, items):
    return stream(PARAMS, rid, pairs(items))


def request(rid=1, path='/', method='GET', body=b'', keep=False, stdin_end=True, **extra):
    """A well-formed request (the body's STDIN stream ended unless told)."""
    return (begin(rid, keep=keep) + params(rid, cgi_params(path, method, body, **extra))
            + stream(STDIN, rid, body, end=stdin_end))


def echo_head(rid=1, declared=100, keep=True):
    """BEGIN_REQUEST and PARAMS of a POST /echo that announces *declared*
    bytes of body."""
    return begin(rid, keep=keep) + params(rid, cgi_params(
        '/echo', 'POST', CONTENT_LENGTH=str(declared)))


# -- expected answers --------------------------------------------------------

def stdout(rid, text):
    return 'STDOUT %d 200 %s' % (rid, text)


def ended(rid, status='REQUEST_COMPLETE'):
    return 'END_REQUEST %d %s' % (rid, status)


def hello(path, rid=1):
    return [stdout(rid, 'hello ' + path), ended(rid)]


def echoed(body, rid=1):
    return [stdout(rid, echo_text(body)), ended(rid)]


CASES = []


def case(name, data, what, expect=(), then='closed', log=None, half_close=False,
         config=None, compress=False):
    CASES.append(dict(name=name, data=data, what=what, expect=list(expect), then=then,
                      log=log, half_close=half_close, config=config or {},
                      compress=compress))


def build():
    body = bytes(range(256)) * 512          # 131072 bytes

    # -- framing and end of input -------------------------------------------
    case('empty-connection', b'',
         'a connection closed without a byte: nothing to answer, nothing wrong',
         half_close=True)
    case('eof-mid-header', begin()[:5],
         'the connection ends 5 bytes into a record header',
         half_close=True, log='connection closed in the middle of a record (5 of 8 bytes')
    case('eof-mid-content', begin() + header(PARAMS, 1, 40) + b'\x04\x03PATH',
         'the connection ends 6 bytes into the 40 bytes a PARAMS record announced',
         half_close=True, log='connection closed in the middle of a record (14 of 48 bytes')
    case('eof-mid-padding', begin() + header(PARAMS, 1, 8, 200) + pairs({'AB': 'cdef'})
         + bytes(50),
         'the connection ends 50 bytes into the 200 bytes of padding a record announced',
         half_close=True, log='connection closed in the middle of a record (66 of 216 bytes')
    case('eof-mid-params-stream', begin() + stream(PARAMS, 1, pairs(cgi_params()), end=False),
         'the connection ends between records, before the end of the PARAMS stream',
         half_close=True, log='before request 1 was complete')
    case('eof-mid-body', echo_head() + stream(STDIN, 1, b'partial', end=False),
         'the connection ends while the application reads a body 93 bytes short',
         half_close=True, log='before request 1 was complete')

    # -- version -------------------------------------------------------------
    case('version-0', header(BEGIN_REQUEST, 1, 0xFFFF, version=0),
         'a record header with version 0 (and a length that would make us wait)',
         log='unsupported FastCGI version 0')
    case('version-2', record(BEGIN_REQUEST, 1, struct.pack('>HB5x', RESPONDER, 1), version=2),
         'BEGIN_REQUEST with version 2', log='unsupported FastCGI version 2')
    case('version-2-after-a-request',
         request(keep=True) + record(GET_VALUES, 0, b'', version=2),
         'a complete request, then a record with version 2 in the same write: the request'
         ' is answered, then the connection closed',
         expect=hello('/'), log='unsupported FastCGI version 2')

    # -- the largest legal records --------------------------------------------
    base = cgi_params('/echo', 'POST', body[:2 * MAX_CONTENT])
    fill = MAX_CONTENT - len(pairs(base)) - (1 + 4 + len('X_FILL'))
    max_params = pairs({**base, 'X_FILL': 'f' * fill})
    assert len(max_params) == MAX_CONTENT
    case('max-lengths-request',
         begin(keep=True) + record(PARAMS, 1, max_params, MAX_PADDING, 0xA5) + record(PARAMS, 1)
         + record(STDIN, 1, body[:MAX_CONTENT], MAX_PADDING, 0x5A)
         + record(STDIN, 1, body[MAX_CONTENT:2 * MAX_CONTENT], MAX_PADDING, 0xFF)
         + record(STDIN, 1),
         'PARAMS and STDIN records of contentLength 65535 with paddingLength 255 (non-zero'
         ' padding bytes): legal, served',
         expect=echoed(body[:2 * MAX_CONTENT]), then='open')
    case('max-lengths-management', record(200, 0, bytes(MAX_CONTENT), MAX_PADDING),
         'a management record of unknown type 200 with the largest content and padding',
         expect=['UNKNOWN_TYPE 200'], then='open')
    names = {'FCGI_MPXS_CONNS': ''}
    index = 0
    while len(pairs(names)) < MAX_CONTENT - 140:
        names['X_UNKNOWN_NAME_%05d' % index] = ''
        index += 1
    query = pairs(names)
    left = MAX_CONTENT - len(query)
    query += pairs({'Z' * (left - 2 if left - 2 < 128 else left - 5): ''})
    assert len(query) == MAX_CONTENT
    case('max-lengths-get-values', record(GET_VALUES, 0, query, MAX_PADDING),
         'GET_VALUES asking for %d names in 65535 bytes, padded by 255: only the known'
         ' name is answered' % (index + 2),
         expect=['GET_VALUES_RESULT FCGI_MPXS_CONNS=0'], then='open')
    case('max-lengths-stray', record(STDIN, 9, bytes(MAX_CONTENT), MAX_PADDING),
         'a STDIN record of the largest size for a request id never begun: ignored',
         then='open')

    # -- name-value pairs that run past their data ------------------------------
    def bad_params(content):
        return begin() + record(PARAMS, 1, content) + record(PARAMS, 1)

    case('nv-1byte-lengths-past', bad_params(b'\x05\x05ab'),
         'one-byte lengths 5 + 5 with 2 bytes of name and value',
         log='request 1: PARAMS: name-value pair: lengths 5 + 5 run 8 bytes past the data')
    case('nv-1byte-value-past', bad_params(b'\x01\x7fA' + b'v' * 10),
         'a one-byte value length of 127 with 10 bytes of value',
         log='lengths 1 + 127 run 117 bytes past')
    case('nv-4byte-name-past', bad_params(b'\x80\x00\x01\x00\x01' + b'n' * 20),
         'a four-byte name length of 256 with 20 bytes of name',
         log='lengths 256 + 1 run 237 bytes past')
    case('nv-4byte-name-huge', bad_params(b'\xff\xff\xff\xff\x00'),
         'a four-byte name length of 2**31 - 1',
         log='lengths 2147483647 + 0 run 2147483647 bytes past')
    case('nv-4byte-value-huge', bad_params(b'\x01\xff\xff\xff\xffA'),
         'a four-byte value length of 2**31 - 1',
         log='lengths 1 + 2147483647 run 2147483647 bytes past')
    case('nv-4byte-length-cut', bad_params(b'\x01\x01AB\x80\x00'),
         'a pair, then the first 2 bytes of a four-byte length',
         log='request 1: PARAMS: name-value pair: four-byte length cut short')
    case('nv-value-length-missing', bad_params(b'\x01'),
         'a name length and nothing after it',
         log='request 1: PARAMS: name-value pair: value length missing')
    good = pairs(cgi_params('/straddled'))
    case('nv-straddles-records',
         begin(keep=True) + record(PARAMS, 1, good[:5]) + record(PARAMS, 1, good[5:])
         + record(PARAMS, 1) + record(STDIN, 1),
         'a pair split across two PARAMS records: legal, served',
         expect=hello('/straddled'), then='open')
    case('nv-get-values-past', record(GET_VALUES, 0, b'\x09\x00AB'),
         'GET_VALUES naming 9 bytes with 2 there',
         log='GET_VALUES: name-value pair: lengths 9 + 0 run 7 bytes past')

    # -- PARAMS over the limit ------------------------------------------------------
    records = DEFAULT_MAX_PARAMS // 65528 + 1
    over = begin() + b''.join(record(PARAMS, 1, b'\x7f' * 65528) for _ in range(records))
    case('params-over-default-limit', over,
         '%d bytes of PARAMS, over the default limit of 1 MiB' % (records * 65528),
         log='request 1: PARAMS larger than 1048576 bytes', compress=True)
    small = pairs(cgi_params('/limit'))
    at_limit = pairs({'X_PAD': 'p' * (4096 - len(small) - 10)}) + small
    assert len(at_limit) == 4096
    case('params-at-small-limit',
         begin(keep=True) + stream(PARAMS, 1, at_limit) + record(STDIN, 1),
         'exactly 4096 bytes of PARAMS with --max-params-size 4096: served',
         config={'max_params_size': 4096}, expect=hello('/limit'), then='open')
    case('params-over-small-limit',
         begin(keep=True) + stream(PARAMS, 1, b'\x01\x00X' + at_limit) + record(STDIN, 1),
         '4099 bytes of PARAMS with --max-params-size 4096',
         config={'max_params_size': 4096}, log='request 1: PARAMS larger than 4096 bytes')

    # -- streams out of order ---------------------------------------------------------
    case('params-after-end', begin() + params(1, cgi_params()) + params(1, cgi_params()),
         'a second PARAMS stream after the first ended: the request (which may start once'
         ' its PARAMS are complete) is answered, then the connection closed',
         expect=hello('/'), log='request 1: PARAMS after the end of PARAMS')
    case('stdin-before-params-end', begin() + stream(PARAMS, 1, pairs(cgi_params()), end=False)
         + stream(STDIN, 1, b'x'),
         'STDIN before the empty PARAMS record', log='request 1: STDIN before the end of PARAMS')
    case('stdin-after-end', request(keep=True) + stream(STDIN, 1, b'late', end=False),
         'a STDIN record after the empty one ended the stream: the request (complete before'
         ' it) is answered, then the connection closed',
         expect=hello('/'), log='request 1: STDIN after the end of STDIN')
    case('empty-stdin-after-end', request(keep=True) + record(STDIN, 1),
         'a second empty STDIN record', expect=hello('/'),
         log='request 1: STDIN after the end of STDIN')
    case('data-after-end',
         begin(keep=True) + params(1, cgi_params('/data')) + record(DATA, 1)
         + record(DATA, 1, b'late'),
         'DATA after the empty DATA record: what came before (a complete PARAMS stream) is'
         ' served, then the connection closed',
         expect=hello('/data'), log='request 1: DATA after the end of DATA')

    # -- request ids -------------------------------------------------------------------
    case('stray-ids',
         stream(STDIN, 7, b'stray') + params(9, {'A': 'b'}) + record(ABORT_REQUEST, 5)
         + stream(DATA, 3, b'data') + record(END_REQUEST, 4, bytes(8))
         + record(STDOUT, 6, b'out') + record(99, 8, b'?'),
         'records of seven types for request ids never begun: ignored (spec 3.3)',
         then='open')
    case('reused-id-mid-body', echo_head() + stream(STDIN, 1, b'partial', end=False) + begin(1),
         'BEGIN_REQUEST for request 1 while request 1 reads its body: the request is given'
         ' up, the connection closed',
         log='request 1: BEGIN_REQUEST for an id already active')
    case('reused-id-pipelined', request(keep=True) + request(path='/again'),
         'a second request with id 1 in the same write as the first, before its END_REQUEST:'
         ' the first is answered, then the connection closed',
         expect=hello('/'), log='request 1: BEGIN_REQUEST for an id already active')
    case('second-id-while-active',
         echo_head(declared=3) + begin(2, keep=True) + stream(STDIN, 1, b'abc'),
         'BEGIN_REQUEST for request 2 while request 1 is active: CANT_MPX_CONN for 2, and 1'
         ' is served', expect=[ended(2, 'CANT_MPX_CONN')] + echoed(b'abc'), then='open')

    # -- aborts ---------------------------------------------------------------------------
    case('abort-mid-body', echo_head() + stream(STDIN, 1, b'partial', end=False)
         + record(ABORT_REQUEST, 1),
         'ABORT_REQUEST while the application reads the body: END_REQUEST, nothing else',
         expect=[ended(1)], then='open', log='request 1 from {peer} aborted by the web server')
    case('abort-twice-mid-body', echo_head() + stream(STDIN, 1, b'partial', end=False)
         + record(ABORT_REQUEST, 1) + record(ABORT_REQUEST, 1),
         'two ABORT_REQUEST records for the running request: one END_REQUEST',
         expect=[ended(1)], then='open', log='aborted by the web server')
    case('abort-before-params-end', begin(keep=True)
         + stream(PARAMS, 1, pairs(cgi_params()), end=False) + record(ABORT_REQUEST, 1),
         'ABORT_REQUEST before the PARAMS stream ended: END_REQUEST at once',
         expect=[ended(1)], then='open', log='aborted by the web server before it started')
    case('abort-before-params-end-no-keep-conn', begin()
         + stream(PARAMS, 1, pairs(cgi_params()), end=False) + record(ABORT_REQUEST, 1),
         'the same without FCGI_KEEP_CONN: END_REQUEST, then the connection closed',
         expect=[ended(1)], log='aborted by the web server before it started')
    case('abort-after-complete-request', request(keep=True) + record(ABORT_REQUEST, 1),
         'ABORT_REQUEST in the same write as a complete request: the answer and exactly one'
         ' END_REQUEST (a second would end the next request on this connection)',
         expect=hello('/'), then='open')

    # -- record types --------------------------------------------------------------------
    case('unknown-type-for-active-request', begin() + record(99, 1, b'x'),
         'a record of type 99 for an active request', log='request 1: unexpected type 99 record')
    case('stdout-sent-to-the-application', begin() + record(STDOUT, 1, b'x'),
         'STDOUT from the web server', log='request 1: unexpected STDOUT record')
    case('end-request-sent-to-the-application', begin() + record(END_REQUEST, 1, bytes(8)),
         'END_REQUEST from the web server', log='request 1: unexpected END_REQUEST record')
    case('begin-body-short', record(BEGIN_REQUEST, 1, b'\x00\x01\x00'),
         'BEGIN_REQUEST with 3 bytes of body',
         log='request 1: BEGIN_REQUEST body is 3 bytes, not 8')
    case('begin-body-long', record(BEGIN_REQUEST, 1, b'\x00\x01' + bytes(14)),
         'BEGIN_REQUEST with 16 bytes of body', log='BEGIN_REQUEST body is 16 bytes, not 8')
    case('begin-body-empty', record(BEGIN_REQUEST, 1),
         'BEGIN_REQUEST with no body', log='BEGIN_REQUEST body is 0 bytes, not 8')

    # -- management records (request id 0) -------------------------------------------------
    case('management-unknown-type', record(42, 0, b'whatever'),
         'management record of unknown type 42: UNKNOWN_TYPE', expect=['UNKNOWN_TYPE 42'],
         then='open')
    case('management-end-request', record(END_REQUEST, 0, bytes(8)),
         'END_REQUEST with request id 0: UNKNOWN_TYPE', expect=['UNKNOWN_TYPE 3'], then='open')
    case('management-begin-request', begin(0, keep=True),
         'BEGIN_REQUEST with request id 0 is a management record: UNKNOWN_TYPE',
         expect=['UNKNOWN_TYPE 1'], then='open')
    case('get-values-with-stray-id', record(GET_VALUES, 3, pairs({'FCGI_MPXS_CONNS': ''})),
         'GET_VALUES with request id 3, never begun: ignored as a stray record', then='open')
    case('get-values-with-active-id', begin(keep=True)
         + record(GET_VALUES, 1, pairs({'FCGI_MPXS_CONNS': ''})),
         'GET_VALUES with the id of the active request',
         log='request 1: unexpected GET_VALUES record')
    case('get-values-mid-body', echo_head(declared=6) + stream(STDIN, 1, b'abc', end=False)
         + record(GET_VALUES, 0, pairs({'FCGI_MPXS_CONNS': ''})) + stream(STDIN, 1, b'def'),
         'GET_VALUES between two STDIN records: answered, and the request served',
         expect=['GET_VALUES_RESULT FCGI_MPXS_CONNS=0'] + echoed(b'abcdef'), then='open')

    # -- roles ------------------------------------------------------------------------------
    case('unknown-role-keep-conn', begin(role=99, keep=True) + params(1, cgi_params())
         + record(STDIN, 1),
         'role 99 with FCGI_KEEP_CONN, PARAMS and STDIN in the same write: UNKNOWN_ROLE, and'
         ' the PARAMS that follow are not run as a request',
         expect=[ended(1, 'UNKNOWN_ROLE')], then='open',
         log='request 1 from {peer} refused with UNKNOWN_ROLE: role 99')
    case('unknown-role', begin(role=99) + params(1, cgi_params()) + record(STDIN, 1),
         'role 99 without FCGI_KEEP_CONN: UNKNOWN_ROLE, then the connection closed',
         expect=[ended(1, 'UNKNOWN_ROLE')], log='refused with UNKNOWN_ROLE: role 99')
    case('filter-role-keep-conn', begin(role=FILTER, keep=True) + params(1, cgi_params())
         + record(STDIN, 1) + stream(DATA, 1, b'filtered'),
         'the FILTER role, not served', expect=[ended(1, 'UNKNOWN_ROLE')], then='open',
         log='refused with UNKNOWN_ROLE: role 3')
    case('authorizer-role', begin(role=AUTHORIZER) + params(1, cgi_params()),
         'the AUTHORIZER role, not served', expect=[ended(1, 'UNKNOWN_ROLE')],
         log='refused with UNKNOWN_ROLE: role 2')

    # -- odd but legal ----------------------------------------------------------------------
    case('data-for-a-responder', begin(keep=True) + params(1, cgi_params('/data'))
         + stream(DATA, 1, b'data nobody reads') + record(STDIN, 1),
         'DATA records for a RESPONDER: ignored, the request served',
         expect=hello('/data'), then='open')
    case('many-empty-stray-records',
         b''.join(record(ABORT_REQUEST, 1000 + n) for n in range(4096)) + request(keep=True),
         '4096 ABORT_REQUEST records for ids never begun, then a request: served',
         expect=hello('/'), then='open')
    case('params-every-byte-value', request(keep=True, path='/\x00\x7f\x80\xff',
                                            **{'X_\x01\xfe': bytes(range(256)).decode('latin-1')}),
         'names and values with every byte value (latin-1 in the environ): served',
         expect=hello('/\x00\x7f\x80\xff'), then='open')
    case('one-byte-records', b''.join(record(PARAMS, 1, bytes([b]), 0)
                                      for b in pairs(cgi_params('/tiny'))),
         'a PARAMS stream in one-byte records, with no BEGIN_REQUEST before it: ignored',
         then='open')


def main():
    build()
    for path in os.listdir(HERE):
        if path.endswith(('.bin', '.bin.gz')):
            os.remove(os.path.join(HERE, path))
    manifest = []
    for entry in CASES:
        data = entry.pop('data')
        # The large cases are mostly zeros and repeats: kept compressed.
        compress = entry.pop('compress') or len(data) > 16384
        entry['file'] = entry['name'] + ('.bin.gz' if compress else '.bin')
        with open(os.path.join(HERE, entry['file']), 'wb') as f:
            f.write(gzip.compress(data, mtime=0) if compress else data)
        manifest.append({key: entry[key] for key in (
            'name', 'file', 'what', 'half_close', 'config', 'expect', 'then', 'log')})
    with open(os.path.join(HERE, 'cases.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
        f.write('\n')
    print('%d cases written to %s' % (len(manifest), HERE))


if __name__ == '__main__':
    main()

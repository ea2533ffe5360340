"""The access log (--access-log, --access-log-format): a line per request,
written by the worker that served it.

A request only leaves a record (its variables, status, size, start and end
times) in the worker's batch; the batch becomes lines, written with one
``write()``, once it holds BATCH records, once the oldest is a second old
(the worker's loop looks), and before the worker exits or reopens its log.
Lines are made a column at a time by ``map()`` and ``zip()`` over the whole
batch, so that the interpreter runs a handful of statements per batch
instead of a dozen per request: what keeps the log within a few percent of
the cheapest request.

Every value that comes from the request is escaped: a quote, a backslash,
a control character or a byte above 127 is written as ``\\xHH``, so that a
hostile request can neither forge a line nor break a field's quoting.
"""

import operator
import os
import re
import threading
import time
from itertools import chain, repeat

from ..handlers.fastcgi import FastCGIHandler

__all__ = ['AccessLog', 'LoggedHandler', 'DEFAULT_FORMAT', 'FORMAT_CODES', 'flush_all']

# The combined log format, with the request's duration in microseconds.
DEFAULT_FORMAT = '%a - %u %t "%r" %s %b "%{Referer}i" "%{User-Agent}i" %D'

BATCH = 64          # records a worker keeps before writing them
BATCH_AGE = 1.0     # seconds the oldest record may wait

FORMAT_CODES = {
    'a': 'remote address (REMOTE_ADDR)',
    'h': 'the same as %a',
    'u': 'remote user (REMOTE_USER), - when none',
    't': 'time the request started, [07/Dec/2026:10:00:00 +0000]',
    'r': 'request line: method, URI and protocol',
    'm': 'method',
    'U': 'URI (REQUEST_URI, else SCRIPT_NAME, PATH_INFO and the query)',
    'q': 'query string',
    'H': 'protocol (SERVER_PROTOCOL)',
    's': 'status code',
    'b': 'response body bytes, - when none',
    'B': 'response body bytes',
    'D': 'duration in microseconds (whole ones)',
    'p': 'worker pid',
    'M': "worker's resident memory (RSS) in KiB when the line is written",
    '{NAME}i': 'request header NAME',
    '{NAME}e': 'CGI variable NAME of the request',
    '%': 'a literal %',
}

_ESCAPES = {code: '\\x%02x' % code for code in (*range(32), 127, *range(128, 256))}
_ESCAPES[ord('"')] = '\\x22'
_ESCAPES[ord('\\')] = '\\x5c'
_UNSAFE = bytes(range(32)) + b'"\\\x7f'
_CODE = re.compile(r'%(?:\{([^}]*)\})?(.)', re.S)


def escape(value, _table=str.maketrans(_ESCAPES)):
    """*value* from the request, safe between quotes on one line."""
    if not value:
        return '-'
    # Nearly every value is printable ASCII without a quote or backslash:
    # four checks in C, where translate() looks each character up.
    if value.isascii() and value.isprintable() and '"' not in value and '\\' not in value:
        return value
    return value.translate(_table)


def _uri(params):
    """%U without a REQUEST_URI: SCRIPT_NAME, PATH_INFO and the query."""
    path = params.get('SCRIPT_NAME', '') + params.get('PATH_INFO', '')
    query = params.get('QUERY_STRING')
    return escape(path + '?' + query if query else path)


_STAMPS = {}


def _stamp(second):
    """%t for a whole second, formatted once."""
    if len(_STAMPS) > 64:
        _STAMPS.clear()
    text = _STAMPS[second] = time.strftime('[%d/%b/%Y:%H:%M:%S %z]', time.localtime(second))
    return text


def _resident_kib():
    """%M: this process's resident memory (/proc, else getrusage's peak)."""
    try:
        with open('/proc/self/statm', 'rb') as f:
            return int(f.read().split()[1]) * (os.sysconf('SC_PAGE_SIZE') // 1024)
    except (OSError, IndexError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# The codes whose value is the request's variable of that name.
_VARIABLES = {'a': 'REMOTE_ADDR', 'h': 'REMOTE_ADDR', 'u': 'REMOTE_USER', 'm': 'REQUEST_METHOD',
              'U': 'REQUEST_URI', 'q': 'QUERY_STRING', 'H': 'SERVER_PROTOCOL'}
_COMPUTED = 'tsbBDpM'


def _compile(fmt):
    """(the %-template of one line, its fields in order): a variable's name,
    or one of _COMPUTED's codes as ('code',)."""
    pieces, fields, at = [], [], 0
    for match in _CODE.finditer(fmt):
        pieces.append(fmt[at:match.start()].replace('%', '%%'))
        at = match.end()
        name, code = match.groups()
        if code == '%' and name is None:
            pieces.append('%%')
        elif name is not None and code in 'ie':
            fields.append('HTTP_' + name.upper().replace('-', '_') if code == 'i' else name)
            pieces.append('%s')
        elif name is None and code in _VARIABLES:
            fields.append(_VARIABLES[code])
            pieces.append('%s')
        elif name is None and code == 'r':
            fields += [_VARIABLES['m'], _VARIABLES['U'], _VARIABLES['H']]
            pieces.append('%s %s %s')
        elif name is None and code in _COMPUTED:
            fields.append((code,))
            # The status line cut to its code in C: '%.3s' % '200 OK'.
            pieces.append('%.3s' if code == 's' else '%d' if code == 'D' else '%s')
        else:
            raise ValueError(f'unknown code %{"{" + name + "}" if name is not None else ""}'
                             f'{code} in the format (see --help for the codes)')
    tail = fmt[at:]
    if '%' in tail:
        raise ValueError('a lone % at the end of the format (write %% for a percent sign)')
    pieces.append(tail.replace('%', '%%') + '\n')
    return ''.join(pieces), fields


def format_batch(template, fields, records):
    """The lines of *records*, each ``(params, status, size, started, ended)``."""
    params, statuses, sizes, starts, ends = zip(*records)
    count = len(records)
    columns, from_request = {}, []
    for field in dict.fromkeys(f for f in fields if type(f) is str):
        column = list(map(dict.get, params, repeat(field, count), repeat('', count)))
        if '' in column:
            if field == 'REQUEST_URI':
                column = [value or _uri(p) for value, p in zip(column, params)]
            column = [value or '-' for value in column]
        columns[field] = column
        from_request.append(column)
    raw = ''.join(chain.from_iterable(from_request))
    # Safe when nothing is left out by deleting the unsafe bytes: one pass
    # over the batch's values in C (isprintable() looks each one up).
    if not (raw.isascii() and len(raw.encode('ascii').translate(None, _UNSAFE)) == len(raw)):
        for column in from_request:
            column[:] = map(escape, column)
    codes = {f[0] for f in fields if type(f) is tuple}
    computed = {'s': statuses, 'B': sizes}
    if 'b' in codes:
        computed['b'] = [size or '-' for size in sizes] if 0 in sizes else sizes
    if 'D' in codes:
        computed['D'] = list(map(operator.mul, map(operator.sub, ends, starts),
                                 repeat(1e6, count)))
    if 'p' in codes:
        computed['p'] = [os.getpid()] * count
    if 'M' in codes:
        computed['M'] = [_resident_kib()] * count
    if 't' in codes:
        seconds = list(map(int, starts))
        for second in set(seconds).difference(_STAMPS):
            _stamp(second)
        computed['t'] = list(map(_STAMPS.__getitem__, seconds))
    ordered = [columns[f] if type(f) is str else computed[f[0]] for f in fields]
    return ''.join(map(template.__mod__, zip(*ordered))) if ordered else template * count


_instances = []


def flush_all():
    """Write every batch waiting in this process (it is about to exit)."""
    for access_log in _instances:
        try:
            access_log.flush()
        except Exception:       # exiting: a log line is not worth a traceback
            pass


class AccessLog:
    """Writes the lines of the requests a worker ends to a LogFile
    (logfiles.py), in *fmt*, a batch at a time (see the module)."""

    def __init__(self, logfile, fmt=None):
        self.file = logfile
        self.format = DEFAULT_FORMAT if fmt is None else fmt
        self._template, self._fields = _compile(self.format)
        self._pending = []
        self._oldest = 0.0
        # Pool threads end requests side by side: then a lock; one thread
        # needs none (a signal handler never touches the batch).
        self._lock = None
        _instances.append(self)

    def threaded(self):
        self._lock = threading.Lock()

    def request_ended(self, handler, _time=time.time):
        """Keep the record of the request *handler* (a LoggedHandler) ran."""
        ended = _time()
        record = (handler.params, *(handler.outcome or handler.ended()), handler.started, ended)
        lock = self._lock
        if lock is None:
            pending = self._pending
            pending.append(record)
            if len(pending) == 1:
                self._oldest = ended
            elif len(pending) >= BATCH:
                self.flush()
            return
        with lock:
            self._pending.append(record)
            if len(self._pending) == 1:
                self._oldest = ended
            full = len(self._pending) >= BATCH
        if full:
            self.flush()

    def flush_if_due(self, now):
        """Write the batch if its oldest record has waited BATCH_AGE (*now*:
        time.time()); the worker's loop asks about once a second."""
        if self._pending and now - self._oldest >= BATCH_AGE:
            self.flush()

    def flush(self):
        """Write every record waiting."""
        lock = self._lock
        if lock is not None:
            with lock:
                batch, self._pending = self._pending, []
        else:
            batch, self._pending = self._pending, []
        if batch:
            self.file.write(format_batch(self._template, self._fields, batch).encode(
                'ascii', 'backslashreplace'))

    def write(self, params, status, size, started, microseconds):
        """One line now: *status* ('200 OK', or '-'), *size* body bytes,
        *started* the wall-clock time the request began."""
        self.file.write(format_batch(self._template, self._fields,
                                     [(params, status, size, started,
                                       started + microseconds / 1e6)]).encode(
            'ascii', 'backslashreplace'))


class LoggedHandler(FastCGIHandler):
    """A FastCGIHandler that keeps, for the access log, when its request
    began and how its response ended (close() forgets the request)."""

    outcome = None

    def __init__(self, channel, params, *args, _time=time.time):
        self.started = _time()
        self.params = params
        FastCGIHandler.__init__(self, channel, params, *args)

    def ended(self):
        return (self.status or '-', self.bytes_sent)

    def close(self):
        if self.outcome is None:
            self.outcome = (self.status or '-', self.bytes_sent)
        FastCGIHandler.close(self)

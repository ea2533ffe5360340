"""The access log (--access-log, --access-log-format): a line per request,
written by the worker that served it.

A request only leaves a record (its variables, status, size, start and end
times) in the worker's batch; the batch becomes lines, written with one
``write()``, once it holds BATCH records, once the oldest is a second old
(the worker's loop looks), and before the worker exits or reopens its log.
The format is compiled once into a function that makes a line from a
record with one f-string; a batch is checked for unsafe bytes in one pass
over its text, and only a batch that holds some is made again with every
request value escaped.

Every value that comes from the request is escaped: a quote, a backslash,
a control character or a byte above 127 is written as ``\\xHH``, so that a
hostile request can neither forge a line nor break a field's quoting.
"""

import os
import re
import threading
import time

from .scoreboard import rss_bytes

__all__ = ['AccessLog', 'DEFAULT_FORMAT', 'FORMAT_CODES', 'flush_all']

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
    return (path + '?' + query if query else path) or '-'


_STAMPS = {}


def _stamp(second):
    """%t for a whole second, formatted once."""
    if len(_STAMPS) > 64:
        _STAMPS.clear()
    text = _STAMPS[second] = time.strftime('[%d/%b/%Y:%H:%M:%S %z]', time.localtime(second))
    return text


def _resident_kib():
    """%M: this process's resident memory (/proc, else getrusage's peak)."""
    resident = rss_bytes('self')
    if resident:
        return resident // 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# The codes whose value is the request's variable of that name.
_VARIABLES = {'a': 'REMOTE_ADDR', 'h': 'REMOTE_ADDR', 'u': 'REMOTE_USER', 'm': 'REQUEST_METHOD',
              'U': 'REQUEST_URI', 'q': 'QUERY_STRING', 'H': 'SERVER_PROTOCOL'}
# The codes computed from the record, as expressions of the line function's
# arguments (params, status, size, started, ended, pid, rss).
_COMPUTED = {
    's': 'status[:3]',
    'b': "(size or '-')",
    'B': 'size',
    'D': 'int((ended - started) * 1e6)',
    'p': 'pid',
    'M': 'rss',
    't': '(stamps.get(int(started)) or stamp(int(started)))',
}


def _compile(fmt):
    """The source of two functions making one line of *fmt* from a record:
    one writes the request's values as they are, one escapes them; and the
    names their source refers to. The source holds only names made here:
    the format's literal text and variable names are values of those names,
    so no text of the format can become code."""
    pieces, names, own_text, at = [], {}, [], 0

    def name_of(prefix, value):
        key = (prefix, value)
        if key not in names:
            names[key] = '%s%d' % (prefix, len(names))
        return names[key]

    def literal(text):
        if text:
            own_text.append(text)
            pieces.append(('{%s}' % name_of('text', text), None))

    def variable(cgi_name):
        # REQUEST_URI is absent from some web servers' requests: rebuilt.
        fallback = 'uri(params)' if cgi_name == 'REQUEST_URI' else "'-'"
        pieces.append(('{%s}', 'get(%s) or %s' % (name_of('var', cgi_name), fallback)))

    for match in _CODE.finditer(fmt):
        literal(fmt[at:match.start()])
        at = match.end()
        name, code = match.groups()
        if code == '%' and name is None:
            literal('%')
        elif name is not None and code in 'ie':
            variable('HTTP_' + name.upper().replace('-', '_') if code == 'i' else name)
        elif name is None and code in _VARIABLES:
            variable(_VARIABLES[code])
        elif name is None and code == 'r':
            variable(_VARIABLES['m'])
            literal(' ')
            variable(_VARIABLES['U'])
            literal(' ')
            variable(_VARIABLES['H'])
        elif name is None and code in _COMPUTED:
            pieces.append(('{%s}' % _COMPUTED[code], None))
        else:
            raise ValueError(f'unknown code %{"{" + name + "}" if name is not None else ""}'
                             f'{code} in the format (see --help for the codes)')
    tail = fmt[at:]
    if '%' in tail:
        raise ValueError('a lone % at the end of the format (write %% for a percent sign)')
    literal(tail + '\n')
    values = {name: value for (_, value), name in names.items()}
    sources = []
    for wrap in ('%s', 'escape(%s)'):
        body = ''.join(piece if expression is None else piece % (wrap % expression)
                       for piece, expression in pieces)
        sources.append("def line(record, pid, rss):\n"
                       "    params, status, size, started, ended = record\n"
                       "    get = params.get\n"
                       '    return f"%s"\n' % body)
    return sources, values, ''.join(own_text)


def _make(fmt):
    """(line, escaped line, unsafe bytes in a line's own text) for *fmt*."""
    sources, values, literal_text = _compile(fmt)
    made = []
    for source in sources:
        scope = dict(values, escape=escape, uri=_uri, stamps=_STAMPS, stamp=_stamp, int=int)
        # Bound as defaults: each is a local of the line function.
        arguments = ', '.join('%s=%s' % (name, name) for name in scope)
        source = source.replace('(record, pid, rss):', '(record, pid, rss, %s):' % arguments, 1)
        exec(compile(source, '<access log format>', 'exec'), scope)
        made.append(scope['line'])
    unsafe = len(literal_text) - len(literal_text.encode('ascii', 'backslashreplace')
                                     .translate(None, _UNSAFE))
    return made[0], made[1], unsafe


def format_batch(lines, records, pid, rss):
    """The text of *records*, each ``(params, status, size, started, ended)``,
    *lines* as _make gives them."""
    line, escaped, unsafe = lines
    text = ''.join([line(record, pid, rss) for record in records])
    # Every value of the request safe when the line's own quotes, newline
    # and other unsafe bytes are all the unsafe bytes of the batch: a pass
    # over the batch in C.
    if text.isascii():
        data = text.encode('ascii')
        if len(data) - len(data.translate(None, _UNSAFE)) == unsafe * len(records):
            return data
    return ''.join([escaped(record, pid, rss) for record in records]).encode(
        'ascii', 'backslashreplace')


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
        self._lines = _make(self.format)
        self._with_rss = '%M' in self.format.replace('%%', '')
        self._pending = []
        self._oldest = 0.0
        # Pool threads end requests side by side: then a lock; one thread
        # needs none (a signal handler never touches the batch).
        self._lock = None
        _instances.append(self)

    def threaded(self):
        self._lock = threading.Lock()

    def request_ended(self, params, status, size, started, _time=time.time):
        """Keep the record of a request: its *params*, its *status* line
        (or '-'), *size* body bytes, and when it *started* (time.time())."""
        ended = _time()
        record = (params, status, size, started, ended)
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
            self._write(batch)

    def _write(self, records):
        self.file.write(format_batch(self._lines, records, os.getpid(),
                                     _resident_kib() if self._with_rss else 0))

    def write(self, params, status, size, started, microseconds):
        """One line now: *status* ('200 OK', or '-'), *size* body bytes,
        *started* the wall-clock time the request began."""
        self._write([(params, status or '-', size, started, started + microseconds / 1e6)])

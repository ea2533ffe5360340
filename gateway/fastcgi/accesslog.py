"""The access log (--access-log, --access-log-format): a line per request,
written by the worker when the request ends.

The format is text with %-codes, compiled once into a ``%``-string and one
function per code, so that a request costs a tuple, a format and one write.
Every value that comes from the request is escaped: a quote, a backslash,
a control character or a byte above 127 is written as ``\\xHH``, so that a
hostile request can neither forge a line nor break a field's quoting.
"""

import os
import re
import time

from ..handlers.fastcgi import FastCGIHandler

__all__ = ['AccessLog', 'LoggedHandler', 'DEFAULT_FORMAT', 'FORMAT_CODES']

# The combined log format, with the request's duration in microseconds.
DEFAULT_FORMAT = '%a - %u %t "%r" %s %b "%{Referer}i" "%{User-Agent}i" %D'

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
    'D': 'duration in microseconds',
    'p': 'worker pid',
    'M': "worker's resident memory (RSS) in KiB at the request's end",
    '{NAME}i': 'request header NAME',
    '{NAME}e': 'CGI variable NAME of the request',
    '%': 'a literal %',
}

_ESCAPES = {code: '\\x%02x' % code for code in (*range(32), 127, *range(128, 256))}
_ESCAPES[ord('"')] = '\\x22'
_ESCAPES[ord('\\')] = '\\x5c'
_CODE = re.compile(r'%(?:\{([^}]*)\})?(.)', re.S)


def escape(value, _table=str.maketrans(_ESCAPES)):
    """*value* from the request, safe between quotes on one line."""
    return value.translate(_table) if value else '-'


def _uri(params):
    uri = params.get('REQUEST_URI')
    if uri:
        return escape(uri)
    path = params.get('SCRIPT_NAME', '') + params.get('PATH_INFO', '')
    query = params.get('QUERY_STRING')
    return escape(path + '?' + query if query else path)


def _header(name):
    key = 'HTTP_' + name.upper().replace('-', '_')
    return lambda r: escape(r[0].get(key))


def _variable(name):
    return lambda r: escape(r[0].get(name))


class _Clock:
    """%t, formatted once a second."""

    __slots__ = ('second', 'text')

    def __init__(self):
        self.second, self.text = None, ''

    def __call__(self, when):
        second = int(when)
        if second != self.second:
            self.text = time.strftime('[%d/%b/%Y:%H:%M:%S %z]', time.localtime(second))
            self.second = second
        return self.text


class _Resident:
    """%M: this process's resident memory, read from /proc/self/statm
    through a descriptor kept open (one pread a request); the peak from
    getrusage where there is no /proc."""

    __slots__ = ('pid', 'fd')
    _page_kib = os.sysconf('SC_PAGE_SIZE') // 1024 if hasattr(os, 'sysconf') else 4

    def __init__(self):
        self.pid, self.fd = None, -1

    def __call__(self):
        pid = os.getpid()
        if pid != self.pid:     # /proc/self is resolved at open: a fork needs its own
            self.pid = pid
            try:
                self.fd = os.open('/proc/self/statm', os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
            except OSError:
                self.fd = -1
        if self.fd >= 0:
            try:
                return int(os.pread(self.fd, 128, 0).split()[1]) * self._page_kib
            except (OSError, IndexError, ValueError):
                pass
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _compile(fmt):
    """(a %-string, the functions of a record giving its values)."""
    clock, resident = _Clock(), _Resident()
    simple = {
        'a': lambda r: escape(r[0].get('REMOTE_ADDR')),
        'u': lambda r: escape(r[0].get('REMOTE_USER')),
        't': lambda r: clock(r[3]),
        'r': lambda r: '%s %s %s' % (escape(r[0].get('REQUEST_METHOD')), _uri(r[0]),
                                     escape(r[0].get('SERVER_PROTOCOL'))),
        'm': lambda r: escape(r[0].get('REQUEST_METHOD')),
        'U': lambda r: _uri(r[0]),
        'q': lambda r: escape(r[0].get('QUERY_STRING')),
        'H': lambda r: escape(r[0].get('SERVER_PROTOCOL')),
        's': lambda r: r[1][:3] if r[1] else '-',
        'b': lambda r: r[2] or '-',
        'B': lambda r: r[2],
        'D': lambda r: r[4],
        'p': lambda r: os.getpid(),
        'M': lambda r: resident(),
    }
    simple['h'] = simple['a']
    pieces, getters, at = [], [], 0
    for match in _CODE.finditer(fmt):
        pieces.append(fmt[at:match.start()].replace('%', '%%'))
        at = match.end()
        name, code = match.groups()
        if code == '%' and name is None:
            pieces.append('%%')
            continue
        if name is not None and code == 'i':
            getters.append(_header(name))
        elif name is not None and code == 'e':
            getters.append(_variable(name))
        elif name is None and code in simple:
            getters.append(simple[code])
        else:
            raise ValueError(f'unknown code %{"{" + name + "}" if name is not None else ""}'
                             f'{code} in the format (see --help for the codes)')
        pieces.append('%s')
    tail = fmt[at:]
    if '%' in tail:
        raise ValueError('a lone % at the end of the format (write %% for a percent sign)')
    pieces.append(tail.replace('%', '%%'))
    return ''.join(pieces) + '\n', tuple(getters)


class AccessLog:
    """Writes a line per request to a LogFile (logfiles.py) in *fmt*."""

    __slots__ = ('file', 'format', '_template', '_getters')

    def __init__(self, logfile, fmt=None):
        self.file = logfile
        self.format = DEFAULT_FORMAT if fmt is None else fmt
        self._template, self._getters = _compile(self.format)

    def request_ended(self, handler):
        """Log the request *handler* (a LoggedHandler) has run."""
        microseconds = int((time.perf_counter() - handler.began) * 1e6)
        status, size = handler.outcome or (getattr(handler, 'status', None),
                                           getattr(handler, 'bytes_sent', 0))
        self.write(handler.params, status, size, handler.started, microseconds)

    def write(self, params, status, size, started, microseconds):
        """A request ended: *status* ('200 OK', or None when no response
        started), *size* body bytes, *started* the wall-clock time it began."""
        record = (params, status, size, started, microseconds)
        line = self._template % tuple([get(record) for get in self._getters])
        self.file.write(line.encode('ascii', 'backslashreplace'))


class LoggedHandler(FastCGIHandler):
    """A FastCGIHandler that keeps, for the access log, when its request
    began and how its response ended (close() forgets the request)."""

    outcome = None

    def __init__(self, channel, params, *args):
        self.started = time.time()
        self.began = time.perf_counter()
        self.params = params
        FastCGIHandler.__init__(self, channel, params, *args)

    def close(self):
        if self.outcome is None:
            self.outcome = (self.status, self.bytes_sent)
        FastCGIHandler.close(self)

"""The status page and ping, answered by the gateway itself, never by the
application: what the scoreboard says, in PHP-FPM's field names, so that
the dashboards and exporters written for PHP-FPM read it.

``OwnAnswers`` is a WSGI application: a worker runs it instead of the
application for a request whose path (SCRIPT_NAME + PATH_INFO) is
--status-path or --ping-path; the arbiter runs it on --status-bind, where
it answers even when every worker is busy or hung.

The query chooses the format: nothing (text), ``json``, ``openmetrics``,
``html``; ``full`` adds a row per worker thread. With --threads T every
thread counts as one of PHP-FPM's processes: idle, active and total count
requests the pool can run at once, and ``full`` shows a row per thread.
"""

import time

from .scoreboard import READY, STATE_NAMES, accept_queues, rss_bytes

__all__ = ['OwnAnswers', 'FORMATS', 'snapshot', 'render', 'parse_query', 'own_paths',
           'path_problem']

FORMATS = ('text', 'json', 'openmetrics', 'html')
_TYPES = {'text': 'text/plain; charset=utf-8', 'json': 'application/json',
          'openmetrics': 'application/openmetrics-text; version=1.0.0; charset=utf-8',
          'html': 'text/html; charset=utf-8'}
_NO_CACHE = [('Cache-Control', 'no-cache, no-store, must-revalidate'),
             ('Expires', 'Thu, 01 Jan 1970 00:00:00 GMT')]

# The pool's fields, in PHP-FPM's order and words, then the gateway's own.
POOL_FIELDS = ('pool', 'process manager', 'start time', 'start since', 'accepted conn',
               'listen queue', 'max listen queue', 'listen queue len', 'idle processes',
               'active processes', 'total processes', 'max active processes',
               'max children reached', 'slow requests', 'timed out requests',
               'worker restarts', 'handed over conn', 'resident memory')
# A row's, likewise; in JSON, PHP-FPM spells 'request URI' 'request uri'.
ROW_FIELDS = ('pid', 'state', 'start time', 'start since', 'requests', 'request duration',
              'request method', 'request URI', 'content length', 'user', 'script',
              'last request cpu', 'last request memory', 'thread', 'resident memory')


def snapshot(config, scoreboard, listeners, full=False, now=None):
    """The pool (and with *full* its rows) as a dict of PHP-FPM's fields;
    times are Unix times, durations microseconds, memory bytes."""
    wall = time.time() if now is None else now
    mono = time.monotonic()
    counters = scoreboard.counters()
    queued, limit, _ = accept_queues(listeners)
    idle = active = memory = 0
    rows = []
    for record in scoreboard.live():
        pid, number, state, _, started, _ = record.header()
        rss = rss_bytes(pid) if pid else 0
        memory += rss
        peak = rss_bytes(pid, peak=True) if full and pid else 0
        for slot in range(record.threads):
            row = record.slot(slot)
            running = row['running since']
            if running:
                active += 1
            elif state == READY:
                idle += 1
            if full:
                rows.append(_row(pid, state, started, slot, row, running, mono, wall, rss,
                                 peak))
    pool = {
        'pool': config.app or 'gateway',
        'process manager': 'dynamic' if getattr(config, 'max_workers', 0) else 'static',
        'start time': int(counters['start']),
        'start since': int(wall - counters['start']),
        'accepted conn': scoreboard.accepted(),
        'listen queue': queued,
        'max listen queue': max(queued, counters['max_listen_queue']),
        'listen queue len': limit or counters['listen_queue_len'],
        'idle processes': idle,
        'active processes': active,
        'total processes': idle + active,
        'max active processes': max(active, counters['max_active']),
        'max children reached': counters['max_children_reached'],
        'slow requests': scoreboard.slow_requests(),
        'timed out requests': counters['timed_out_requests'],
        'worker restarts': counters['worker_restarts'],
        'handed over conn': counters['handed_over_connections'],
        'resident memory': memory,
    }
    if full:
        pool['processes'] = rows
    return pool


def _row(pid, state, started, slot, row, running, mono, wall, rss, peak):
    if state != READY:
        shown = STATE_NAMES.get(state, 'Unknown')
    else:
        shown = 'Running' if running else 'Idle'
    if running:
        duration, cpu = mono - running, 0.0
    else:
        duration = row['last duration']
        cpu = 100.0 * row['last cpu'] / duration if duration > 0 else 0.0
    return {'pid': pid, 'state': shown, 'start time': int(started),
            'start since': int(wall - started) if started else 0,
            'requests': row['requests'], 'request duration': int(duration * 1e6),
            'request method': row['request method'] or '-',
            'request URI': row['request uri'] or '-', 'content length': row['content length'],
            'user': '-', 'script': '-', 'last request cpu': round(cpu, 2),
            'last request memory': peak, 'thread': slot, 'resident memory': rss}


# ---------------------------------------------------------------------------
# The formats
# ---------------------------------------------------------------------------

def _clock(unix_time):
    return time.strftime('%d/%b/%Y:%H:%M:%S %z', time.localtime(unix_time))


# The column values start at, in the pool's lines and the rows' alike.
_WIDTH = max(len(name) for name in POOL_FIELDS + ROW_FIELDS) + 2


def _text_lines(fields, record, width=_WIDTH):
    for name in fields:
        value = record[name]
        if name == 'start time':
            value = _clock(value)
        elif isinstance(value, float):
            value = f'{value:.2f}'
        yield f'{name + ":":<{width}}{value}\n'


def _text(status):
    out = list(_text_lines(POOL_FIELDS, status))
    for row in status.get('processes', ()):
        out.append('\n' + '*' * 24 + '\n')
        out.extend(_text_lines(ROW_FIELDS, row))
    return ''.join(out)


def _json(status):
    import json     # here, not at the top: every worker would hold it for a rare page
    status = dict(status)
    if 'processes' in status:
        status['processes'] = [{('request uri' if name == 'request URI' else name): value
                                for name, value in row.items()}
                               for row in status['processes']]
    return json.dumps(status, indent=None) + '\n'


def _label(value):
    return str(value).replace('\\', r'\\').replace('"', r'\"').replace('\n', r'\n')


# (name, type, help, the pool field). Counters are named with their _total
# in the TYPE and HELP lines too, as Prometheus's text format and its
# checker (promtool check metrics) want them, and its OpenMetrics parser takes.
_METRICS = (
    ('phpfpm_start_since', 'gauge', 'Seconds since the pool started.', 'start since'),
    ('phpfpm_accepted_connections_total', 'counter', 'Requests accepted by the pool.',
     'accepted conn'),
    ('phpfpm_listen_queue', 'gauge', 'Connections waiting to be accepted.', 'listen queue'),
    ('phpfpm_max_listen_queue', 'gauge', 'The most connections seen waiting.',
     'max listen queue'),
    ('phpfpm_listen_queue_length', 'gauge', 'The size of the listen queue.',
     'listen queue len'),
    ('phpfpm_idle_processes', 'gauge', 'Idle workers (threads).', 'idle processes'),
    ('phpfpm_active_processes', 'gauge', 'Workers (threads) running a request.',
     'active processes'),
    ('phpfpm_total_processes', 'gauge', 'Idle and active workers (threads).',
     'total processes'),
    ('phpfpm_max_active_processes', 'gauge', 'The most workers (threads) seen active.',
     'max active processes'),
    ('phpfpm_max_children_reached_total', 'counter',
     'Times every worker was busy while connections waited.', 'max children reached'),
    ('phpfpm_slow_requests_total', 'counter', 'Requests that ran past --slow-request.',
     'slow requests'),
    ('gateway_timed_out_requests_total', 'counter', 'Requests answered 504 past --timeout.',
     'timed out requests'),
    ('gateway_worker_restarts_total', 'counter', 'Workers replaced while the server ran.',
     'worker restarts'),
    ('gateway_handed_over_connections_total', 'counter',
     'Connections a leaving worker handed to one that stays.', 'handed over conn'),
    ('gateway_resident_memory_bytes', 'gauge', "The workers' resident memory.",
     'resident memory'),
)
# With &full, per worker thread (labels pid and thread).
_ROW_METRICS = (
    ('gateway_worker_requests_total', 'counter', 'Requests a worker thread has run.',
     lambda row: row['requests']),
    ('gateway_worker_request_duration_seconds', 'gauge',
     "The running request's duration so far, else the last one's.",
     lambda row: row['request duration'] / 1e6),
)


def _family(name, kind, text):
    unit = '# UNIT %s %s\n' % (name, name.rpartition('_')[2]) \
        if name.endswith(('_bytes', '_seconds')) else ''
    return f'# TYPE {name} {kind}\n{unit}# HELP {name} {text}\n'


def _openmetrics(status):
    pool = f'pool="{_label(status["pool"])}"'
    out = []
    for name, kind, text, field in _METRICS:
        out.append(_family(name, kind, text))
        out.append(f'{name}{{{pool}}} {status[field]}\n')
    rows = status.get('processes')
    if rows:
        for name, kind, text, value in _ROW_METRICS:
            out.append(_family(name, kind, text))
            for row in rows:
                out.append(f'{name}{{{pool},pid="{row["pid"]}",thread="{row["thread"]}"}} '
                           f'{value(row)}\n')
    out.append('# EOF\n')
    return ''.join(out)


def _html(status):
    import html     # as json above; html.entities alone is a large table

    def table(fields, record):
        cells = ''.join(f'<tr><th>{html.escape(name)}</th><td>'
                        f'{html.escape(_clock(record[name]) if name == "start time" else str(record[name]))}'
                        f'</td></tr>' for name in fields)
        return f'<table>{cells}</table>\n'
    parts = [f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
             f'{html.escape(str(status["pool"]))}: status</title><style>'
             f'th{{text-align:left;padding-right:1em}}table{{margin-bottom:1em}}</style>'
             f'</head><body>\n<h1>{html.escape(str(status["pool"]))}</h1>\n',
             table(POOL_FIELDS, status)]
    rows = status.get('processes')
    if rows:
        header = ''.join(f'<th>{html.escape(name)}</th>' for name in ROW_FIELDS)
        body = ''.join('<tr>' + ''.join(
            f'<td>{html.escape(_clock(row[n]) if n == "start time" else str(row[n]))}</td>'
            for n in ROW_FIELDS) + '</tr>\n' for row in rows)
        parts.append(f'<table border="1"><tr>{header}</tr>\n{body}</table>\n')
    parts.append('</body></html>\n')
    return ''.join(parts)


_RENDER = {'text': _text, 'json': _json, 'openmetrics': _openmetrics, 'html': _html}


def render(status, form):
    """The status dict in the format *form* (one of FORMATS), as text."""
    return _RENDER[form](status)


def parse_query(query):
    """``(format, full)`` from a status request's query; ValueError naming
    the formats for a word that is none of them."""
    form, full = 'text', False
    for word in filter(None, query.split('&')):
        name = word.partition('=')[0]
        if name == 'full':
            full = True
        elif name in FORMATS:
            form = name
        else:
            raise ValueError(f'unknown status format {name[:40]!r}: the formats are '
                             f'{", ".join(FORMATS)}, and full adds a row per worker')
    return form, full


# ---------------------------------------------------------------------------
# The WSGI side
# ---------------------------------------------------------------------------

class OwnAnswers:
    """The answers the gateway gives itself: ``paths`` maps each of
    --status-path and --ping-path to this object, for the connection to
    look up; called as a WSGI application for one of them (any other path,
    on --status-bind: 404)."""

    def __init__(self, config, scoreboard, listeners, own_record=None):
        self.config = config
        self.scoreboard = scoreboard
        # The answering worker's record: published first, so that its row
        # shows this request, not the one before.
        self.own_record = own_record
        self.listeners = list(listeners)
        self.paths = {path: self for path in (config.status_path, config.ping_path) if path}

    def __call__(self, environ, start_response):
        path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
        config = self.config
        if path == config.ping_path:
            body = (config.ping_response + '\n').encode('utf-8')
            return _answer(start_response, '200 OK', 'text/plain; charset=utf-8', body)
        if path != config.status_path:
            return _answer(start_response, '404 Not Found', 'text/plain; charset=utf-8',
                           b'Not Found: this address answers only --status-path and '
                           b'--ping-path.\n')
        try:
            form, full = parse_query(environ.get('QUERY_STRING', ''))
        except ValueError as error:
            return _answer(start_response, '400 Bad Request', 'text/plain; charset=utf-8',
                           f'{error}\n'.encode('utf-8'))
        if self.own_record is not None:
            self.own_record.publish()
        status = snapshot(config, self.scoreboard, self.listeners, full)
        return _answer(start_response, '200 OK', _TYPES[form],
                       render(status, form).encode('utf-8'))


def own_paths(config, record, listeners):
    """What a worker's connections answer themselves: ``{path: app}`` for
    --status-path and --ping-path, or None when neither is set. *record* is
    the worker's scoreboard record."""
    if not (config.status_path or config.ping_path) or record is None:
        return None
    return OwnAnswers(config, record.board, listeners, record).paths


def _answer(start_response, status, content_type, body):
    start_response(status, [('Content-Type', content_type),
                            ('Content-Length', str(len(body))), *_NO_CACHE])
    return [body]


def path_problem(path):
    """Why *path* cannot be --status-path or --ping-path, or None."""
    if not path.startswith('/'):
        return f'{path!r} does not start with /: it is matched against SCRIPT_NAME + PATH_INFO'
    if any(ord(c) < 32 or c == '\x7f' for c in path) or '?' in path:
        return f'{path!r} holds a control character or a ?: it is a path, without a query'
    return None


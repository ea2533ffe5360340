"""Names the worker that answers, and notes when each worker served its
first request: the faults benchmark measures from that how soon a
replacement serves.

The note is a file ``first-PID`` in $GATEWAY_BENCH_MARKERS holding the
``time.monotonic()`` of the first request (one clock for every process).
"""

import os
import time

_first = []


def app(environ, start_response):
    if not _first:
        _first.append(time.monotonic())
        directory = os.environ.get('GATEWAY_BENCH_MARKERS')
        if directory:
            path = os.path.join(directory, 'first-%d' % os.getpid())
            with open(path + '.tmp', 'w') as f:
                f.write(repr(_first[0]))
            os.rename(path + '.tmp', path)
    body = b'%d\n' % os.getpid()
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]

"""An application that builds about 50 MB of data when imported, as a large
application's modules, tables and caches do: a million small objects
(strings in a dict and a list) and a block of bytes. Each request looks up
one entry and answers with the worker's pid."""

import os

TABLE = {'key-%07d' % n: 'value-%07d' % n for n in range(270_000)}
NAMES = ['name-%07d' % n for n in range(130_000)]
BLOCK = bytes(6 << 20)


def application(environ, start_response):
    key = 'key-%07d' % (len(environ.get('QUERY_STRING', '')) % len(TABLE))
    body = ('%d %s %d\n' % (os.getpid(), TABLE[key], len(NAMES))).encode()
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]

"""Hello, world: the application that measures the server and nothing else.

It imports nothing, so that every server (and every CGI endpoint) pays only
for its own work. Served as ``hello:app`` with bench/apps on sys.path.
"""

BODY = b'Hello, world!\n'


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8'),
                              ('Content-Length', str(len(BODY)))])
    return [BODY]

"""What the container fronts serve in the tests: the demo, plus two pages.

The demo reads at most 1 MiB of a body; the fronts' body limits (10 MiB) are
checked with /digest, which reads any body in blocks and answers its length
and SHA-256, holding one block at a time. /x-accel-redirect asks nginx, in a
header, to answer with its /healthz location instead.
"""

import hashlib
import json

from gateway.demo import application as demo


def application(environ, start_response):
    if environ.get('PATH_INFO') == '/x-accel-redirect':
        body = b'the application answered'
        start_response('200 OK', [('Content-Type', 'text/plain'),
                                  ('Content-Length', str(len(body))),
                                  ('X-Accel-Redirect', '/healthz')])
        return [body]
    if environ.get('PATH_INFO') != '/digest':
        return demo(environ, start_response)
    stream, digest, length = environ['wsgi.input'], hashlib.sha256(), 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        digest.update(block)
        length += len(block)
    body = json.dumps({'length': length, 'sha256': digest.hexdigest()}).encode('ascii')
    start_response('200 OK', [('Content-Type', 'application/json'),
                              ('Content-Length', str(len(body)))])
    return [body]

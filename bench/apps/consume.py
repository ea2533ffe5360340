"""Reads the whole request body and answers its length: a POST that the
application consumes, for the reload benchmark."""


def app(environ, start_response):
    body = b'%d\n' % len(environ['wsgi.input'].read())
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]

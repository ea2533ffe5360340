"""Applications the CLI tests load by name."""


def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('default %s|%s' % (environ['SCRIPT_NAME'], environ['PATH_INFO'])).encode('latin-1')]


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('app %s|%s' % (environ['SCRIPT_NAME'], environ['PATH_INFO'])).encode('latin-1')]


def create():
    def made(environ, start_response):
        start_response('201 Created', [])
        return [b'from a factory']
    return made


class Namespace:
    inner = staticmethod(app)


not_callable = 42

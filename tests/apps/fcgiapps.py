"""Applications the FastCGI process tests run by name, as
``apps.fcgiapps:NAME`` from the tests directory."""

import os
import time


def _text(start_response, text, status='200 OK'):
    body = text.encode('utf-8')
    start_response(status, [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]


def hello(environ, start_response):
    return _text(start_response, 'Hello, World!')


def path_info(environ, start_response):
    """PATH_INFO as the application sees it."""
    return _text(start_response, environ.get('PATH_INFO', ''))


def errors(environ, start_response):
    """Writes a line to wsgi.errors, then answers."""
    environ['wsgi.errors'].write('written to wsgi.errors\n')
    environ['wsgi.errors'].flush()
    return _text(start_response, 'ok')


def pid(environ, start_response):
    """The worker's pid: which process served the request."""
    return _text(start_response, str(os.getpid()))


def flags(environ, start_response):
    """The worker's pid and what wsgi.multiprocess and wsgi.multithread say."""
    return _text(start_response, '%d %s %s' % (os.getpid(), environ['wsgi.multiprocess'],
                                                environ['wsgi.multithread']))


def slow(environ, start_response):
    """Sleeps as many seconds as the query string says, then answers with
    its pid. Says in the server log when it starts, so that a test knows
    the request is in progress."""
    environ['wsgi.errors'].write('slow request started in pid %d\n' % os.getpid())
    environ['wsgi.errors'].flush()
    time.sleep(float(environ.get('QUERY_STRING') or '1'))
    return _text(start_response, 'slept %s' % os.getpid())


def echo(environ, start_response):
    """The request body, back."""
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', str(len(body)))])
    return [body]


def peer(environ, start_response):
    """Where the web server says the client is, and the CGI basics."""
    return _text(start_response, '%s %s %s' % (environ.get('REMOTE_ADDR'),
                                                environ.get('REQUEST_METHOD'),
                                                environ.get('PATH_INFO')))


def importable(environ, start_response):
    """Whether the module the query string names could be imported here."""
    import importlib.util
    name = environ.get('QUERY_STRING', '')
    return _text(start_response, 'importable' if importlib.util.find_spec(name) else 'not found')


def modules(environ, start_response):
    """The modules this worker holds, by name."""
    import sys
    return _text(start_response, ' '.join(sorted(sys.modules)))


_barriers = {}


def barrier(environ, start_response):
    """Waits until N requests (the query string) are in this process's
    application at once: 200 when they all got there, 503 if they did not
    within 20 seconds."""
    import threading
    parties = int(environ.get('QUERY_STRING') or '2')
    together = _barriers.setdefault(parties, threading.Barrier(parties))
    try:
        together.wait(20)
    except threading.BrokenBarrierError:
        return _text(start_response, 'alone', '503 Service Unavailable')
    return _text(start_response, 'together')


def router(environ, start_response):
    """One app with all of the above by path: /pid, /flags, /slow?S, /echo,
    /peer, /importable?MODULE, /modules, /barrier?N."""
    path = environ.get('PATH_INFO', '/')
    app = {'/pid': pid, '/flags': flags, '/slow': slow, '/echo': echo, '/peer': peer,
           '/importable': importable, '/modules': modules, '/barrier': barrier}.get(path, hello)
    return app(environ, start_response)


application = router


def accel_redirect(environ, start_response):
    """Asks nginx to serve another location in its place."""
    body = b'the application answered'
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body))),
                              ('X-Accel-Redirect', '/internal-only')])
    return [body]


def guarded(environ, start_response):
    """Both FastCGI roles, as Apache's mod_authnz_fcgi asks them. As the
    AUTHORIZER: the authenticator (FCGI_APACHE_ROLE=AUTHENTICATOR) judges
    the Authorization header, "Bearer alice" let through as alice (Variable-*
    headers), another refused 403, none answered 401 with a challenge; the
    authorizer of the user so found (FCGI_APACHE_ROLE=AUTHORIZER) lets alice
    through. As the RESPONDER, the protected resource: the variables the
    authorizer set, as JSON."""
    import json
    if environ.get('FCGI_ROLE') == 'AUTHORIZER':
        apache_role = environ.get('FCGI_APACHE_ROLE')
        token = environ.get('HTTP_AUTHORIZATION', '')
        if token == 'Bearer alice' or (apache_role == 'AUTHORIZER'
                                       and environ.get('REMOTE_USER') == 'alice'):
            start_response('200 OK', [('Variable-X-User', 'alice'),
                                      ('Variable-REMOTE_USER', 'alice'),
                                      ('Variable-AUTHORIZED_AS', apache_role)])
            return [b'']
        if token:
            return _text(start_response, 'mallory may not\n', '403 Forbidden')
        body = b'who are you?\n'
        start_response('401 Unauthorized', [('WWW-Authenticate', 'Bearer realm="gateway"'),
                                             ('Content-Type', 'text/plain'),
                                             ('Content-Length', str(len(body)))])
        return [body]
    seen = {name: value for name, value in environ.items() if isinstance(value, str)
            and name in ('FCGI_ROLE', 'REMOTE_USER', 'X-User', 'X_USER', 'AUTHORIZED_AS',
                         'PATH_INFO', 'SCRIPT_NAME')}
    body = json.dumps(seen, sort_keys=True).encode()
    start_response('200 OK', [('Content-Type', 'application/json'),
                              ('Content-Length', str(len(body)))])
    return [body]

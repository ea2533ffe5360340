"""Helpers for WSGI environs (the ``wsgiref.util`` API): URLs rebuilt from
an environ, path traversal, defaults for tests, and the names the handlers
define and share (``guess_scheme``, ``is_hop_by_hop``, ``FileWrapper``)."""

import posixpath

from .handlers.base import FileWrapper, guess_scheme
from .headers import is_hop_by_hop

__all__ = [
    'FileWrapper', 'guess_scheme', 'application_uri', 'request_uri',
    'shift_path_info', 'setup_testing_defaults', 'is_hop_by_hop',
]


def _quoted(path, safe):
    from urllib.parse import quote
    return quote(path, safe=safe, encoding='latin1')


def application_uri(environ):
    """The URL of the application itself: scheme, host (HTTP_HOST, else
    SERVER_NAME with any port that is not the scheme's), SCRIPT_NAME."""
    scheme = environ['wsgi.url_scheme']
    host = environ.get('HTTP_HOST')
    if not host:
        host = environ['SERVER_NAME']
        port = environ['SERVER_PORT']
        if port != {'https': '443'}.get(scheme, '80'):
            host = f'{host}:{port}'
    return f"{scheme}://{host}{_quoted(environ.get('SCRIPT_NAME') or '/', '/')}"


def request_uri(environ, include_query=True):
    """The URL the request was made to, rebuilt as PEP 3333 describes; with
    *include_query* false, without its query string."""
    path = _quoted(environ.get('PATH_INFO', ''), '/;=,')
    if not environ.get('SCRIPT_NAME'):
        path = path[1:]     # application_uri() already ends in the "/"
    query = environ.get('QUERY_STRING') if include_query else None
    return application_uri(environ) + path + ('?' + query if query else '')


def shift_path_info(environ):
    """Move the first segment of PATH_INFO to the end of SCRIPT_NAME and
    return it; None (and no change) when PATH_INFO is empty.

    Empty and ``.`` segments are skipped on the way. A PATH_INFO of just
    ``/`` gives ``''`` and leaves SCRIPT_NAME ending in ``/``, so that an
    application can tell ``/x`` from ``/x/``. *environ* is changed in place.
    """
    path = environ.get('PATH_INFO', '')
    if not path:
        return None
    segments = path.split('/')
    # The first segment stays (it is the empty one before the leading
    # slash) and so does the last (a trailing slash is meaningful).
    kept = segments[:1] + [s for s in segments[1:-1] if s not in ('', '.')] + segments[-1:]
    name = kept.pop(1)
    script = posixpath.normpath(environ.get('SCRIPT_NAME', '') + '/' + name)
    if script.endswith('/'):
        script = script[:-1]
    if not name and not script.endswith('/'):
        script += '/'
    environ['SCRIPT_NAME'] = script
    environ['PATH_INFO'] = '/'.join(kept)
    return None if name == '.' else name


def setup_testing_defaults(environ):
    """Fill in what a WSGI environ needs, without replacing anything there:
    for tests only, never for a real server (the values are made up)."""
    from io import BytesIO, StringIO
    environ.setdefault('SERVER_NAME', '127.0.0.1')
    environ.setdefault('SERVER_PROTOCOL', 'HTTP/1.0')
    environ.setdefault('HTTP_HOST', environ['SERVER_NAME'])
    environ.setdefault('REQUEST_METHOD', 'GET')
    if environ.keys().isdisjoint(('SCRIPT_NAME', 'PATH_INFO')):
        environ['SCRIPT_NAME'] = ''
        environ['PATH_INFO'] = '/'
    for key, value in (('wsgi.version', (1, 0)), ('wsgi.run_once', 0),
                       ('wsgi.multithread', 0), ('wsgi.multiprocess', 0)):
        environ.setdefault(key, value)
    if 'wsgi.input' not in environ:
        environ['wsgi.input'] = BytesIO()
    if 'wsgi.errors' not in environ:
        environ['wsgi.errors'] = StringIO()
    scheme = environ.setdefault('wsgi.url_scheme', guess_scheme(environ))
    if scheme in ('http', 'https'):
        environ.setdefault('SERVER_PORT', '443' if scheme == 'https' else '80')

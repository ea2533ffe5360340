"""Handlers that run a WSGI application for one request (the ``wsgiref.handlers`` API).

This module holds what is CGI's own: the rules by which a CGI environment
becomes a WSGI environ, and the CGI handlers. ``base`` holds the machinery
every handler shares, ``streams`` the ``wsgi.input`` streams, ``fastcgi`` the
FastCGI adaptor (the server itself is ``gateway.fastcgi``). A CGI process
imports this package, ``base`` and ``gateway.headers``, nothing it does not
use (``streams`` only when there is a body).
"""

import os
import sys

from ..headers import Headers, is_hop_by_hop
from .base import BaseHandler, FileWrapper, SimpleHandler, format_date_time, guess_scheme

__all__ = ['BaseHandler', 'SimpleHandler', 'BaseCGIHandler', 'CGIHandler', 'IISCGIHandler',
           'read_environ']

# Also here for the FastCGI adaptor, the application loader and the cgi
# command: transcode_environ, iis_path_info, script_name_prefix, mounted_path,
# not_mounted, cgi_environ_error, CGIEnvironmentError.


# -- the CGI environment ----------------------------------------------------------
# PEP 3333 transcoding of os.environ, the IIS SCRIPT_NAME/PATH_INFO fix-up,
# the split at a mount point the web server did not make (--script-name),
# the variables a request must have, and the request variables that must
# never reach the application or the process environment (httpoxy).

# Variables made from the request, and so bytes the server put in the
# environment, beyond HTTP_* and SSL_*: RFC 3875's request variables plus
# the URI and path variables Apache and IIS add.
_FROM_THE_REQUEST = frozenset({
    'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'REQUEST_METHOD', 'AUTH_TYPE',
    'CONTENT_TYPE', 'CONTENT_LENGTH', 'HTTPS', 'REMOTE_USER', 'REMOTE_IDENT',
    'REQUEST_URI', 'PATH_TRANSLATED', 'SCRIPT_URL', 'SCRIPT_URI', 'DOCUMENT_URI',
    'UNENCODED_URL',
})

# httpoxy (CVE-2016-5385): a "Proxy:" request header arrives as HTTP_PROXY,
# the name HTTP client libraries read their outbound proxy from.
# PEP 3333 (and RFC 3875): the body's type and length are CONTENT_TYPE and
# CONTENT_LENGTH only; IIS also passes the headers as HTTP_CONTENT_*.
UNSAFE_VARIABLES = ('HTTP_PROXY', 'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH')

# What makes a request: PEP 3333 promises these to every application and
# RFC 3875 4.1 has the web server set them. (So it does SERVER_NAME, but
# nginx sends it empty for a server block without server_name; applications
# take the host from HTTP_HOST first anyway.)
REQUIRED_VARIABLES = ('REQUEST_METHOD', 'SERVER_PROTOCOL')


def _from_the_request(name):
    while name.startswith('REDIRECT_'):     # Apache's copies after an internal redirect
        name = name[9:]
    return name in _FROM_THE_REQUEST or name.startswith(('HTTP_', 'SSL_'))


def transcode_environ(environ, platform=None, encoding=None):
    """A copy of *environ* (a str mapping such as os.environ) with the request
    variables as PEP 3333 native strings: the request's bytes read as latin-1.
    *platform* and *encoding* (this process's by default) let the rules of
    another platform be applied, and tested, anywhere."""
    platform = sys.platform if platform is None else platform
    encoding = sys.getfilesystemencoding() if encoding is None else encoding
    # The server's product name: 'microsoft-iis', 'apache', 'simplehttp', ...
    server = environ.get('SERVER_SOFTWARE', '').lower().partition('/')[0]
    # How the bytes became this str, so how to get them back.
    if platform != 'win32':
        # POSIX: decoded with the file system encoding and surrogateescape,
        # which is exactly reversible.
        codec = (encoding, 'surrogateescape')
    elif server == 'microsoft-iis' or (
            server == 'simplehttp' and 'python/3' in environ['SERVER_SOFTWARE'].lower()):
        # IIS decodes a request as UTF-8 when it is valid UTF-8 (else with
        # the ANSI code page; no way to tell which, UTF-8 is the likelier);
        # http.server's CGI support decodes with urllib's UTF-8 default.
        codec = ('utf-8', 'surrogateescape')
    elif server == 'apache':
        # Apache on Windows writes each byte as the character of that
        # number: the value is a native string already.
        codec = None
    else:
        # Other servers most likely went through the ANSI code page, which
        # Python then decoded with the same page.
        codec = (encoding, 'replace')
    result = dict(environ)
    if codec is not None:
        for name, value in environ.items():
            if _from_the_request(name):
                result[name] = value.encode(*codec).decode('iso-8859-1')
    return result


def read_environ():
    """This process's CGI environment as a WSGI environ would hold it: the
    request variables transcoded to PEP 3333 native strings, the rest as
    ``os.environ`` has them."""
    if not os.supports_bytes_environ:
        return transcode_environ(os.environ)
    # POSIX keeps the bytes the server wrote: a request variable is those
    # bytes read as latin-1, the rest is what os.environ would decode.
    encoding = sys.getfilesystemencoding()
    environ = {}
    for name, value in os.environb.items():
        name = name.decode(encoding, 'surrogateescape')
        environ[name] = (value.decode('iso-8859-1') if _from_the_request(name)
                         else value.decode(encoding, 'surrogateescape'))
    return environ


def iis_path_info(environ):
    """The PATH_INFO IIS meant: without allowPathInfo it sends the whole path
    (/app.py/x: SCRIPT_NAME /app.py, PATH_INFO /app.py/x), so SCRIPT_NAME
    comes off its front, at a segment boundary only (/app.pyc/x stays)."""
    full_path = environ.get('PATH_INFO', '')
    prefix = environ.get('SCRIPT_NAME', '')
    if full_path == prefix or full_path.startswith(prefix + '/'):
        return full_path[len(prefix):]
    return full_path


def script_name_prefix(text):
    """The mount point *text* names (``--script-name``, GATEWAY_SCRIPT_NAME),
    as ``mounted_path`` compares it with a request's path: a decoded URL
    path, never percent-encoded ("/my app", not "/my%20app"), held as PEP
    3333 holds PATH_INFO (its bytes, in this system's encoding, as
    latin-1), without trailing slashes ("/app/" is "/app"; "/" is the
    root, ''). ValueError unless it starts with "/"."""
    if not text.startswith('/'):
        raise ValueError(f"the mount point must be a URL path starting with '/': {text!r}")
    return os.fsencode(text).decode('iso-8859-1').rstrip('/')


def mounted_path(environ, prefix):
    """(SCRIPT_NAME, PATH_INFO) of a request to an application mounted at
    *prefix* (a ``script_name_prefix``), or None when its path lies outside.

    Some web servers do not split the path at the mount point: h2o and
    Caddy without ``split`` send SCRIPT_NAME empty and the whole path in
    PATH_INFO, HAProxy without ``path-info`` the whole path as SCRIPT_NAME,
    IIS's wildcard mapping the whole path in both (``iis_path_info`` undoes
    that first). So the two are joined again, which gives the decoded path
    whichever way a server split it (one that split at *prefix* already
    keeps its split), and split at *prefix*: *prefix* itself gives
    PATH_INFO '', *prefix*/x gives /x; *prefix*x is outside, as is
    everything when no server path starts with it.
    """
    path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
    if path == prefix or path.startswith(prefix + '/') or not prefix:
        return prefix, path[len(prefix):]
    return None


NOT_MOUNTED_BODY = b'Not Found\n'


def not_mounted(environ, start_response):
    """The answer to a request outside the mount point: 404, and no
    application called."""
    start_response('404 Not Found', [('Content-Type', 'text/plain'),
                                     ('Content-Length', str(len(NOT_MOUNTED_BODY)))])
    return [NOT_MOUNTED_BODY]


class CGIEnvironmentError(ValueError):
    """The web server passed an environ that is no CGI request: its failure,
    answered 500 and logged in one line, with no traceback to look into."""


def cgi_environ_error(environ):
    """Why *environ* is no CGI request to give an application, or None: a
    required variable missing, or a CONTENT_LENGTH that is not ``1*digit``
    (RFC 3875, 4.1). Either is the web server's failure, so a 500."""
    for name in REQUIRED_VARIABLES:
        if not environ.get(name):
            return f"the web server set no {name}: not a CGI request (RFC 3875 4.1, PEP 3333)"
    length = environ.get('CONTENT_LENGTH', '')
    if length and not (length.isdigit() and length.isascii()):
        return f"CONTENT_LENGTH is not a non-negative integer: {length!r}"
    return None


# -- the CGI handlers -----------------------------------------------------------------

class BaseCGIHandler(SimpleHandler):
    """CGI output (a ``Status:`` field) over the streams and environ given, as
    for ``SimpleHandler``; the base of gateway protocols such as FastCGI.
    ``UNSAFE_VARIABLES`` never reach the application."""

    origin_server = False
    # Refuse an environ that is no CGI request (cgi_environ_error()) with a
    # 500 and one log line, before the application runs. Off here, where
    # any mapping is run as wsgiref runs it; on where the environ comes from
    # a web server.
    require_cgi_environ = False

    def add_cgi_vars(self):
        environ = self.environ
        environ.update(self.base_env)
        for name in UNSAFE_VARIABLES:
            environ.pop(name, None)
        if self.require_cgi_environ:
            problem = cgi_environ_error(environ)
            if problem:
                raise CGIEnvironmentError(problem)

    def log_exception(self, exc_info):
        # The web server's failure, fully said in one line: no traceback.
        if isinstance(exc_info[1], CGIEnvironmentError):
            self.log_message(f"{self._request_line()}: answered {self.error_status}:"
                             f" {exc_info[1]}")
        else:
            SimpleHandler.log_exception(self, exc_info)


class CGIHandler(BaseCGIHandler):
    """This CGI process's request, from ``sys.stdin``, ``sys.stdout``,
    ``sys.stderr`` and ``read_environ()``: ``CGIHandler().run(app)`` is a
    whole CGI program."""

    wsgi_run_once = True
    require_cgi_environ = True
    # The request's variables come from read_environ() alone: a CGI host
    # that runs several requests in one process must not carry one
    # request's environment into the next (bpo-7250).
    os_environ = {}

    def __init__(self):
        BaseCGIHandler.__init__(self, sys.stdin.buffer, sys.stdout.buffer, sys.stderr,
                                self.request_environ(), multithread=False, multiprocess=True)

    @staticmethod
    def request_environ():
        """The request's environ, with HTTP_PROXY also taken out of
        ``os.environ``, which the application's HTTP clients and the
        processes it starts read (httpoxy)."""
        environ = read_environ()
        if 'HTTP_PROXY' in environ:
            del os.environ['HTTP_PROXY']
        return environ

    def get_stdin(self):
        # Without CONTENT_LENGTH (a server de-chunking as it goes) the body
        # ends where the server closes the pipe: stdin as it is will do.
        length = self.base_env.get('CONTENT_LENGTH')
        if not length:
            return self.stdin
        if not (length.isdigit() and length.isascii()):
            raise ValueError(f"CONTENT_LENGTH is not a non-negative integer: {length!r}")
        from .streams import LimitedInput
        return LimitedInput(self.stdin, int(length))


class IISCGIHandler(CGIHandler):
    """``CGIHandler`` for IIS with ``allowPathInfo`` off, its default: the
    script's path comes off the front of PATH_INFO (``iis_path_info``). A
    CGI program cannot see the setting, hence a class of its own."""

    @staticmethod
    def request_environ():
        environ = CGIHandler.request_environ()
        environ['PATH_INFO'] = iis_path_info(environ)
        return environ

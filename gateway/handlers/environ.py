"""CGI environment rules: how a request's variables become a WSGI environ.

Every rule about what the web server hands the gateway lives here:
PEP 3333 transcoding of ``os.environ``, the IIS SCRIPT_NAME/PATH_INFO fix-up
and the request variables that must never reach the application or the
process environment (httpoxy).
"""

import os
import sys

__all__ = ['read_environ', 'transcode_environ', 'iis_path_info', 'with_iis_path_info',
           'drop_unsafe_variables', 'cgi_environ_error', 'CGIEnvironmentError']

# Variables whose values come from the request, and so are bytes the server
# put in the environment. wsgiref's list, plus the URI and path variables
# Apache and IIS set, which are just as request-derived.
_REQUEST_VARIABLES = frozenset({
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


def _needs_transcode(name):
    return (name in _REQUEST_VARIABLES or name.startswith('HTTP_') or name.startswith('SSL_')
            or (name.startswith('REDIRECT_') and _needs_transcode(name[9:])))


def transcode_environ(environ, platform=None, encoding=None):
    """Return a copy of *environ* (a str mapping as os.environ gives it) with
    request variables as PEP 3333 native strings: the request's bytes,
    decoded as latin-1.

    *platform* and *encoding* default to this process's ``sys.platform`` and
    file system encoding; they are parameters so the rules for another
    platform can be applied (and tested) anywhere.
    """
    platform = sys.platform if platform is None else platform
    encoding = sys.getfilesystemencoding() if encoding is None else encoding
    errors = 'surrogateescape'
    result = {}
    software = environ.get('SERVER_SOFTWARE', '').lower()
    for name, value in environ.items():
        if _needs_transcode(name):
            if platform != 'win32':
                # POSIX: Python decoded the server's bytes with the file system
                # encoding and surrogateescape; that is exactly reversible.
                value = value.encode(encoding, errors).decode('iso-8859-1')
            elif software.startswith('microsoft-iis/'):
                # IIS decodes the request as UTF-8 when it is valid UTF-8,
                # else with the ANSI code page, with no way to tell which;
                # UTF-8 is by far the likelier, so rebuild those bytes.
                value = value.encode('utf-8', errors).decode('iso-8859-1')
            elif software.startswith('apache/'):
                # Apache on Windows writes the bytes as if latin-1: native already.
                pass
            elif software.startswith('simplehttp/') and 'python/3' in software:
                # http.server's CGI support decodes with urllib's UTF-8 default.
                value = value.encode('utf-8', errors).decode('iso-8859-1')
            else:
                # Other servers most likely wrote bytes through the ANSI code
                # page, which Python then decoded with the same page.
                value = value.encode(encoding, 'replace').decode('iso-8859-1')
        result[name] = value
    return result


def read_environ():
    """Read environment, fixing HTTP variables"""
    return transcode_environ(os.environ)


def iis_path_info(environ):
    """The PATH_INFO IIS meant, given its environ.

    IIS without allowPathInfo sends PATH_INFO as the whole URL path, so it
    starts with SCRIPT_NAME: /app.py/x gives SCRIPT_NAME=/app.py and
    PATH_INFO=/app.py/x. Strip that prefix, but only at a segment boundary
    (/app.pyc/x is not under /app.py).
    """
    path = environ.get('PATH_INFO', '')
    script = environ.get('SCRIPT_NAME', '')
    if (path + '/').startswith(script + '/'):
        return path[len(script):]
    return path


def with_iis_path_info(app):
    """Wrap *app* so it sees the PATH_INFO IIS meant: IISCGIHandler's fix-up
    for servers other than CGI (the FastCGI server run by IIS)."""
    def application(environ, start_response):
        environ['PATH_INFO'] = iis_path_info(environ)
        return app(environ, start_response)
    application.__wrapped__ = app
    return application


def drop_unsafe_variables(environ):
    """Remove request variables that must never reach the application."""
    for name in UNSAFE_VARIABLES:
        environ.pop(name, None)


class CGIEnvironmentError(ValueError):
    """The web server passed an environ that is no CGI request: its failure,
    answered 500 and logged in one line, with no traceback to look into."""


def cgi_environ_error(environ):
    """Why *environ* is no CGI request an application may be given, or None.

    RFC 3875 puts every one of these on the web server, so each is the
    server's failure (a 500), not the client's: a missing required variable,
    or a CONTENT_LENGTH that is not ``1*digit`` (RFC 3875 4.1.2; a web server
    answers 400 to such a Content-Length itself).
    """
    for name in REQUIRED_VARIABLES:
        if not environ.get(name):
            return f"the web server set no {name}: not a CGI request (RFC 3875 4.1, PEP 3333)"
    length = environ.get('CONTENT_LENGTH', '')
    if length and not (length.isdigit() and length.isascii()):
        return f"CONTENT_LENGTH is not a non-negative integer: {length!r}"
    return None

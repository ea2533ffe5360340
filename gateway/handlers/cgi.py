"""CGI handlers: one request per process, over stdin, stdout and the environment."""

import os
import sys

from .base import SimpleHandler
from .environ import (CGIEnvironmentError, cgi_environ_error, drop_unsafe_variables,
                      iis_path_info, read_environ)

__all__ = ['BaseCGIHandler', 'CGIHandler', 'IISCGIHandler', 'LimitedInput']


class InputLines:
    """The line-oriented half of a wsgi.input stream, built on readline()."""

    __slots__ = ()

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class LimitedInput(InputLines):
    """A binary stream that ends after *length* bytes of *stream*.

    PEP 3333: wsgi.input must not read past CONTENT_LENGTH, and read() with
    no size must return the rest of the body, not block on a server that
    keeps its end of the pipe open. A body that ends before *length* bytes
    raises OSError (as mod_wsgi does): a silently short body would be taken
    for the whole upload.
    """

    __slots__ = ('stream', 'remaining')

    def __init__(self, stream, length):
        self.stream = stream
        self.remaining = length

    def read(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if not size:
            return b''
        if size <= _READ_STEP:
            data = self.stream.read(size)
        else:
            # A length the server claims is no memory to set aside at once
            # (read(n) allocates n bytes first): take what arrives, in steps.
            parts, left = [], size
            while left:
                part = self.stream.read(min(left, _READ_STEP))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
            data = b''.join(parts)
        self.remaining -= len(data)
        if len(data) < size:
            self._ended_early()
        return data

    def readline(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if not size:
            return b''
        data = self.stream.readline(min(size, sys.maxsize))  # a CONTENT_LENGTH may be larger
        self.remaining -= len(data)
        if not data:
            self._ended_early()
        return data

    def _ended_early(self):
        missing, self.remaining = self.remaining, 0
        raise OSError(f"the request body ended {missing} bytes short of its CONTENT_LENGTH:"
                      " the client or the web server stopped sending")

    def close(self):
        pass


# Largest single read from stdin; longer reads go in steps of this size.
_READ_STEP = 1 << 24


def _request_body(stream, environ):
    length = environ.get('CONTENT_LENGTH', '')
    if not length:
        # No length (e.g. a chunked request the server de-chunks as it goes):
        # the body ends where the server closes the pipe.
        return stream
    if not (length.isdigit() and length.isascii()):
        raise ValueError(f"CONTENT_LENGTH is not a non-negative integer: {length!r}")
    return LimitedInput(stream, int(length))


class BaseCGIHandler(SimpleHandler):
    """CGI-like systems using input/output/error streams and environ mapping

    Usage::

        handler = BaseCGIHandler(inp,out,err,env)
        handler.run(app)

    This handler class is useful for gateway protocols like ReadyExec and
    FastCGI, that have usable input/output/error streams and an environment
    mapping.  It's also the base class for CGIHandler, which just uses
    sys.stdin, os.environ, and so on.

    The constructor also takes keyword arguments 'multithread' and
    'multiprocess' (defaulting to 'True' and 'False' respectively) to control
    the configuration sent to the application.  It sets 'origin_server' to
    False (to enable CGI-like output), and assumes that 'wsgi.run_once' is
    False.
    """

    origin_server = False
    # Refuse an environ that is no CGI request (cgi_environ_error) with a
    # 500 before the application runs. Off here, where wsgiref runs any
    # mapping it is given; on for the handlers whose environ comes from a
    # web server.
    require_cgi_environ = False

    def add_cgi_vars(self):
        self.environ.update(self.base_env)
        drop_unsafe_variables(self.environ)
        if self.require_cgi_environ:
            # The application never sees an environ PEP 3333 does not
            # allow: this becomes the 500 it is (the web server's failure)
            # and the log says why.
            error = cgi_environ_error(self.environ)
            if error:
                raise CGIEnvironmentError(error)


class CGIHandler(BaseCGIHandler):
    """CGI-based invocation via sys.stdin/stdout/stderr and os.environ

    Usage::

        CGIHandler().run(app)

    The difference between this class and BaseCGIHandler is that it always
    uses 'wsgi.run_once' of 'True', 'wsgi.multithread' of 'False', and
    'wsgi.multiprocess' of 'True'.  It does not take any initialization
    parameters, but always uses 'sys.stdin', 'os.environ', and friends.

    If you need to override any of these parameters, use BaseCGIHandler
    instead.
    """

    wsgi_run_once = True
    require_cgi_environ = True
    # Do not let os.environ leak between requests in multi-run CGI hosts
    # (bpo-7250): the request's variables come from read_environ() alone.
    os_environ = {}

    def __init__(self):
        BaseCGIHandler.__init__(
            self, sys.stdin.buffer, sys.stdout.buffer, sys.stderr,
            self.request_environ(), multithread=False, multiprocess=True
        )

    @staticmethod
    def request_environ():
        # httpoxy: also out of os.environ, which the app's HTTP clients and
        # any process it starts read.
        os.environ.pop('HTTP_PROXY', None)
        return read_environ()

    def get_stdin(self):
        return _request_body(self.stdin, self.base_env)


class IISCGIHandler(CGIHandler):
    """CGI-based invocation with workaround for IIS path bug

    This handler should be used in preference to CGIHandler when deploying on
    Microsoft IIS without having set the config allowPathInfo option (IIS>=7)
    or metabase allowPathInfoForScriptMappings (IIS<7).

    IIS can be configured to pass the correct PATH_INFO, but that makes
    PATH_TRANSLATED wrong, and there is no way for CGI code to tell whether
    the option was set; hence a separate handler class.
    """

    def __init__(self):
        environ = self.request_environ()
        environ['PATH_INFO'] = iis_path_info(environ)
        BaseCGIHandler.__init__(
            self, sys.stdin.buffer, sys.stdout.buffer, sys.stderr,
            environ, multithread=False, multiprocess=True
        )

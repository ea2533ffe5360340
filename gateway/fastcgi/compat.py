"""flup's FastCGI entry point, served by this package.

Programs written for flup start their server like this::

    from flup.server.fcgi import WSGIServer          # threads
    from flup.server.fcgi_fork import WSGIServer     # processes
    WSGIServer(application, bindAddress=('127.0.0.1', 9000)).run()

and only the import needs to change. The application object given is run
as it is (forked workers inherit it; nothing is re-imported). flup's tuning
arguments map onto our settings where they mean the same thing; the others
are accepted and ignored, so a working call keeps working.
"""

import os
import signal

from .config import ROLES, Config, default_workers
from .protocol import FCGI_RESPONDER

__all__ = ['WSGIServer']

# flup's thread- and process-pool arguments that have no equivalent here: a
# fixed pool is sized by workers and threads instead of spare counts.
_IGNORED = frozenset(('minSpare', 'maxSpare', 'sockTimeout', 'jobClass', 'jobArgs'))
_PREFORK = frozenset(('maxChildren', 'maxRequests', 'minSpare', 'maxSpare'))
DEFAULT_THREADS = 10
MAX_THREADS = 256


class WSGIServer:
    """``flup.server.fcgi.WSGIServer`` and ``flup.server.fcgi_fork.WSGIServer``
    in one: threads by default, processes when ``multiprocess`` is true or a
    prefork argument (maxChildren, maxRequests...) is given.

    bindAddress: ``(host, port)`` for TCP (a host containing ':' or a
    4-tuple means IPv6), a string for a unix socket path, or None for the
    listening socket the web server put on fd 0. An empty host (every
    interface, as in flup) needs ``web_server_addrs=`` (or
    FCGI_WEB_SERVER_ADDRS) to say who may connect: ``'any'``, or the web
    servers' addresses and networks; without, run() raises
    UnguardedBindError. When fd 0 is not a socket
    (or forceCGI, or FCGI_FORCE_CGI=Y), the one request is answered as CGI.

    Mapped: maxChildren -> workers, maxThreads -> threads, maxRequests ->
    max_requests, timeout -> timeout (seconds a request may run), umask ->
    the unix socket's mode, environ -> added to every request's environ,
    roles -> the roles served (FCGI_RESPONDER, FCGI_AUTHORIZER; the
    application tells them apart by environ['FCGI_ROLE'], as under flup;
    FCGI_FILTER is refused). Any setting of ``Config`` may also be given by
    name (``workers=4``). Ignored: multiplexed (nobody multiplexes), debug
    (tracebacks never reach clients), minSpare, maxSpare.
    """

    def __init__(self, application, environ=None, multithreaded=True, multiprocess=False,
                 bindAddress=None, umask=None, multiplexed=False, debug=False,
                 roles=(FCGI_RESPONDER,), forceCGI=False, timeout=None, **kw):
        self.application = application
        self.environ = dict(environ or {})
        self.bindAddress = bindAddress
        self.umask = umask
        self.multithreaded = multithreaded
        self.multiprocess = multiprocess or bool(_PREFORK & kw.keys())
        self.debug = debug
        self.roles = roles
        self.forceCGI = forceCGI
        self.config = self._config(timeout, kw)

    def _config(self, timeout, kw):
        known = vars(Config())
        settings = {name: kw.pop(name) for name in list(kw) if name in known}
        max_children = kw.pop('maxChildren', None)
        max_threads = kw.pop('maxThreads', None)
        max_requests = kw.pop('maxRequests', None)
        unknown = set(kw) - _IGNORED
        if unknown:
            raise TypeError(f"WSGIServer() got unexpected keyword arguments: {sorted(unknown)}")
        if self.multiprocess:
            settings.setdefault('workers', max_children or default_workers())
            settings.setdefault('threads', 1)
        else:
            settings.setdefault('workers', 1)
            threads = min(max_threads or DEFAULT_THREADS, MAX_THREADS) if self.multithreaded else 1
            settings.setdefault('threads', threads)
        if max_requests:
            settings.setdefault('max_requests', max_requests)
        # flup had no request time limit unless asked for one.
        settings.setdefault('timeout', timeout or 0)
        settings.setdefault('binds', _binds(self.bindAddress))
        if isinstance(self.bindAddress, str) and self.umask is not None:
            settings.setdefault('unix_mode', 0o777 & ~self.umask)
        settings['application'] = _with_environ(self.application, self.environ)
        settings.setdefault('roles', _served_roles(self.roles))
        return Config(**settings)

    def _answers_as_cgi(self):
        if self.bindAddress is not None:
            return False
        if self.forceCGI or os.environ.get('FCGI_FORCE_CGI', 'N').upper().startswith('Y'):
            return True
        from .listeners import stdin_kind
        return stdin_kind(0) is None

    def run(self):
        """Serve until SIGINT, SIGTERM or SIGHUP. Returns True when SIGHUP
        stopped it (flup's signal to the caller that it may start again),
        False otherwise."""
        from .server import configure_logging, serve

        configure_logging(self.config.log_level, only_if_unconfigured=True)
        if self._answers_as_cgi():
            from ..handlers import CGIHandler
            CGIHandler().run(self.config.application)
            return False
        outcome = serve(self.config, hup_stops=True)
        return outcome.signal == getattr(signal, 'SIGHUP', None)


def _served_roles(roles):
    roles = tuple(dict.fromkeys(roles))
    unknown = set(roles) - set(ROLES.values())
    if unknown or not roles:
        raise ValueError(f"WSGIServer(roles={roles!r}): only FCGI_RESPONDER ({FCGI_RESPONDER}) "
                         f"and FCGI_AUTHORIZER ({ROLES['authorizer']}) are served")
    return roles


def _binds(address):
    if address is None:
        return []
    if isinstance(address, str):
        return ['unix:' + address]
    host, port = address[0], address[1]
    if len(address) > 2 or ':' in host:
        return [f'[{host}]:{port}']
    return [f'{host or "0.0.0.0"}:{port}']


def _with_environ(application, extra):
    if not extra:
        return application

    def with_environ(environ, start_response):
        # As flup: the server's entries win over the request's.
        environ.update(extra)
        return application(environ, start_response)
    return with_environ

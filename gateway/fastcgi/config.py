"""Settings of a FastCGI server, shared by the supervisor, its workers and
every connection. One object, built by the command line or by the flup-style
``WSGIServer``, read-only once serving starts."""

import os


# Seconds a worker past --timeout has to answer 504 before it is killed.
TIMEOUT_GRACE = 2.0

# The FastCGI roles a server may play (--roles), by the number BEGIN_REQUEST
# gives them; FILTER (3) is not served.
ROLES = {'responder': 1, 'authorizer': 2}


def default_workers():
    return os.cpu_count() or 1


def serves_in_several_processes(config):
    """``wsgi.multiprocess``: whether another process may be running the
    application at the same time (PEP 3333).

    Under an arbiter, always, whatever --workers says: a reload starts each
    fresh worker before the old one has finished its requests, and a worker
    past --timeout is replaced while it ends its others. With no arbiter, on
    a listening socket a process manager put on fd 0 (mod_fcgid, lighttpd,
    spawn-fcgi), which starts more processes like this one. Only a server in
    this one process, on an address of its own, serves alone.
    """
    return config.workers > 0 or not config.binds


class Config:
    """What the FastCGI server was asked to do.

    app            MODULE:CALLABLE to import in each worker (so that SIGHUP
                   brings fresh code), or None when ``application`` is given.
    application    an already imported WSGI callable (the flup-style API).
    binds          addresses: "HOST:PORT", "[V6]:PORT", "unix:PATH", "fd://N".
                   Empty: the listening socket on fd 0 (mod_fcgid, spawn-fcgi)
                   or, when fd 0 is a connected stream, that one connection.
    """

    def __init__(self, **settings):
        self.app = None
        self.application = None
        self.binds = []
        self.workers = default_workers()
        self.threads = 1
        self.backlog = 1024
        self.max_requests = 0           # per worker; 0: never recycle
        self.timeout = 30.0             # a request running longer is answered 504, its worker replaced; 0: never
        self.graceful_timeout = 30.0    # SIGTERM: how long in-flight requests may take
        # A worker that has not loaded the application this long after its
        # fork is killed, where it was stuck logged; 0: wait for ever.
        self.boot_timeout = 60.0
        self.max_connections = 1024     # per worker; beyond it, BEGIN_REQUEST gets OVERLOADED; 0: unlimited
        self.read_timeout = 60.0        # a web server silent mid-request (or idle between requests) this long is dropped
        # From BEGIN_REQUEST to the end of PARAMS and of the body the application
        # reads; past it, 408 (or a cut response). 0: no limit.
        self.request_read_timeout = 20.0
        self.max_params_size = 1 << 20  # bytes of PARAMS per request
        # Bytes of body per request: a larger CONTENT_LENGTH is answered 413
        # before the application runs, a streamed body cut there. 0: no limit.
        self.max_body_size = 0
        # Per worker: bytes held for requests whose PARAMS have not all come;
        # past it, the connections holding the most get OVERLOADED. 0: no limit.
        self.max_pending_params = 16 << 20
        self.fcgi_stderr = False        # wsgi.errors to FCGI_STDERR records instead of the server log
        # The roles served (numbers, see ROLES); BEGIN_REQUEST for another
        # gets UNKNOWN_ROLE. The application tells them apart by FCGI_ROLE.
        self.roles = (ROLES['responder'],)
        # Who may connect over TCP: 'any', or addresses and networks. None:
        # FCGI_WEB_SERVER_ADDRS, else anyone, and a bind on every interface is refused.
        self.web_server_addrs = None
        self.unix_mode = None           # permission bits for unix sockets (int)
        self.unix_group = None          # group name or id for unix sockets
        self.chdir = None
        self.iis = False                # undo IIS's PATH_INFO (allowPathInfo off), as IISCGIHandler
        # The URL path the application is mounted at, where the web server
        # does not split there (--script-name); None: as the server splits.
        self.script_name = None
        self.log_level = 'info'
        # Paths the gateway answers itself (status.py), matched against
        # SCRIPT_NAME + PATH_INFO; None: off. --status-bind: an address the
        # arbiter answers them on, whatever the workers are doing.
        self.status_path = None
        self.ping_path = None
        self.ping_response = 'pong'
        self.status_bind = None
        # The pool (pool.py): grow up to max_workers while requests wait,
        # back to workers after idle_timeout; 0: a fixed pool.
        self.max_workers = 0
        self.idle_timeout = 10.0
        self.max_requests_jitter = 0    # each worker adds 0..this to max_requests
        self.max_rss = 0                # MiB; a worker past it is replaced; 0: no limit
        # Operations logs (oplogs.py): LogFile objects, opened before serving.
        self.access_log = None
        self.access_log_format = None   # None: oplogs.DEFAULT_ACCESS_FORMAT
        self.slow_request = 0.0         # seconds; past it a request's traceback is logged
        self.slow_log = None            # None: the server's log
        self.preload = False            # import the application in the arbiter, before forking
        self.preloaded = None           # ... the application it imported (preload.py)
        self.preloaded_modules = ()     # ... and the modules that are its own
        for name, value in settings.items():
            if not hasattr(self, name):
                raise TypeError(f"unknown FastCGI setting {name!r}")
            setattr(self, name, value)

    def __repr__(self):
        fields = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'Config({fields})'

    def load_application(self):
        """The WSGI callable these settings name (see apploader)."""
        if self.preloaded is not None:
            return self.preloaded       # imported by the arbiter (--preload)
        from ..apploader import load_application
        # Where --chdir went is the operator's choice; the directory the
        # server was merely started in is not imported from when this user
        # can write it.
        return load_application(self.app, self.application, unless_writable=not self.chdir,
                                iis=self.iis, script_name=self.script_name)

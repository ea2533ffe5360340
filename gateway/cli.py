"""The ``gateway`` command line: ``gateway cgi`` and ``gateway fastcgi``.

The CGI path runs once per request, so it parses its few options by hand
and imports nothing it does not need (no argparse, logging or socket);
argparse and the server are imported for ``gateway fastcgi`` only, which
turns its arguments and environment variables into a Config, sets up the
log and hands over to ``gateway.fastcgi.server.serve``. Start-up failures
become one line on stderr and an exit status (2: the command line is wrong,
1: it could not run).
"""

import os
import sys

USAGE = """\
usage: gateway cgi [--iis] [--script-name PREFIX] [--chdir DIR] [--log-file FILE]
                   [MODULE:CALLABLE]
       gateway fastcgi MODULE:CALLABLE [options]   (see: gateway fastcgi --help)
       gateway request ADDRESS PATH [options]      (see: gateway request --help)
       gateway status ADDRESS [--json] [--full]
       python -m gateway ...

Serve a WSGI application behind a web server.

  cgi       Answer one CGI request (the web server runs this once per request).
            The application comes from MODULE:CALLABLE or, when none is given,
            from the GATEWAY_APP environment variable, since Apache's
            ScriptAlias and IIS script maps pass no arguments. Run with no
            arguments at all under a web server (GATEWAY_INTERFACE set), the
            command also answers as CGI. Under a web server, the words a query
            without "=" puts at the end of the command line (RFC 3875 4.4:
            "?a+b" is two) are dropped by count, never read as options, and
            the fastcgi command refuses to start inside a CGI request.
              --iis        use IISCGIHandler, which undoes IIS's PATH_INFO
                           (also GATEWAY_IIS=1)
              --script-name PREFIX
                           the application is mounted at the URL path PREFIX,
                           whatever the web server put in SCRIPT_NAME and
                           PATH_INFO (also GATEWAY_SCRIPT_NAME): a request
                           under PREFIX gets SCRIPT_NAME=PREFIX and the rest
                           as PATH_INFO, any other path a 404
              --chdir DIR  import the application from DIR (also GATEWAY_CHDIR)
              --log-file FILE
                           append wsgi.errors and the gateway's messages to FILE
                           (also GATEWAY_LOG) instead of stderr, the web
                           server's error log; with --iis, where IIS would
                           read stderr as part of the response, messages go
                           only to FILE, else nowhere
            MODULE:NAME may name a dotted attribute, or NAME() to call a factory;
            MODULE alone means MODULE:application, else MODULE:app.
            A missing or broken application, and an environment that is no
            CGI request (no REQUEST_METHOD or SERVER_PROTOCOL, a CONTENT_LENGTH
            that is not a number), are reported on stderr (the web server's
            error log) and answered with a 500, exit status 1; no traceback
            ever reaches the client.

  fastcgi   Run a supervised FastCGI server.

  request   Send one FastCGI request to a running server and print the answer
            (exit status 0 for 2xx): gateway request unix:/run/gateway/fastcgi.sock /ping

  status    Print a running server's status page (its --status-path).
"""


def words_from_the_query(environ):
    """How many words at the end of this process's command line a web server
    made from the request's query; they are the visitor's, never options.

    RFC 3875 4.4: for a query without "=", a server may split it on "+" and
    append one word per piece (Apache's mod_cgi and mod_cgid do, whatever the
    method). The words need not equal the query's: Apache unescapes them,
    backslashes shell characters and cuts a word at %00. So they are removed
    by count, not compared. A server that appends nothing (IIS puts them only
    where a script map has "%s") then costs the deployment's last words, and
    the request fails closed rather than taking options from the visitor.
    """
    query = environ.get('QUERY_STRING', '')
    if 'GATEWAY_INTERFACE' not in environ or not query or '=' in query:
        return 0
    return query.count('+') + 1


def in_a_cgi_request(environ):
    """Whether this process was started by a web server to answer one request."""
    return 'GATEWAY_INTERFACE' in environ and 'REQUEST_METHOD' in environ


def parse_cgi_args(args, environ):
    """Return (app_spec, iis, directory, log_file, script_name) from the
    command line and environment."""
    spec = environ.get('GATEWAY_APP')
    from .apploader import env_flag
    iis = env_flag('GATEWAY_IIS', environ)
    args = list(args)
    values = {'--chdir': environ.get('GATEWAY_CHDIR') or None,
              '--log-file': environ.get('GATEWAY_LOG') or None,
              '--script-name': environ.get('GATEWAY_SCRIPT_NAME') or None}
    while args:
        arg = args.pop(0)
        option = arg.split('=', 1)[0]
        if arg == '--iis':
            iis = True
        elif option in values:
            if '=' in arg:
                values[option] = arg.split('=', 1)[1]
            elif args:
                values[option] = args.pop(0)
            else:
                raise SystemExit(f"gateway cgi: {option} needs a value")
        elif arg.startswith('-'):
            raise SystemExit(f"gateway cgi: unknown option {arg!r}\n\n{USAGE}")
        elif args:
            raise SystemExit(f"gateway cgi: unexpected argument {args[0]!r}\n\n{USAGE}")
        else:
            spec = arg
    script_name = values['--script-name']
    if script_name is not None:
        from .handlers import script_name_prefix
        try:
            script_name_prefix(script_name)
        except ValueError as error:
            raise SystemExit(f"gateway cgi: --script-name: {error}") from None
    return spec, iis, values['--chdir'], values['--log-file'], script_name


def _log_stream(log_file, iis):
    """Where the application's wsgi.errors and the gateway's messages go.

    stderr (the web server's error log) by default; IIS reads a CGI
    program's stderr as part of its response, so there the messages go to
    the --log-file, or nowhere when none is given.
    """
    if log_file:
        try:
            return open(log_file, 'a', encoding='utf-8', errors='backslashreplace')
        except OSError as error:
            if not iis:
                sys.stderr.write(f"gateway: cannot open the log file: {error}\n")
    if iis:
        return open(os.devnull, 'w')
    return sys.stderr


def run_cgi(spec, iis=False, directory=None, log_file=None, script_name=None):
    """Answer the CGI request in this process's environment with the app
    *spec*, mounted at *script_name* if given."""
    from .handlers import CGIHandler, IISCGIHandler

    handler = IISCGIHandler() if iis else CGIHandler()
    log = handler.stderr = _log_stream(log_file, iis)

    def error_page(environ, start_response):
        start_response(handler.error_status, handler.error_headers[:])
        return [handler.error_body]

    from .handlers import cgi_environ_error
    if cgi_environ_error(handler.base_env):
        # No request to give an application: the handler refuses it with a
        # 500 and logs why; loading the application would be wasted work.
        handler.run(error_page)
        return 1
    from .apploader import AppLoadError, describe_load_error, load_application
    try:
        if directory:
            os.chdir(directory)
        app = load_application(spec, script_name=script_name)
    except (AppLoadError, OSError) as error:
        log.write(f"gateway: {describe_load_error(spec, error)}\n")
        log.flush()
        handler.run(error_page)
        return 1
    bodies = []

    def application(environ, start_response):
        bodies.append(environ['wsgi.input'])
        return app(environ, start_response)
    handler.run(application)
    _discard_unread_body(bodies)
    return 0


def _discard_unread_body(bodies):
    """Read what the application left of a body of known length.

    A CGI program that exits with request bytes still unread on a socket
    (mod_cgid's stdin) makes the kernel reset the connection, and Apache
    then throws away the response it was relaying. Only a body with a
    CONTENT_LENGTH has a known end to read to.
    """
    from .handlers.streams import LimitedInput
    for stream in bodies:
        if isinstance(stream, LimitedInput):
            try:
                while stream.read(1 << 16):
                    pass
            except (OSError, ValueError):
                pass


def command_line(environ):
    """This process's arguments without the words a web server added from
    the query. An argv a deployment passes to main() itself is all its own."""
    args = sys.argv[1:]
    del args[max(0, len(args) - words_from_the_query(environ)):]
    return args


def main(argv=None):
    args = command_line(os.environ) if argv is None else list(argv)
    if not args:
        if 'GATEWAY_INTERFACE' in os.environ:
            return run_cgi(*parse_cgi_args((), os.environ))
        sys.stderr.write(USAGE)
        return 2
    command, rest = args[0], args[1:]
    if command in ('-h', '--help', 'help'):
        sys.stdout.write(USAGE)
        return 0
    if command == 'cgi':
        if '-h' in rest or '--help' in rest:
            sys.stdout.write(USAGE)
            return 0
        return run_cgi(*parse_cgi_args(rest, os.environ))
    if command == 'fastcgi':
        if in_a_cgi_request(os.environ):
            # A web server runs this program once per request: a long-lived
            # server started from here would outlive the request and read
            # FastCGI records from the visitor's body.
            sys.stderr.write("gateway: refusing to start the FastCGI server inside a CGI "
                             "request (GATEWAY_INTERFACE and REQUEST_METHOD are set)\n")
            return 2
        return fastcgi_main(rest)
    if command in ('request', 'status'):
        from .client_commands import main as client_main
        return client_main(command, rest)
    sys.stderr.write(f"gateway: unknown command {command!r}\n\n{USAGE}")
    return 2


# ---------------------------------------------------------------------------
# gateway fastcgi
# ---------------------------------------------------------------------------

PROG = 'gateway fastcgi'

DESCRIPTION = """\
Serve a WSGI application over FastCGI: an arbiter process forks WORKERS
worker processes that share the listening sockets, each with THREADS threads.
Every worker imports the application itself, so SIGHUP loads fresh code.

MODULE:CALLABLE names the application (MODULE:NAME() calls a factory; MODULE
alone means MODULE:application, else MODULE:app). When no application is
given, GATEWAY_APP is used. It is imported from PYTHONPATH, from --chdir, and
from the directory the server starts in unless this user (or anyone but its
owner) can write there: a module written there would run in every new worker.

Without --bind, the server uses what the web server left on fd 0: a listening
socket (Apache mod_fcgid, spawn-fcgi, lighttpd), served by the usual workers,
or one connection (IIS), served in this process one request at a time.

Every option can also be set by an environment variable, named after it in
brackets: GATEWAY_ and the option's name in capitals, dashes as underscores
(GATEWAY_MAX_REQUESTS=1000). The command line wins over the variable."""

EPILOG = """\
examples:
  gateway fastcgi myproject.wsgi:application --bind 127.0.0.1:9000
  gateway fastcgi myproject.wsgi:application --bind 0.0.0.0:9000 --web-server-addrs 10.0.0.0/8
  gateway fastcgi app:app --bind unix:/run/app/fcgi.sock --unix-mode 660 --unix-group www-data
  spawn-fcgi -s /run/app/fcgi.sock -- /usr/bin/env GATEWAY_APP=app:app python3 -m gateway fastcgi
"""


def _number(kind, minimum, what):
    def parse(text):
        import argparse
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}') from None
        if value < minimum or value != value:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}')
        return value
    return parse


_BYTE_UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}


def _byte_size(text):
    """A number of bytes, with K, M or G for KiB, MiB, GiB: '10M'."""
    import argparse
    number = text.strip().upper().removesuffix('B')
    unit = number[-1:] if number[-1:] in ('K', 'M', 'G') else ''
    digits = number[:len(number) - len(unit)]
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of bytes such as 1048576 '
                                          f'or 10M')
    return int(digits) * _BYTE_UNITS[unit]


def _octal_mode(text):
    import argparse
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f'{text!r} is not an octal permission mode such as 660')
    return mode


def _checked_by(check):
    """An argparse type: the text as it is, once *check(text)* has not raised
    ValueError (whose message is the error's)."""
    def parse(text):
        import argparse
        try:
            check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text
    return parse


def _check_bind(text):
    from .fastcgi.listeners import parse_bind
    parse_bind(text)        # BindSyntaxError, a ValueError


def _check_mount_point(text):
    from .handlers import script_name_prefix
    script_name_prefix(text)


_bind = _checked_by(_check_bind)

_mount_point = _checked_by(_check_mount_point)


def _roles(text):
    import argparse
    from .fastcgi.config import ROLES
    names = [name.strip().lower() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in ROLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f'{text!r}: the roles served are responder and authorizer, comma-separated')
    return tuple(dict.fromkeys(ROLES[name] for name in names))


def _default_workers():
    from .fastcgi.config import default_workers
    value = os.environ.get('WEB_CONCURRENCY', '')
    return int(value) if value.isdigit() else default_workers()


_SECONDS = 'a number of seconds'

# (flags, type, smallest value, metavar, what a value is, help); the default
# is the Config setting the last flag names. %(grace)g: TIMEOUT_GRACE.
_NUMERIC_OPTIONS = (
    (('-t', '--threads'), int, 1, 'T', 'a number of threads (1 or more)',
     'threads per worker, i.e. requests each worker runs at once (default: %(default)s)'),
    (('--max-requests',), int, 0, 'N', 'a number of requests',
     'replace a worker after it has served N requests, against slow leaks (default: 0, never)'),
    (('--timeout',), float, 0, 'S', _SECONDS,
     'a request running longer than S seconds is answered 504 Gateway Timeout (cut '
     'instead if its response has started) and its worker replaced; a worker that '
     'cannot answer within %(grace)gs is killed (default: %%(default)g; 0: never)'),
    (('--boot-timeout',), float, 0, 'S', _SECONDS,
     'a worker that has not loaded the application S seconds after it started is killed '
     'and the Python traceback of where its import was stuck is logged: at start the '
     'server exits 1, on a reload the old workers keep serving. With --preload the '
     'arbiter\'s own import obeys it too: interrupted, its traceback logged, exit 1 at start, '
     'the reload abandoned on SIGHUP (default: %(default)g; 0: wait for ever)'),
    (('--graceful-timeout',), float, 0, 'S', _SECONDS,
     'on SIGTERM and reload, how long requests in progress may take to finish '
     '(default: %(default)g)'),
    (('--max-connections',), int, 0, 'N', 'a number of connections',
     'connections per worker; beyond, requests are answered OVERLOADED '
     '(default: %(default)s; 0: unlimited)'),
    (('--read-timeout',), float, 0, 'S', _SECONDS,
     'drop a web-server connection silent for S seconds, mid-request or idle between '
     'requests (default: %(default)g; 0: never)'),
    (('--request-read-timeout',), float, 0, 'S', _SECONDS,
     'a request must arrive within S seconds of its BEGIN_REQUEST: its PARAMS, and as much '
     'of its body as the application reads; past it, 408 Request Timeout (the response cut '
     'instead if it has started); a late body on a connection the web server keeps leaves '
     'it open, the rest of the body dropped as it comes, else the connection is closed. '
     'Keep it below --timeout '
     '(default: %(default)g; 0: never)'),
    (('--max-params-size',), int, 1, 'BYTES', 'a number of bytes',
     'largest PARAMS (CGI environment) of one request (default: %(default)s)'),
    (('--max-pending-params',), int, 0, 'BYTES', 'a number of bytes',
     'per worker, bytes held for requests whose PARAMS have not all arrived (at least '
     '--max-params-size); past it, the connections holding the most are answered '
     'OVERLOADED and closed (default: %(default)s, 16 MiB; 0: no limit)'),
    (('--backlog',), int, 1, 'N', 'a queue length (1 or more)',
     'listen queue length (default: %(default)s; the kernel may cap it: net.core.somaxconn)'),
)


def _terminal_columns():
    """$COLUMNS, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ['COLUMNS'])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def build_parser():
    """The argument parser of ``gateway fastcgi``."""
    import argparse

    from .environment_options import EnvironmentParser
    from .fastcgi.config import TIMEOUT_GRACE, Config

    defaults = Config()
    from .cli_operations import SIGNALS_HELP, add_operations_options
    from .cli_status import add_status_options

    def formatter(prog):
        # The width argparse would find through shutil, whose import (and
        # bz2's, lzma's) the arbiter would otherwise pass on to every worker.
        return argparse.RawDescriptionHelpFormatter(prog, width=_terminal_columns() - 2)

    parser = EnvironmentParser(prog=PROG, description=DESCRIPTION,
                               epilog=SIGNALS_HELP + '\n' + EPILOG, formatter_class=formatter)
    add = parser.add_argument
    add('app', nargs='?', metavar='MODULE:CALLABLE',
        help='the WSGI application (default: $GATEWAY_APP)')
    add('-b', '--bind', action='append', type=_bind, default=[], metavar='ADDRESS',
        help='where to listen; repeat for several: HOST:PORT (IPv4), [IPV6]:PORT (IPv6 only), '
             'unix:PATH, or fd://N (an inherited listening socket). Default: the listening '
             'socket or connection on fd 0')
    add('-w', '--workers', type=_number(int, 0, 'a number of workers'), default=None, metavar='N',
        help='worker processes (default: $WEB_CONCURRENCY, else the number of CPUs, here %d); '
             '0 serves in this one process, with no arbiter, reload or --timeout'
             % _default_workers())
    for flags, kind, minimum, metavar, what, text in _NUMERIC_OPTIONS:
        setting = flags[-1][2:].replace('-', '_')
        add(*flags, type=_number(kind, minimum, what), default=getattr(defaults, setting),
            metavar=metavar, help=text % {'grace': TIMEOUT_GRACE} if '%(grace)' in text else text)
    add('--max-body-size', type=_byte_size, default=defaults.max_body_size, metavar='BYTES',
        help='largest request body, in bytes or with K, M, G (10M: 10 MiB): a request that '
             'declares a larger CONTENT_LENGTH is answered 413 Content Too Large without '
             'running the application; a body streamed without one (Apache mod_proxy_fcgi '
             'passes a chunked upload on whatever its size) is cut where it passes the limit, '
             'answered 413 if the application has not started its response, else the '
             'response is cut and the log says so (default: 0, no limit: the web server\'s '
             'own limit applies)')
    add_operations_options(add, defaults, _number)
    add_status_options(add, _bind)
    add('--roles', type=_roles, default='responder',
        metavar='LIST',
        help='the FastCGI roles served, comma-separated: responder, authorizer (Apache '
             "mod_authnz_fcgi). One application answers both and tells them apart by "
             "environ['FCGI_ROLE']; an AUTHORIZER request answered 200 is let through, its "
             'Variable-NAME headers set NAME for the protected resource, any other answer goes '
             'to the client. Serve authorizer only for an application written for it: any 200 '
             "grants access (default: responder)")
    add('--fcgi-stderr', action='store_true',
        help="send wsgi.errors to the web server as FCGI_STDERR records (its error log) instead "
             "of this server's log (default: off; nginx logs every such record as an error)")
    add('--web-server-addrs', metavar='LIST', default=None,
        help='who may connect over TCP: comma-separated IP addresses and networks (e.g. '
             '10.0.0.0/8,fd00::/8, as container networks need), or the word any: everyone, '
             'on purpose (default: $FCGI_WEB_SERVER_ADDRS; unset: anyone, but a --bind on every '
             'interface, 0.0.0.0 or [::], is then refused). An empty list is an error. '
             'Unix-socket peers are always allowed')
    add('--unix-mode', type=_octal_mode, default=None, metavar='OCTAL',
        help='permissions of unix sockets, e.g. 660, given as bind() creates them (default: '
             "as the umask allows). The web server's user needs write permission on the socket "
             'and +x on every parent directory')
    add('--unix-group', default=None, metavar='GROUP',
        help="group (name or id) of unix sockets, e.g. the web server's (default: ours)")
    add('--chdir', default=None, metavar='DIR',
        help='change to DIR before binding and loading the application; DIR goes first on '
             'sys.path, writable or not: naming it is the choice (default: stay)')
    add('--iis', action='store_true',
        help="undo IIS's PATH_INFO, which repeats SCRIPT_NAME when allowPathInfo is off, as "
             'IISCGIHandler does (default: off)')
    add('--script-name', type=_mount_point, default=None,
        metavar='PREFIX',
        help='the application is mounted at the URL path PREFIX, for web servers that do not '
             'split the path there (h2o, Caddy without split, HAProxy without path-info, an IIS '
             'wildcard mapping): a request under PREFIX gets SCRIPT_NAME=PREFIX and the rest as '
             'PATH_INFO, whatever the web server sent; any other path is answered 404 without '
             'calling the application. PREFIX is a decoded path ("/my app"), "/" the root '
             '(default: as the web server splits)')
    add('--log-file', default=None, metavar='FILE', legacy_variable='GATEWAY_LOG',
        help="append the server's log and wsgi.errors to FILE instead of stderr (default: "
             'stderr; under IIS, which keeps no stderr, give one)')
    add('--log-level', default=defaults.log_level, type=str.lower,
        choices=('debug', 'info', 'warning', 'error', 'critical'),
        help='log verbosity, on stderr (default: %(default)s)')
    return parser


def _fail(status, message):
    import logging
    logger = logging.getLogger('gateway')
    if any(isinstance(handler, logging.FileHandler) for handler in logger.handlers):
        logger.error('%s: error: %s', PROG, message)
    if sys.stderr is not None:
        sys.stderr.write(f'{PROG}: error: {message}\n')
        sys.stderr.flush()
    return status


def _start_directory_on_path(start):
    """As gunicorn: the directory the server was started in is importable,
    behind --chdir (put in front by load_app); but not when this user, or
    anyone but its owner, can write it, unless PYTHONPATH names it. A
    module written there (the images ran the server in its socket
    directory) would be imported by every new worker: the entry Python
    itself put first for it (``python -m``: the directory, ``-c``: '') goes
    too."""
    from .apploader import writable_directory
    named = {os.path.realpath(entry) for entry in
             os.environ.get('PYTHONPATH', '').split(os.pathsep) if entry}
    real = os.path.realpath(start)
    if real in named:
        return
    if not writable_directory(start):
        if start not in sys.path:
            sys.path.insert(0, start)
        return
    safe_path = getattr(sys.flags, 'safe_path', False)
    if sys.path and not safe_path and os.path.realpath(sys.path[0] or start) == real:
        del sys.path[0]
    import logging
    logging.getLogger('gateway').info(
        'not importing from %s, where the server started: this user can write there '
        '(--chdir or PYTHONPATH name a directory to import from)', start)


def fastcgi_main(argv=None):
    """Run ``gateway fastcgi`` with *argv*; the exit status."""
    from .apploader import AppLoadError, describe_load_error
    from .fastcgi import listeners as transports
    from .fastcgi.config import Config
    from .fastcgi.server import configure_logging, serve

    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as stop:
        return stop.code
    try:
        configure_logging(args.log_level, log_file=args.log_file)
    except OSError as error:
        return _fail(1, f'--log-file {args.log_file}: {error.strerror}')
    spec = args.app or os.environ.get('GATEWAY_APP', '').strip()
    if not spec:
        return _fail(2, 'no WSGI application given: pass MODULE:CALLABLE or set GATEWAY_APP '
                        '(see --help)')

    try:
        transports.allowed_peers(args.web_server_addrs)
    except ValueError as error:
        source = parser.source_of('web_server_addrs', args)
        return _fail(2, str(error).replace('--web-server-addrs', source, 1))
    if 0 < args.max_pending_params < args.max_params_size:
        return _fail(2, f'--max-pending-params {args.max_pending_params} is below '
                        f'--max-params-size {args.max_params_size}: a request with PARAMS that '
                        f'large could never start')
    from .cli_operations import operations_settings
    workers = _default_workers() if args.workers is None else args.workers
    operations, problem = operations_settings(args, workers)
    if problem:
        return _fail(2, problem)
    from .cli_status import status_settings
    own_answers, problem = status_settings(args, workers)
    if problem:
        return _fail(2, problem)
    _start_directory_on_path(os.getcwd())
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as error:
            return _fail(1, f'--chdir {args.chdir}: {error.strerror}')

    config = Config(
        app=spec, binds=args.bind, workers=workers,
        threads=args.threads, backlog=args.backlog, max_requests=args.max_requests,
        timeout=args.timeout, graceful_timeout=args.graceful_timeout,
        boot_timeout=args.boot_timeout,
        max_connections=args.max_connections, read_timeout=args.read_timeout,
        request_read_timeout=args.request_read_timeout,
        max_params_size=args.max_params_size, max_pending_params=args.max_pending_params,
        max_body_size=args.max_body_size,
        fcgi_stderr=args.fcgi_stderr, roles=args.roles,
        web_server_addrs=args.web_server_addrs, unix_mode=args.unix_mode,
        unix_group=args.unix_group, chdir=args.chdir, log_level=args.log_level, iis=args.iis,
        script_name=args.script_name, **operations, **own_answers)
    if config.workers and config.binds and not hasattr(os, 'fork'):
        return _fail(2, 'this system cannot fork workers: use --workers 0, or run under IIS '
                        '(no --bind: the connection on stdin)')
    from .fastcgi.server import StatusBindError
    try:
        return serve(config).status
    except StatusBindError as error:
        return _fail(2, str(error))
    except transports.BindSyntaxError as error:
        return _fail(2, str(error))
    except transports.ListenError as error:
        return _fail(1, str(error))
    except AppLoadError as error:
        return _fail(1, describe_load_error(config.app, error))
    except KeyboardInterrupt:
        return 0

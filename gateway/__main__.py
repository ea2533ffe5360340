"""The ``gateway`` command: serve a WSGI application over CGI or FastCGI.

The CGI path runs once per request, so it parses its few options by hand
and imports nothing it does not need; argparse is for the long-running
FastCGI server only.
"""

import os
import sys

USAGE = """\
usage: gateway cgi [--iis] [--chdir DIR] [--log-file FILE] [MODULE:CALLABLE]
       gateway fastcgi MODULE:CALLABLE [options]   (see: gateway fastcgi --help)
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
    """Return (app_spec, iis, directory, log_file) from the command line and
    environment."""
    spec = environ.get('GATEWAY_APP')
    from .apploader import env_flag
    iis = env_flag('GATEWAY_IIS', environ)
    directory = environ.get('GATEWAY_CHDIR') or None
    log_file = environ.get('GATEWAY_LOG') or None
    args = list(args)
    values = {'--chdir': directory, '--log-file': log_file}
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
    directory, log_file = values['--chdir'], values['--log-file']
    return spec, iis, directory, log_file


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


def run_cgi(spec, iis=False, directory=None, log_file=None):
    """Answer the CGI request in this process's environment with the app *spec*."""
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
    from .apploader import AppLoadError, load_app
    try:
        if directory:
            os.chdir(directory)
        app = load_app(spec)
    except (AppLoadError, OSError) as error:
        log.write(f"gateway: cannot load the WSGI application: {error}\n")
        cause = error.__cause__
        if cause is not None and not isinstance(cause, ModuleNotFoundError):
            import traceback
            traceback.print_exception(type(cause), cause, cause.__traceback__, file=log)
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
        from .handlers.fastcgi.cli import main as fastcgi_main
        return fastcgi_main(rest)
    sys.stderr.write(f"gateway: unknown command {command!r}\n\n{USAGE}")
    return 2


if __name__ == '__main__':
    sys.exit(main())

"""``gateway fastcgi``'s status and ping options: their parsing and their
checks; cli.py adds them and builds the Config (the pages themselves are
gateway/fastcgi/status.py)."""


def add_status_options(add, bind_type):
    """Add the options to a parser's *add*; *bind_type* parses an address."""
    add('--status-path', default=None, metavar='PATH', type=_path('--status-path'),
        help='answer a request for PATH (SCRIPT_NAME + PATH_INFO) with the status page '
             'instead of the application, with PHP-FPM\'s fields: text, or ?json, '
             '?openmetrics, ?html, and &full for a row per worker thread (default: off)')
    add('--ping-path', default=None, metavar='PATH', type=_path('--ping-path'),
        help='answer a request for PATH with --ping-response, without the application: '
             'health means "answers FastCGI" (default: off)')
    add('--ping-response', default='pong', metavar='TEXT',
        help='the body of the answer to --ping-path (default: %(default)s)')
    add('--status-bind', default=None, metavar='ADDRESS', type=bind_type,
        help='an address of its own (as --bind; the same --web-server-addrs rule) where the '
             'arbiter itself answers --status-path and --ping-path, even when every worker is '
             'busy or hung; other paths get 404 there (default: off, the workers answer them)')


def _path(option):
    def parse(text):
        import argparse
        from .fastcgi.status import path_problem
        problem = path_problem(text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text
    parse.__name__ = option
    return parse


def status_settings(args, workers):
    """The Config settings of these options: (settings, None), or (None, a
    one-line error naming the option)."""
    if args.status_bind is not None:
        if not workers:
            return None, ('--status-bind needs an arbiter (--workers 1 or more): with '
                          '--workers 0 the one process that would answer it is the one serving')
        if not (args.status_path or args.ping_path):
            return None, '--status-bind answers --status-path and --ping-path: give one of them'
        if args.status_bind in (args.bind or ()):
            return None, f'--status-bind {args.status_bind} is also a --bind address'
    if args.status_path and args.status_path == args.ping_path:
        return None, f'--status-path and --ping-path are both {args.status_path}'
    if any(ord(c) < 32 for c in args.ping_response):
        return None, '--ping-response holds a control character'
    return dict(status_path=args.status_path, ping_path=args.ping_path,
                ping_response=args.ping_response, status_bind=args.status_bind), None

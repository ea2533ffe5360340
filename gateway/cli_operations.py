"""``gateway fastcgi``'s options for running it in production: the access
and slow-request logs, the dynamic pool, worker recycling and preload.
Their parsing and their checks; cli.py adds them and builds the Config."""

import os

SIGNALS_HELP = """\
signals (to the arbiter):
  TERM       graceful stop: requests in progress finish (--graceful-timeout)
  INT, QUIT  fast stop
  HUP        reload: workers are replaced one by one, each old one stopped
             only once its fresh replacement is ready; no request is refused.
             With --preload the arbiter first imports the application's
             modules again (those outside the standard library and
             site-packages)
  USR1       reopen every log file (--log-file, --access-log, --slow-log) in
             the arbiter and the workers, after logrotate moved them
  TTIN       one worker more; with --max-workers, raises the pool's minimum
             (at most --max-workers)
  TTOU       one worker fewer, gracefully; with --max-workers, lowers the
             minimum; at one worker it is ignored, with a log line
  USR2, WINCH, ALRM
             ignored, with a log line (other servers upgrade or stop workers
             on them); never a stop
  PIPE       ignored: a write to a closed connection fails where it is made
  A worker ignores all of these but USR1 (it reopens its own log files)
  and the stop signals.
"""


def add_operations_options(add, defaults, number):
    """Add the options to a parser's *add*; *number* makes a numeric type."""
    from .fastcgi.accesslog import DEFAULT_FORMAT, FORMAT_CODES
    codes = ', '.join(f'%{code} {text}' for code, text in FORMAT_CODES.items())
    add('--access-log', default=None, metavar='FILE',
        help='log a line per request to FILE (- for standard output), appended by the worker '
             'that served it, 64 lines at a time or within two seconds (a 504 past --timeout: '
             'when it is sent); values from the request are escaped (default: off)')
    add('--access-log-format', default=None, metavar='FORMAT',
        help=f'the access log\'s line, with %%-codes: {codes.replace("%", "%%")} '
             f'(default: "{DEFAULT_FORMAT.replace("%", "%%")}", the combined log format and '
             'the duration)')
    add('--slow-request', type=number(float, 0, 'a number of seconds'),
        default=defaults.slow_request, metavar='S',
        help='once a request has run S seconds, log its method, URI, duration and the Python '
             'stack of the thread running it, once per request, without stopping it; the '
             '--timeout path logs the same stack before its 504 (default: 0, off)')
    add('--slow-log', default=None, metavar='FILE',
        help="where --slow-request and --timeout stacks go (- for standard output; default: the "
             "server's log)")
    add('--max-workers', type=number(int, 0, 'a number of workers'), default=0, metavar='M',
        help='let the pool grow, one worker at a time, up to M workers while requests wait '
             '(every worker busy and the listen queue not empty), and shrink back to --workers '
             'after --idle-timeout (default: 0, a fixed pool of --workers)')
    add('--idle-timeout', type=number(float, 0.1, 'a number of seconds (0.1 or more)'),
        default=defaults.idle_timeout, metavar='S',
        help='with --max-workers: a worker beyond --workers that has been idle S seconds is '
             'stopped (default: %(default)g)')
    add('--max-requests-jitter', type=number(int, 0, 'a number of requests'),
        default=defaults.max_requests_jitter, metavar='J',
        help='each worker adds a random 0..J to --max-requests, so that workers started '
             'together are not replaced together (default: %(default)s)')
    add('--max-rss', type=number(float, 0, 'a number of MiB'), default=defaults.max_rss,
        metavar='MIB',
        help='replace a worker whose resident memory passes MIB (read from /proc, Linux); its '
             'replacement starts, and is ready, before it stops taking requests '
             '(default: 0, no limit)')
    add('--preload', action='store_true',
        help='import the application once in the arbiter, before forking, so that the '
             'workers share its memory; SIGHUP imports it again there (default: off, each '
             'worker imports it)')


def operations_settings(args, workers):
    """The Config settings of these options: (settings, None), or (None, a
    one-line error naming the option). Opens the log files, so that one
    that cannot be opened stops the server before anything starts."""
    from .fastcgi.accesslog import AccessLog
    from .fastcgi.logfiles import open_log_file

    if args.max_workers and args.max_workers < workers:
        return None, (f'--max-workers {args.max_workers} is below --workers {workers}: the '
                      f'pool grows from --workers up to --max-workers')
    if args.max_workers and not workers:
        return None, '--max-workers needs an arbiter and its workers (--workers 1 or more)'
    if args.max_rss and not os.path.exists(f'/proc/{os.getpid()}/statm'):
        return None, '--max-rss needs /proc to read what workers use (Linux)'
    if args.access_log_format is not None and args.access_log is None:
        return None, '--access-log-format needs --access-log FILE'
    settings = dict(max_workers=args.max_workers, idle_timeout=args.idle_timeout,
                    max_requests_jitter=args.max_requests_jitter, max_rss=args.max_rss,
                    slow_request=args.slow_request, preload=args.preload,
                    access_log_format=args.access_log_format)
    try:
        if args.access_log is not None:
            try:
                AccessLog(None, args.access_log_format)
            except ValueError as error:
                return None, f'--access-log-format: {error}'
            settings['access_log'] = AccessLog(open_log_file('--access-log', args.access_log),
                                               args.access_log_format)
        if args.slow_log is not None:
            settings['slow_log'] = open_log_file('--slow-log', args.slow_log)
    except ValueError as error:
        return None, str(error)
    return settings, None

"""Which way the FastCGI server runs, and its log.

``serve(config)`` picks the mode: listen on the --bind addresses, or take
what the web server left on fd 0 (a listening socket: mod_fcgid,
spawn-fcgi; or one connection: IIS's process model, served right here, one
request at a time, since IIS starts more processes itself); then supervise
``workers`` forked workers (arbiter.py), or with ``workers == 0`` serve in
this process (for a debugger, or a process manager that supervises by
itself). ``configure_logging`` sets up the log for the command line and the
flup-style API alike.
"""

import logging
import os
import signal
import sys
import threading
from collections import namedtuple

from . import listeners as transports
from . import protocol as fcgi
from .connection import ServedConnection
from .limits import raise_open_file_limit, warn_if_fds_short
from .scoreboard import READY, Scoreboard
from .status import own_paths
from .worker import Worker, server_values
from .worker_process import FAST_STOP, OPERATOR_SIGNALS, stop_on_signals

__all__ = ['serve', 'serve_in_process', 'serve_one_connection', 'serve_stream', 'Outcome',
           'configure_logging', 'StatusBindError']

log = logging.getLogger('gateway')


def configure_logging(level='info', only_if_unconfigured=False, log_file=None):
    """Log the server's messages on stderr, or appended to *log_file*, one
    line each: ``[2026-11-24 08:00:00 +0000] [pid] [INFO] message``.

    With *only_if_unconfigured* (a library call) a program that already set
    up logging keeps its own handlers.
    """
    logger = logging.getLogger('gateway')
    if only_if_unconfigured and (logger.handlers or logging.getLogger().handlers):
        return
    if not any(getattr(handler, 'is_gateway_default', False) for handler in logger.handlers):
        if log_file:
            handler = logging.FileHandler(log_file, encoding='utf-8', errors='backslashreplace')
        elif sys.stderr is None:
            # A process started without a stderr (IIS gives a FastCGI process
            # none) has nowhere to say anything: --log-file is the way.
            handler = logging.NullHandler()
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            '[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s', '%Y-%m-%d %H:%M:%S %z'))
        handler.is_gateway_default = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


class Outcome(namedtuple('Outcome', 'status signal')):
    """How ``serve`` ended: the exit status, and the signal that stopped it
    (or None)."""

    __slots__ = ()


def serve(config, *, hup_stops=False):
    """Run the server *config* describes until it is stopped.

    With binds: listen on them. Without: serve what the web server left on
    fd 0, a listening socket or one connection. ``workers == 0`` serves in
    this process without an arbiter.

    Raises, before serving anything: BindSyntaxError (UnguardedBindError:
    a TCP listener on every interface with nobody named to connect),
    ListenError, ValueError (a bad FCGI_WEB_SERVER_ADDRS), and AppLoadError
    where the application is loaded in this process (no arbiter).
    """
    allowed = transports.allowed_peers(config.web_server_addrs)
    if allowed is not None:
        log.info('TCP connections accepted %s %s (%s)', 'from' if allowed.anyone else 'only from',
                 allowed, allowed.source + ('=any' if allowed.anyone else ''))
    if config.binds:
        opened = transports.open_listeners(config.binds, allowed, config.backlog,
                                           config.unix_mode, config.unix_group)
    else:
        kind = transports.stdin_kind(0)
        if kind == 'connection':
            return Outcome(serve_one_connection(config), None)
        if kind is None:
            raise transports.ListenError(
                "no --bind given, and fd 0 (stdin) is not a socket: pass --bind ADDRESS "
                "(e.g. --bind 127.0.0.1:9000 or --bind unix:/run/app/fcgi.sock), or let the web "
                "server start this program with a listening socket on fd 0 (mod_fcgid, "
                "spawn-fcgi)")
        opened = [transports.take_stdin_listener(allowed)]
    for listener in opened:
        log.info('listening on %s', listener.name)
    warn_if_fds_short(config, len(opened), raise_open_file_limit())
    if config.workers == 0:
        return serve_in_process(config, opened, hup_stops=hup_stops)
    from .arbiter import Arbiter
    status_listener = _open_status_listener(config, allowed, opened)
    if config.preload:
        from .preload import preload
        try:
            preload(config)
        except BaseException:
            for listener in opened + [status_listener] * bool(status_listener):
                listener.close()
                listener.remove_socket_file()
            raise
    arbiter = Arbiter(config, opened, hup_stops=hup_stops, status_listener=status_listener)
    return Outcome(arbiter.run(), arbiter.stop_signal)


class StatusBindError(ValueError):
    """--status-bind cannot be used: nothing has started."""


def _open_status_listener(config, allowed, opened):
    """The listener --status-bind asks for, or None; StatusBindError when
    it cannot be opened (the pool's listeners are closed first)."""
    if not config.status_bind:
        return None
    try:
        [listener] = transports.open_listeners([config.status_bind], allowed, 16,
                                               config.unix_mode, config.unix_group)
    except (OSError, ValueError) as error:
        for other in opened:
            other.close()
            other.remove_socket_file()
        raise StatusBindError(f'--status-bind: {error}') from None
    log.info('status and ping answered by the arbiter on %s (--status-bind)', listener.name)
    return listener


def serve_in_process(config, listeners, hup_stops=False):
    """One worker, in this process: no fork, no respawn, no timeout."""
    stopped_by = []
    operator_signals = tuple(getattr(signal, name) for name in OPERATOR_SIGNALS)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, *FAST_STOP)
             + ((signal.SIGHUP,) if hasattr(signal, 'SIGHUP') else ()) + operator_signals}
    try:
        app = config.load_application()
        # A scoreboard of one record: the status page reads it as under an arbiter.
        scoreboard = Scoreboard(1, config.threads)
        record = scoreboard.claim(1)
        record.set_header(pid=os.getpid(), state=READY)
        worker = Worker([l.sock for l in listeners], app, config, heartbeat=record)
        stop_on_signals(worker, in_child=False)

        def on_hup(signum, frame):
            if hup_stops:
                stopped_by.append(signum)
                worker.stop(graceful=True)
            else:
                log.warning('SIGHUP ignored: reloading needs workers (--workers 1 or more)')
        if hasattr(signal, 'SIGHUP'):
            signal.signal(signal.SIGHUP, on_hup)
        # Without an arbiter there is no pool to resize: only SIGUSR1 acts.
        for sig in operator_signals:
            signal.signal(sig, signal.SIG_IGN)
        if hasattr(signal, 'SIGUSR1'):
            signal.signal(signal.SIGUSR1, lambda signum, frame: worker.reopen_logs_soon())
        log.info('serving in this process (pid %d), %d thread%s', os.getpid(), config.threads,
                 's' * (config.threads != 1))
        worker.run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for listener in listeners:
            listener.close()
            listener.remove_socket_file()
    return Outcome(0, stopped_by[0] if stopped_by else None)


def serve_one_connection(config):
    """IIS's model: the web server's one connection is on fd 0; serve it,
    one request at a time, until the web server closes it. Exit status."""
    stream = transports.take_stdin_connection()
    app = config.load_application()
    if sys.platform == 'win32':
        _exit_on_iis_shutdown_event()
    log.info('serving the connection on fd 0 (pid %d)', os.getpid())
    try:
        serve_stream(stream, app, config)
    finally:
        stream.close()
    return 0


def serve_stream(stream, app, config):
    """Serve FastCGI over one already-open connection until the web server
    closes it: the IIS process model, where each process gets one pipe and
    IIS starts more processes for more concurrency."""
    values = server_values(config, 1)
    values[fcgi.FCGI_MAX_CONNS] = '1'
    values[fcgi.FCGI_MAX_REQS] = '1'
    conn = ServedConnection(stream, app, config, values, multithread=False, multiprocess=True,
                            idle_timeout=False, sole=True)
    if config.status_path or config.ping_path:
        # A scoreboard of one for the status page (there is no worker loop
        # here: the page publishes the record itself before it reads it).
        record = Scoreboard(1, 1).claim(1)
        record.set_header(pid=os.getpid(), state=READY)
        conn.on_request = record.request_callback(0, [0])
        conn.own_paths = own_paths(config, record, ())
    while conn.handle_readable():
        pass



def _exit_on_iis_shutdown_event():
    # IIS (signalBeforeTerminateSeconds) asks its FastCGI processes to exit
    # by setting the event whose handle it puts in _FCGI_SHUTDOWN_EVENT_;
    # wfastcgi answers by exiting, and so do we.
    try:
        handle = int(os.environ['_FCGI_SHUTDOWN_EVENT_'])
    except (KeyError, ValueError):
        return
    import _winapi

    def wait():
        _winapi.WaitForSingleObject(handle, _winapi.INFINITE)
        log.info('IIS asked this process to exit')
        logging.shutdown()
        os._exit(0)
    threading.Thread(target=wait, daemon=True, name='iis-shutdown').start()

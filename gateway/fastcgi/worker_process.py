"""A worker's process: the signals that stop a worker (forked or serving in
the server's own process), and a forked worker's life (``run_worker_process``):
its signals set, the application loaded, ready reported to the arbiter, the
arbiter watched so that an orphan stops, a timeout answered, the exit with
the logs flushed. The serving itself is worker.py's.
"""

import logging
import os
import signal
import sys
import threading

from ..apploader import describe_load_error
from .accesslog import flush_all
from .boot import load_reporting_a_hang
from .worker import Worker

log = logging.getLogger('gateway')

WORKER_BOOT_ERROR = 3       # exit status of a worker that could not load the app
# "Abort the request", as gunicorn's arbiter says it: the arbiter's word that
# a request has run past --timeout. Handled from before the worker reports
# ready, and only ready workers are sent it.
TIMEOUT_SIGNAL = getattr(signal, 'SIGABRT', None)
FAST_STOP = tuple(getattr(signal, name) for name in ('SIGINT', 'SIGQUIT') if hasattr(signal, name))
# Signals an operator may send that must never end a process by their
# default action. SIGUSR1 reopens the log files; a worker ignores the rest
# (the arbiter acts on SIGTTIN and SIGTTOU). SIGPIPE is ignored as Python
# sets it: a write to a closed connection fails with EPIPE where it is made.
OPERATOR_SIGNALS = tuple(name for name in ('SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGTTIN', 'SIGTTOU',
                                           'SIGALRM') if hasattr(signal, name))


def run_worker_process(config, socks, heartbeat, report_w, alive_r, inherited_signals,
                       handover=None):
    """A freshly forked worker: its own signals, the application loaded,
    ready reported on *report_w*, served until stopped. The exit status.

    *inherited_signals* were the arbiter's, and blocked across the fork;
    *alive_r* reaches end of file when the arbiter is gone; *handover* is
    this worker's handover.WorkerEnd, or None."""
    operator_signals = {getattr(signal, name) for name in OPERATOR_SIGNALS}
    for sig in inherited_signals:
        signal.signal(sig, signal.SIG_IGN if sig in operator_signals else signal.SIG_DFL)
    # Until serving, a fast stop just ends the process: SIGQUIT's default
    # would dump core, SIGINT's print a traceback.
    for sig in FAST_STOP:
        signal.signal(sig, lambda signum, frame: flush_and_exit(0))
    # A terminal hang-up is the arbiter's business (it reloads).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, inherited_signals)
    try:
        app = load_reporting_a_hang(config, report_w)
    except BaseException as error:
        _write_all(report_w, b'E' + describe_load_error(config.app, error).encode('utf-8',
                                                                                  'replace'))
        os.close(report_w)
        return WORKER_BOOT_ERROR
    worker = Worker(socks, app, config, heartbeat, handover)
    if config.max_requests_jitter and worker.max_requests:
        log.info('worker (pid %d) is replaced after %d requests (--max-requests %d, '
                 '--max-requests-jitter %d)', os.getpid(), worker.max_requests,
                 config.max_requests, config.max_requests_jitter)
    stop_on_signals(worker, in_child=True)
    signal.signal(signal.SIGUSR1, lambda signum, frame: worker.reopen_logs_soon())
    if config.timeout and TIMEOUT_SIGNAL is not None:
        signal.signal(TIMEOUT_SIGNAL, lambda signum, frame: _end_overdue_requests(worker, frame))
    threading.Thread(target=_stop_when_orphaned, args=(alive_r, worker), daemon=True,
                     name='arbiter-watch').start()
    _write_all(report_w, b'R')
    os.close(report_w)
    worker.run()
    return 0


def _end_overdue_requests(worker, frame):
    # The arbiter saw a request run past --timeout and has replaced us.
    if worker.answer_overdue(frame):
        # This handler runs on top of the overdue request: returning would
        # resume the application, whose answer nobody wants any more.
        worker.leave_at_once()
        flush_and_exit(0)


def _write_all(fd, data):
    view = memoryview(data)[:1 << 15]   # a traceback, not a novel
    while view:
        view = view[os.write(fd, view):]


def stop_on_signals(worker, in_child):
    """SIGTERM stops *worker* gracefully, SIGINT and SIGQUIT at once (in a
    forked worker: the process exits; in-process, a second one raises
    KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop(graceful=True))
    asked = []

    def stop_now(signum, frame):
        worker.stop(graceful=False)
        if in_child:
            # A request running in the main thread would finish first (a
            # sleep resumes after the handler); the arbiter wants us gone,
            # and the kernel closes our connections just as well.
            flush_and_exit(0)
        if asked:
            raise KeyboardInterrupt     # in-process, a second Ctrl-C
        asked.append(signum)
    for sig in FAST_STOP:
        signal.signal(sig, stop_now)


def flush_and_exit(status):
    """End this process now, its logs and standard streams flushed."""
    try:
        flush_all()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _stop_when_orphaned(alive_r, worker):
    try:
        os.read(alive_r, 1)     # returns only when the arbiter has exited
    except OSError:
        return
    log.warning('the arbiter is gone; worker (pid %d) stopping', os.getpid())
    worker.stop(graceful=True)

"""A worker's boot, watched (--boot-timeout): the worker has faulthandler
write the traceback of its import into its report pipe once the limit has
passed; the arbiter, a moment later, kills a worker still not ready and
logs that traceback as the reason. Every worker the arbiter forks passes
here, whoever asked for it (start, reload, replacement, the pool)."""

import faulthandler
import time

DUMP_WAIT = 1.0     # past --boot-timeout: seconds for the traceback to arrive


def load_reporting_a_hang(config, report_w):
    """In the worker: the application, loaded; past --boot-timeout, the
    Python traceback of every thread goes into the report pipe while the
    import goes on. faulthandler's watchdog is a thread of C code: it
    writes even while the import holds the GIL."""
    if not config.boot_timeout or config.app is None:
        return config.load_application()    # no limit, or nothing to import
    faulthandler.dump_traceback_later(config.boot_timeout, exit=False, file=report_w)
    try:
        return config.load_application()
    finally:
        faulthandler.cancel_dump_traceback_later()


def boot_deadline(config):
    """When a worker forked now must be ready by; 0: no limit."""
    if not config.boot_timeout:
        return 0.0
    return time.monotonic() + config.boot_timeout + DUMP_WAIT


def hung_boots(workers, now):
    """The workers (WorkerProcess) still loading the application past their
    deadline, each marked ``boot_timed_out``: the caller kills them."""
    for worker in workers:
        if worker.ready or worker.boot_timed_out or not worker.boot_deadline \
                or now < worker.boot_deadline:
            continue
        worker.read_report()
        if worker.report[:1] in (b'R', b'E'):
            continue    # it finished, or failed, just now: its report tells
        worker.boot_timed_out = True
        yield worker


def why_it_hung(worker, boot_timeout):
    """The log's account of a worker killed by --boot-timeout: its report
    holds faulthandler's traceback."""
    traceback = bytes(worker.report).decode('utf-8', 'replace').rstrip()
    return (f'{worker} did not load the application within --boot-timeout {boot_timeout:g}s '
            f'and was killed; where it was stuck:\n' + (traceback or '(no traceback came)'))

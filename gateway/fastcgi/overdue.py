"""The arbiter's watch over the workers that overstay (``OverdueWatch``, a
part of the Arbiter): a boot past --boot-timeout, a request past --timeout,
a worker past --max-requests or --max-rss, which a fresh one replaces.

A worker that has not loaded the application within ``boot_timeout`` of its
fork (an import waiting on a database, say) is killed, whoever spawned it,
and the Python traceback its faulthandler wrote into the report pipe tells
where the import was stuck: at start the server exits 1, during a reload
the reload is abandoned and the old workers keep serving, a replacement is
retried with the usual back-off.

A request running longer than ``timeout`` gets its worker replaced. The
arbiter sees request start times in the scoreboard it shares with the
workers (scoreboard.py, which the status page reads too), starts a
replacement and sends the worker TIMEOUT_SIGNAL. The worker's main
thread, where Python runs signal handlers (with one thread, the very one
stuck in the application), stops accepting, answers each overdue request
504, or cuts it when its response has started, and the worker exits: at
once with one thread, once its other requests are done with more. A worker
that has not answered within TIMEOUT_GRACE (stuck in code that never lets a
signal handler run) is killed, and the web server sees its connections
close.
"""

import logging
import signal
import time

from .boot import hung_boots
from .config import TIMEOUT_GRACE
from .scoreboard import TIMED_OUT, rss_bytes
from .worker_process import TIMEOUT_SIGNAL

__all__ = ['OverdueWatch', 'STOP_MARGIN']

log = logging.getLogger('gateway')

STOP_MARGIN = 1.0           # SIGTERM: workers bound their own drain; this is slack


class OverdueWatch:
    """The Arbiter's checks, each turn of its loop, of the workers that
    overstay: their boot, a request, their size or count. Uses the
    Arbiter's ``workers``, ``config``, ``scoreboard``, ``_stopping`` and
    ``_kill``."""

    def _check_boots(self):
        # Past --boot-timeout: killed; _reap then logs why (boot.py).
        for worker in list(hung_boots(self.workers.values(), time.monotonic())):
            self._kill(worker, signal.SIGKILL)

    def _check_timeouts(self):
        timeout = self.config.timeout
        now = time.monotonic()
        if not timeout or self._stopping:
            return
        self._kill_unanswered(now, timeout)
        if now < self._next_timeout_check:
            return
        self._next_timeout_check = now + min(1.0, timeout / 2)
        for worker in self.workers.values():
            if not worker.ready or worker.timed_out:
                continue
            running = worker.heartbeat.longest_running(now)
            if running and running[1] > timeout:
                worker.timed_out = True
                worker.heartbeat.set_header(state=TIMED_OUT)
                self.scoreboard.count('timed_out_requests',
                                      len(worker.heartbeat.overdue(now, timeout)))
                # Replaced at once (_maintain), not when it is gone.
                worker.retiring = True
                log.error('%s: a request has run for %.1fs, longer than --timeout %gs '
                          '(thread %d); replacing the worker', worker, running[1], timeout,
                          running[0])
                if TIMEOUT_SIGNAL is None:
                    self._kill(worker, signal.SIGKILL)
                    continue
                worker.kill_at = now + TIMEOUT_GRACE
                self._kill(worker, TIMEOUT_SIGNAL)

    def _kill_unanswered(self, now, timeout):
        """SIGKILL the timed-out workers whose time is up."""
        for worker in self.workers.values():
            if not worker.kill_at or now < worker.kill_at:
                continue
            if not worker.answered and not worker.heartbeat.overdue(now, timeout):
                # It answered: its other requests may finish, as in a
                # graceful stop.
                worker.answered = True
                worker.kill_at = now + self.config.graceful_timeout + STOP_MARGIN
                continue
            worker.kill_at = 0.0
            if worker.answered:
                log.warning('%s did not stop in time; killing it', worker)
            else:
                log.error('%s did not answer its overdue request within %gs; killing it',
                          worker, TIMEOUT_GRACE)
            self._kill(worker, signal.SIGKILL)

    def _check_replacements(self):
        """Mark the workers to replace: past --max-requests (their wish, in
        the heartbeat) or --max-rss (read here, at most once a second)."""
        now = time.monotonic()
        measure = self.config.max_rss and now >= self._next_rss_check
        if measure:
            self._next_rss_check = now + 1.0
        for worker in self.workers.values():
            if not worker.ready or worker.retiring or worker.replace_because:
                continue
            if worker.heartbeat.replacement_asked():
                worker.replace_because = 'replaced after --max-requests'
            elif measure:
                rss = rss_bytes(worker.pid) / (1 << 20)     # 0 once it is gone
                if rss > self.config.max_rss:
                    worker.replace_because = (f'replaced: {rss:.0f} MiB resident, past '
                                              f'--max-rss {self.config.max_rss:g}')
                    log.info('%s uses %.0f MiB, past --max-rss %g; starting its replacement',
                             worker, rss, self.config.max_rss)

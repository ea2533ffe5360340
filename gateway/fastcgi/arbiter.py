"""The FastCGI server's process model: the arbiter, which only supervises.

The arbiter opens nothing but the listening sockets and never imports the
application: it forks workers and keeps ``config.workers`` of them serving,
watching them from outside (their reports, their exit, the scoreboard of
their requests). What a worker does once forked (loading the application,
its signals, serving, answering a timeout) is worker_process.py's and
worker.py's; which mode runs (this arbiter, one process, IIS's one
connection) is server.py's.

Arbiter signals:

    SIGTERM           graceful stop: workers finish the requests they have
                      (at most graceful_timeout), stragglers are killed
    SIGINT, SIGQUIT   fast stop
    SIGHUP            reload: replace the workers one at a time, each old
                      one stopped only once its fresh replacement is ready,
                      so the listening sockets always have someone accepting
    SIGUSR1           reopen the log files, here and in every worker
    SIGTTIN, SIGTTOU  one worker more, one fewer (pool.py says within what)
    SIGUSR2, SIGWINCH, SIGALRM
                      ignored, with a log line: sent by habit (other servers
                      upgrade, or stop their workers, on them), never fatal
    a worker's death  a new one at once; with a growing back-off when new
                      workers keep dying before they are ready

A worker that leaves while others stay (replaced by a reload, recycled by
--max-requests, replaced after --timeout) hands the connections it holds to
one that stays, through the arbiter (handover.py), so that a web server
reusing connections never has one closed under a request it is writing.

A worker that overstays (its boot past ``boot_timeout``, a request past
``timeout``, the worker past --max-requests or --max-rss) is overdue.py's
to see to; what the arbiter records of each worker is children.py's.
"""

import itertools
import logging
import os
import select
import signal
import time

from . import handover
from .boot import boot_deadline, why_it_hung
from .children import WorkerProcess, how_it_ended
from .logfiles import reopen_all
from .pool import POOL_CHECK, Pool, listen_queue
from .overdue import STOP_MARGIN, OverdueWatch
from .scoreboard import READY, STOPPING, Scoreboard
from .status_listener import StatusListener
from .worker_process import FAST_STOP, OPERATOR_SIGNALS, flush_and_exit, run_worker_process

__all__ = ['Arbiter']

log = logging.getLogger('gateway')

FAST_STOP_WAIT = 2.0        # SIGINT/SIGQUIT: seconds workers get before SIGKILL
MAX_BACKOFF = 30.0          # seconds between tries when new workers keep failing
GIVE_UP_AFTER = 5           # failed boots in a row, with nobody serving, before exiting
# Windows has neither SIGQUIT, SIGHUP nor SIGCHLD (nor fork: only the modes
# without an arbiter run there, see server.py).
_HANDLED = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP',
                                                    'SIGCHLD') + OPERATOR_SIGNALS
                 if hasattr(signal, name))


# ---------------------------------------------------------------------------
# The arbiter
# ---------------------------------------------------------------------------

class Arbiter(OverdueWatch):
    """Forks workers that share *listeners* and keeps ``config.workers`` of
    them serving until a signal says stop.

    With *hup_stops* (flup's behaviour) SIGHUP stops the server like SIGTERM
    instead of reloading; ``stop_signal`` tells the caller which signal
    ended ``run()``.
    """

    def __init__(self, config, listeners, hup_stops=False, status_listener=None):
        self.config = config
        self.listeners = list(listeners)
        self.hup_stops = hup_stops
        self.workers = {}               # pid -> WorkerProcess
        # Made before any fork, so that every worker shares it.
        self.scoreboard = Scoreboard.for_config(config)
        # --status-bind: status and ping answered here, whatever the workers do.
        self.status = None if status_listener is None else StatusListener(
            status_listener, config, self.scoreboard, self.listeners)
        self.generation = 0
        self.stop_signal = None
        self._numbers = itertools.count(1)
        self._signals = []
        self._stopping = None           # None, 'graceful', 'fast'
        self._exit_status = 0
        self._reloading = False
        self._ever_ready = False
        self._boot_failures = 0         # in a row; reset when a worker is ready
        self._respawn_at = 0.0
        self._next_timeout_check = 0.0
        self._next_rss_check = 0.0
        self._next_pool_check = 0.0
        self._idle_since = time.monotonic()     # the window the pool's spare workers are judged over
        self._busy_peak = 0                     # the most workers seen busy in it
        self._wake_r = self._wake_w = None
        self._alive_r = self._alive_w = None
        self._relay = handover.Relay() if handover.available() else None
        self._saved_signals = {}
        self._saved_wakeup_fd = -1
        self._logs_reopened = 0         # SIGUSR1s so far
        self.pool = Pool(config.workers, config.max_workers, config.idle_timeout)
        self._operator_actions = self._operator_signals()

    # -- the loop -------------------------------------------------------------

    def run(self):
        """Supervise until stopped; the exit status (1 if workers could not
        start, else 0)."""
        self._install()
        config = self.config
        log.info('arbiter started (pid %d): %d worker%s, %d thread%s each', os.getpid(),
                 config.workers, 's' * (config.workers != 1), config.threads,
                 's' * (config.threads != 1))
        try:
            while self._stopping is None:
                self._maintain()
                self._sleep(self._sleep_time())
                self._handle_signals()
                self._reap()
                self._check_boots()
                self._check_timeouts()
                self._check_replacements()
                self._adjust_pool()
                self.scoreboard.sample(self.listeners)
                if self._relay is not None:
                    given = self._relay.pass_on(self.workers.values(), self.generation)
                    if given:
                        self.scoreboard.count('handed_over_connections', given)
            self._stop_workers()
        finally:
            if self._relay is not None:
                self._relay.close()
            self._kill_all()
            for listener in self.listeners:
                listener.close()
                listener.remove_socket_file()
            if self.status is not None:
                self.status.close()
            self._uninstall()
        log.info('arbiter stopped')
        return self._exit_status

    def _operator_signals(self):
        """What each signal an operator may send does (never a stop)."""
        actions = {}
        for name in OPERATOR_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                actions[sig] = lambda name=name: log.info(
                    '%s ignored (see gateway fastcgi --help: signals)', name)
        actions[signal.SIGUSR1] = self._reopen_logs
        actions[signal.SIGTTIN] = lambda: self._resize(*self.pool.more())
        actions[signal.SIGTTOU] = lambda: self._resize(*self.pool.fewer())
        return actions

    def _reopen_logs(self):
        self._logs_reopened += 1
        reopen_all(f'arbiter (pid {os.getpid()})')
        for worker in self.workers.values():
            if worker.ready and not worker.timed_out:
                self._kill(worker, signal.SIGUSR1)

    def _resize(self, changed, message):
        log.info('%s', message)

    def _install(self):
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Workers read this pipe; it reaches end of file when the arbiter is
        # gone, however it died, so orphans do not serve on forever.
        self._alive_r, self._alive_w = os.pipe()
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in _HANDLED:
            self._saved_signals[sig] = signal.signal(sig, self._on_signal)

    def _uninstall(self):
        for sig, handler in self._saved_signals.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._saved_wakeup_fd)
        for fd in (self._wake_r, self._wake_w, self._alive_r, self._alive_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = self._alive_r = self._alive_w = None

    def _on_signal(self, signum, frame):
        # Only note it: the loop acts on it (the wakeup fd ends its select).
        self._signals.append(signum)

    def _sleep_time(self):
        wait = POOL_CHECK if self.pool.dynamic else 1.0
        if self.config.timeout:
            wait = min(wait, max(self.config.timeout / 2, 0.05))
        if self._respawn_at:
            wait = min(wait, self._respawn_at - time.monotonic())
        for worker in self.workers.values():
            if worker.kill_at:
                wait = min(wait, worker.kill_at - time.monotonic())
            if worker.boot_deadline and not worker.ready and not worker.boot_timed_out:
                wait = min(wait, worker.boot_deadline - time.monotonic())
        if self._relay is not None and self._relay.held:
            wait = min(wait, 0.05)  # a worker's queue was full, or none was ready
        return max(wait, 0.0)

    def _sleep(self, timeout):
        """Wait for a signal, a worker's report, or *timeout*."""
        booting = {w.report_fd: w for w in self.workers.values() if w.report_fd is not None}
        relayed = {} if self._relay is None else self._relay.fds()
        status = self.status.fds() if self.status is not None else ()
        try:
            readable = select.select([self._wake_r, *booting, *relayed, *status], [], [],
                                     timeout)[0]
        except InterruptedError:
            readable = []
        for fd in readable:
            if fd in relayed:
                self._relay.receive(relayed[fd])
            elif fd in status:
                self.status.handle(fd)
            elif fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            elif booting[fd].read_report():
                self._reported(booting[fd])
        if self.status is not None:
            self.status.sweep(time.monotonic())

    def _handle_signals(self):
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGCHLD:
                continue    # _reap looks after every worker each turn
            if sig == signal.SIGHUP and not self.hup_stops:
                self._reload()
                continue
            if sig in self._operator_actions:
                self._operator_actions[sig]()
                continue
            self.stop_signal = sig
            if sig in FAST_STOP:
                self._stopping = 'fast'
            else:
                self._stopping = 'graceful'

    # -- starting workers -------------------------------------------------------

    def _maintain(self):
        """Spawn the workers that are missing; retire those beyond the
        pool's size; move a reload or a replacement along."""
        active = [w for w in self.workers.values() if not w.retiring]
        size = self.pool.size
        missing = size - len(active)
        if missing > 0:
            if time.monotonic() >= self._respawn_at:
                self._respawn_at = 0.0
                for _ in range(missing):
                    self._spawn()
            return
        stale = [w for w in active if w.generation < self.generation or w.replace_because]
        if not stale:
            if len(active) > size:
                self._retire(self._least_needed(active), 'no longer needed by the pool')
            if self._reloading:
                self._reloading = False
                log.info('reload complete: every worker runs fresh code')
            return
        if any(not w.ready for w in active):
            return      # one fresh worker boots at a time
        if len(active) > size:
            # Its replacement is ready: the oldest stale worker may go.
            oldest = min(stale, key=lambda w: w.number)
            self._retire(oldest, oldest.replace_because or 'replaced by a fresh worker')
        else:
            self._spawn()

    @staticmethod
    def _least_needed(active):
        """The worker to let go when the pool shrinks: an idle one, the newest."""
        now = time.monotonic()
        return max(active, key=lambda w: (w.heartbeat.longest_running(now) is None, w.number))

    def _spawn(self):
        config = self.config
        pair = None if self._relay is None else self._relay.new_pair()
        number = next(self._numbers)
        heartbeat = self.scoreboard.claim(number, self.generation)
        report_r, report_w = os.pipe()
        # Blocked across the fork, so the child cannot run the arbiter's
        # handlers before it has put its own in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            os.close(report_r)
            os.close(report_w)
            self.scoreboard.release(heartbeat)
            for end in pair or ():
                end.close()
            log.error('cannot fork a worker: %s; trying again in 1s', error)
            self._respawn_at = time.monotonic() + 1.0
            return
        if pid == 0:
            os.close(report_r)
            self._become_worker(number, heartbeat, report_w, pair)     # never returns
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        heartbeat.set_header(pid=pid)
        if pair is not None:
            self._relay.add(pid, pair)
        os.close(report_w)
        os.set_blocking(report_r, False)
        worker = self.workers[pid] = WorkerProcess(number, pid, self.generation, heartbeat,
                                                   report_r, boot_deadline(config))
        worker.logs_opened = self._logs_reopened
        log.debug('worker %d spawned (pid %d)', number, pid)

    def _reported(self, worker):
        """The child closed its report pipe: ready, or failed to boot."""
        if worker.report[:1] != b'R':
            return      # it is dying; _reap tells the story
        worker.ready = True
        if not worker.retiring:
            worker.heartbeat.set_header(state=READY)
        self._ever_ready = True
        self._boot_failures = 0
        log.info('worker %d booted (pid %d)', worker.number, worker.pid)
        if worker.logs_opened < self._logs_reopened:
            self._kill(worker, signal.SIGUSR1)      # forked with the files since rotated

    # -- losing workers ---------------------------------------------------------

    def _reap(self):
        # Only our own workers: waitpid(-1) would steal the exit status of
        # any other child of the program embedding us (the flup-style API).
        for pid in list(self.workers):
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, status = pid, 0
            if reaped:
                if self._relay is not None:
                    self._relay.drop(pid)
                self._exited(self.workers.pop(pid), status)

    def _exited(self, worker, status):
        if worker.read_report() and not worker.ready:
            self._reported(worker)
        worker.close()
        self.scoreboard.release(worker.heartbeat)
        if not self._stopping:
            self.scoreboard.count('worker_restarts')
        code, how = how_it_ended(status)
        if not worker.ready and not self._stopping:
            self._boot_failed(worker, how)
        elif worker.timed_out:
            log.info('%s %s after --timeout; a fresh worker replaces it', worker, how)
        elif self._stopping or worker.retiring:
            log.log(logging.INFO if code == 0 else logging.WARNING, '%s %s', worker, how)
        elif code == 0 and self.config.max_requests:
            log.info('%s exited after %d requests (--max-requests); replacing it',
                     worker, self.config.max_requests)
        else:
            log.warning('%s %s; replacing it', worker, how)

    def _boot_failed(self, worker, how):
        report = bytes(worker.report)
        if worker.boot_timed_out:
            why = why_it_hung(worker, self.config.boot_timeout)
        elif report[:1] == b'E':
            why = report[1:].decode('utf-8', 'replace').rstrip()
        else:
            why = f'{worker} {how} before it was ready'
        self._boot_failures += 1
        if worker.generation == self.generation and self._reloading:
            # The old workers still run the code that worked: keep them.
            for other in self.workers.values():
                other.generation = self.generation
            self._reloading = False
            log.error('%s\nreload abandoned: the old workers keep serving', why)
            return
        serving = any(w.ready and not w.retiring for w in self.workers.values())
        if not self._ever_ready:
            log.error('%s', why)
            self._halt('no worker could start')
        elif not serving and self._boot_failures >= GIVE_UP_AFTER:
            log.error('%s', why)
            self._halt(f'workers failed to start {self._boot_failures} times in a row '
                       f'and none is serving')
        else:
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (self._boot_failures - 1))
            log.error('%s\nnext try in %gs', why, delay)
            self._respawn_at = time.monotonic() + delay

    def _halt(self, reason):
        log.error('%s; shutting down', reason)
        self._exit_status = 1
        self._stopping = 'fast'

    def _retire(self, worker, reason):
        worker.retiring = True
        worker.heartbeat.set_header(state=STOPPING)
        log.info('%s %s; stopping it gracefully', worker, reason)
        self._kill(worker, signal.SIGTERM)

    def _kill(self, worker, sig):
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            pass

    # -- reload, stop -----------------------------------------------------------

    def _reload(self):
        if self.config.preload:
            from .preload import reload_preloaded
            log.info('SIGHUP: importing the application again in the arbiter (--preload)')
            if not reload_preloaded(self.config):
                return
        self.generation += 1
        self._reloading = True
        count = sum(1 for w in self.workers.values() if not w.retiring)
        note = '' if self.config.app else ' (the application object is reused, not re-imported)'
        log.info('SIGHUP: reloading, replacing %d worker%s one at a time%s', count,
                 's' * (count != 1), note)

    def _adjust_pool(self):
        """A dynamic pool (pool.py): one worker more while requests wait,
        one fewer once the pool has had a worker to spare for --idle-timeout."""
        pool = self.pool
        if not pool.dynamic or self._stopping or self._reloading:
            return
        now = time.monotonic()
        if now < self._next_pool_check:
            return
        self._next_pool_check = now + POOL_CHECK
        ready = [w for w in self.workers.values() if w.ready and not w.retiring]
        threads = self.config.threads
        busy = [w for w in ready if w.heartbeat.overdue(now, 0)]
        self._busy_peak = max(self._busy_peak, len(busy))
        if len(ready) >= pool.size and ready and all(
                len(w.heartbeat.overdue(now, 0)) >= threads for w in ready):
            waiting, told = listen_queue(self.listeners)
            if (waiting or not told) and pool.grow():
                log.info('pool: every worker busy%s; growing to %d workers (--max-workers %d)',
                         f' and {waiting} connection(s) waiting' if told else '', pool.size,
                         pool.maximum)
                self._idle_since, self._busy_peak = now, len(busy)
            return
        if now - self._idle_since >= pool.idle_timeout:
            if self._busy_peak < pool.size and pool.shrink():
                log.info('pool: a worker to spare for %gs (--idle-timeout); shrinking to %d '
                         'worker%s', pool.idle_timeout, pool.size, 's' * (pool.size != 1))
            self._idle_since, self._busy_peak = now, len(busy)

    def _stop_workers(self):
        graceful = self._stopping == 'graceful'
        if graceful:
            log.info('shutting down: waiting up to %gs for requests in progress',
                     self.config.graceful_timeout)
            deadline = time.monotonic() + self.config.graceful_timeout + STOP_MARGIN
        else:
            log.info('shutting down now')
            deadline = time.monotonic() + FAST_STOP_WAIT
        if self._relay is not None:
            # Nobody stays to take connections: the workers close theirs.
            self._relay.close()
        for worker in self.workers.values():
            self._kill(worker, signal.SIGTERM if graceful else signal.SIGQUIT)
        # The workers have stopped accepting; the arbiter's copies go too, so
        # that the kernel refuses new connections instead of queueing them.
        for listener in self.listeners:
            listener.close()
        while self.workers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sleep(min(left, 0.5))
            if graceful and any(s in FAST_STOP for s in self._signals):
                graceful = False
                log.info('shutting down now')
                deadline = min(deadline, time.monotonic() + FAST_STOP_WAIT)
                for worker in self.workers.values():
                    self._kill(worker, signal.SIGQUIT)
            self._signals.clear()
            self._reap()

    def _kill_all(self):
        for worker in self.workers.values():
            log.warning('%s did not stop in time; killing it', worker)
            self._kill(worker, signal.SIGKILL)
        for pid, worker in list(self.workers.items()):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            worker.close()
            self.scoreboard.release(worker.heartbeat)
        self.workers.clear()

    # -- the child side of the fork ---------------------------------------------

    def _become_worker(self, number, heartbeat, report_w, pair):
        """In the child: drop what is the arbiter's, then live as a worker
        (worker_process.py); never returns."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w, self._alive_w):
                os.close(fd)
            for worker in self.workers.values():
                worker.close()
            self.workers.clear()
            if self.status is not None:
                self.status.close(in_child=True)
            end = None if pair is None else self._relay.child_side(pair)
            status = run_worker_process(self.config, [l.sock for l in self.listeners],
                                        heartbeat, report_w, self._alive_r, _HANDLED, end)
        except BaseException:
            try:
                log.exception('worker %d crashed', number)
            except BaseException:
                pass
        finally:
            flush_and_exit(status)

"""A worker's serving loop: accept connections, serve their requests. Its
life as a forked process (its signals, the application loaded, the arbiter
watched) is worker_process.py's.

One selector watches the listening sockets and every open connection
between requests, so idle keep-alive connections (nginx's upstream pool)
cost nothing and never block a request that arrives on another connection.
With one thread a readable connection is served right in the loop; with
more, it is handed to a pool thread and comes back when its request is done.

When the arbiter says a request has run past --timeout, answer_overdue()
answers it ``504 Gateway Timeout`` (or cuts it, if its response has
started) from the main thread, whatever the thread running it is doing.

How a connection is accepted (and its first request served at once) is
accepting.py's (Accepts). A graceful stop under an arbiter hands the
connections over to a worker that stays instead of closing them
(handover.py: HandsOver).
"""

import logging
import os
import queue
import select
import selectors
import threading
import time

from ..handlers.base import describe_request
from . import protocol as fcgi
from .accepting import ACCEPT, Accepts
from .accesslog import flush_all
from .config import serves_in_several_processes
from .connection import CLOSED
from .handover import HandsOver
from .limits import AcceptBackoff
from .logfiles import reopen_all
from .slowlog import SlowLog, frame_of, watch_slow_requests
from .peers import allowed_peers
from .status import own_paths

log = logging.getLogger('gateway')

_WAKE = object()
_ADOPT = object()
_ACCEPT_BATCH = 16      # connections accepted per wake-up, at most


def server_values(config, processes):
    """Truthful answers to FCGI_GET_VALUES for a server of *processes* workers."""
    per_worker = config.max_connections or 1024
    return {
        fcgi.FCGI_MAX_CONNS: str(per_worker * processes),
        fcgi.FCGI_MAX_REQS: str(config.threads * processes),
        fcgi.FCGI_MPXS_CONNS: '0',
    }


def _jitter(most):
    """A number from 0 to *most*, at random (random is imported only then:
    every worker would hold it, and hashlib with it)."""
    if not most:
        return 0
    import random
    return random.randint(0, most)


class Worker(Accepts, HandsOver):
    """Serves FastCGI connections from *listeners* until stopped.

    *heartbeat* is this worker's scoreboard record (scoreboard.WorkerRecord),
    told when each thread starts and ends a request; None: nobody watches."""

    def __init__(self, listeners, app, config, heartbeat=None, handover=None):
        self.listeners = list(listeners)
        self.handover = handover        # a handover.WorkerEnd, under an arbiter
        self.app = app
        self.config = config
        self.heartbeat = heartbeat
        self.slow_log = SlowLog(config.slow_log)
        self._slow_watch = watch_slow_requests(self)    # may give it a heartbeat: first
        if config.access_log is not None and config.threads > 1:
            config.access_log.threaded()
        self.own_paths = own_paths(config, self.heartbeat, self.listeners)
        self.values = server_values(config, max(config.workers, 1))
        self.multiprocess = serves_in_several_processes(config)
        allowed = allowed_peers(config.web_server_addrs)
        # Checked on every accept(): None when there is nothing to check.
        self.allowed_peers = None if allowed is None or allowed.anyone else allowed
        self.selector = selectors.DefaultSelector()
        self.connections = set()
        self.pending_params = 0         # bytes held for requests not started (--max-pending-params)
        self.stopping = None            # None, 'graceful' or 'fast'
        self.requests_served = 0
        # --max-requests plus this worker's share of --max-requests-jitter,
        # so that workers started together are not all replaced together.
        self.max_requests = config.max_requests and (
            config.max_requests + _jitter(config.max_requests_jitter))
        self.logs_to_reopen = False     # SIGUSR1 came: reopen between requests
        self._counts = [0] * max(config.threads, 1)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._returned = queue.SimpleQueue()
        self._work = queue.SimpleQueue()
        self._threads = []
        self._serving = [None] * len(self._counts)     # slot -> the connection it serves
        # Built once, not per request: what each thread's connection calls
        # when a request starts and ends.
        self._on_request = [self._request_callback(slot) for slot in range(len(self._counts))]
        self._accepting = {}            # listener -> how to accept on it (see _accept)
        self._thread_idents = [None] * len(self._counts)   # slot -> the thread serving it
        self._backoff = AcceptBackoff()
        self._resume_accepting_at = 0.0  # while out of file descriptors (see _accept)

    def _request_callback(self, slot):
        counts = self._counts
        if self.heartbeat is None:
            def on_request(params):
                if params is None:
                    counts[slot] += 1
            return on_request
        return self.heartbeat.request_callback(slot, counts)

    # -- control ------------------------------------------------------------

    def stop(self, graceful=True):
        """Ask run() to return: after in-flight requests, or at once."""
        if self.stopping != 'fast':
            self.stopping = 'graceful' if graceful else 'fast'
        try:
            os.write(self._wake_w, b'x')
        except OSError:
            pass

    def reopen_logs_soon(self):
        """SIGUSR1: reopen the log files at the next turn of the loop (a
        signal handler must not take the log's locks)."""
        self.logs_to_reopen = True
        try:
            os.write(self._wake_w, b'l')
        except OSError:
            pass

    def serving(self, slot):
        """The connection thread *slot* serves, or None."""
        return self._serving[slot]

    def thread_ident(self, slot):
        return self._thread_idents[slot]

    def answer_overdue(self, frame=None):
        """The arbiter saw a request run past --timeout and replaces this
        worker: stop accepting, and end every request that has run longer
        than --timeout: a 504 response when the application has sent
        nothing yet, else a cut connection, and the log names each request.
        The other requests in progress finish as in a graceful stop.

        Runs in the main thread (a signal handler), so with one thread it
        runs on top of the overdue request itself. True when the calling
        thread was running one of them: it must not return into that
        application.
        """
        self.stop(graceful=True)
        # Before any 504 goes out: the web server's next connection must
        # reach a worker that stays.
        for listener in self.listeners:
            try:
                self.selector.unregister(listener)
            except (KeyError, ValueError):
                pass
        heartbeat, timeout = self.heartbeat, self.config.timeout
        if heartbeat is None or not timeout:
            return False
        in_this_thread = False
        for slot, seconds in heartbeat.overdue(time.monotonic(), timeout):
            conn = self._serving[slot]
            channel = conn.channel if conn is not None else None
            if channel is not None:     # where it is stuck, before the 504 ends it
                ident = self._thread_idents[slot]   # this thread's: the handler is on top of it
                self.slow_log.report(describe_request(channel.params), seconds,
                                     f'--timeout {timeout:g}s; answering 504',
                                     frame if ident == threading.get_ident() else frame_of(ident))
            if conn is None or not conn.answer_overdue(seconds, timeout):
                continue    # it ended a moment ago, or was answered 408
            heartbeat.finished(slot)
            # Its thread may never come back: nothing must wait for it.
            self.connections.discard(conn)
            in_this_thread = in_this_thread or self.config.threads == 1
        return in_this_thread

    # -- the loop -------------------------------------------------------------

    def run(self):
        config = self.config
        threaded = config.threads > 1
        for listener in self.listeners:
            listener.setblocking(False)
            self._accepting[listener] = self._accept_plan(listener)
            self.selector.register(listener, selectors.EVENT_READ, ACCEPT)
        self.selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        if self.handover is not None:
            self.selector.register(self.handover.sock, selectors.EVENT_READ, _ADOPT)
        self._thread_idents[0] = threading.get_ident()
        if self._slow_watch is not None:
            self._slow_watch.start()
        if threaded:
            for slot in range(config.threads):
                thread = threading.Thread(target=self._pool_thread, args=(slot,), daemon=True,
                                          name=f'fastcgi-{slot}')
                thread.start()
                self._threads.append(thread)
        if self.heartbeat is not None:
            self.heartbeat.start_publishing()
        next_sweep = time.monotonic() + 1.0
        deadline = None
        try:
            while True:
                if self.stopping:
                    if deadline is None:
                        deadline = self._begin_stop()
                    if self.handover is not None and self.handover.open:
                        self._hand_over()
                    else:
                        self._close_finished()
                    if self.stopping == 'fast' or not self.connections \
                            or time.monotonic() > deadline:
                        if self.connections and self.stopping != 'fast':
                            log.warning('graceful stop: %d connection(s) still busy after %gs;'
                                        ' leaving them', len(self.connections),
                                        config.graceful_timeout)
                        return
                wait = 0.1 if self.stopping else 1.0
                if self._resume_accepting_at:
                    wait = self._resume_accepting(wait)
                for key, _ in self.selector.select(wait):
                    data = key.data
                    if data is ACCEPT:
                        if self._resume_accepting_at:
                            continue    # paused a moment ago, by another listener's failure
                        # Under load more connections wait in the backlog:
                        # taking them now spares a select() per connection.
                        # Bounded, so that connections in the selector
                        # (keep-alive ones) are not kept waiting.
                        # A stop (a signal handler) may have come since
                        # select() returned: then no more connections.
                        for _ in range(_ACCEPT_BATCH):
                            if self.stopping or not self._accept(key.fileobj):
                                break
                    elif data is _WAKE:
                        self._drain_wake()
                        if self.logs_to_reopen:
                            self.logs_to_reopen = False
                            flush_all()     # what the old file is owed goes there
                            reopen_all(f'worker (pid {os.getpid()})')
                    elif data is _ADOPT:
                        self._adopt()
                    elif threaded:
                        self.selector.unregister(data.sock)
                        self._work.put(data)
                    else:
                        self._serve(data, 0)
                if threaded:
                    self._take_back()
                now = time.monotonic()
                if now >= next_sweep:
                    self._close_idle(now)
                    next_sweep = now + 1.0
                    if config.access_log is not None:
                        config.access_log.flush_if_due(time.time())
        finally:
            flush_all()
            if self.heartbeat is not None:
                self.heartbeat.stop_publishing()
            if self._slow_watch is not None:
                self._slow_watch.stop()
            for _ in self._threads:
                self._work.put(None)
            for conn in list(self.connections):
                if conn.channel is None:
                    conn.close()
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.handover is not None:
                self.handover.close()

    def _begin_stop(self):
        for listener in self.listeners:
            try:
                self.selector.unregister(listener)
            except (KeyError, ValueError):
                pass
        return time.monotonic() + self.config.graceful_timeout

    def _close_finished(self):
        """While stopping: close the connections with nothing left to serve.

        A connection accepted a moment ago may hold a request not read yet:
        closing it would refuse that request, so only connections that have
        answered something (or stayed silent for a second) and have no input
        waiting are closed. Keep-alive connections among them are fine to
        drop: a web server retries a request that fails on a pooled
        connection on a fresh one.
        """
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.channel is not None or not self._is_registered(conn):
                continue    # a pool thread has it
            if not (conn.served or now - conn.last_active > 1.0):
                continue
            if not conn.idle():
                continue
            if select.select([conn.sock], (), (), 0)[0]:
                continue
            self._forget(conn)

    def _serve(self, conn, slot):
        conn.on_request = self._on_request[slot]
        self._serving[slot] = conn
        # The selector said readable: a wake-up with nothing to read after
        # all (or a connection lingering after its last answer) must not
        # hold up the worker.
        still_open = conn.handle_readable(wait=False)
        conn.last_active = time.monotonic()
        if not self.config.threads > 1:
            self._after_serve(conn, still_open)
        return still_open

    def _after_serve(self, conn, still_open):
        if not still_open:
            self._forget(conn)
        else:
            self._count_pending(conn)
        self._check_max_requests()

    def _count_pending(self, conn):
        """Count what *conn* holds for a request not started yet; past
        --max-pending-params, shed the connections that hold the most.

        Counted after every read (at most 64 KiB), so the worker holds at
        most one read more than the budget."""
        change = conn.held_params() - conn.pending_counted
        if not change:
            return
        conn.pending_counted += change
        self.pending_params += change
        budget = self.config.max_pending_params
        if change < 0 or not budget or self.pending_params <= budget:
            return
        # The largest first: a peer that piles up PARAMS goes before the
        # web server whose request is a read away from complete. Only
        # connections in the selector: a pool thread may have the others.
        holders = sorted((c for c in self.connections
                          if c.pending_counted and self._is_registered(c)),
                         key=lambda c: c.pending_counted, reverse=True)
        for holder in holders:
            if self.pending_params <= budget:
                break
            holder.refuse_pending(budget)
            self._forget(holder)

    def _check_max_requests(self):
        self.requests_served = sum(self._counts)
        max_requests = self.max_requests
        if max_requests and self.requests_served >= max_requests and not self.stopping:
            heartbeat = self.heartbeat
            if heartbeat is None:
                log.info('worker (pid %d) served %d requests (--max-requests); recycling',
                         os.getpid(), self.requests_served)
                self.stop(graceful=True)
            elif not heartbeat.replacement_asked():
                # Served on until the arbiter's fresh worker is ready and
                # stops this one: recycling leaves no moment without a worker.
                log.info('worker (pid %d) served %d requests (--max-requests); asking for a '
                         'replacement', os.getpid(), self.requests_served)
                heartbeat.ask_replacement()

    def _forget(self, conn):
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.connections.discard(conn)
        conn.close()
        self.pending_params -= conn.pending_counted
        conn.pending_counted = 0

    def _close_idle(self, now):
        """Close the connections silent for --read-timeout, and answer those
        whose request has not got its PARAMS within --request-read-timeout."""
        timeout = self.config.read_timeout
        if not timeout and not self.config.request_read_timeout:
            return
        for conn in list(self.connections):
            if conn.channel is not None or conn.sock.fileno() < 0 \
                    or not self._is_registered(conn):
                continue
            if timeout and now - conn.last_active > timeout:
                conn.log_silence(timeout)
                self._forget(conn)
            elif conn.params_late(now):
                if conn.state is not CLOSED:
                    self._count_pending(conn)
                else:
                    self._forget(conn)

    def _is_registered(self, conn):
        try:
            self.selector.get_key(conn.sock)
            return True
        except (KeyError, ValueError):
            return False

    def _drain_wake(self):
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- threads ----------------------------------------------------------------

    def _pool_thread(self, slot):
        self._thread_idents[slot] = threading.get_ident()
        while True:
            conn = self._work.get()
            if conn is None:
                return
            try:
                still_open = self._serve(conn, slot)
            except Exception:
                log.exception('unexpected error serving a connection')
                conn.close()
                still_open = False
            self._returned.put((conn, still_open))
            try:
                os.write(self._wake_w, b'r')
            except OSError:
                pass

    def _take_back(self):
        while True:
            try:
                conn, still_open = self._returned.get_nowait()
            except queue.Empty:
                return
            if conn not in self.connections:
                # Answered by answer_overdue() while its thread was stuck:
                # the web server has been told the request is over.
                conn.close()
                continue
            if still_open:
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            self._after_serve(conn, still_open)

"""The slow-request log (--slow-request S, --slow-log FILE): where a request
that has run S seconds is stuck, while it goes on.

A watchdog thread in each worker looks at the worker's heartbeat (when each
thread's request began) and, once per request that passes S seconds, logs
its method, URI and duration and the Python stack of the thread running it
(``sys._current_frames``), without touching the request. The --timeout path
(worker.answer_overdue) logs the same stack before it answers 504.
"""

import logging
import os
import sys
import threading
import time
import traceback

from ..handlers.base import BaseHandler, describe_request

__all__ = ['SlowLog', 'SlowRequestWatch', 'watch_slow_requests']

log = logging.getLogger('gateway')


class SlowLog:
    """Where stacks go: the --slow-log LogFile, else the server's log."""

    def __init__(self, logfile=None):
        self.file = logfile
        self.count = 0      # slow requests seen by this process

    def report(self, what, seconds, why, frame):
        """Log *what* (a request) stuck for *seconds*, *why* it is logged,
        and the stack that ends in *frame* (None: not known)."""
        stack = ''.join(application_stack(frame).format()) if frame is not None else \
            '  (the stack of its thread could not be read)\n'
        head = f'{what}: running for {seconds:.1f}s ({why}); its thread is at:'
        if self.file is None:
            log.warning('%s\n%s', head, stack.rstrip('\n'))
            return
        stamp = time.strftime('%Y-%m-%d %H:%M:%S %z')
        self.file.write(f'[{stamp}] [{os.getpid()}] {head}\n{stack}'.encode(
            'utf-8', 'backslashreplace'))


def application_stack(frame, _run=BaseHandler.run.__code__):
    """The stack ending in *frame*, from the application's call on (the
    server's frames below it say nothing of where the request is stuck)."""
    frames = []
    while frame is not None and frame.f_code is not _run:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    frames.reverse()
    return traceback.StackSummary.extract(frames)


def frame_of(ident):
    """The frame thread *ident* is running now, or None."""
    return sys._current_frames().get(ident)


class SlowRequestWatch:
    """The watchdog thread of one worker (see the module's docstring)."""

    def __init__(self, worker, seconds, slow_log):
        self.worker = worker
        self.seconds = seconds
        self.slow_log = slow_log
        self._logged = {}       # slot -> the channel of the request already logged
        self._stop = threading.Event()

    def start(self):
        threading.Thread(target=self._watch, daemon=True, name='slow-request-watch').start()

    def stop(self):
        self._stop.set()

    def _watch(self):
        # Checked a few times per S (at most once every 50 ms): a request is
        # logged between S and S plus a fraction of it.
        interval = min(max(self.seconds / 4, 0.05), 1.0)
        while not self._stop.wait(interval):
            self.check(time.monotonic())

    def check(self, now):
        worker, logged = self.worker, self._logged
        heartbeat = worker.heartbeat
        for slot, seconds in heartbeat.overdue(now, self.seconds):
            conn = worker.serving(slot)
            channel = conn.channel if conn is not None else None
            # A request is its channel: logged once, however long it runs.
            if channel is None or logged.get(slot) is channel:
                continue    # it ended a moment ago, or is logged already
            logged[slot] = channel
            self.slow_log.count += 1
            heartbeat.count_slow()
            self.slow_log.report(describe_request(channel.params), seconds,
                                 f'--slow-request {self.seconds:g}s',
                                 frame_of(worker.thread_ident(slot)))


def watch_slow_requests(worker):
    """The watch *worker* needs (None without --slow-request); a worker
    without an arbiter gets a heartbeat of its own for it."""
    config = worker.config
    if not config.slow_request:
        return None
    if worker.heartbeat is None:
        from .scoreboard import Scoreboard
        worker.heartbeat = Scoreboard(1, config.threads).claim(1)
    return SlowRequestWatch(worker, config.slow_request, worker.slow_log)

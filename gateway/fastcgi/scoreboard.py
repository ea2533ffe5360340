"""The scoreboard: what every worker is doing, in memory the arbiter and
the workers share, for the status page, --timeout and the pool's size.

One anonymous shared mapping, made by the arbiter before it forks anyone:

    the pool's counters     written by the arbiter only
    records                 one per worker process (more than --workers:
                            a replacement starts before the worker it
                            replaces has gone), each a header the arbiter
                            writes (pid, number, state, start time), a few
                            counters the worker writes, and one slot per
                            thread, written only by its worker

Every field has one writer, so nothing is locked; a reader may see a slot
half-way through an update (a row mixing two requests for an instant),
which a status page can afford.

What a request costs is kept to a few stores: when it starts, its
monotonic start time goes straight into the mapping (the arbiter's
--timeout and the pool's busy count read it at once), its PARAMS and the
thread's CPU time into lists of the worker's own; when it ends, its times
and the CPU it used go into those lists and the start time is zeroed. A thread of the worker,
the publisher, copies the rest (method, URI, content length, duration,
CPU, requests) into the mapping a few times a second, off the request's
path: the status page may be a quarter of a second behind. Memory is read
from /proc by whoever shows it, never per request.
"""

import mmap
import socket
import struct
import sys
import threading
import time

__all__ = ['Scoreboard', 'WorkerRecord', 'FREE', 'STARTING', 'READY', 'STOPPING', 'TIMED_OUT',
           'accept_queues', 'rss_bytes', 'PUBLISH_INTERVAL']

PUBLISH_INTERVAL = 0.25     # seconds between two copies of a worker's slots into the mapping

# A record's state, as the arbiter sets it.
FREE, STARTING, READY, STOPPING, TIMED_OUT = range(5)
STATE_NAMES = {STARTING: 'Starting', READY: 'Ready', STOPPING: 'Stopping',
               TIMED_OUT: 'Timed out'}

# The pool's counters, in this order (8-byte integers, arbiter-written).
POOL_COUNTERS = ('retired_requests', 'retired_slow_requests', 'timed_out_requests',
                 'worker_restarts', 'max_active', 'listen_queue', 'max_listen_queue',
                 'listen_queue_len', 'max_children_reached', 'handed_over_connections')
_POOL = struct.Struct('<d%dq' % len(POOL_COUNTERS))      # start time (wall), the counters
_POOL_SIZE = 128

# A record's header: pid, number, state, generation, start time (wall);
# then what the worker writes: its slow requests, and 1 once it asks to be
# replaced (--max-requests reached).
_HEAD = struct.Struct('<qqqqd')
_WORKER_COUNTS = struct.Struct('<q')
_REPLACE_ME = struct.Struct('<q')
_HEAD_SIZE = 64

# A thread's slot: the monotonic start time of its request in progress (0:
# idle), written per request; then what the publisher copies.
METHOD_BYTES, URI_BYTES = 16, 240
_PUBLISHED = struct.Struct('<ddddqq%ds%ds' % (METHOD_BYTES, URI_BYTES))
_SLOT_SIZE = 8 + 312
_MONO = struct.Struct('<d')

assert _POOL.size <= _POOL_SIZE and _HEAD.size + 16 <= _HEAD_SIZE
assert 8 + _PUBLISHED.size <= _SLOT_SIZE and _SLOT_SIZE % 8 == 0 and _HEAD_SIZE % 8 == 0


def _content_length(text):
    return int(text) if text and text.isdigit() else 0


class WorkerRecord:
    """One worker's part of the scoreboard.

    In the worker: ``started(slot, params)`` and ``finished(slot)`` around
    each request (slot: the thread's number), ``publish()`` (the publisher
    thread, ``start_publishing()``), ``count_slow()``. In the arbiter:
    ``longest_running``, ``overdue``, ``busy`` and the header.
    """

    __slots__ = ('_map', '_base', '_slots', '_marks', '_mark_at', '_current', '_ended',
                 '_cpu_at_start', '_counts', '_shown', 'index', 'threads', '_stop', 'board')

    def __init__(self, mapping, base, threads, index):
        self._map = mapping
        self._base = base
        self.index = index              # in the scoreboard; None: a record of its own
        self.board = None               # the Scoreboard it belongs to
        self.threads = threads
        self._slots = [base + _HEAD_SIZE + slot * _SLOT_SIZE for slot in range(threads)]
        # The start times, as one array of doubles over the whole mapping.
        self._marks = memoryview(mapping).cast('d')
        self._mark_at = [offset // 8 for offset in self._slots]
        self._reset()
        self._stop = None

    def _reset(self):
        threads = self.threads
        self._current = [None] * threads    # the PARAMS of each thread's last request
        self._ended = [None] * threads      # (start, end, CPU seconds) of it, once ended
        self._cpu_at_start = [0.0] * threads    # the thread's CPU time when it started
        self._counts = [0] * threads
        self._shown = [None] * threads      # what the publisher last copied

    # -- the worker's side, per request: a few stores -----------------------------

    def request_callback(self, slot, counts=None):
        """What the worker's connections call around each request of thread
        *slot*: with its PARAMS when it starts, None when it ends. One
        closure with everything bound, no call beyond the clocks': it runs
        twice per request. *counts* (the worker's tally of requests ended,
        per thread) gets its +1 here too, and is what ``publish`` reports."""
        if counts is not None:
            self._counts = counts
        counts = self._counts
        marks, at = self._marks, self._mark_at[slot]
        current, ended, cpu_at_start = self._current, self._ended, self._cpu_at_start
        mono, cpu = time.monotonic, time.thread_time

        def on_request(params):
            if params is not None:
                marks[at] = mono()
                cpu_at_start[slot] = cpu()
                current[slot] = params
                return
            began = marks[at]
            if began:       # else already ended (and counted), by answer_overdue
                ended[slot] = (began, mono(), cpu() - cpu_at_start[slot])
                marks[at] = 0.0
                counts[slot] += 1
        return on_request

    def started(self, slot, params, _mono=time.monotonic):
        """A request starts on thread *slot* (outside the worker's loop)."""
        self._marks[self._mark_at[slot]] = _mono()
        self._cpu_at_start[slot] = time.thread_time()
        self._current[slot] = params

    def finished(self, slot, _mono=time.monotonic, _cpu=time.thread_time):
        """The request of thread *slot* has ended, or been answered for it."""
        at = self._mark_at[slot]
        began = self._marks[at]
        if not began:
            return      # already ended (answered by answer_overdue)
        self._ended[slot] = (began, _mono(), _cpu() - self._cpu_at_start[slot])
        self._marks[at] = 0.0
        self._counts[slot] += 1

    def count_slow(self):
        """One more request of this worker ran past --slow-request."""
        at = self._base + _HEAD.size
        _WORKER_COUNTS.pack_into(self._map, at, _WORKER_COUNTS.unpack_from(self._map, at)[0] + 1)

    def ask_replacement(self):
        """The worker is done (--max-requests): the arbiter starts a fresh
        one, and stops this one once that one is ready."""
        _REPLACE_ME.pack_into(self._map, self._base + _HEAD.size + 8, 1)

    def replacement_asked(self):
        return bool(_REPLACE_ME.unpack_from(self._map, self._base + _HEAD.size + 8)[0])

    # -- the worker's publisher -------------------------------------------------

    def publish(self):
        """Copy what the requests left in this worker's lists into the
        mapping, for readers in other processes."""
        offset_to_wall = time.time() - time.monotonic()
        for slot, offset in enumerate(self._slots):
            params, ended = self._current[slot], self._ended[slot]
            began = self._marks[self._mark_at[slot]]
            count = self._counts[slot] + (1 if began else 0)    # PHP-FPM counts it from its start
            state = (id(params), id(ended), count, began)
            if params is None or self._shown[slot] == state:
                continue
            self._shown[slot] = state
            get = params.get
            uri = get('REQUEST_URI') or get('SCRIPT_NAME', '') + get('PATH_INFO', '')
            if began:
                wall, duration, cpu = began + offset_to_wall, 0.0, 0.0
            else:
                wall = (ended[0] if ended else 0.0) + offset_to_wall
            if ended:
                duration = ended[1] - ended[0]
                cpu = ended[2]
            _PUBLISHED.pack_into(self._map, offset + 8, wall, duration, cpu, 0.0,
                                 _content_length(get('CONTENT_LENGTH')), count,
                                 get('REQUEST_METHOD', '').encode('latin-1', 'replace'),
                                 uri.encode('latin-1', 'replace'))

    def start_publishing(self, interval=PUBLISH_INTERVAL):
        """Publish from a daemon thread every *interval* seconds until
        ``stop_publishing()``."""
        stop = threading.Event()

        def run():
            while not stop.wait(interval):
                self.publish()
            self.publish()
        thread = threading.Thread(target=run, daemon=True, name='scoreboard')
        self._stop = (stop, thread)
        thread.start()

    def stop_publishing(self):
        """Stop the publisher, once it has published a last time."""
        if self._stop is not None:
            stop, thread = self._stop
            stop.set()
            thread.join(1.0)
            self._stop = None

    # -- what anyone may read ---------------------------------------------------

    def running_since(self):
        """The monotonic start time of each thread's request in progress (0: idle)."""
        marks = self._marks
        return [marks[at] for at in self._mark_at]

    def busy(self):
        """How many of its threads are running a request."""
        return sum(1 for began in self.running_since() if began)

    def longest_running(self, now):
        """``(slot, seconds)`` of the oldest request in progress, or None."""
        oldest = None
        for slot, began in enumerate(self.running_since()):
            if began and (oldest is None or began < oldest[1]):
                oldest = (slot, began)
        return None if oldest is None else (oldest[0], now - oldest[1])

    def overdue(self, now, timeout):
        """``[(slot, seconds)]`` of the requests in progress for longer than *timeout*."""
        return [(slot, now - began) for slot, began in enumerate(self.running_since())
                if began and now - began > timeout]

    def header(self):
        """``(pid, number, state, generation, start time, slow requests)``."""
        return (_HEAD.unpack_from(self._map, self._base)
                + _WORKER_COUNTS.unpack_from(self._map, self._base + _HEAD.size))

    def slot(self, slot):
        """One thread's slot as published, as a dict; 'running since' is
        the monotonic start of its request in progress (0: idle)."""
        offset = self._slots[slot]
        (wall, duration, cpu, _, length, count, method,
         uri) = _PUBLISHED.unpack_from(self._map, offset + 8)
        return {'request start': wall, 'content length': length, 'requests': count,
                'request method': method.rstrip(b'\0').decode('latin-1'),
                'request uri': uri.rstrip(b'\0').decode('latin-1'),
                'running since': _MONO.unpack_from(self._map, offset)[0],
                'last duration': duration, 'last cpu': cpu}

    # -- the arbiter's side ---------------------------------------------------

    def set_header(self, pid=None, number=None, state=None, generation=None, started=None):
        old = _HEAD.unpack_from(self._map, self._base)
        new = [old[i] if value is None else value
               for i, value in enumerate((pid, number, state, generation, started))]
        _HEAD.pack_into(self._map, self._base, *new)

    def clear(self):
        end = self._base + _HEAD_SIZE + self.threads * _SLOT_SIZE
        self._map[self._base:end] = bytes(end - self._base)
        self._reset()

    def requests(self):
        return sum(self.slot(slot)['requests'] for slot in range(self.threads))

    def release_view(self):
        self._marks.release()


class Scoreboard:
    """The whole pool: its counters and *capacity* worker records of
    *threads* slots each, in one mapping shared with every process forked
    after it is made."""

    def __init__(self, capacity, threads):
        self.capacity = capacity
        self.threads = max(threads, 1)
        self._record_size = _HEAD_SIZE + self.threads * _SLOT_SIZE
        size = _POOL_SIZE + capacity * self._record_size
        self._map = mmap.mmap(-1, size)     # anonymous, MAP_SHARED: seen across fork
        self.records = [WorkerRecord(self._map, _POOL_SIZE + i * self._record_size,
                                     self.threads, i) for i in range(capacity)]
        self._set('start', time.time())

    @classmethod
    def for_config(cls, config):
        """Room for every worker a server of *config* may run at once: its
        pool twice over (each may have a replacement starting), and two."""
        most = max(config.workers, getattr(config, 'max_workers', 0) or 0, 1)
        return cls(2 * most + 2, config.threads)

    # -- the pool's counters (the arbiter writes them) --------------------------

    def _values(self):
        return list(_POOL.unpack_from(self._map, 0))

    def _set(self, name, value):
        values = self._values()
        values[0 if name == 'start' else 1 + POOL_COUNTERS.index(name)] = value
        _POOL.pack_into(self._map, 0, *values)

    def counters(self):
        """The pool's counters by name, and its 'start' time (wall clock)."""
        values = self._values()
        return {'start': values[0], **dict(zip(POOL_COUNTERS, values[1:]))}

    def count(self, name, by=1):
        """Add *by* to the pool counter *name* (arbiter only)."""
        self._set(name, self.counters()[name] + by)

    # -- records (the arbiter claims and releases them) -------------------------

    def claim(self, number, generation=0):
        """A free record for a worker about to be forked, cleared and marked
        STARTING; when every record is taken, a record of its own that the
        status page does not show (index None)."""
        for record in self.records:
            if record.header()[2] == FREE:
                record.clear()
                record.set_header(0, number, STARTING, generation, time.time())
                record.board = self
                return record
        own = WorkerRecord(mmap.mmap(-1, self._record_size), 0, self.threads, None)
        own.set_header(0, number, STARTING, generation, time.time())
        own.board = self
        return own

    def release(self, record):
        """The worker of *record* has exited: its requests join the pool's
        totals and the record is free again."""
        if record.index is None:
            record.release_view()
            record._map.close()
            return
        header = record.header()
        self.count('retired_requests', record.requests())
        self.count('retired_slow_requests', header[5])
        record.set_header(0, 0, FREE, 0, 0.0)

    def live(self):
        """The records of workers now forked (or about to be)."""
        return [record for record in self.records if record.header()[2] != FREE]

    # -- what the pool is doing -------------------------------------------------

    def busy_slots(self):
        """Requests in progress in the whole pool."""
        return sum(record.busy() for record in self.live())

    def total_slots(self):
        """Requests the ready workers can run at once."""
        return sum(record.threads for record in self.live() if record.header()[2] == READY)

    def accepted(self):
        """Requests the pool has accepted since it started."""
        return self.counters()['retired_requests'] + sum(r.requests() for r in self.live())

    def slow_requests(self):
        return (self.counters()['retired_slow_requests']
                + sum(r.header()[5] for r in self.live()))

    def sample(self, listeners):
        """Note the busy slots and the listen queue now (the arbiter, each
        turn of its loop): the maxima, and each time requests wait in the
        queue while every slot is busy ('max children reached')."""
        busy, total = self.busy_slots(), self.total_slots()
        queued, limit, _ = accept_queues(listeners)
        counters = self.counters()
        if busy > counters['max_active']:
            self._set('max_active', busy)
        if queued > counters['max_listen_queue']:
            self._set('max_listen_queue', queued)
        if queued and total and busy >= total and not counters['listen_queue']:
            self.count('max_children_reached')
        self._set('listen_queue', queued)
        self._set('listen_queue_len', limit)
        return busy, total, queued

    def close(self):
        for record in self.records:
            record.release_view()
        self._map.close()


# tcp_info (linux/tcp.h) on a listening socket: after eight one-byte fields
# and four 32-bit ones, tcpi_unacked is the accept queue's length now and
# tcpi_sacked its limit.
_ACCEPT_QUEUE = struct.Struct('=24xII')


def accept_queues(listeners):
    """``(connections waiting to be accepted, the queues' limit, whether
    the kernel told)`` summed over the TCP listeners (Linux); a unix socket
    tells neither."""
    option = getattr(socket, 'TCP_INFO', None)
    if option is None or not sys.platform.startswith('linux'):
        return 0, 0, False
    waiting = limit = 0
    told = False
    for listener in listeners:
        sock = getattr(listener, 'sock', listener)
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
        except OSError:
            continue
        if len(info) >= _ACCEPT_QUEUE.size:
            now, most = _ACCEPT_QUEUE.unpack_from(info)
            waiting += now
            limit += most
            told = True
    return waiting, limit, told


def rss_bytes(pid, peak=False):
    """A process's resident memory now (or its peak, VmHWM), from /proc;
    0 where there is no /proc or the process is gone."""
    key = b'VmHWM:' if peak else b'VmRSS:'
    try:
        with open(f'/proc/{pid}/status', 'rb') as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


"""File descriptors: the open-file limit at start, and a worker's answer to
running out of them.

Each worker process has the limit (RLIMIT_NOFILE) to itself and needs one
descriptor per connection it holds, up to --max-connections, beside its
own few. When accept() fails for want of descriptors (or of kernel memory)
the listening socket stays readable, so polling it again at once would spin
the worker and flood the log: AcceptBackoff says how long to stop polling
it, and when a log line is due.
"""

import errno
import logging
import os

try:
    import resource
except ImportError:     # Windows: no such limit to read or raise
    resource = None

log = logging.getLogger('gateway')

# accept() failing with these means this process or the system is out of
# something: retrying at once fails again.
OUT_OF_RESOURCES = frozenset(getattr(errno, name) for name in
                             ('EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM') if hasattr(errno, name))
# Linux reports a network error already pending on the new connection as
# accept()'s own (accept(2)): that connection is gone, the next may be fine.
NEW_CONNECTION_FAILED = frozenset(getattr(errno, name) for name in (
    'ENETDOWN', 'EPROTO', 'ENOPROTOOPT', 'EHOSTDOWN', 'ENONET', 'EHOSTUNREACH', 'EOPNOTSUPP',
    'ENETUNREACH', 'EPERM') if hasattr(errno, name))

# A worker's own descriptors beside its connections: stdin, stdout, stderr,
# a log file, the selector, its wake-up pipe, the arbiter's pipe; and some
# for the application (its database connection, a file it opens).
WORKER_OWN_FDS = 8
APPLICATION_FDS = 16


def open_file_limit():
    """(soft, hard) RLIMIT_NOFILE, or None where there is none."""
    if resource is None:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_open_file_limit():
    """Raise the soft open-file limit to the hard one (a distribution's
    default soft 1024 is below what --max-connections allows); one log line
    when raised. The soft limit in force."""
    limits = open_file_limit()
    if limits is None:
        return None
    soft, hard = limits
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as error:
        log.info('open-file limit (RLIMIT_NOFILE) stays at %d: raising it to %d failed: %s',
                 soft, hard, error)
        return soft
    log.info('open-file limit (RLIMIT_NOFILE) raised from %d to %d', soft, hard)
    return hard


def fds_per_worker(config, listeners):
    """The descriptors one worker may need with every connection it
    allows open: --max-connections (each thread serves one of them, so
    --threads adds nothing), the listening sockets, its own."""
    return config.max_connections + listeners + WORKER_OWN_FDS + APPLICATION_FDS


def warn_if_fds_short(config, listeners, soft_limit):
    """One warning line when --max-connections cannot fit in the open-file
    limit; True when it was given."""
    if soft_limit is None or not config.max_connections \
            or (resource is not None and soft_limit == resource.RLIM_INFINITY):
        return False
    needed = fds_per_worker(config, listeners)
    if needed <= soft_limit:
        return False
    fits = max(soft_limit - (needed - config.max_connections), 0)
    log.warning('--max-connections %d needs about %d file descriptors per worker, but the '
                'open-file limit (RLIMIT_NOFILE, ulimit -n) is %d: about %d connections fit; '
                'past them a worker pauses accepting. Lower --max-connections or raise the limit',
                config.max_connections, needed, soft_limit, fits)
    return True


class AcceptBackoff:
    """How long a worker stops polling its listening sockets after accept()
    failed for want of resources, and when that is worth a log line.

    The pause doubles from FIRST_PAUSE to MAX_PAUSE while accept() keeps
    failing and starts over after a success; the connections the worker
    has are served meanwhile, and new ones wait in the listen queue. The
    log gets the first failure, then at most a line per LOG_EVERY seconds
    with the failures counted since the last line.
    """

    FIRST_PAUSE = 0.05
    MAX_PAUSE = 1.0
    LOG_EVERY = 5.0

    __slots__ = ('pause', 'unlogged', 'logged_at')

    def __init__(self):
        self.pause = 0.0            # the last pause; 0 while accept() succeeds
        self.unlogged = 0           # failures since the last log line
        self.logged_at = None

    def failed(self, error, now, connections):
        """accept() raised *error* (OSError) with *connections* open: the
        seconds to stop accepting."""
        self.pause = min(self.MAX_PAUSE, self.pause * 2) if self.pause else self.FIRST_PAUSE
        self.unlogged += 1
        if self.logged_at is None or now - self.logged_at >= self.LOG_EVERY:
            limits = open_file_limit()
            where = f'; the open-file limit is {limits[0]}' if limits else ''
            if self.logged_at is None:
                count = ''
            else:
                count = f' ({self.unlogged} times in {now - self.logged_at:.0f}s)'
            log.error('accept() failed%s: %s; with %d connection%s open%s, worker (pid %d) '
                      'pauses accepting, up to %gs at a time', count, error, connections,
                      's' * (connections != 1), where, os.getpid(), self.MAX_PAUSE)
            self.logged_at = now
            self.unlogged = 0
        return self.pause

    def succeeded(self):
        self.pause = 0.0

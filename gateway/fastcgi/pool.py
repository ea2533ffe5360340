"""How many workers the arbiter keeps: the pool's size and its limits.

A static pool (no --max-workers) has --workers workers; SIGTTIN adds one
and SIGTTOU removes one, never below one. A dynamic pool (--max-workers M)
runs between a minimum, --workers N, and M: it grows by one worker at a
time while requests wait (every worker busy and the listen queue not
empty), and gives one back each time the pool has had a worker idle for
--idle-timeout. There SIGTTIN and SIGTTOU move the minimum within [1, M]:
SIGTTIN takes the pool's size up with it, SIGTTOU lets one worker go.

This module only counts; the arbiter spawns and retires.
"""

from .scoreboard import accept_queues

__all__ = ['Pool', 'listen_queue', 'POOL_CHECK']

POOL_CHECK = 0.2    # seconds between two looks at a dynamic pool's load

class Pool:
    """The size the arbiter keeps the pool at, and its limits."""

    def __init__(self, workers, max_workers=0, idle_timeout=10.0):
        self.minimum = workers
        self.maximum = max_workers if max_workers else 0     # 0: a static pool
        self.idle_timeout = idle_timeout
        self.size = workers

    @property
    def dynamic(self):
        return bool(self.maximum)

    def more(self):
        """SIGTTIN: (whether the pool changed, what to log)."""
        if self.dynamic:
            if self.minimum >= self.maximum:
                return False, (f'SIGTTIN ignored: the pool\'s minimum is already '
                               f'--max-workers {self.maximum}')
            self.minimum += 1
            self.size = max(self.size, self.minimum)
            return True, (f'SIGTTIN: minimum raised to {self.minimum} worker'
                          f'{"s" * (self.minimum != 1)} (at most {self.maximum}); '
                          f'{self.size} now')
        self.minimum = self.size = self.size + 1
        return True, f'SIGTTIN: one worker more, {self.size} now'

    def fewer(self):
        """SIGTTOU: (whether the pool changed, what to log)."""
        if self.minimum <= 1 and (not self.dynamic or self.size <= 1):
            return False, 'SIGTTOU ignored: the pool is at its minimum of one worker'
        self.minimum = max(1, self.minimum - 1)
        self.size = max(self.minimum, self.size - 1)
        if self.dynamic:
            return True, (f'SIGTTOU: minimum lowered to {self.minimum}; {self.size} '
                          f'worker{"s" * (self.size != 1)} now')
        return True, f'SIGTTOU: one worker fewer, {self.size} now'

    def grow(self):
        """Requests wait: True when one worker more is allowed."""
        if self.dynamic and self.size < self.maximum:
            self.size += 1
            return True
        return False

    def shrink(self):
        """A worker has been idle for idle_timeout: True when it may go."""
        if self.size > self.minimum:
            self.size -= 1
            return True
        return False


def listen_queue(listeners):
    """``(connections waiting to be accepted, whether the kernel told)``
    over the TCP listeners (Linux); a unix socket does not tell."""
    waiting, _, told = accept_queues(listeners)
    return waiting, told

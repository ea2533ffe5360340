"""What the arbiter knows of each forked worker (``WorkerProcess``): its
number, generation, scoreboard record and report pipe, what is planned for
it; and how a worker's exit is told in the log (``how_it_ended``)."""

import os
import signal

__all__ = ['WorkerProcess', 'how_it_ended']



class WorkerProcess:
    """The arbiter's record of one forked worker."""

    def __init__(self, number, pid, generation, heartbeat, report_fd, boot_deadline=0.0):
        self.number = number
        self.pid = pid
        self.generation = generation    # a SIGHUP makes older generations stale
        self.heartbeat = heartbeat      # its scoreboard record
        self.report_fd = report_fd      # the child writes b'R' (ready) or b'E' + why not
        self.report = bytearray()
        self.ready = False
        self.retiring = False           # told to stop; not to be replaced
        self.timed_out = False          # sent TIMEOUT_SIGNAL (and already replaced)
        self.answered = False           # ... and it answered its overdue requests
        self.kill_at = 0.0              # when to SIGKILL it; 0: not planned
        self.replace_because = None     # why a fresh worker is to replace it (--max-rss, ...)
        self.logs_opened = 0            # the arbiter's reopen count when it was forked
        self.boot_deadline = boot_deadline  # not ready by then: killed; 0: no limit
        self.boot_timed_out = False

    def __str__(self):
        return f'worker {self.number} (pid {self.pid})'

    def read_report(self):
        """Read what the child wrote; True once it closed its end."""
        while self.report_fd is not None:
            try:
                chunk = os.read(self.report_fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                chunk = b''
            if not chunk:
                os.close(self.report_fd)
                self.report_fd = None
                return True
            self.report += chunk
        return True

    def close(self):
        if self.report_fd is not None:
            os.close(self.report_fd)
            self.report_fd = None


def how_it_ended(status):
    """(exit code, how the log tells it) of a waitpid() *status*."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f'signal {-code}'
        return code, f'was killed by {name}'
    return code, f'exited with status {code}'

"""The server's log files, and reopening them (SIGUSR1) after a rotation.

logrotate (and PHP-FPM, gunicorn or nginx set-ups copied into it) moves a
log file away and then sends SIGUSR1: every process that writes the file
must then open a new one under the same name, or it goes on writing into
the moved file. The arbiter and each worker reopen their own.

A ``LogFile`` (the access and slow-request logs) writes each line with one
``os.write`` on a descriptor opened with O_APPEND: no buffer to lose when a
worker is killed, and lines from several workers never interleave. Reopening
``dup2``s the new file onto the same descriptor number, which is atomic, so
a thread writing at that moment writes whole lines to the old file or to the
new one, never to a closed descriptor.
"""

import logging
import os
import threading

__all__ = ['LogFile', 'open_log_file', 'reopen_server_log', 'reopen_all']

log = logging.getLogger('gateway')

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0)
_MODE = 0o640

# Every LogFile of this process, for reopen_all(); a worker inherits the
# arbiter's and reopens them by their own path.
_open_files = []
_open_files_lock = threading.Lock()


class LogFile:
    """A log file written a line at a time, or standard output for ``-``."""

    __slots__ = ('path', 'fd')

    def __init__(self, path):
        self.path = path
        if path == '-':
            self.fd = 1
        else:
            self.fd = os.open(path, _FLAGS, _MODE)
            with _open_files_lock:
                _open_files.append(self)

    def write(self, line, _write=os.write):
        """Append *line* (bytes ending in a newline); a full disk or a
        vanished file costs the line, never the request."""
        try:
            _write(self.fd, line)
        except OSError:
            pass

    def reopen(self):
        """Open the file under its name again (after a rotation moved it)."""
        if self.path == '-':
            return
        fresh = os.open(self.path, _FLAGS, _MODE)
        try:
            os.dup2(fresh, self.fd, inheritable=False)
        finally:
            os.close(fresh)

    def close(self):
        if self.path != '-' and self.fd >= 0:
            with _open_files_lock:
                if self in _open_files:
                    _open_files.remove(self)
            os.close(self.fd)
            self.fd = -1


def open_log_file(option, path):
    """A LogFile for *option*'s *path*, the path made absolute first (a
    later --chdir must not move it). ValueError, naming the option, when it
    cannot be opened."""
    if path != '-':
        path = os.path.abspath(path)
    try:
        return LogFile(path)
    except OSError as error:
        raise ValueError(f'{option} {path}: {error.strerror}') from None


def reopen_server_log():
    """Reopen the file the server's own log (--log-file) goes to, if any."""
    for handler in logging.getLogger('gateway').handlers:
        if not isinstance(handler, logging.FileHandler) or handler.stream is None:
            continue
        handler.acquire()
        try:
            handler.flush()
            fresh = os.open(handler.baseFilename, _FLAGS, _MODE)
            try:
                os.dup2(fresh, handler.stream.fileno(), inheritable=False)
            finally:
                os.close(fresh)
        finally:
            handler.release()


def reopen_all(who):
    """SIGUSR1: reopen the server log and every LogFile; *who* names this
    process in the log line. A file that cannot be reopened is said in the
    log, and the old one kept."""
    failed = []
    try:
        reopen_server_log()
    except OSError as error:
        failed.append(f'the server log: {error.strerror}')
    with _open_files_lock:
        files = list(_open_files)
    for logfile in files:
        try:
            logfile.reopen()
        except OSError as error:
            failed.append(f'{logfile.path}: {error.strerror}')
    if failed:
        log.error('%s: SIGUSR1: could not reopen %s; writing on to the old file',
                  who, '; '.join(failed))
    else:
        log.info('%s: SIGUSR1: log files reopened', who)

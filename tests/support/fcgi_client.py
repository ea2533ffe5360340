"""Test helpers: the blocking FastCGI client (gateway.fastcgi.client), and
a FastCGI server run as a real process (``python -m gateway fastcgi ...``)
whose log the tests read to learn its address and its workers.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

from support.helpers import REPO, TESTS, wait_until  # noqa: F401 (re-exported)
from gateway.fastcgi.client import (Client, Response, cgi_params, connect,  # noqa: F401
                                    request)


# ---------------------------------------------------------------------------
# The client: gateway.fastcgi.client's
# ---------------------------------------------------------------------------

def read_until_end_request(sock, request_id=1):
    """Read records from *sock* until END_REQUEST for *request_id*; return a
    Response. ConnectionError when the server closes the connection first."""
    return Client(sock, owned=False).response(request_id)


def get(target, path='/', query='', timeout=10.0, **extra):
    """GET *path*: the Response."""
    return request(target, cgi_params(path, query=query, **extra), timeout=timeout)


# ---------------------------------------------------------------------------
# The server, as a real process
# ---------------------------------------------------------------------------

def server_env(**extra):
    """The environment a server process runs with: the package and the
    test apps importable, no stale bytecode when a test rewrites an app."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, TESTS, env.get('PYTHONPATH')]))
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env.pop('FCGI_WEB_SERVER_ADDRS', None)
    env.pop('GATEWAY_APP', None)
    env.update(extra)
    return env


class ServerProcess:
    """``python -m gateway fastcgi ARGS`` in its own session; its stderr
    (the log) is collected line by line for the tests to wait on."""

    def __init__(self, args, env=None, cwd=None, stdin=subprocess.DEVNULL, **popen):
        self.args = list(args)
        self.lines = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'gateway', 'fastcgi'] + self.args,
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=server_env() if env is None else env, cwd=cwd or TESTS,
            start_new_session=True, **popen)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self):
        for raw in self.proc.stdout:
            with self._changed:
                self.lines.append(raw.decode('utf-8', 'replace').rstrip('\n'))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self):
        with self._changed:
            return '\n'.join(self.lines)

    def wait_for_log(self, pattern, timeout=15.0, start=0):
        """The first match of *pattern* in a log line from line *start* on."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'no log line matching {pattern!r} within {timeout}s; '
                                         f'log so far:\n' + '\n'.join(self.lines))
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f'the server exited ({self.proc.returncode}) without '
                                         f'logging {pattern!r}; log:\n' + '\n'.join(self.lines))
                self._changed.wait(min(left, 0.1))

    def count(self, pattern, start=0):
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines[start:] if regex.search(line))

    def mark(self):
        """The current log position, for wait_for_log(start=...)."""
        with self._changed:
            return len(self.lines)

    def address(self, timeout=15.0):
        """Where the server listens (the first address), from its log."""
        return self.addresses(1, timeout)[0]

    def addresses(self, count, timeout=15.0):
        """The first *count* addresses the server listens on, from its
        'listening on' log lines: (host, port) tuples or unix paths."""
        self.wait_for_log(r'arbiter started|serving in this process', timeout)
        regex = re.compile(r'listening on (\S+)')
        with self._changed:
            found = [m.group(1) for line in self.lines for m in [regex.search(line)] if m]
        assert len(found) >= count, self.log
        return [_parse_address(text) for text in found[:count]]

    def booted_pids(self, start=0):
        """Pids of the workers that booted (from line *start* on)."""
        regex = re.compile(r'worker \d+ booted \(pid (\d+)\)')
        with self._changed:
            return [int(m.group(1)) for line in self.lines[start:] for m in [regex.search(line)] if m]

    def wait_booted(self, count, timeout=15.0, start=0):
        """The pids of the first *count* workers booted from line *start* on."""
        def booted():
            pids = self.booted_pids(start)
            if len(pids) < count and self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f'the server exited ({self.proc.returncode}); log:\n{self.log}')
            return pids[:count] if len(pids) >= count else None
        return wait_until(booted, timeout, what=lambda: f'{count} workers booted; log:\n{self.log}')

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15.0):
        """The exit status, once the process has exited."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f'the server did not exit within {timeout}s; log:\n{self.log}') from None

    def kill(self):
        """Kill the whole session (the arbiter and its workers)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._reader.join(5)
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def _parse_address(text):
    if text.startswith('unix:'):
        return text[5:]
    host, _, port = text.rpartition(':')
    return host.strip('[]'), int(port)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists": look at its state where /proc tells it.
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rpartition(')')[2].split()[0] != 'Z'
    except OSError:
        return True


def refused(target):
    """Whether a connection to *target* is refused (nobody listens there any
    more); a connection that is accepted is closed again."""
    try:
        connect(target, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False

"""Test helpers: a small blocking FastCGI client, and a FastCGI server run
as a real process (``python -m gateway fastcgi ...``) whose log the tests
read to learn its address and its workers.

The client speaks the web server's side of protocol.py: its encoders and
RecordReader.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from conftest import REPO, TESTS, wait_until  # noqa: F401 (re-exported)
from gateway.handlers.fastcgi import protocol as p


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

class Response(NamedTuple):
    """What came back for one request; unpacks as
    ``(stdout, stderr, app_status, protocol_status)``."""

    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int

    @property
    def head(self):
        return self.stdout.partition(b'\r\n\r\n')[0].decode('latin-1')

    @property
    def body(self):
        return self.stdout.partition(b'\r\n\r\n')[2]

    @property
    def status(self):
        """The HTTP status as an int (CGI style: 200 when no Status: line)."""
        match = re.search(r'^Status: (\d{3})', self.head, re.M | re.I)
        return int(match.group(1)) if match else 200


def cgi_params(path='/', method='GET', query='', body=b'', **extra):
    """A plausible set of PARAMS, as nginx's fastcgi_params would send."""
    params = {
        'GATEWAY_INTERFACE': 'CGI/1.1', 'SERVER_SOFTWARE': 'test-client',
        'REQUEST_METHOD': method, 'SCRIPT_NAME': '', 'PATH_INFO': path,
        'QUERY_STRING': query, 'REQUEST_URI': path + ('?' + query if query else ''),
        'SERVER_NAME': 'localhost', 'SERVER_PORT': '80', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '50000',
    }
    if body:
        params['CONTENT_LENGTH'] = str(len(body))
        params['CONTENT_TYPE'] = 'application/octet-stream'
    params.update(extra)
    return params


def connect(target, timeout=10.0):
    """A socket connected to *target*: a (host, port) tuple or a unix path."""
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ':' in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def read_until_end_request(sock, request_id=1):
    """Read records until END_REQUEST for *request_id*; return a Response.

    ConnectionError when the server closes the connection first.
    """
    reader = p.RecordReader()
    stdout, stderr = [], []
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError('the server closed the connection before END_REQUEST')
        for record in reader.feed(data):
            if record.request_id != request_id:
                continue
            if record.type == p.FCGI_STDOUT:
                stdout.append(record.content)
            elif record.type == p.FCGI_STDERR:
                stderr.append(record.content)
            elif record.type == p.FCGI_END_REQUEST:
                app_status, protocol_status = p.decode_end_request(record.content)
                return Response(b''.join(stdout), b''.join(stderr), app_status, protocol_status)


def request(target, params=None, stdin=b'', keep_conn=False, request_id=1,
            role=p.FCGI_RESPONDER, timeout=10.0):
    """Send one request and return its Response.

    *target* is an open socket (left open: for keep_conn sequences), a
    ``(host, port)`` tuple or a unix socket path. *params* defaults to
    ``cgi_params()`` for GET /.
    """
    if params is None:
        params = cgi_params(body=stdin)
    owned = not isinstance(target, socket.socket)
    sock = connect(target, timeout) if owned else target
    try:
        sock.sendall(p.encode_begin_request(request_id, role, keep_conn)
                     + p.encode_params(request_id, params)
                     + p.encode_stdin(request_id, stdin))
        return read_until_end_request(sock, request_id)
    finally:
        if owned:
            sock.close()


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

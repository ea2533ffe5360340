#!/usr/bin/env python3
"""FastCGI benchmark: the gateway against uWSGI and flup, behind one nginx.

Starts a private nginx (Debian's binary, generated configuration in a
temporary prefix, ``worker_processes 1``, listening on a free port of
127.0.0.1) in front of one FastCGI backend at a time, each serving the same
hello-world WSGI app (``bench/fcgi/hello.py``) with 2 worker processes,
verifies the response body, then measures requests/s with
``wrk -t1 -c32``:

  nginx       ``return 200`` in nginx itself: the ceiling, no backend
  gateway     ``python -m gateway fastcgi bench.fcgi.hello:app --workers 2``
  uwsgi       uWSGI 2.0, ``--fastcgi-socket``, ``--master --processes 2``
  flup        flup 1.0.3 ``flup.server.fcgi_fork.WSGIServer``, 2 children
  gateway-ka  the gateway with ``fastcgi_keep_conn on`` and an
              ``upstream { keepalive 32; }`` pool
  uwsgi-ka    uWSGI with the same pool (it ignores FCGI_KEEP_CONN and
              closes every connection anyway)
  flup-ka     flup with the same pool (its children each hold one pooled
              connection forever; the other requests wait until nginx's
              fastcgi_read_timeout and fail)

Variants are interleaved round by round, in an order that rotates, and the
median is reported, so that machine noise hits all of them alike. Every
backend is started afresh for each measurement (so that one run's stuck
connections cannot leak into the next), warmed up for a second, measured,
and its worker processes' RSS and CPU time are read before it is stopped.
All backends use the same transport (``--transport``: TCP on 127.0.0.1 or
unix sockets) and the same interpreter (uWSGI embeds the one it was built
against: the pip-built one next to this interpreter is preferred).

Only 127.0.0.1 is contacted. Every load run is bounded by --duration, every
wait by a deadline; nginx and the backends are stopped on exit, also on
Ctrl-C.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

from loopback import free_port, http_get

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXPECTED_BODY = b"Hello, world!\n"
APP_SPEC = "bench.fcgi.hello:app"
INSTALL_HINT = "apt-get install -y nginx wrk; pip install 'flup==1.0.3' uwsgi"

VARIANTS = {
    # name: (backend, keep-alive pool, description)
    "nginx": (None, False, "nginx `return 200` (no backend: the ceiling)"),
    "gateway": ("gateway", False, "gateway, a connection per request"),
    "uwsgi": ("uwsgi", False, "uWSGI 2.0 --fastcgi-socket, a connection per request"),
    "flup": ("flup", False, "flup 1.0.3 prefork, a connection per request"),
    "gateway-ka": ("gateway", True, "gateway, fastcgi_keep_conn + keepalive pool"),
    "uwsgi-ka": ("uwsgi", True, "uWSGI, fastcgi_keep_conn + keepalive pool"),
    "flup-ka": ("flup", True, "flup prefork, fastcgi_keep_conn + keepalive pool"),
}
DEFAULT_VARIANTS = "nginx,gateway,uwsgi,flup,gateway-ka,uwsgi-ka,flup-ka"

# (numerator, denominator, minimum ratio)
TARGETS = (
    ("gateway", "uwsgi", 1.0),
    ("gateway", "flup", 1.6),
    ("gateway-ka", "gateway", 1.0),
)
RATIOS = (
    ("gateway", "uwsgi"),
    ("gateway", "flup"),
    ("gateway-ka", "gateway"),
    ("gateway-ka", "uwsgi"),
    ("gateway-ka", "flup-ka"),
    ("gateway", "nginx"),
)

# nginx answers a request its backend has not answered in this time with
# 504; wrk's own timeout is longer, so a stuck backend shows as non-2xx.
FASTCGI_READ_TIMEOUT = 3
WRK_TIMEOUT = 5
WARMUP_SECONDS = 1


class BenchError(Exception):
    """A fatal, explained failure (printed without a traceback)."""


class Interrupted(Exception):
    """SIGTERM: stop as for Ctrl-C."""


# --------------------------------------------------------------------------
# tools and backends


def find_nginx(args):
    nginx = args.nginx or shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    wrk = args.wrk or shutil.which("wrk")
    missing = [name for name, path in (("nginx", nginx), ("wrk", wrk)) if not path]
    if missing:
        raise BenchError("missing: %s\ninstall with: %s" % (", ".join(missing), INSTALL_HINT))
    return nginx, wrk


def find_uwsgi(args):
    """(path, note) of uWSGI, or (None, reason)."""
    candidates = []
    if args.uwsgi:
        candidates.append(args.uwsgi)
    # pip builds uWSGI against the interpreter that runs pip: the one next
    # to this interpreter embeds this very Python.
    candidates.append(os.path.join(os.path.dirname(os.path.realpath(args.python)), "uwsgi"))
    candidates.append(os.path.join(sysconfig.get_path("scripts"), "uwsgi"))
    for path in candidates:
        if os.access(path, os.X_OK) and not _is_shim(path):
            return path, "uWSGI %s" % _uwsgi_version(path)
    path = shutil.which("uwsgi")
    if path and not _is_shim(path):
        return path, "uWSGI %s (from PATH: check that it embeds the same Python)" % _uwsgi_version(path)
    return None, "uwsgi not found (pip install uwsgi)"


def _is_shim(path):
    # pyenv shims are shell scripts that re-dispatch; a real uWSGI is an ELF.
    try:
        with open(path, "rb") as f:
            return f.read(4) != b"\x7fELF"
    except OSError:
        return True


def _uwsgi_version(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def uwsgi_python(path):
    """The libpython a uWSGI binary is linked against, from ldd, if any."""
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(libpython[\w.]+)\s*=>\s*(\S+)", out)
    return "%s (%s)" % (m.group(1), m.group(2)) if m else None


def check_flup(python):
    r = subprocess.run([python, "-c", "import flup, flup.server.fcgi_fork; "
                        "from importlib.metadata import version; print(version('flup'))"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode:
        return None, "flup not importable (pip install 'flup==1.0.3')"
    return r.stdout.strip(), None


def gateway_cli_works(python):
    r = subprocess.run([python, "-m", "gateway", "fastcgi", "--help"], capture_output=True,
                       text=True, timeout=30, cwd=REPO)
    return r.returncode == 0 and "--bind" in r.stdout


def backend_command(backend, address, args, tools):
    """The argv that starts *backend* listening on *address*
    ("127.0.0.1:PORT" or "unix:PATH")."""
    python = args.python
    if backend == "gateway":
        if tools["gateway_cli"]:
            return [python, "-m", "gateway", "fastcgi", APP_SPEC, "--bind", address,
                    "--workers", str(args.workers), "--log-level", "warning"]
        return [python, os.path.join(HERE, "fcgi", "gateway_fork.py"), address, str(args.workers)]
    if backend == "uwsgi":
        socket_arg = address[5:] if address.startswith("unix:") else address
        return [tools["uwsgi"], "--fastcgi-socket", socket_arg, "--master",
                "--processes", str(args.workers), "--module", APP_SPEC,
                "--chdir", REPO, "--pythonpath", REPO, "--need-app",
                "--disable-logging", "--die-on-term", "--chmod-socket=666"]
    if backend == "flup":
        return [python, os.path.join(HERE, "fcgi", "flup_prefork.py"), address, str(args.workers)]
    raise ValueError(backend)


# --------------------------------------------------------------------------
# processes


def children_of(pid):
    """Pids whose parent is *pid* (from /proc)."""
    result = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after it.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            result.append(int(entry))
    return sorted(result)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Process:
    """A process started in its own session, so that it and its children
    can be stopped together by process group id."""

    def __init__(self, name, argv, log_path, cwd=REPO, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def workers(self):
        return children_of(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (a stuck child, or the main process
        # itself) goes now.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()

    def tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-8000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# nginx


FASTCGI_PARAMS = [
    # Debian's /etc/nginx/fastcgi_params, inlined so the test does not depend on it.
    ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"), ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", "$fastcgi_script_name"), ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"), ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"), ("REQUEST_SCHEME", "$scheme"),
    ("HTTPS", "$https if_not_empty"), ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"), ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"), ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"), ("SERVER_NAME", "$server_name"),
    ("REDIRECT_STATUS", "200"),
]


def nginx_config(tmp, port, upstreams, pool):
    """*upstreams*: variant -> fastcgi_pass target ("127.0.0.1:PORT" or
    "unix:PATH"), for the variants with a backend."""
    lines = [
        "worker_processes 1;",
        "daemon off;",
        "pid %s;" % os.path.join(tmp, "nginx.pid"),
        "error_log %s warn;" % os.path.join(tmp, "error.log"),
    ]
    if os.geteuid() == 0:
        # The worker must reach the unix sockets and temp paths in tmp.
        lines.append("user root root;")
    lines += [
        "events { worker_connections 4096; }",
        "http {",
        "  access_log off;",
        "  client_body_temp_path %s;" % os.path.join(tmp, "client_body"),
        "  fastcgi_temp_path %s;" % os.path.join(tmp, "fastcgi"),
        "  proxy_temp_path %s;" % os.path.join(tmp, "proxy"),
        "  uwsgi_temp_path %s;" % os.path.join(tmp, "uwsgi"),
        "  scgi_temp_path %s;" % os.path.join(tmp, "scgi"),
        "  keepalive_requests 1000000;",
        "  fastcgi_read_timeout %ds;" % FASTCGI_READ_TIMEOUT,
        "  fastcgi_connect_timeout 3s;",
        "  fastcgi_send_timeout 3s;",
    ]
    for name, target in upstreams.items():
        if VARIANTS[name][1]:
            lines += ["  upstream %s {" % name.replace("-", "_"),
                      "    server %s;" % target,
                      "    keepalive %d;" % pool,
                      "  }"]
    lines += [
        "  server {",
        "    listen 127.0.0.1:%d;" % port,
        "    server_name localhost;",
        '    location = /nginx { default_type text/plain; return 200 "Hello, world!\\n"; }',
    ]
    for name, target in upstreams.items():
        lines.append("    location = /%s {" % name)
        lines += ["      fastcgi_param %s %s;" % kv for kv in FASTCGI_PARAMS]
        if VARIANTS[name][1]:
            lines += ["      fastcgi_keep_conn on;",
                      "      fastcgi_pass %s;" % name.replace("-", "_")]
        else:
            lines.append("      fastcgi_pass %s;" % target)
        lines.append("    }")
    lines += ["  }", "}"]
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf


def wait_until(check, timeout, what):
    """Poll *check* until it returns a true value; BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, http.client.HTTPException) as error:
            last = error
        if time.monotonic() > deadline:
            raise BenchError("%s: not ready after %gs (%s)" % (what, timeout, last or "no answer"))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def port_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def expect_body(port, path):
    """True once *path* answers 200 with the expected body; BenchError on a
    wrong body (a broken setup must not produce a fast number)."""
    status, body = http_get(port, path)
    if status == 200:
        if body != EXPECTED_BODY:
            raise BenchError("%s answered 200 with %r, expected %r" % (path, body[:200], EXPECTED_BODY))
        return True
    if status in (502, 503, 504):
        return False    # backend not up yet
    raise BenchError("%s answered %d: %r" % (path, status, body[:200]))


# --------------------------------------------------------------------------
# wrk


def run_wrk(wrk, port, path, duration, connections):
    argv = [wrk, "-t1", "-c%d" % connections, "-d%ds" % duration, "--timeout",
            "%ds" % WRK_TIMEOUT, "--latency", "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + WRK_TIMEOUT + 30)
    if out.returncode != 0:
        raise BenchError("wrk failed (%d): %s" % (out.returncode, out.stderr.strip()))
    return parse_wrk(out.stdout)


def parse_wrk(text):
    result = {"rps": None, "requests": 0, "non2xx": 0, "socket_errors": 0,
              "socket_detail": "", "p50_ms": None, "p99_ms": None}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        result["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        result["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        counts = [int(x) for x in m.groups()]
        result["socket_errors"] = sum(counts)
        result["socket_detail"] = "connect %d, read %d, write %d, timeout %d" % tuple(counts)
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\b" % pct, text, re.M)
        if m:
            value = float(m.group(1))
            result[key] = value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value
    if result["rps"] is None:
        raise BenchError("cannot parse wrk's output:\n" + text)
    return result


# --------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args, tools, tmp):
        self.args = args
        self.tools = tools
        self.tmp = tmp
        self.port = free_port()
        self.addresses = {}     # variant -> backend address for its command line
        upstreams = {}
        for name in args.variants:
            if VARIANTS[name][0] is None:
                continue
            if args.transport == "unix":
                path = os.path.join(tmp, "%s.sock" % name)
                self.addresses[name] = "unix:" + path
                upstreams[name] = "unix:" + path
            else:
                port = free_port()
                self.addresses[name] = "127.0.0.1:%d" % port
                upstreams[name] = "127.0.0.1:%d" % port
        for d in ("client_body", "fastcgi", "proxy", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        self.conf = nginx_config(tmp, self.port, upstreams, args.pool)
        self.nginx = None
        self.backend = None

    def start_nginx(self):
        r = subprocess.run([self.tools["nginx"], "-t", "-p", self.tmp, "-c", self.conf],
                           capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise BenchError("nginx rejects the generated configuration:\n" + r.stderr)
        self.nginx = Process("nginx", [self.tools["nginx"], "-p", self.tmp, "-c", self.conf],
                             os.path.join(self.tmp, "nginx.out"))
        wait_until(lambda: self._nginx_alive() and port_open(self.port), 15, "nginx")
        wait_until(lambda: expect_body(self.port, "/nginx"), 10, "nginx /nginx")

    def _nginx_alive(self):
        if not self.nginx.alive():
            raise BenchError("nginx exited:\n%s\n%s" % (self.nginx.tail(), self._error_log()))
        return True

    def nginx_worker(self):
        workers = self.nginx.workers()
        return workers[0] if workers else self.nginx.pid

    def _error_log(self, lines=10):
        try:
            with open(os.path.join(self.tmp, "error.log"), errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def start_backend(self, name):
        backend = VARIANTS[name][0]
        address = self.addresses[name]
        argv = backend_command(backend, address, self.args, self.tools)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        self.backend = Process(name, argv, os.path.join(self.tmp, "%s.log" % name), env=env)

        def ready():
            if not self.backend.alive():
                raise BenchError("%s exited at start-up:\n%s" % (name, self.backend.tail()))
            return expect_body(self.port, "/" + name)
        wait_until(ready, 30, name)

    def stop_backend(self):
        if self.backend is not None:
            self.backend.stop()
            self.backend = None

    def measure(self, name):
        """One measurement of *name*: a dict of figures."""
        backend = VARIANTS[name][0]
        path = "/" + name
        if backend is not None:
            self.start_backend(name)
        try:
            run_wrk(self.tools["wrk"], self.port, path, WARMUP_SECONDS, self.args.connections)
            procs = [self.backend.pid] + self.backend.workers() if backend else []
            ngx = self.nginx_worker()
            before = [cpu_seconds(p) for p in procs], cpu_seconds(ngx)
            result = run_wrk(self.tools["wrk"], self.port, path, self.args.duration,
                             self.args.connections)
            after = [cpu_seconds(p) for p in procs], cpu_seconds(ngx)
            requests = max(result["requests"], 1)
            if backend:
                result["backend_cpu_us"] = (sum(after[0]) - sum(before[0])) * 1e6 / requests
                workers = self.backend.workers()
                result["worker_rss"] = [rss_kib(p) for p in workers]
                result["supervisor_rss"] = rss_kib(self.backend.pid)
                result["alive"] = self.backend.alive()
            result["nginx_cpu_us"] = (after[1] - before[1]) * 1e6 / requests
            return result
        finally:
            self.stop_backend()

    def stop(self):
        self.stop_backend()
        if self.nginx is not None:
            self.nginx.stop(signal.SIGQUIT)
            self.nginx = None


def rotate(seq, k):
    k %= len(seq)
    return seq[k:] + seq[:k]


def mib(kib):
    return "%.1f" % (kib / 1024) if kib else "?"


def report(args, tools, results, out=sys.stdout):
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p()
    p("Results: wrk -t1 -c%d -d%ds, %d round(s), median; transport %s; %d worker processes per backend"
      % (args.connections, args.duration, args.rounds, args.transport, args.workers))
    p()
    header = ("%-11s %9s  %-23s %6s %8s %8s %7s %8s %9s  %s"
              % ("variant", "req/s", "rounds", "spread", "non-2xx", "sock.err", "p99 ms",
                 "cpu us/r", "nginx us/r", "worker RSS MiB (supervisor)"))
    p(header)
    p("-" * len(header))
    medians = {}
    cpus = {}
    for name in args.variants:
        runs = results.get(name, [])
        if not runs:
            p("%-11s %s" % (name, "unavailable: " + tools["unavailable"].get(VARIANTS[name][0], "not run")))
            continue
        rps = [r["rps"] for r in runs]
        med = statistics.median(rps)
        medians[name] = med
        spread = (max(rps) - min(rps)) / med * 100 if med else 0.0
        non2xx = sum(r["non2xx"] for r in runs)
        sockerr = sum(r["socket_errors"] for r in runs)
        p99 = statistics.median([r["p99_ms"] for r in runs if r["p99_ms"] is not None] or [0])
        cpu = [r["backend_cpu_us"] for r in runs if "backend_cpu_us" in r]
        if cpu:
            cpus[name] = statistics.median(cpu)
        ngx = statistics.median([r["nginx_cpu_us"] for r in runs])
        last = runs[-1]
        if "worker_rss" in last:
            rss = "%s (%s)" % (" + ".join(mib(k) for k in last["worker_rss"]) or "none",
                               mib(last["supervisor_rss"]))
        else:
            rss = "-"
        p("%-11s %9.0f  %-23s %5.0f%% %8d %8d %7.1f %8s %9.0f  %s%s"
          % (name, med, " ".join("%.0f" % x for x in rps), spread, non2xx, sockerr, p99,
             "%.0f" % cpus[name] if cpu else "-", ngx, rss,
             "  NOISY" if spread > 15 and med > 1000 else ""))
    p()
    p("cpu us/r: CPU time (user + system) of the backend's processes (supervisor + workers)")
    p("per request; nginx us/r: the same for the nginx worker; medians over rounds. On a")
    p("shared machine requests/s move with whatever else runs; CPU per request hardly does.")
    p("RSS: after the last round's run, each worker process, then the supervisor (master/arbiter).")
    p("spread: (max - min) / median of the rounds; NOISY above 15 %: other work shared the machine.")
    errors = [(name, r) for name in args.variants for r in results.get(name, [])
              if r["non2xx"] or r["socket_errors"]]
    if errors:
        p()
        p("Errors reported by wrk:")
        for name, r in errors:
            p("  %-11s %.0f req/s: non-2xx %d; socket errors: %s"
              % (name, r["rps"], r["non2xx"], r["socket_detail"] or "0"))
    p()
    p("Ratios (of medians): requests/s, and backend CPU per request (theirs / ours):")
    for a, b in RATIOS:
        if a in medians and b in medians and medians[b]:
            cpu_ratio = ""
            if a in cpus and b in cpus and cpus[a]:
                cpu_ratio = "   cpu %5.2fx" % (cpus[b] / cpus[a])
            p("  %-22s %6.2fx%s" % ("%s / %s" % (a, b), medians[a] / medians[b], cpu_ratio))
    p()
    missed = []
    for a, b, minimum in TARGETS:
        if a in medians and b in medians and medians[b]:
            ratio = medians[a] / medians[b]
            ok = ratio >= minimum
            if not ok:
                missed.append((a, b))
            p("  target %-20s >= %.1fx: %.2fx  %s" % ("%s / %s" % (a, b), minimum, ratio,
                                                      "met" if ok else "MISSED"))
    return medians, missed


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Variants: " + "; ".join("%s: %s" % (k, v[2]) for k, v in VARIANTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, metavar="S",
                        help="seconds of each measured wrk run (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=32, metavar="N",
                        help="wrk connections (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="interleaved rounds; the median is reported (default: %(default)s)")
    parser.add_argument("--only", default=DEFAULT_VARIANTS, metavar="LIST",
                        help="comma-separated variants to measure (default: %(default)s)")
    parser.add_argument("--transport", choices=("tcp", "unix"), default="tcp",
                        help="nginx to backend: TCP on 127.0.0.1 or unix sockets, the same for "
                             "every backend (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="worker processes per backend (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=32, metavar="N",
                        help="`keepalive N` of the -ka variants' upstream (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the gateway and flup (default: this one)")
    parser.add_argument("--uwsgi", help="uWSGI binary (default: the one next to --python)")
    parser.add_argument("--nginx", help="nginx binary (default: from PATH)")
    parser.add_argument("--wrk", help="wrk binary (default: from PATH)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configuration, logs)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error("unknown variant(s) %s; choose from %s" % (", ".join(unknown) or "(none)",
                                                              ", ".join(VARIANTS)))
    if args.duration < 1 or args.rounds < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--duration, --rounds, --connections and --workers must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    nginx, wrk = find_nginx(args)
    tools = {"nginx": nginx, "wrk": wrk, "unavailable": {}}
    needed = {VARIANTS[v][0] for v in args.variants}
    print("python:   %s (%s)" % (args.python, subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, timeout=30).stdout.strip()))
    print("nginx:    %s" % subprocess.run([nginx, "-v"], capture_output=True, text=True,
                                          timeout=10).stderr.strip())
    print("wrk:      %s" % wrk)
    if "gateway" in needed:
        tools["gateway_cli"] = gateway_cli_works(args.python)
        print("gateway:  %s" % ("python -m gateway fastcgi %s --workers %d" % (APP_SPEC, args.workers)
                                if tools["gateway_cli"] else
                                "bench/fcgi/gateway_fork.py (python -m gateway fastcgi unavailable)"))
    if "uwsgi" in needed:
        path, note = find_uwsgi(args)
        if path:
            tools["uwsgi"] = path
            print("uwsgi:    %s, %s, linked with %s" % (path, note, uwsgi_python(path) or "?"))
        else:
            tools["unavailable"]["uwsgi"] = note
            print("uwsgi:    unavailable: %s" % note)
    if "flup" in needed:
        version, reason = check_flup(args.python)
        if version:
            print("flup:     %s (flup.server.fcgi_fork.WSGIServer, %d children)" % (version, args.workers))
        else:
            tools["unavailable"]["flup"] = reason
            print("flup:     unavailable: %s" % reason)
    variants = [v for v in args.variants if VARIANTS[v][0] not in tools["unavailable"]]
    if not variants:
        raise BenchError("nothing to measure")

    def on_term(signum, frame):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_term)

    tmp = tempfile.mkdtemp(prefix="fastcgi-bench-")
    os.chmod(tmp, 0o755)
    bench = Bench(args, tools, tmp)
    results = {}
    keep = args.keep
    try:
        bench.start_nginx()
        print("nginx on 127.0.0.1:%d, backends on %s; %d variants x %d rounds x (%ds + %ds warm-up)"
              % (bench.port, args.transport, len(variants), args.rounds, args.duration, WARMUP_SECONDS))
        for rnd in range(args.rounds):
            for name in rotate(variants, rnd):
                r = bench.measure(name)
                results.setdefault(name, []).append(r)
                extra = ""
                if r["non2xx"] or r["socket_errors"]:
                    extra = "  (non-2xx %d, socket errors %d)" % (r["non2xx"], r["socket_errors"])
                print("round %d  %-11s %9.0f req/s%s" % (rnd + 1, name, r["rps"], extra), flush=True)
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted; nginx and the backends stopped", file=sys.stderr)
        return 130
    except BenchError:
        keep = True     # the configuration and the logs explain what failed
        print("configuration and logs kept in %s" % tmp, file=sys.stderr)
        raise
    finally:
        # Also on Ctrl-C: nothing this script started may outlive it.
        bench.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if keep:
        print("kept: %s" % tmp)

    medians, missed = report(args, tools, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()}, "medians": medians,
                       "runs": results}, f, indent=2)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print("error: %s" % error, file=sys.stderr)
        sys.exit(2)

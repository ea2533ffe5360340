#!/usr/bin/env python3
"""CGI benchmark under a real Apache (mpm_event + mod_cgid) on loopback.

Starts a private Apache instance (generated configuration, temporary
ServerRoot, unprivileged port on 127.0.0.1), verifies that every endpoint
answers the expected body, then measures requests/s with wrk, interleaving
the endpoints round by round so that machine noise hits all of them alike:

  F  floor: a Python CGI script that prints a fixed response
     (what the interpreter's start-up alone costs)
  S  the hello-world WSGI app through wsgiref.handlers.CGIHandler().run(app)
  G  the same app through gateway.handlers.CGIHandler().run(app)
  E  the same app through the gateway's CGI entry point, no hand-written
     script: ScriptAlias to the `gateway` console script (the installed one
     next to the interpreter if there is one, otherwise a wrapper generated
     exactly as pip generates it), SetEnv GATEWAY_APP hello:app, the app
     module found through SetEnv PYTHONPATH
  M  the same through `python -m gateway`, i.e. runpy.run_module("gateway")
     from a two-line script, GATEWAY_APP as for E
  X  (not in the default set) G, then atexit handlers, flush, os._exit(0):
     what skipping the interpreter's teardown would save

All endpoints run under the same interpreter (--python).  G, E and M are
reported as "unavailable: <reason>" when the gateway cannot serve them;
F and S are measured regardless.

Only 127.0.0.1 is contacted.  Every wrk run is bounded by --duration and
every wait by a deadline; Apache is stopped on exit, including on Ctrl-C.
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
import tempfile
import time

from loopback import free_port, http_get

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APP_DIR = os.path.join(HERE, "cgi")
EXPECTED_BODY = b"Hello, world!\n"
INSTALL_HINT = "apt-get install -y apache2 wrk"

TARGETS = (
    # (numerator, denominator, minimum ratio)
    ("G", "F", 0.90),
    ("G", "S", 1.30),
)

ENDPOINTS = {
    "F": "floor: fixed response, no WSGI",
    "S": "wsgiref.handlers.CGIHandler",
    "G": "gateway.handlers.CGIHandler",
    "E": "gateway-cgi script, as pip installs it",
    "P": "pip console-script wrapper `gateway`",
    "M": "python -m gateway (runpy)",
    "X": "G, then os._exit (no teardown)",
}
DEFAULT_ENDPOINTS = "F,S,G,E,P,M"

MODULES = (
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("alias_module", "mod_alias.so"),
    ("cgid_module", "mod_cgid.so"),
    ("env_module", "mod_env.so"),
    ("mime_module", "mod_mime.so"),
)

# The console-script wrapper, byte for byte as pip (distlib) writes it.
PIP_SCRIPT_TEMPLATE = r'''#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from gateway.__main__ import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(main())
'''

FLOOR_SCRIPT = '''#!{python}
import sys
sys.stdout.write("Content-Type: text/plain; charset=utf-8\\r\\n"
                 "Content-Length: 14\\r\\n\\r\\nHello, world!\\n")
'''

STDLIB_SCRIPT = '''#!{python}
from wsgiref.handlers import CGIHandler
from hello import app
CGIHandler().run(app)
'''

GATEWAY_SCRIPT = '''#!{python}
from gateway.handlers import CGIHandler
from hello import app
CGIHandler().run(app)
'''

# `python -m gateway` as a file Apache can execute.  A shebang such as
# `#!PYTHON -mgateway` cannot be used: the kernel appends the script's own
# path, which `python -m gateway` then receives as its first argument.  This
# does what -m does: runpy runs the package's __main__ as "__main__".
MODULE_SCRIPT = '''#!{python}
import runpy
runpy.run_module("gateway", run_name="__main__", alter_sys=True)
'''


# G followed by what a CGI process could do once its response is out: run
# the atexit handlers, flush, and skip the interpreter's teardown.
FAST_EXIT_SCRIPT = '''#!{python}
import atexit, os, sys
from gateway.handlers import CGIHandler
from hello import app
CGIHandler().run(app)
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
'''


class BenchError(Exception):
    """A fatal, explained failure (printed without a traceback)."""


# --------------------------------------------------------------------------
# prerequisites


def find_tools(args):
    missing = []
    httpd = args.httpd or shutil.which("apache2") or (
        "/usr/sbin/apache2" if os.access("/usr/sbin/apache2", os.X_OK) else None)
    if not httpd or not os.access(httpd, os.X_OK):
        missing.append("apache2" + (" (%s)" % httpd if httpd else ""))
    wrk = args.wrk or shutil.which("wrk")
    if not wrk or not os.access(wrk, os.X_OK):
        missing.append("wrk" + (" (%s)" % wrk if wrk else ""))
    if not missing:
        for _, so in MODULES:
            if not os.path.exists(os.path.join(args.modules_dir, so)):
                missing.append("apache2 (no %s in %s)" % (so, args.modules_dir))
                break
    if missing:
        raise BenchError(
            "missing: %s\ninstall with: %s" % (", ".join(missing), INSTALL_HINT))
    return httpd, wrk


def python_version(python):
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise BenchError("--python %s does not run: %s" % (python, out.stderr.strip()))
    return out.stdout.strip()


def privilege_mode(args):
    """How Apache (and so each CGI process) runs.

    Apache started by root switches its children to `User`, which then has
    to reach the interpreter (often under /root, mode 0700, with pyenv).
    When started by root we therefore prefer to run it inside a new user
    namespace (`unshare --user`): Apache sees a non-root uid and does not
    switch, while file access stays that of the invoking user.
    """
    if os.geteuid() != 0:
        return "user", [], None
    if args.apache_user == "auto":
        unshare = shutil.which("unshare")
        if unshare and subprocess.run(
                [unshare, "--user", "true"], capture_output=True,
                timeout=10).returncode == 0:
            return "unshare", [unshare, "--user"], None
        user = "www-data"
    else:
        user = args.apache_user
    return "drop", [], user


def check_drop_access(python, user, env):
    """In 'drop' mode, make sure the Apache user can run the interpreter."""
    try:
        r = subprocess.run([python, "-c", "import hello, wsgiref.handlers"],
                           capture_output=True, text=True, timeout=30,
                           env=env, user=user, group=user, extra_groups=[],
                           cwd="/")
    except (OSError, subprocess.SubprocessError) as exc:
        r = None
        err = str(exc)
    else:
        err = r.stderr.strip().splitlines()[-1:] if r.returncode else None
    if r is None or r.returncode != 0:
        raise BenchError(
            "Apache's user %r cannot run %s with the app: %s\n"
            "Use --python with an interpreter that user can reach "
            "(e.g. /usr/bin/python3), or run as a non-root user."
            % (user, python, err))


# --------------------------------------------------------------------------
# setup


def gateway_status(python, env):
    """(handlers_ok, handlers_reason, main_ok, main_reason)."""
    code = ("import sys\n"
            "what = sys.argv[1]\n"
            "if what == 'handlers':\n"
            "    from gateway.handlers import CGIHandler\n"
            "    assert callable(getattr(CGIHandler(), 'run', None)), "
            "'CGIHandler has no run()'\n"
            "else:\n"
            "    from gateway.__main__ import main\n"
            "    assert callable(main), 'main is not callable'\n")
    res = []
    for what in ("handlers", "main"):
        r = subprocess.run([python, "-c", code, what], capture_output=True,
                           text=True, timeout=60, env=env, cwd="/")
        if r.returncode == 0:
            res += [True, ""]
        else:
            lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
            res += [False, lines[-1] if lines else "exit %d" % r.returncode]
    return tuple(res)


def installed_console_script(python):
    """The `gateway` console script installed next to the interpreter, if any."""
    cand = os.path.join(os.path.dirname(python), "gateway")
    try:
        with open(cand, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head.startswith(b"#!") and b"gateway.__main__" in head and os.access(cand, os.X_OK):
        return cand
    return None


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def build_site(tmp, python, port, entry_script, user):
    cgi = os.path.join(tmp, "cgi")
    run = os.path.join(tmp, "run")
    docs = os.path.join(tmp, "htdocs")
    for d in (cgi, run, docs):
        os.makedirs(d)
    os.chmod(tmp, 0o755)
    os.chmod(cgi, 0o755)
    scripts = {
        "F": os.path.join(cgi, "floor.cgi"),
        "S": os.path.join(cgi, "stdlib.cgi"),
        "G": os.path.join(cgi, "gateway.cgi"),
        "M": os.path.join(cgi, "gateway-m.cgi"),
        "X": os.path.join(cgi, "gateway-fast-exit.cgi"),
    }
    write_script(scripts["F"], FLOOR_SCRIPT.format(python=python))
    write_script(scripts["S"], STDLIB_SCRIPT.format(python=python))
    write_script(scripts["G"], GATEWAY_SCRIPT.format(python=python))
    write_script(scripts["M"], MODULE_SCRIPT.format(python=python))
    write_script(scripts["X"], FAST_EXIT_SCRIPT.format(python=python))
    if entry_script is None:
        entry_script = os.path.join(cgi, "gateway")
        write_script(entry_script, PIP_SCRIPT_TEMPLATE.format(python=python))
    scripts["P"] = entry_script
    # scripts/gateway-cgi with the first line pip writes for it.
    with open(os.path.join(REPO, "scripts", "gateway-cgi")) as f:
        text = f.read().split("\n", 1)[1]
    scripts["E"] = os.path.join(cgi, "gateway-cgi")
    write_script(scripts["E"], "#!%s\n%s" % (python, text))

    pythonpath = os.pathsep.join([APP_DIR, REPO])
    lines = [
        'ServerRoot "%s"' % tmp,
        "ServerName 127.0.0.1",
        "Listen 127.0.0.1:%d" % port,
        'PidFile "%s"' % os.path.join(run, "httpd.pid"),
        'DefaultRuntimeDir "%s"' % run,
        'ErrorLog "%s"' % os.path.join(tmp, "error.log"),
        "LogLevel warn",
        'DocumentRoot "%s"' % docs,
        'ScriptSock "%s"' % os.path.join(run, "cgid.sock"),
        'TypesConfig "/dev/null"',
    ]
    lines += ['LoadModule %s "%s"' % (name, os.path.join(ARGS.modules_dir, so))
              for name, so in MODULES]
    if user:
        lines += ["User %s" % user, "Group %s" % user]
    lines += [
        "StartServers 1",
        "ServerLimit 2",
        "ThreadsPerChild 32",
        "MaxRequestWorkers 64",
        "MinSpareThreads 8",
        "MaxSpareThreads 64",
        "KeepAlive On",
        "MaxKeepAliveRequests 0",
        "Timeout 30",
        "CGIDScriptTimeout 30",
        # Same environment for every endpoint: the app module and the
        # working tree's gateway package are found through PYTHONPATH.
        'SetEnv PYTHONPATH "%s"' % pythonpath,
        "<Directory />",
        "  AllowOverride None",
        "  Require all denied",
        "</Directory>",
    ]
    for d in sorted({os.path.dirname(p) for p in scripts.values()} | {docs}):
        lines += ['<Directory "%s">' % d, "  Require all granted", "</Directory>"]
    for key, path in scripts.items():
        url = "/" + key.lower()
        lines.append('ScriptAlias "%s" "%s"' % (url, path))
    for key in ("E", "P", "M"):
        lines += ['<Location "/%s">' % key.lower(),
                  "  SetEnv GATEWAY_APP hello:app",
                  "</Location>"]
    conf = os.path.join(tmp, "httpd.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf, scripts, pythonpath


# --------------------------------------------------------------------------
# Apache


class CpuAccount:
    """CPU time of Apache and every CGI process it starts, from a cgroup.

    Requests/s on a shared machine move with whatever else runs; the CPU
    time a request costs moves much less.  mod_cgid's daemon does not wait for
    its CGI children, so their time shows in no rusage; a cgroup of our own
    (cgroup v1 cpuacct, or cgroup v2 cpu.stat) counts it.  Optional: when no
    cgroup can be made (no permission), only requests/s are reported.
    """

    def __init__(self):
        self.path = self.kind = None
        name = "cgi-bench-%d" % os.getpid()
        candidates = [("v1", "/sys/fs/cgroup/cpuacct")]
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            candidates.insert(0, ("v2", "/sys/fs/cgroup"))
        candidates.append(("v2", "/sys/fs/cgroup/unified"))
        for kind, root in candidates:
            probe = "cpuacct.usage" if kind == "v1" else "cpu.stat"
            if not os.path.exists(os.path.join(root, probe)):
                continue
            path = os.path.join(root, name)
            try:
                os.mkdir(path)
            except OSError:
                continue
            if os.path.exists(os.path.join(path, probe)):
                self.path, self.kind = path, kind
                break
            self._rmdir(path)

    def __bool__(self):
        return self.path is not None

    def join(self):
        """Move the calling process into the cgroup (used as preexec_fn)."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def usage_ns(self):
        if self.kind == "v1":
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read())
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) * 1000
        return 0

    @staticmethod
    def _rmdir(path):
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(path)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)

    def close(self):
        if self.path and not self._rmdir(self.path):
            print("warning: could not remove the cgroup %s (processes left in it?)"
                  % self.path, file=sys.stderr)
        self.path = None


class Apache:
    def __init__(self, httpd, conf, tmp, prefix, port, cpu=None):
        self.httpd, self.conf, self.tmp, self.prefix, self.port = (
            httpd, conf, tmp, prefix, port)
        self.cpu = cpu
        self.proc = None
        self.log = os.path.join(tmp, "error.log")

    def start(self, timeout=20.0):
        cmd = self.prefix + [self.httpd, "-f", self.conf, "-DFOREGROUND"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        self.stderr = open(os.path.join(self.tmp, "httpd.stderr"), "w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr,
                                     env=env, cwd=self.tmp,
                                     preexec_fn=self.cpu.join if self.cpu else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("apache2 exited with %s:\n%s" % (
                    self.proc.returncode, self.diagnostics()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError("apache2 did not listen on 127.0.0.1:%d within %.0fs:\n%s"
                         % (self.port, timeout, self.diagnostics()))

    def diagnostics(self, lines=15):
        out = []
        for path in (os.path.join(self.tmp, "httpd.stderr"), self.log):
            try:
                with open(path, errors="replace") as f:
                    out += f.read().splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(out)

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, offset, lines=6):
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()   # SIGTERM: apache stops its children and exits
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.stderr.close()


def verify(apache, key):
    """None if the endpoint serves the expected body, else the reason."""
    offset = apache.log_size()
    try:
        for _ in range(2):  # the first request also writes bytecode caches
            status, body = http_get(apache.port, "/" + key.lower(), timeout=30.0)
    except (OSError, http.client.HTTPException) as exc:
        return "request failed: %s" % exc
    if status == 200 and body == EXPECTED_BODY:
        return None
    reason = "HTTP %d, body %r" % (status, body[:60])
    log = apache.log_since(offset)
    if log:
        reason += "\n      error log: " + "\n      ".join(log.splitlines())
    return reason


# --------------------------------------------------------------------------
# wrk

RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKERR_RE = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
TOTAL_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(\w+)", re.M)
LAT_RE = re.compile(r"^\s*Latency\s+([\d.]+\w+)", re.M)


def run_wrk(wrk, port, key, duration, args, cpu=None):
    cmd = [wrk, "-t%d" % args.threads, "-c%d" % args.connections,
           "-d%ds" % duration, "--timeout", "%ds" % max(5, duration),
           "http://127.0.0.1:%d/%s" % (port, key.lower())]
    before = cpu.usage_ns() if cpu else None
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=duration + 60)
    after = cpu.usage_ns() if cpu else None
    m = RPS_RE.search(r.stdout)
    if r.returncode != 0 or not m:
        raise BenchError("wrk failed (%s):\n%s%s" % (
            " ".join(cmd), r.stdout, r.stderr))
    non2xx = int(NON2XX_RE.search(r.stdout).group(1)) if NON2XX_RE.search(r.stdout) else 0
    se = SOCKERR_RE.search(r.stdout)
    sockerr = sum(int(x) for x in se.groups()) if se else 0
    total = TOTAL_RE.search(r.stdout)
    lat = LAT_RE.search(r.stdout)
    requests = int(total.group(1)) if total else None
    return {
        "rps": float(m.group(1)),
        "requests": requests,
        "cpu_ms": ((after - before) / 1e6 / requests)
        if cpu and requests else None,
        "non2xx": non2xx,
        "socket_errors": sockerr,
        "latency": lat.group(1) if lat else "?",
        "cmd": " ".join(cmd),
    }


# --------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Requests/s of Python CGI under a real Apache "
                    "(mod_cgid, ScriptAlias) on 127.0.0.1: floor F, stdlib "
                    "wsgiref S, gateway.handlers G, gateway entry point E "
                    "(console script) and M (python -m gateway).",
        epilog="Needs apache2 and wrk: %s" % INSTALL_HINT)
    p.add_argument("--duration", type=int, default=10, metavar="SECONDS",
                   help="length of each wrk run (default 10)")
    p.add_argument("--connections", type=int, default=4,
                   help="wrk connections (default 4)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds over all endpoints; the median "
                        "is reported (default 3)")
    p.add_argument("--warmup", type=int, default=2, metavar="SECONDS",
                   help="one untimed wrk run per endpoint first (default 2, 0: none)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every CGI script (default: this one, %(default)s)")
    p.add_argument("--venv", action=argparse.BooleanOptionalAction, default=True,
                   help="run every endpoint under a fresh venv made from --python "
                        "(python -m venv --without-pip), as a deployment would: "
                        "start-up without the .pth files and packages of the "
                        "interpreter's own site-packages (default: on; --no-venv "
                        "runs --python as it is, and uses an installed `gateway` "
                        "console script for E if there is one)")
    p.add_argument("--endpoints", default=DEFAULT_ENDPOINTS,
                   help="comma-separated endpoints out of F,S,G,E,M,X "
                        "(default %(default)s)")
    p.add_argument("--httpd", help="apache2 binary (default: found on PATH or /usr/sbin)")
    p.add_argument("--wrk", help="wrk binary (default: found on PATH)")
    p.add_argument("--modules-dir", default="/usr/lib/apache2/modules",
                   help="where the Apache modules are (default %(default)s)")
    p.add_argument("--apache-user", default="auto",
                   help="when run as root: 'auto' runs Apache in a user namespace "
                        "(unshare --user) so CGI keeps the caller's file access, "
                        "falling back to www-data; or the name of a user for "
                        "Apache to switch to")
    p.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure CPU time per request (Apache + CGI processes) "
                        "through a cgroup of the benchmark's own, when one can be "
                        "made (default: on)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a target (G >= 0.90 F, G >= 1.30 S) is missed "
                        "or G is unavailable")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary ServerRoot (config, scripts, error log)")
    args = p.parse_args(argv)
    keys = [k.strip().upper() for k in args.endpoints.split(",") if k.strip()]
    bad = [k for k in keys if k not in ENDPOINTS]
    if bad or not keys:
        p.error("--endpoints: unknown %s (choose from %s)" % (
            ",".join(bad), ",".join(ENDPOINTS)))
    args.keys = list(dict.fromkeys(keys))
    if not (1 <= args.duration <= 300):
        p.error("--duration must be 1..300")
    if not (1 <= args.rounds <= 15):
        p.error("--rounds must be 1..15")
    if not (1 <= args.connections <= 256) or not (1 <= args.threads <= args.connections):
        p.error("--connections must be 1..256 and --threads 1..connections")
    if not (0 <= args.warmup <= 60):
        p.error("--warmup must be 0..60")
    return args


def fmt_ratio(results, a, b):
    ra, rb = results.get(a), results.get(b)
    if ra is None or rb is None or not rb:
        return None
    return ra / rb


def main(argv=None):
    global ARGS
    args = ARGS = parse_args(argv)
    httpd, wrk = find_tools(args)
    python = os.path.abspath(args.python)
    if not os.access(python, os.X_OK):
        raise BenchError("--python %s is not executable" % python)
    pyver = python_version(python)
    mode, prefix, user = privilege_mode(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="cgi-bench-")
    os.chmod(tmp, 0o755)
    try:
        return _main(args, httpd, wrk, python, pyver, mode, prefix, user, tmp)
    finally:
        if args.keep:
            print("kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _main(args, httpd, wrk, python, pyver, mode, prefix, user, tmp):
    base_python = python
    if args.venv:
        venv = os.path.join(tmp, "venv")
        r = subprocess.run([python, "-m", "venv", "--without-pip", venv],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError("cannot make a venv from %s: %s" % (
                python, r.stderr.strip()))
        python = os.path.join(venv, "bin", "python3")

    probe = subprocess.run(
        [python, "-c", "import sys; m = sys.modules; print(len(m), "
         "' '.join(x for x in ('re', 'typing', 'enum', 'functools') if x in m))"],
        capture_output=True, text=True, timeout=30, cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    startup_count, _, preloaded = probe.stdout.strip().partition(" ")

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([APP_DIR, REPO])
    env.pop("GATEWAY_APP", None)
    handlers_ok, handlers_why, main_ok, main_why = gateway_status(python, env)
    if mode == "drop":
        check_drop_access(python, user, env)
        # Apache's user may not be able to write __pycache__ here; without
        # bytecode caches every request would compile these modules anew.
        subprocess.run([python, "-m", "compileall", "-q",
                        os.path.join(REPO, "gateway"), APP_DIR],
                       capture_output=True, timeout=120, env=env)

    unavailable = {}
    if not handlers_ok:
        unavailable["G"] = unavailable["X"] = "gateway.handlers: " + handlers_why
    if not main_ok:
        unavailable["E"] = unavailable["P"] = unavailable["M"] = "gateway.__main__: " + main_why
    entry = installed_console_script(python)
    entry_kind = ("installed console script " + entry) if entry else \
        "pip-style console-script wrapper (generated; gateway not installed)"

    apache = None
    cpu = CpuAccount() if args.cpu else None
    try:
        for attempt in range(3):
            port = free_port()
            root = os.path.join(tmp, "apache%d" % attempt)
            conf, scripts, pythonpath = build_site(root, python, port, entry, user)
            apache = Apache(httpd, conf, root, prefix, port, cpu)
            try:
                apache.start()
                break
            except BenchError:
                apache.stop()
                if attempt == 2 or "Address already in use" not in apache.diagnostics():
                    raise

        version = subprocess.run([httpd, "-v"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()
        version = version[0].split(":", 1)[-1].strip() if version else "?"
        print("CGI benchmark: %s, mpm_event + mod_cgid, ScriptAlias, "
              "127.0.0.1:%d" % (version, port))
        print("python: %s (%s)%s; cpus: %s" % (
            python, pyver,
            (", a fresh venv of %s" % base_python) if args.venv else "",
            os.cpu_count()))
        print("apache runs as: %s" % {
            "user": "the invoking user",
            "unshare": "the invoking user (root) inside a user namespace",
            "drop": "user %s" % user}[mode])
        print("modules loaded at start-up: %s%s" % (
            startup_count, (" (already loaded: %s)" % preloaded) if preloaded else ""))
        if preloaded:
            print("WARNING: this interpreter's start-up already imports %s (site-packages "
                  ".pth files?), which hides what the handlers import and inflates "
                  "the floor; use --venv for representative figures" % preloaded)
        print("E/M entry point: %s" % entry_kind)
        print("PYTHONPATH for every endpoint: %s" % pythonpath)
        print("CPU accounting: %s" % (
            "cgroup %s (%s): Apache + CGI processes" % (cpu.path, cpu.kind) if cpu
            else "off" if not args.cpu else "unavailable (cannot make a cgroup)"))

        load_start = "%.2f %.2f %.2f" % os.getloadavg()
        print("load average at the start: %s" % load_start)
        measured = []
        for key in args.keys:
            if key in unavailable:
                continue
            why = verify(apache, key)
            if why is None:
                measured.append(key)
            elif key in ("F", "S"):
                raise BenchError("endpoint %s (%s) is broken: %s" % (
                    key, ENDPOINTS[key], why))
            else:
                unavailable[key] = why
        n_runs = len(measured) * args.rounds
        print("wrk -t%d -c%d -d%ds: %d rounds x %d endpoints, interleaved "
              "(about %ds), median reported\n" % (
                  args.threads, args.connections, args.duration, args.rounds,
                  len(measured), n_runs * args.duration
                  + len(measured) * args.warmup))
        sys.stdout.flush()

        if args.warmup:
            for key in measured:
                run_wrk(wrk, port, key, args.warmup, args)

        runs = {k: [] for k in measured}
        for rnd in range(args.rounds):
            order = measured[rnd % len(measured):] + measured[:rnd % len(measured)]
            for key in order:
                res = run_wrk(wrk, port, key, args.duration, args, cpu or None)
                runs[key].append(res)
                print("  round %d  %s  %8.1f req/s  latency %-8s%s non-2xx %d%s" % (
                    rnd + 1, key, res["rps"], res["latency"],
                    ("  %6.2f CPU ms/req" % res["cpu_ms"]) if res["cpu_ms"] else "",
                    res["non2xx"],
                    ("  socket errors %d" % res["socket_errors"])
                    if res["socket_errors"] else ""), flush=True)
        # Re-verify afterwards: a setup that broke mid-run must not pass.
        for key in measured:
            why = verify(apache, key)
            if why:
                raise BenchError("endpoint %s broke during the run: %s" % (key, why))
    finally:
        if apache is not None:
            apache.stop()
        if cpu:
            cpu.close()

    medians, cpu_med = {}, {}
    have_cpu = any(r["cpu_ms"] for v in runs.values() for r in v)
    print("\n%-2s %-34s %9s %7s %s" % (
        "", "endpoint", "req/s", "x F",
        "CPU ms/req* x F (by CPU)  " if have_cpu else "") + "rounds (req/s)")
    for key in args.keys:
        if key in runs:
            vals = [r["rps"] for r in runs[key]]
            medians[key] = statistics.median(vals)
            cpus = [r["cpu_ms"] for r in runs[key] if r["cpu_ms"]]
            if cpus:
                # Other load only ever adds CPU time (cache and core sharing),
                # so the best round is the cleanest figure.
                cpu_med[key] = min(cpus)
            bad = sum(r["non2xx"] + r["socket_errors"] for r in runs[key])
            xf = ("%6.2fx" % (medians[key] / medians["F"])) if "F" in medians else ""
            cpu_col = ""
            if have_cpu:
                cpu_col = "%10.2f  %6s        " % (
                    cpu_med.get(key, float("nan")),
                    ("%5.2fx" % (cpu_med["F"] / cpu_med[key]))
                    if "F" in cpu_med and key in cpu_med else "")
            print("%-2s %-34s %9.1f %7s %s%s%s" % (
                key, ENDPOINTS[key], medians[key], xf, cpu_col,
                " ".join("%.1f" % v for v in vals),
                ("   INVALID: %d non-2xx/socket errors" % bad) if bad else ""))
        else:
            print("%-2s %-34s unavailable: %s" % (
                key, ENDPOINTS[key], unavailable.get(key, "not measured")))

    if have_cpu:
        print("* CPU time of Apache and the CGI processes per request, best round")
    print("\nratios of the median requests/s%s:" % (
        " (and, in brackets, the inverse ratio of CPU per request, which other "
        "load moves much less)" if have_cpu else ""))
    ok = True

    def cpu_ratio(a, b):
        if a in cpu_med and b in cpu_med and cpu_med[a]:
            return "  [by CPU: %.3f]" % (cpu_med[b] / cpu_med[a])
        return ""

    for a, b, target in TARGETS:
        r = fmt_ratio(medians, a, b)
        if r is None:
            print("  %s/%s = %s (target >= %.2f)" % (
                a, b, "unavailable" if a in args.keys and b in args.keys
                else "not measured", target))
            ok = False
        else:
            verdict = "met" if r >= target else "MISSED"
            ok = ok and r >= target
            print("  %s/%s = %.3f (target >= %.2f: %s)%s" % (
                a, b, r, target, verdict, cpu_ratio(a, b)))
    for a, b in (("E", "F"), ("P", "F"), ("M", "F"), ("S", "F"), ("E", "G"), ("X", "F"),
                 ("X", "G")):
        if a in args.keys and b in args.keys:
            r = fmt_ratio(medians, a, b)
            print("  %s/%s = %s%s" % (a, b, "%.3f" % r if r is not None else "unavailable",
                                      cpu_ratio(a, b)))
    spread = {k: (max(r["rps"] for r in v) - min(r["rps"] for r in v)) / medians[k]
              for k, v in runs.items() if len(v) > 1 and medians.get(k)}
    noisy = sorted(k for k, x in spread.items() if x > 0.15)
    load = os.getloadavg()
    print("load average at the end: %.2f %.2f %.2f (start: %s)" % (load + (load_start,)))
    if noisy:
        print("NOISY: rounds of %s differ by more than 15%% of the median (%s); other "
              "work shared the machine, so the requests/s ratios are rough%s: re-run "
              "when it is quiet, or with more --rounds" % (
                  ",".join(noisy),
                  ", ".join("%s %.0f%%" % (k, spread[k] * 100) for k in noisy),
                  " (the CPU ratios hold better)" if have_cpu else ""))
    invalid = [k for k in runs if any(r["non2xx"] or r["socket_errors"] for r in runs[k])]
    if invalid:
        print("WARNING: non-2xx responses or socket errors on %s" % ",".join(invalid))
        ok = False

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({
                "apache": version, "python": python, "python_version": pyver,
                "venv": args.venv, "cpus": os.cpu_count(), "connections": args.connections,
                "threads": args.threads, "duration": args.duration,
                "rounds": args.rounds, "entry_point": entry_kind,
                "median_rps": medians, "best_cpu_ms_per_request": cpu_med,
                "runs": runs, "unavailable": unavailable, "spread": spread,
                "noisy": noisy, "load_start": load_start,
                "load_end": "%.2f %.2f %.2f" % load,
            }, f, indent=2)
    return 1 if (args.check and not ok) else 0


ARGS = None

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print("cgi_bench: %s" % exc, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("cgi_bench: interrupted", file=sys.stderr)
        sys.exit(130)

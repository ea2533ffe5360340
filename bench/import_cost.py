#!/usr/bin/env python3
"""What a CGI request pays for: interpreter start-up and import costs.

Every CGI request starts a fresh interpreter, so every module the CGI path
imports is paid for on every request.  This measures, with one interpreter:

* bare start-up: `python -c pass`, with and without -I / -S;
* which modules are already loaded right after start-up (those are free);
* the import cost of each candidate module (-X importtime, cumulative, of
  that import statement alone, after start-up), and the wall-clock
  difference `python -c "import X"` minus `python -c pass`;
* `python -m MODULE` against `python FILE` (what runpy costs);
* a pip-generated console-script wrapper against a plain script (it
  imports `re` and compiles a pattern);
* one whole CGI request through wsgiref.handlers.CGIHandler (and through
  gateway.handlers.CGIHandler and the gateway entry point when they import),
  run directly with a CGI environment, broken down with -X importtime.

Timings spawn the interpreter --runs times per command, the commands
interleaved round-robin so noise hits all alike, and report the median and
minimum wall-clock time and the median CPU time (user + system, from
wait4), which other load on the machine moves much less.  By default the
study runs a fresh virtual environment of --python, as a deployment would,
free of .pth files and packages in the interpreter's own site-packages;
--no-venv studies --python as it is.  Output is Markdown.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APP_DIR = os.path.join(HERE, "cgi")

MODULES = [
    "re", "time", "email.utils", "io", "os", "sys", "traceback", "warnings",
    "collections", "functools", "enum", "typing", "dataclasses", "socket",
    "selectors", "argparse", "runpy", "wsgiref.handlers", "wsgiref.util",
    "wsgiref.headers", "datetime", "locale", "codecs", "tempfile", "logging",
    "contextlib", "types", "string", "importlib", "importlib.util",
]

CGI_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "REQUEST_METHOD": "GET",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8080",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "Apache",
    "SCRIPT_NAME": "/s",
    "PATH_INFO": "",
    "QUERY_STRING": "",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8080",
}

MARK = "@@import-cost-mark@@"
IMPORTTIME_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def spawn_time(argv, env, cwd):
    """(wall, cpu) seconds of one run of argv (posix_spawn + wait4).

    cpu is the child's user + system time from wait4's rusage: unlike the
    wall-clock time it moves little when other work shares the machine.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0),
                   (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]
        old = os.getcwd()
        os.chdir(cwd)
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
            _, status, usage = os.wait4(pid, 0)
            t1 = time.perf_counter()
        finally:
            os.chdir(old)
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("failed: %s" % " ".join(argv))
    return t1 - t0, usage.ru_utime + usage.ru_stime


def time_many(cmds, runs, env, cwd):
    """{name: (median wall ms, min wall ms, median cpu ms)} for {name: argv},
    interleaved round-robin.

    The minimum wall time and the CPU time are the figures least disturbed
    by other load on the machine; the median wall time is the typical one.
    """
    samples = {name: [] for name in cmds}
    for name, argv in cmds.items():          # warm the page cache / pycs
        for _ in range(3):
            spawn_time(argv, env, cwd)
    for _ in range(runs):
        for name, argv in cmds.items():
            samples[name].append(spawn_time(argv, env, cwd))
    return {name: (statistics.median(w for w, _ in v) * 1000,
                   min(w for w, _ in v) * 1000,
                   statistics.median(c for _, c in v) * 1000)
            for name, v in samples.items()}


def run(argv, env, cwd, timeout=60):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def startup_modules(python, flags, env, cwd):
    r = run([python] + flags + ["-c", "import sys; print(' '.join(sorted(sys.modules)))"],
            env, cwd)
    return set(r.stdout.split())


def importtime_after_mark(python, code, env, cwd):
    """Parse -X importtime output after MARK: list of (self, cum, depth, name)."""
    r = run([python, "-X", "importtime", "-c",
             "import sys; sys.stderr.write(%r + '\\n'); sys.stderr.flush()\n%s" % (MARK, code)],
            env, cwd)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    lines = r.stderr.split(MARK, 1)[1].splitlines()
    rows = []
    for line in lines:
        m = IMPORTTIME_RE.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)),
                         (len(m.group(3)) - 1) // 2, m.group(4)))
    return rows


def import_cost_us(python, module, env, cwd, repeat=7):
    """Median over `repeat` runs of the summed top-level cumulative µs."""
    totals, count = [], 0
    for _ in range(repeat):
        rows = importtime_after_mark(python, "import %s" % module, env, cwd)
        totals.append(sum(cum for _, cum, depth, _ in rows if depth == 0))
        count = len(rows)
    return statistics.median(totals), count


def importtime_profile(python, argv_tail, env, cwd):
    """Full -X importtime of a script run: rows (self, cum, depth, name)."""
    r = run([python, "-X", "importtime"] + argv_tail, env, cwd)
    rows = []
    for line in r.stderr.splitlines():
        m = IMPORTTIME_RE.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)),
                         (len(m.group(3)) - 1) // 2, m.group(4)))
    return r, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable,
                   help="interpreter to study (default: this one, %(default)s)")
    p.add_argument("--venv", action=argparse.BooleanOptionalAction, default=True,
                   help="study a fresh venv of --python, as a deployment runs it: "
                        "no .pth files or packages of the interpreter's own "
                        "site-packages (default: on; --no-venv studies --python as it is)")
    p.add_argument("--runs", type=int, default=40,
                   help="spawns per command for wall-clock medians (default 40)")
    p.add_argument("--modules", help="comma-separated modules (default: a fixed list)")
    args = p.parse_args(argv)
    if not (5 <= args.runs <= 500):
        p.error("--runs must be 5..500")

    tmp = tempfile.mkdtemp(prefix="import-cost-")
    try:
        return study(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def study(args, tmp):
    python = os.path.abspath(args.python)
    base = python
    if args.venv:
        venv = os.path.join(tmp, "venv")
        subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True,
                       timeout=120)
        python = os.path.join(venv, "bin", "python3")
    modules = args.modules.split(",") if args.modules else MODULES
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    cwd = tmp

    version = run([python, "-c", "import sys; print(sys.version.split()[0])"], env, cwd).stdout.strip()
    print("## Import cost study\n")
    print("python: `%s` %s%s, %s CPUs, %d spawns per wall-clock figure (median and minimum)\n" % (
        python, version, (" (fresh venv of `%s`)" % base) if args.venv else "",
        os.cpu_count(), args.runs))

    # --- start-up -----------------------------------------------------------
    cmds = {
        "python -c pass": [python, "-c", "pass"],
        "python -I -c pass": [python, "-I", "-c", "pass"],
        "python -S -c pass": [python, "-S", "-c", "pass"],
        "python -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
        "python -c 'import os; os._exit(0)'": [python, "-c", "import os; os._exit(0)"],
    }
    start = time_many(cmds, args.runs, env, cwd)
    loaded = startup_modules(python, [], env, cwd)
    loaded_S = startup_modules(python, ["-S"], env, cwd)
    print("### Start-up\n")
    print("| command | wall ms, median | wall min | CPU ms | modules loaded |")
    print("|---|---:|---:|---:|---:|")
    for name, (med, low, cpu) in start.items():
        flags = [f for f in name.split()[1:] if f in ("-I", "-S")]
        print("| `%s` | %.2f | %.2f | %.2f | %d |" % (
            name, med, low, cpu, len(startup_modules(python, flags, env, cwd))))
    print("\nLoaded right after a normal start (free to import): `%s`\n" % " ".join(
        sorted(m for m in loaded if not m.startswith("_") and m != "__main__")))
    extra = sorted(loaded - loaded_S - {"__main__"})
    print("Of those, loaded by `site` (absent with -S): `%s`\n" % " ".join(extra))

    # --- per-module import cost ------------------------------------------------
    cmds = {m: [python, "-c", "import %s" % m] for m in modules}
    cmds["(pass)"] = [python, "-c", "pass"]
    walls = time_many(cmds, args.runs, env, cwd)
    print("### Import cost of one module, after a normal start\n")
    print("`importtime`: summed cumulative µs of the statement's top-level imports "
          "(`-X importtime`, median of 7); `wall +ms`, `CPU +ms`: `python -c \"import X\"` "
          "minus `python -c pass` (%.2f ms wall median, %.2f ms wall min, %.2f ms CPU in "
          "this run); `new`: modules it adds.\n" % walls["(pass)"])
    print("| module | loaded at start-up | importtime µs | wall +ms median | wall min | CPU +ms | new modules |")
    print("|---|:---:|---:|---:|---:|---:|---:|")
    for m in modules:
        free = m in loaded
        us, count = import_cost_us(python, m, env, cwd)
        print("| `%s` | %s | %d | %+.2f | %+.2f | %+.2f | %d |" % (
            m, "yes (free)" if free else "no", us,
            *(walls[m][i] - walls["(pass)"][i] for i in range(3)), count))

    # --- the gateway's own CGI-path modules, from the working tree -------------
    genv = dict(env, PYTHONPATH=REPO)
    gmods = ["gateway", "gateway.handlers", "gateway.__main__", "gateway.apploader",
             "gateway.types"]
    avail = [m for m in gmods
             if run([python, "-c", "import %s" % m], genv, cwd).returncode == 0]
    if avail:
        cmds = {m: [python, "-c", "import %s" % m] for m in avail}
        cmds["(pass)"] = [python, "-c", "pass"]
        gw = time_many(cmds, args.runs, genv, cwd)
        print("\n### The gateway's modules (working tree, PYTHONPATH=%s)\n" % REPO)
        print("| module | importtime µs | wall +ms median | wall min | CPU +ms | new modules |")
        print("|---|---:|---:|---:|---:|---:|")
        for m in avail:
            us, count = import_cost_us(python, m, genv, cwd)
            print("| `%s` | %d | %+.2f | %+.2f | %+.2f | %d |" % (
                m, us, *(gw[m][i] - gw["(pass)"][i] for i in range(3)), count))
        rows = importtime_after_mark(python, "import gateway.handlers", genv, cwd)
        print("\n`import gateway.handlers` loads: %s\n" % ", ".join(
            "%s %d µs" % (n, selfus) for selfus, _, _, n in rows))

    # --- python -m vs file, console-script wrapper -----------------------------
    pkg = os.path.join(tmp, "lib", "demo")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(pkg, "__main__.py"), "w") as f:
        f.write("def main():\n    return 0\n\nif __name__ == '__main__':\n    main()\n")
    plain = os.path.join(tmp, "plain.py")
    with open(plain, "w") as f:
        f.write("#!%s\nimport sys\nfrom demo.__main__ import main\n"
                "if __name__ == '__main__':\n    sys.exit(main())\n" % python)
    wrapper = os.path.join(tmp, "demo-script")
    with open(wrapper, "w") as f:
        f.write("#!%s\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
                "from demo.__main__ import main\nif __name__ == '__main__':\n"
                "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                "    sys.exit(main())\n" % python)
    for path in (plain, wrapper):
        os.chmod(path, 0o755)
    penv = dict(env, PYTHONPATH=os.path.join(tmp, "lib"))
    run([python, "-m", "compileall", "-q", os.path.join(tmp, "lib")], penv, cwd)
    cmds = {
        "python -c pass": [python, "-c", "pass"],
        "python plain.py (from demo.__main__ import main; main())": [python, plain],
        "python -m demo": [python, "-m", "demo"],
        "./demo-script (pip console-script wrapper)": [wrapper],
    }
    w = time_many(cmds, args.runs, penv, cwd)
    print("\n### Entry points (an empty package `demo` with a `main()`)\n")
    print("| command | wall ms, median | wall min | CPU ms | CPU over `-c pass` |")
    print("|---|---:|---:|---:|---:|")
    b = w["python -c pass"]
    for name, (med, low, cpu) in w.items():
        print("| `%s` | %.2f | %.2f | %.2f | %+.2f |" % (name, med, low, cpu, cpu - b[2]))
    seen = {n for _, _, _, n in importtime_profile(python, ["-c", "pass"], penv, cwd)[1]}
    seen |= loaded | {"demo", "demo.__main__"}
    rows_m = importtime_profile(python, ["-m", "demo"], penv, cwd)[1]
    rows_w = importtime_profile(python, [wrapper], penv, cwd)[1]
    new_m = sorted({n for _, _, _, n in rows_m} - seen)
    new_w = sorted({n for _, _, _, n in rows_w} - seen)
    print("\n`python -m` additionally imports: `%s`  " % (" ".join(new_m) or "nothing"))
    print("the console-script wrapper additionally imports: `%s`\n" % (" ".join(new_w) or "nothing"))

    # --- one CGI request ---------------------------------------------------------
    scripts = {
        "S: wsgiref.handlers.CGIHandler": "from wsgiref.handlers import CGIHandler\n"
                                           "from hello import app\nCGIHandler().run(app)\n",
        "G: gateway.handlers.CGIHandler": "from gateway.handlers import CGIHandler\n"
                                           "from hello import app\nCGIHandler().run(app)\n",
        "E: gateway console script (pip wrapper)": None,
        "E0: gateway entry point, wrapper without re": "import sys\n"
            "from gateway.__main__ import main\nsys.exit(main())\n",
        "M: python -m gateway (runpy)": "import runpy\n"
            "runpy.run_module('gateway', run_name='__main__', alter_sys=True)\n",
        "X: G, then atexit handlers, flush, os._exit(0) (no teardown)":
            "import atexit, os, sys\nfrom gateway.handlers import CGIHandler\n"
            "from hello import app\nCGIHandler().run(app)\natexit._run_exitfuncs()\n"
            "sys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n",
        "F: floor (fixed response)": "import sys\nsys.stdout.write('Content-Type: text/plain"
                                     "\\r\\nContent-Length: 14\\r\\n\\r\\nHello, world!\\n')\n",
    }
    cenv = dict(env, PYTHONPATH=os.pathsep.join([APP_DIR, REPO]), GATEWAY_APP="hello:app",
                **CGI_ENV)
    cmds = {"python -c pass": [python, "-c", "pass"]}
    paths = {}
    for name, code in scripts.items():
        path = os.path.join(tmp, "cgi-%s" % name.split(":")[0])
        with open(path, "w") as f:
            if code is None:
                f.write("#!%s\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
                        "from gateway.__main__ import main\nif __name__ == '__main__':\n"
                        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                        "    sys.exit(main())\n" % python)
            else:
                f.write("#!%s\n%s" % (python, code))
        os.chmod(path, 0o755)
        r = run([path], cenv, cwd)
        if r.returncode != 0 or not r.stdout.rstrip().endswith("Hello, world!"):
            print("\n%s: unavailable: %s\n" % (name, (r.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        paths[name] = path
        cmds[name] = [path]
    w = time_many(cmds, args.runs, cenv, cwd)
    print("### One CGI request, run directly (no web server)\n")
    print("| script | wall ms, median | wall min | CPU ms | CPU over `-c pass` |")
    print("|---|---:|---:|---:|---:|")
    b = w["python -c pass"]
    for name, (med, low, cpu) in w.items():
        print("| %s | %.2f | %.2f | %.2f | %+.2f |" % (name, med, low, cpu, cpu - b[2]))
    for name, path in paths.items():
        if name.startswith(("F", "X")):
            continue
        _, rows = importtime_profile(python, [path], cenv, cwd)
        top = [(cum, n) for _, cum, depth, n in rows if depth == 0 and n not in seen]
        total = sum(c for c, _ in top)
        print("\n%s — imports beyond start-up, top level (-X importtime, µs, one run): "
              "total %d µs\n" % (name, total))
        print("  " + ", ".join("%s %d" % (n, c) for c, n in sorted(top, reverse=True)))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

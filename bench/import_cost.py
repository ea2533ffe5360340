#!/usr/bin/env python3
"""What a CGI request pays for: interpreter start-up and import costs.

Every CGI request starts a fresh interpreter, so every module the CGI path
imports is paid for on every request. With one interpreter (by default a
fresh venv of --python, as a deployment runs it), this measures:

* start-up: `python -c pass`, with -I and -S, and without teardown;
* which modules start-up has loaded already (those are free);
* each module's import cost: `-X importtime` of that one statement, and
  `python -c "import X"` against `python -c pass`;
* the gateway's own modules, from the working tree;
* entry points: a plain script, `python -m`, pip's console-script wrapper;
* one CGI request run directly with a CGI environment: the CGI benchmark's
  F, S, G and E, plus `python -m gateway` (M) and G ending in os._exit (X),
  and what each imports beyond start-up.

Each command is spawned --runs times, the commands interleaved; reported:
the median and minimum wall-clock time, and the median CPU time (user +
system, from wait4), which other load on the machine moves much less.
Output is Markdown; the figures also go to bench/results/import_cost-UTC.json.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import harness as h

MODULES = ['re', 'time', 'email.utils', 'io', 'os', 'sys', 'traceback', 'warnings',
           'collections', 'functools', 'enum', 'typing', 'dataclasses', 'socket', 'selectors',
           'argparse', 'runpy', 'wsgiref.handlers', 'wsgiref.util', 'wsgiref.headers',
           'datetime', 'locale', 'codecs', 'tempfile', 'logging', 'contextlib', 'types',
           'string', 'importlib', 'importlib.util']
GATEWAY_MODULES = ['gateway', 'gateway.handlers', 'gateway.__main__', 'gateway.apploader',
                   'gateway.types']
CGI_REQUEST = {'GATEWAY_INTERFACE': 'CGI/1.1', 'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '/s',
               'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '8080', 'QUERY_STRING': '',
               'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1', 'PATH_INFO': '',
               'HTTP_HOST': '127.0.0.1:8080', 'SERVER_SOFTWARE': 'Apache'}
MORE_SCRIPTS = {
    'M': ('python -m gateway (runpy)',
          'import runpy\nrunpy.run_module("gateway", run_name="__main__", alter_sys=True)\n'),
    'X': ('G, then atexit handlers, flush, os._exit(0): no teardown',
          h.CGI_SCRIPTS['G'] + 'import atexit, os, sys\natexit._run_exitfuncs()\n'
          'sys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n'),
}
# pip's wrapper for a console-script entry point, as it writes it.
PIP_WRAPPER = ("# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import main\n"
               "if __name__ == '__main__':\n"
               "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
               "    sys.exit(main())\n")
MARK = '@@import-cost-mark@@'
IMPORTTIME = re.compile(r'^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$')


def spawn(argv, env, cwd):
    """(wall, CPU) seconds of one run of *argv*."""
    with open(os.devnull, 'r+b') as null:
        start = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=null, stdout=null, stderr=null)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise h.BenchError('failed: %s' % ' '.join(argv))
    return wall, usage.ru_utime + usage.ru_stime


def timed(commands, runs, env, cwd):
    """{name: (median wall ms, min wall ms, median CPU ms)}, the commands
    interleaved so that noise hits all alike."""
    samples = {name: [] for name in commands}
    for _, name in h.interleaved(list(commands), 3):     # the page cache and .pyc files
        spawn(commands[name], env, cwd)
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(spawn(argv, env, cwd))
    return {name: (statistics.median(w for w, _ in s) * 1000, min(w for w, _ in s) * 1000,
                   statistics.median(c for _, c in s) * 1000) for name, s in samples.items()}


def importtime(python, argv_tail, env, cwd):
    """-X importtime rows (self µs, cumulative µs, depth, module) of a run."""
    done = subprocess.run([python, '-X', 'importtime'] + argv_tail, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise h.BenchError((done.stderr.strip().splitlines() or ['?'])[-1])
    text = done.stderr.split(MARK, 1)[-1]
    return [(int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4))
            for m in map(IMPORTTIME.match, text.splitlines()) if m]


def import_cost(python, module, env, cwd, repeat=7):
    """(median µs of the statement's top-level imports, modules it adds)."""
    code = 'import sys; sys.stderr.write(%r + "\\n")\nimport %s' % (MARK, module)
    rows = [importtime(python, ['-c', code], env, cwd) for _ in range(repeat)]
    return statistics.median(sum(c for _, c, d, _ in r if d == 0) for r in rows), len(rows[0])


def loaded(python, flags, env, cwd):
    out = subprocess.run([python] + flags + ['-c', 'import sys; print(*sys.modules)'], env=env,
                         cwd=cwd, capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


def print_timings(title, header, found, base=None):
    print('\n### %s\n\n| %s | wall ms, median | wall min | CPU ms |%s\n|---|---:|---:|---:|%s'
          % (title, header, ' CPU over `-c pass` |' if base else '', '---:|' if base else ''))
    for name, (median, low, cpu) in found.items():
        print('| %s | %.2f | %.2f | %.2f |%s' % (name, median, low, cpu,
                                                 ' %+.2f |' % (cpu - base[2]) if base else ''))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter to study (default: this one)')
    parser.add_argument('--no-venv', dest='venv', action='store_false',
                        help='study --python as it is, with its site-packages')
    parser.add_argument('--runs', type=int, default=40,
                        help='spawns per command (default: %(default)s)')
    parser.add_argument('--modules', help='comma-separated modules (default: a fixed list)')
    args = parser.parse_args()
    if not 5 <= args.runs <= 500:
        parser.error('--runs must be 5..500')
    with tempfile.TemporaryDirectory(prefix='import-cost-') as cwd:
        return study(args, cwd)


def study(args, cwd):
    python = h.venv(args.python, cwd) if args.venv else os.path.abspath(args.python)
    env = {'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8'}
    results = {}
    print('## Import cost\n\nmachine: %s; `%s`%s; %d spawns per figure' % (
        h.machine_line(), python, ' (a fresh venv of `%s`)' % args.python if args.venv else '',
        args.runs))

    bare = {'python %s-c pass' % ''.join(f + ' ' for f in flags): [python, *flags, '-c', 'pass']
            for flags in ([], ['-I'], ['-S'], ['-I', '-S'])}
    bare["python -c 'import os; os._exit(0)'"] = [python, '-c', 'import os; os._exit(0)']
    results['start_up'] = found = timed(bare, args.runs, env, cwd)
    print_timings('Start-up', 'command', {'`%s`' % k: v for k, v in found.items()})
    free = loaded(python, [], env, cwd)
    print('\nLoaded right after a normal start (free to import): `%s`  \nof which `site` loads '
          '(absent with -S): `%s`' % (' '.join(sorted(m for m in free if m[0] != '_')),
                                       ' '.join(sorted(free - loaded(python, ['-S'], env, cwd)))))

    def module_table(title, modules, module_env):
        commands = {m: [python, '-c', 'import ' + m] for m in modules}
        walls = timed(dict(commands, pass_=[python, '-c', 'pass']), args.runs, module_env, cwd)
        print('\n### %s\n\n`importtime`: the statement\'s top-level cumulative µs (`-X '
              'importtime`, median of 7); `+ms`: `python -c "import X"` minus `python -c pass`;'
              ' `new`: modules it adds.\n\n| module | free | importtime µs | wall +ms median | '
              'wall +ms min | CPU +ms | new |\n|---|:---:|---:|---:|---:|---:|---:|' % title)
        rows = {}
        for m in modules:
            us, count = import_cost(python, m, module_env, cwd)
            more = [walls[m][i] - walls['pass_'][i] for i in range(3)]
            rows[m] = {'importtime_us': us, 'new_modules': count, 'wall_ms': more[0],
                       'wall_min_ms': more[1], 'cpu_ms': more[2]}
            print('| `%s` | %s | %d | %+.2f | %+.2f | %+.2f | %d |'
                  % (m, 'yes' if m in free else 'no', us, *more, count))
        return rows
    modules = args.modules.split(',') if args.modules else MODULES
    results['modules'] = module_table('Import cost of one module, after a normal start',
                                      modules, env)
    gateway_env = dict(env, PYTHONPATH=h.REPO)
    results['gateway_modules'] = module_table('The gateway\'s modules (the working tree)',
                                              GATEWAY_MODULES, gateway_env)
    code = 'import sys; sys.stderr.write(%r + "\\n")\nimport gateway.handlers' % MARK
    print('\n`import gateway.handlers` loads: %s' % ', '.join(
        '%s %d µs' % (name, own) for own, _, _, name in
        importtime(python, ['-c', code], gateway_env, cwd)))

    # An empty package whose main() returns at once, run three ways.
    package = os.path.join(cwd, 'lib', 'demo')
    os.makedirs(package)
    open(os.path.join(package, '__init__.py'), 'w').close()
    with open(os.path.join(package, '__main__.py'), 'w') as f:
        f.write("def main():\n    return 0\n\nif __name__ == '__main__':\n    main()\n")
    plain = h.write_script(os.path.join(cwd, 'plain.py'), python, 'import sys\nfrom '
                           'demo.__main__ import main\nsys.exit(main())\n')
    wrapper = h.write_script(os.path.join(cwd, 'demo'), python,
                             PIP_WRAPPER.format(module='demo.__main__'))
    demo_env = dict(env, PYTHONPATH=os.path.join(cwd, 'lib'))
    subprocess.run([python, '-m', 'compileall', '-q', package], env=demo_env, timeout=60)
    entry = {'`python -c pass`': [python, '-c', 'pass'],
             '`python plain.py` (from demo.__main__ import main)': [python, plain],
             '`python -m demo`': [python, '-m', 'demo'],
             '`./demo`, pip\'s console-script wrapper': [wrapper]}
    results['entry_points'] = found = timed(entry, args.runs, demo_env, cwd)
    print_timings('Entry points (an empty package `demo` with a `main()`)', 'command', found,
                  found['`python -c pass`'])
    seen = free | {'demo', 'demo.__main__'}
    print()
    for what, argv in (('`python -m`', ['-m', 'demo']), ('the wrapper', [wrapper])):
        print('%s imports beyond start-up: `%s`  ' % (what, ' '.join(sorted(
            {n for *_, n in importtime(python, argv, demo_env, cwd)} - seen)) or 'nothing'))

    cgi_env = dict(env, **h.CGI_ENV, **CGI_REQUEST)
    scripts = dict({k: (h.CGI_WHAT[k], text) for k, text in h.CGI_SCRIPTS.items()}, **MORE_SCRIPTS)
    commands = {'`python -c pass`': [python, '-c', 'pass']}
    for key, (what, text) in scripts.items():
        path = h.write_script(os.path.join(cwd, 'cgi-' + key), python, text)
        done = subprocess.run([path], env=cgi_env, cwd=cwd, capture_output=True, text=True,
                              timeout=60)
        if done.returncode or not done.stdout.endswith('Hello, world!\n'):
            print('\n%s: does not answer: %s' % (key, (done.stderr.strip().splitlines()
                                                        or ['?'])[-1]))
            continue
        commands['%s: %s' % (key, what)] = [path]
    results['cgi_request'] = found = timed(commands, args.runs, cgi_env, cwd)
    print_timings('One CGI request, run directly (no web server)', 'script', found,
                  found['`python -c pass`'])
    for name, argv in commands.items():
        if name[0] in 'SGEM':
            top = sorted(((c, n) for _, c, d, n in importtime(python, argv, cgi_env, cwd)
                          if d == 0 and n not in seen), reverse=True)
            print('\n%s imports beyond start-up (µs, top level, one run): total %d: %s'
                  % (name.split(':')[0], sum(c for c, _ in top),
                     ', '.join('%s %d' % (n, c) for c, n in top)))
    print()
    h.write_results('import_cost', {'settings': {'python': python, 'venv': args.venv,
                                                 'runs': args.runs}, **results})
    return 0


if __name__ == '__main__':
    h.run(main)

"""What every benchmark here shares, and nothing a single one needs alone.

A benchmark is a script that imports this module and the tests' web-server
helpers (tests/support/webservers.py: nginx and Apache on loopback with a
private configuration), never another benchmark. This module: what is
missing and how to install it, process groups and their CPU time and RSS,
wrk and its figures, interleaved rounds, how busy the rest of the machine
was (NOISY), the results file and the verdict.

Only 127.0.0.1 is contacted; every load is bounded by wrk's -d, every wait by
a deadline; whatever was started is stopped on exit, on Ctrl-C and on
SIGTERM too.
"""

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APPS = os.path.join(BENCH, 'apps')
RESULTS = os.path.join(BENCH, 'results')
sys.path.insert(0, os.path.join(REPO, 'tests'))

from support.webservers import (APACHE_MODULES, Apache, Nginx, fastcgi_site,  # noqa: E402,F401
                                free_port, http_request, wait_until)

# A run is NOISY when other work took more than this share of the machine's
# CPUs while it measured, or when its rounds differ by more than this share
# of their median: requests/s then say more about the neighbours than about
# the servers, while CPU per request still holds.
NOISY_SHARE = 0.10
NOISY_SPREAD = 0.15


class BenchError(Exception):
    """A benchmark cannot go on; printed without a traceback."""


# --------------------------------------------------------------------------
# what the benchmarks need

APT = 'apt-get install -y '
PIP = "pip install -e '.[bench]'"
NEEDS = {
    # name: (binary, Apache module or Python module to look for; install command)
    'nginx': ('bin', 'nginx', APT + 'nginx'),
    'apache2': ('bin', 'apache2', APT + 'apache2'),
    'wrk': ('bin', 'wrk', APT + 'wrk'),
    'prlimit': ('bin', 'prlimit', APT + 'util-linux'),
    'valgrind': ('bin', 'valgrind', APT + 'valgrind'),
    'callgrind_control': ('bin', 'callgrind_control', APT + 'valgrind'),
    'mod_cgid': ('mod', 'cgid', APT + 'apache2'),
    'mod_proxy_fcgi': ('mod', 'proxy_fcgi', APT + 'apache2'),
    'mod_wsgi': ('mod', 'wsgi', APT + 'libapache2-mod-wsgi-py3'),
    'uwsgi': ('pybin', 'uwsgi', PIP),
    'granian': ('py', 'granian', PIP),
    'gunicorn': ('py', 'gunicorn', PIP),
    'flup': ('py', 'flup', PIP),
    'flask': ('py', 'flask', PIP),
    'matplotlib': ('py', 'matplotlib', PIP),
}


def find(name):
    """The path of what NEEDS calls *name*, or None."""
    kind, what, _ = NEEDS[name]
    if kind == 'bin':
        path = shutil.which(what) or '/usr/sbin/' + what
        return path if os.access(path, os.X_OK) else None
    if kind == 'mod':
        path = os.path.join(APACHE_MODULES, 'mod_%s.so' % what)
        return path if os.path.exists(path) else None
    if kind == 'pybin':
        # pip builds it against the interpreter that runs pip: the one next
        # to this interpreter embeds this very Python (a PATH one may not).
        path = os.path.join(os.path.dirname(sys.executable), what)
        return path if os.access(path, os.X_OK) else None
    import importlib.util
    spec = importlib.util.find_spec(what)
    return spec.origin if spec else None


def missing(names):
    """'name (install: command)' for each of *names* not found."""
    return ['%s (install: %s)' % (name, NEEDS[name][2]) for name in names if not find(name)]


def require(names):
    lacking = missing(names)
    if lacking:
        raise BenchError('missing: ' + '; '.join(lacking))


def version_of(argv):
    """The first version-like word *argv* prints, or '?'."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return '?'
    found = re.search(r'\d[\w.+~-]*', out.stdout + out.stderr)
    return found.group(0) if found else '?'


# --------------------------------------------------------------------------
# processes, from /proc

_TICK = os.sysconf('SC_CLK_TCK')


def _stat(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except OSError:
        return None
    # After the command name, which may hold spaces and parentheses.
    return text[text.rfind(')') + 2:].split()


def children(pid):
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def descendants(pid):
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def cpu_seconds(pids):
    """User and system time of *pids* and of the children they reaped."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])
    return total / _TICK


def rss_mib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def command_line(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def machine_cpu():
    """(seconds of user and system time, seconds stolen by the hypervisor)
    all CPUs spent since boot: the whole machine, whoever ran."""
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / _TICK, fields[7] / _TICK


def own_cpu():
    """CPU seconds of this process and of the children it waited for (wrk)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


_started = []


def track(thing):
    """Have *thing* (with stop() or kill()) stopped by stop_all()."""
    _started.append(thing)
    return thing


def untrack(thing):
    if thing in _started:
        _started.remove(thing)


def stop(thing):
    thing.stop()
    untrack(thing)


def stop_all():
    while _started:
        thing = _started.pop()
        try:
            (getattr(thing, 'stop', None) or thing.kill)()
        except Exception as error:      # the others must still be stopped
            print('warning: stopping %r: %s' % (thing, error), file=sys.stderr)


class Group:
    """A command in a session of its own: it and whatever it forks are
    stopped together, by process group."""

    def __init__(self, name, argv, directory, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(directory, name + '.log')
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(argv, cwd=cwd or directory, env=env,
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        track(self)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def pids(self):
        return [self.pid] + descendants(self.pid)

    def workers(self):
        return children(self.pid)

    def stop(self, timeout=10):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)     # a child that outlived its parent
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(5)
        untrack(self)

    def tail(self, lines=15):
        try:
            with open(self.log_path, 'rb') as f:
                return '\n'.join(f.read()[-8000:].decode(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''


def start_server(server, *args, **kwargs):
    """Start a tests/support/webservers server, stopped with the rest."""
    track(server)
    try:
        return server.start(*args, **kwargs)
    except (RuntimeError, AssertionError) as error:
        stop(server)
        raise BenchError('%s: %s\n%s' % (server.name, error, server.log()[-2000:]))


def ready(port, path, body, *groups, timeout=30):
    """Wait until *path* answers 200 with exactly *body* (or a body *body*
    accepts, if it is a function): a broken setup must not produce a fast
    figure."""
    def check():
        for group in groups:
            if not group.alive():
                raise BenchError('%s exited:\n%s' % (group.name, group.tail()))
        try:
            status, _, got = http_request(port, 'GET', path, timeout=5)
        except OSError:
            return False
        if status in (502, 503, 504):
            return False
        if status != 200 or not (body(got) if callable(body) else got == body):
            raise BenchError('%s answered %d %r, expected 200 %r' % (path, status, got[:200], body))
        return True
    wait(check, timeout, 'a right answer at ' + path)


def package_at(rev, directory):
    """*directory*, holding the gateway package as it was at git *rev*
    (benchmarks that compare the code before a change with this checkout's)."""
    os.makedirs(directory)
    archive = subprocess.run(['git', '-C', REPO, 'archive', rev, 'gateway'], capture_output=True)
    if archive.returncode:
        raise BenchError('git archive %s: %s' % (rev, archive.stderr.decode(errors='replace').strip()))
    subprocess.run(['tar', '-x', '-C', directory], input=archive.stdout, check=True)
    return directory


def wait(condition, timeout, what):
    """What *condition* returns once true, polled for *timeout* seconds."""
    try:
        return wait_until(condition, timeout, what)
    except AssertionError as error:
        raise BenchError(str(error))


class Cgroup:
    """CPU time of processes that come and go (CGI): mod_cgid does not wait
    for its children, so their time shows in no rusage; a cgroup of our own
    counts it. make() gives None where none can be made (no permission)."""

    ROOTS = (('v1', '/sys/fs/cgroup/cpuacct', 'cpuacct.usage'),
             ('v2', '/sys/fs/cgroup', 'cpu.stat'), ('v2', '/sys/fs/cgroup/unified', 'cpu.stat'))

    @classmethod
    def make(cls, name):
        for kind, root, probe in cls.ROOTS:
            path = os.path.join(root, '%s-%d' % (name, os.getpid()))
            try:
                os.mkdir(path)
            except OSError:
                continue
            if os.path.exists(os.path.join(path, probe)):
                group = cls()
                group.kind, group.root, group.path = kind, root, path
                return track(group)
            os.rmdir(path)
        return None

    @contextmanager
    def joined(self):
        """This process in the cgroup meanwhile: what it starts stays there."""
        with open('/proc/self/cgroup') as f:
            mine = [line.strip().split(':', 2) for line in f]
        here = [path for _, names, path in mine
                if ('cpuacct' in names.split(',') if self.kind == 'v1' else names == '')]
        with open(os.path.join(self.path, 'cgroup.procs'), 'w') as f:
            f.write(str(os.getpid()))
        try:
            yield
        finally:
            with open(os.path.join(self.root + here[0].rstrip('/'), 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))

    def seconds(self):
        if self.kind == 'v1':
            with open(os.path.join(self.path, 'cpuacct.usage')) as f:
                return int(f.read()) / 1e9
        with open(os.path.join(self.path, 'cpu.stat')) as f:
            return int(f.readline().split()[1]) / 1e6     # usage_usec comes first

    def stop(self):
        deadline = time.monotonic() + 5     # its last processes are still exiting
        while os.path.exists(self.path):
            try:
                os.rmdir(self.path)
            except OSError:
                if time.monotonic() > deadline:
                    print('warning: cannot remove %s' % self.path, file=sys.stderr)
                    return
                time.sleep(0.1)


# --------------------------------------------------------------------------
# CGI: the endpoints the CGI benchmark serves and import_cost.py runs


CGI_SCRIPTS = {
    'F': 'import sys\nsys.stdout.write("Content-Type: text/plain; charset=utf-8\\r\\n"\n'
         '                 "Content-Length: 14\\r\\n\\r\\nHello, world!\\n")\n',
    'S': 'from wsgiref.handlers import CGIHandler\nfrom hello import app\nCGIHandler().run(app)\n',
    'G': 'from gateway.handlers import CGIHandler\nfrom hello import app\nCGIHandler().run(app)\n',
}
with open(os.path.join(REPO, 'scripts', 'gateway-cgi')) as _f:
    CGI_SCRIPTS['E'] = _f.read().split('\n', 1)[1]     # its first line is pip's to write
CGI_WHAT = {
    'F': 'floor: a fixed response, no WSGI',
    'S': 'wsgiref.handlers.CGIHandler',
    'G': 'gateway.handlers.CGIHandler',
    'E': 'scripts/gateway-cgi, GATEWAY_APP=hello:app',
}
CGI_ENV = {'PYTHONPATH': os.pathsep.join([APPS, REPO]), 'GATEWAY_APP': 'hello:app'}


def write_script(path, python, text):
    with open(path, 'w') as f:
        f.write('#!%s\n%s' % (python, text))
    os.chmod(path, 0o755)
    return path


def venv(python, directory):
    """The interpreter of a fresh venv of *python*: the start-up a deployment
    has, without the .pth files and packages of *python*'s own site-packages
    (which may import a package at every start and hide what a CGI request
    imports)."""
    path = os.path.join(directory, 'venv')
    done = subprocess.run([python, '-m', 'venv', '--without-pip', path], capture_output=True,
                          text=True, timeout=120)
    if done.returncode:
        raise BenchError('cannot make a venv of %s: %s' % (python, done.stderr.strip()))
    return os.path.join(path, 'bin', 'python3')


# --------------------------------------------------------------------------
# wrk

# wrk's own report rounds and scales its figures: this one gives them whole.
REPORT_LUA = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK-JSON {"requests": %d, "us": %d, "non2xx": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
'''


class Wrk:
    def __init__(self, directory):
        self.path = find('wrk')
        self.script = os.path.join(directory, 'report.lua')
        with open(self.script, 'w') as f:
            f.write(REPORT_LUA)

    def argv(self, url, duration, connections, threads=1, timeout=5):
        return [self.path, '-t%d' % threads, '-c%d' % connections, '-d%ds' % duration,
                '--timeout', '%ds' % timeout, '-s', self.script, url]

    def start(self, *args, **kwargs):
        argv = self.argv(*args, **kwargs)
        process = track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True))
        process.argv = argv
        return process

    def finish(self, process, timeout):
        out, err = process.communicate(timeout=timeout)
        untrack(process)
        report = [line for line in out.splitlines() if line.startswith('WRK-JSON ')]
        if process.returncode or not report:
            raise BenchError('%s failed (%s): %s' % (shlex.join(process.argv),
                                                     process.returncode, err.strip() or out))
        figures = json.loads(report[-1][9:])
        seconds = figures.pop('us') / 1e6
        errors = {k: figures.pop(k) for k in ('connect', 'read', 'write', 'timeout')}
        figures.update(
            seconds=seconds, rps=figures['requests'] / seconds,
            socket_errors=sum(errors.values()),
            socket_detail=', '.join('%s %d' % kv for kv in errors.items() if kv[1]),
            **{k[:-3] + '_ms': figures.pop(k) / 1000 for k in list(figures) if k.endswith('_us')})
        return figures

    def run(self, url, duration, connections, **kwargs):
        return self.finish(self.start(url, duration, connections, **kwargs), duration + 60)

    def measure(self, url, duration, connections, meters, **kwargs):
        """wrk's figures for one run, with the CPU time per request of each
        meter (name: function giving CPU seconds so far) and what the rest
        of the machine did meanwhile: `other_share` of its CPUs busy with
        work none of ours, `steal_share` taken by the hypervisor."""
        before = {name: meter() for name, meter in meters.items()}
        busy, stolen = machine_cpu()
        own = own_cpu()
        result = self.run(url, duration, connections, **kwargs)
        after = {name: meter() for name, meter in meters.items()}
        busy_after, stolen_after = machine_cpu()
        requests = max(result['requests'], 1)
        ours = sum(after[name] - before[name] for name in meters) + own_cpu() - own
        for name in meters:
            result[name + '_cpu_us'] = (after[name] - before[name]) * 1e6 / requests
        capacity = result['seconds'] * os.cpu_count()
        result['other_share'] = max(0.0, busy_after - busy - ours) / capacity
        result['steal_share'] = (stolen_after - stolen) / capacity
        return result


# --------------------------------------------------------------------------
# rounds, summaries, noise


def interleaved(names, count):
    """(round, name): every name once a round, in an order that rotates, so
    that a disturbance at one point of a round hits each name in turn."""
    for number in range(count):
        turn = number % len(names) if names else 0
        for name in names[turn:] + names[:turn]:
            yield number + 1, name


def spread(values):
    """(max - min) / median: how far the rounds of one figure disagree."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def summary(runs, keys):
    """The median of each of *keys* over *runs* (dicts), and the spread of
    requests/s."""
    result = {key: statistics.median(r[key] for r in runs) for key in keys
              if all(r.get(key) is not None for r in runs)}
    result['spread'] = spread([r['rps'] for r in runs])
    return result


def noise(runs):
    """Print and return what the rest of the machine did while *runs* (name:
    list of wrk figures) measured, and why the run is NOISY, if it is."""
    every = [r for rs in runs.values() for r in rs]
    other = [r['other_share'] for r in every if 'other_share' in r] or [0.0]
    steal = max([r['steal_share'] for r in every if 'steal_share' in r] or [0.0])
    wide = sorted((spread([r['rps'] for r in rs]), n) for n, rs in runs.items() if len(rs) > 1)
    wide = [(x, n) for x, n in wide if x > NOISY_SPREAD]
    why = []
    if max(other) > NOISY_SHARE:
        why.append('other work used up to %.0f%% of the CPUs' % (max(other) * 100))
    if steal > NOISY_SHARE:
        why.append('the hypervisor took up to %.0f%%' % (steal * 100))
    if wide:
        why.append('the rounds of %d of %d differ by more than %.0f%% of their median '
                   '(most: %s, %.0f%%)' % (len(wide), len(runs), NOISY_SPREAD * 100,
                                           wide[-1][1], wide[-1][0] * 100))
    print('other work on the machine while measuring: mean %.0f%%, at most %.0f%% of the CPUs'
          % (statistics.mean(other) * 100, max(other) * 100))
    if why:
        print('NOISY: %s. Requests/s are rough; CPU per request holds better. Re-run when '
              'the machine is quiet, or with more --rounds.' % '; '.join(why))
    return {'other_share_mean': statistics.mean(other), 'other_share_max': max(other),
            'steal_share_max': steal, 'noisy': bool(why), 'why': why}


def table(header, rows, left=1):
    """Print *rows* under *header*, the first *left* columns left-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print('  '.join(cell.ljust(w) if i < left else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def figure(value, form='%.0f'):
    return '-' if value is None else form % value


# --------------------------------------------------------------------------
# a run: arguments, results file, verdict


def arguments(doc, duration, rounds, connections):
    """A parser with the options every load benchmark takes."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0],
                                     epilog=doc.split('\n\n', 1)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if duration:
        parser.add_argument('--duration', type=int, default=duration, metavar='S',
                            help='seconds of each measured wrk run (default: %(default)s)')
    if rounds:
        parser.add_argument('--rounds', type=int, default=rounds, metavar='N',
                            help='interleaved rounds, the median reported (default: %(default)s)')
    parser.add_argument('--connections', type=int, default=connections, metavar='N',
                        help='wrk connections (default: %(default)s)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary directory: configurations and logs')
    return parser


def check_arguments(parser, args):
    if min(args.duration, getattr(args, 'rounds', 1), args.connections) < 1:
        parser.error('--duration, --rounds and --connections must be at least 1')
    return args


def machine():
    model = '?'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    system = platform.system()
    try:
        system = platform.freedesktop_os_release()['PRETTY_NAME']
    except (OSError, AttributeError):
        pass
    return {'cpus': os.cpu_count(), 'cpu_model': model, 'kernel': platform.release(),
            'system': system, 'python': platform.python_version(),
            'python_executable': sys.executable, 'loadavg': os.getloadavg()}


def machine_line(found=None):
    found = found or machine()
    return '%d CPUs (%s), Linux %s, %s, Python %s' % (
        found['cpus'], found['cpu_model'], found['kernel'], found['system'], found['python'])


def command():
    return shlex.join(['python3', os.path.relpath(os.path.abspath(sys.argv[0]), REPO)]
                      + sys.argv[1:])


def write_results(bench, payload):
    """bench/results/BENCH-UTCSTAMP.json: the machine, the command line and
    *payload*; its path."""
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    path = os.path.join(RESULTS, '%s-%s.json' % (bench, stamp))
    with open(path, 'w') as f:
        json.dump({'bench': bench, 'utc': stamp, 'command': command(), 'machine': machine(),
                   **payload}, f, indent=1)
        f.write('\n')
    print('results: %s' % os.path.relpath(path))
    return path


def verdict(checks):
    """Print each (what, ok) and PASS or FAIL; the exit status."""
    print()
    width = max(len(what) for what, _ in checks)
    for what, ok in checks:
        print('  %-*s %s' % (width, what, 'ok' if ok else 'FAILED'))
    passed = all(ok for _, ok in checks)
    print('\n' + ('PASS' if passed else 'FAIL'))
    return 0 if passed else 1


@contextmanager
def workdir(prefix, keep=False):
    """A fresh directory (readable by the web servers); on the way out,
    everything started is stopped and the directory removed, unless *keep*
    or an error wants its logs."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    try:
        yield path
    except BenchError:
        keep = True
        raise
    finally:
        stop_all()
        if keep:
            print('configurations and logs kept in %s' % path, file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(main):
    """Exit with what *main* returns: 2 when it cannot run, 130 when stopped
    by Ctrl-C or SIGTERM; whatever was started is stopped in every case."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    try:
        status = main()
    except BenchError as error:
        print('error: %s' % error, file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print('\ninterrupted; everything started is stopped', file=sys.stderr)
        status = 130
    finally:
        stop_all()
    sys.exit(status)

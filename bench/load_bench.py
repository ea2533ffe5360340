#!/usr/bin/env python3
"""Load benchmark: the FastCGI server behind nginx, under wrk, for a minute.

Starts a private nginx (Debian's binary, a generated configuration in a
temporary prefix, listening on a free port of 127.0.0.1) in front of
``python -m gateway fastcgi gateway.demo:app`` with its default number of
workers, the way the appliance runs them: the application at /app through
``nginx/app-fastcgi.conf``, an upstream ``keepalive`` pool and
``fastcgi_keep_conn on``, and nginx's ``worker_connections`` well above
what the clients and the upstream connections need. Then:

  1. checks that /app/ answers 200 with the demo page,
  2. warms up (wrk, --warmup seconds, the same connections),
  3. reads every worker's RSS and the arbiter's,
  4. runs ``wrk -t2 -c256 -d60s --timeout 10s`` (--threads, --connections,
     --duration), reading the RSS again every few seconds meanwhile,
  5. reports requests, requests/s, latency, non-2xx responses, socket
     errors (connect, read, write, timeout), each worker's RSS at the start
     and at the end, the warnings and errors in the gateway's and nginx's
     logs, and PASS or FAIL against: no non-2xx, no socket error, no worker
     replaced, and each worker's RSS growth below --rss-bound MiB.

Only 127.0.0.1 is contacted. wrk is bounded by --duration, every wait by a
deadline; nginx and the server are stopped on exit, also on Ctrl-C.
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from fastcgi_bench import (BenchError, Interrupted, Process, parse_wrk, port_open, rss_kib,
                           wait_until)
from loopback import free_port, http_get

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APP_SPEC = 'gateway.demo:app'
INSTALL_HINT = 'apt-get install -y nginx wrk'
RSS_SAMPLE_EVERY = 5.0      # seconds between RSS readings during the run


def add_tool_arguments(parser):
    """The options every nginx + wrk benchmark here takes."""
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter for the server (default: this one)')
    parser.add_argument('--nginx', help='nginx binary (default: from PATH)')
    parser.add_argument('--wrk', help='wrk binary (default: from PATH)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary directory (configuration, logs)')


def prepare_run(prefix):
    """A SIGTERM that ends the run cleanly, and a fresh directory with what
    nginx needs to start in it (nginx's own user must be able to read it)."""
    def on_term(signum, frame):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_term)
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o755)
    for kind in ('client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi'):
        os.makedirs(os.path.join(tmp, kind), exist_ok=True)
    return tmp


def server_environment(**extra):
    """The environment of the gateway under test: this checkout importable."""
    env = dict(os.environ, **extra)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, env.get('PYTHONPATH')]))
    return env


def print_verdict(checks):
    """Print each (what, ok) check and PASS or FAIL; the exit status."""
    print()
    width = max(len(what) for what, _ in checks)
    for what, ok in checks:
        print('  %-*s %s' % (width, what, 'ok' if ok else 'FAILED'))
    passed = all(ok for _, ok in checks)
    print('\n%s' % ('PASS' if passed else 'FAIL'))
    return 0 if passed else 1


def find_tools(args):
    nginx = args.nginx or shutil.which('nginx') or (
        '/usr/sbin/nginx' if os.access('/usr/sbin/nginx', os.X_OK) else None)
    wrk = args.wrk or shutil.which('wrk')
    missing = [name for name, path in (('nginx', nginx), ('wrk', wrk)) if not path]
    if missing:
        raise BenchError('missing: %s\ninstall with: %s' % (', '.join(missing), INSTALL_HINT))
    return nginx, wrk


def nginx_config(tmp, port, upstream, args):
    lines = [
        'worker_processes 1;',
        # Each client connection may need an upstream connection too.
        'worker_rlimit_nofile %d;' % (4 * args.connections + 1024),
        'daemon off;',
        'pid %s;' % os.path.join(tmp, 'nginx.pid'),
        'error_log %s warn;' % os.path.join(tmp, 'error.log'),
    ]
    if os.geteuid() == 0:
        lines.append('user root root;')     # the worker must reach the files in tmp
    lines += [
        'events { worker_connections %d; }' % (2 * args.connections + 512),
        'http {',
        '  access_log off;',
        '  keepalive_requests 1000000;',
    ]
    lines += ['  %s_temp_path %s;' % (kind, os.path.join(tmp, kind))
              for kind in ('client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi')]
    lines += [
        '  upstream gateway_fastcgi {',
        '    server %s;' % upstream,
        '    keepalive %d;' % args.pool,
        '  }',
        '  server {',
        '    listen 127.0.0.1:%d backlog=%d;' % (port, 4 * args.connections),
        '    server_name localhost;',
        '    fastcgi_keep_conn on;',
        '    include %s;' % os.path.join(REPO, 'nginx', 'app-fastcgi.conf'),
        '  }',
        '}',
    ]
    path = os.path.join(tmp, 'nginx.conf')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def wrk_argv(wrk, port, args, duration):
    return [wrk, '-t%d' % args.threads, '-c%d' % args.connections, '-d%ds' % duration,
            '--timeout', '%ds' % args.wrk_timeout, '--latency',
            'http://127.0.0.1:%d%s' % (port, args.path)]


def run_wrk(argv, duration, args):
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=duration + args.wrk_timeout + 60)
    if out.returncode != 0:
        raise BenchError('wrk failed (%d): %s' % (out.returncode, out.stderr.strip()))
    return parse_wrk(out.stdout), out.stdout


def log_problems(path, since=0):
    """(count, last lines) of WARNING/ERROR lines (gateway) or [warn]/[error]
    ... lines (nginx) in the log at *path*, from byte offset *since*."""
    try:
        with open(path, 'rb') as f:
            f.seek(since)
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return 0, []
    bad = [line for line in text.splitlines()
           if any(mark in line for mark in ('[WARNING]', '[ERROR]', '[CRITICAL]', '[warn]',
                                             '[error]', '[crit]', '[alert]', '[emerg]'))]
    return len(bad), bad[-5:]


def size_of(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class RssSampler(threading.Thread):
    """Reads the RSS of *pids* every RSS_SAMPLE_EVERY seconds until stopped."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.samples = {pid: [] for pid in pids}
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(RSS_SAMPLE_EVERY):
            for pid in self.pids:
                value = rss_kib(pid)
                if value is not None:
                    self.samples[pid].append(value)

    def stop(self):
        self._done.set()
        self.join(10)


def mib(kib):
    return '%.1f' % (kib / 1024) if kib is not None else '?'


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=int, default=60, metavar='S',
                        help='seconds of the measured wrk run (default: %(default)s)')
    parser.add_argument('--connections', type=int, default=256, metavar='N',
                        help='wrk connections to nginx (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=2, metavar='N',
                        help='wrk threads (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=5, metavar='S',
                        help='seconds of wrk before the RSS is first read (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=None, metavar='N',
                        help="the server's --workers (default: not given: its own default, "
                             'the number of CPUs)')
    parser.add_argument('--path', default='/app/', help='URL path to load (default: %(default)s,'
                        ' the demo page)')
    parser.add_argument('--pool', type=int, default=16, metavar='N',
                        help='keepalive N of the upstream (default: %(default)s, as '
                             'nginx/fastcgi-site.conf)')
    parser.add_argument('--transport', choices=('tcp', 'unix'), default='tcp',
                        help='nginx to the server: TCP on 127.0.0.1 or a unix socket '
                             '(default: %(default)s)')
    parser.add_argument('--wrk-timeout', type=int, default=10, metavar='S',
                        help="wrk's --timeout: a response slower than this counts as a socket"
                             ' error (default: %(default)s)')
    parser.add_argument('--rss-bound', type=float, default=5.0, metavar='MIB',
                        help='largest RSS growth of a worker, start to end, that passes '
                             '(default: %(default)s)')
    add_tool_arguments(parser)
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.threads) < 1 or args.warmup < 0:
        parser.error('--duration, --connections and --threads must be at least 1')
    if args.threads > args.connections:
        parser.error('wrk needs at least as many connections as threads')
    return args


def main(argv=None):
    args = parse_args(argv)
    nginx_bin, wrk = find_tools(args)

    tmp = prepare_run('load-bench-')
    port = free_port()
    if args.transport == 'unix':
        bind = upstream = 'unix:' + os.path.join(tmp, 'gateway.sock')
    else:
        bind = upstream = '127.0.0.1:%d' % free_port()
    conf = nginx_config(tmp, port, upstream, args)
    server_argv = [args.python, '-m', 'gateway', 'fastcgi', APP_SPEC, '--bind', bind]
    if args.workers is not None:
        server_argv += ['--workers', str(args.workers)]
    nginx_argv = [nginx_bin, '-p', tmp, '-c', conf]
    measured_argv = wrk_argv(wrk, port, args, args.duration)
    server_log = os.path.join(tmp, 'gateway.log')
    nginx_log = os.path.join(tmp, 'error.log')

    print('python:  %s' % args.python)
    print('nginx:   %s' % subprocess.run([nginx_bin, '-v'], capture_output=True, text=True,
                                         timeout=10).stderr.strip())
    print('server:  %s' % shlex.join(server_argv))
    print('nginx:   %s   (worker_connections %d, upstream keepalive %d, fastcgi_keep_conn on)'
          % (shlex.join(nginx_argv), 2 * args.connections + 512, args.pool))
    print('load:    %s' % shlex.join(measured_argv))
    sys.stdout.flush()

    env = server_environment()
    server = nginx = None
    keep = args.keep
    try:
        server = Process('gateway', server_argv, server_log, env=env)
        wait_until(lambda: server.alive() and len(server.workers()) >= 1, 30, 'the server')
        check = subprocess.run(nginx_argv[:1] + ['-t'] + nginx_argv[1:], capture_output=True,
                               text=True, timeout=30)
        if check.returncode:
            raise BenchError('nginx rejects the generated configuration:\n' + check.stderr)
        nginx = Process('nginx', nginx_argv, os.path.join(tmp, 'nginx.out'))
        wait_until(lambda: nginx.alive() and port_open(port), 15, 'nginx')

        def demo_page():
            if not server.alive():
                raise BenchError('the server exited:\n' + server.tail())
            status, body = http_get(port, args.path)
            if status in (502, 503, 504):
                return False
            if status != 200 or (args.path == '/app/' and b'gateway demo' not in body):
                raise BenchError('%s answered %d: %r' % (args.path, status, body[:200]))
            return True
        wait_until(demo_page, 30, 'the demo page through nginx')

        if args.warmup:
            warm, _ = run_wrk(wrk_argv(wrk, port, args, args.warmup), args.warmup, args)
            print('warm-up: %ds, %.0f req/s, non-2xx %d, socket errors %d'
                  % (args.warmup, warm['rps'], warm['non2xx'], warm['socket_errors']))
        workers = server.workers()
        start_rss = {pid: rss_kib(pid) for pid in workers}
        arbiter_start = rss_kib(server.pid)
        log_mark, nginx_mark = size_of(server_log), size_of(nginx_log)
        sampler = RssSampler(workers)
        sampler.start()
        began = time.monotonic()
        try:
            result, wrk_text = run_wrk(measured_argv, args.duration, args)
        finally:
            sampler.stop()
        elapsed = time.monotonic() - began
        workers_after = server.workers()
        end_rss = {pid: rss_kib(pid) for pid in workers}
        arbiter_end = rss_kib(server.pid)
        server_problems = log_problems(server_log, log_mark)
        nginx_problems = log_problems(nginx_log, nginx_mark)
        still_serving = demo_page()
    except (KeyboardInterrupt, Interrupted):
        print('\ninterrupted; nginx and the server stopped', file=sys.stderr)
        return 130
    except BenchError:
        keep = True
        print('configuration and logs kept in %s' % tmp, file=sys.stderr)
        raise
    finally:
        if nginx is not None:
            nginx.stop(signal.SIGQUIT)
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(wrk_text.rstrip())
    print()
    print('Results (%ds measured in %.1fs):' % (args.duration, elapsed))
    print('  requests        %d' % result['requests'])
    print('  requests/s      %.0f' % result['rps'])
    print('  latency p50/p99 %.2f / %.2f ms' % (result['p50_ms'] or 0, result['p99_ms'] or 0))
    print('  non-2xx         %d' % result['non2xx'])
    print('  socket errors   %d (%s)' % (result['socket_errors'],
                                         result['socket_detail'] or 'none reported'))
    print('  RSS, MiB        start -> end (growth), samples every %gs' % RSS_SAMPLE_EVERY)
    growths = []
    for pid in workers:
        start, end = start_rss[pid], end_rss[pid]
        growth = None if start is None or end is None else end - start
        growths.append(growth)
        samples = ' '.join(mib(k) for k in sampler.samples[pid])
        print('    worker %-7d %s -> %s (%s)   [%s]' % (pid, mib(start), mib(end),
                                                    '%+.2f' % (growth / 1024)
                                                    if growth is not None else 'gone', samples))
    print('    arbiter %-6d %s -> %s' % (server.pid, mib(arbiter_start), mib(arbiter_end)))
    print('  gateway log     %d warning/error line(s) during the run' % server_problems[0])
    for line in server_problems[1]:
        print('    ' + line)
    print('  nginx log       %d warning/error line(s) during the run' % nginx_problems[0])
    for line in nginx_problems[1]:
        print('    ' + line)
    if keep:
        print('kept: %s' % tmp)

    bound = args.rss_bound * 1024
    checks = [
        ('no non-2xx responses', result['non2xx'] == 0),
        ('no socket errors', result['socket_errors'] == 0),
        ('every worker served to the end (none replaced)', workers_after == workers
         and all(g is not None for g in growths)),
        ('RSS growth of each worker below %g MiB' % args.rss_bound,
         all(g is not None and g < bound for g in growths)),
        ('the demo page still answers', still_serving),
    ]
    return print_verdict(checks)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        print('error: %s' % error, file=sys.stderr)
        sys.exit(2)

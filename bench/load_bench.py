#!/usr/bin/env python3
"""Reliability under load: the FastCGI server behind nginx, under wrk, for a
minute; PASS or FAIL.

``gateway fastcgi gateway.demo:app`` with its default number of workers,
behind one nginx as the appliance runs them (the application at /app
through nginx/app-fastcgi.conf, an upstream keepalive pool,
fastcgi_keep_conn on). After a warm-up, wrk -t2 -c256 loads /app/ (the demo
page) while the workers' RSS is read every 5 seconds.

PASS needs: no non-2xx response, no socket error (a response slower than
--wrk-timeout counts), the same workers at the end as at the start, each
worker's RSS growth below --rss-bound MiB, and the page answering after the
run. Warnings and errors the server and nginx logged meanwhile are shown.
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import os
import shlex
import subprocess
import sys

import harness as h

RSS_EVERY = 5.0
PROBLEMS = ('[WARNING]', '[ERROR]', '[CRITICAL]', '[warn]', '[error]', '[crit]', '[alert]',
            '[emerg]')


def log_problems(path, since):
    """The warning and error lines of the log at *path* after byte *since*."""
    try:
        with open(path, 'rb') as f:
            f.seek(since)
            text = f.read().decode(errors='replace')
    except OSError:
        return []
    return [line for line in text.splitlines() if any(mark in line for mark in PROBLEMS)]


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def main():
    parser = h.arguments(__doc__, duration=60, rounds=None, connections=256)
    parser.add_argument('--threads', type=int, default=2, metavar='N',
                        help='wrk threads (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=5, metavar='S',
                        help='seconds of load before the RSS is first read (default: %(default)s)')
    parser.add_argument('--workers', type=int, metavar='N',
                        help="the server's --workers (default: its own, the number of CPUs)")
    parser.add_argument('--pool', type=int, default=16, metavar='N',
                        help='keepalive N of the upstream (default: %(default)s, as '
                             'nginx/fastcgi-site.conf)')
    parser.add_argument('--transport', choices=('tcp', 'unix'), default='tcp',
                        help='nginx to the server (default: %(default)s)')
    parser.add_argument('--wrk-timeout', type=int, default=10, metavar='S',
                        help="wrk's --timeout (default: %(default)s)")
    parser.add_argument('--rss-bound', type=float, default=5.0, metavar='MIB',
                        help="largest growth of a worker's RSS that passes (default: %(default)s)")
    args = h.check_arguments(parser, parser.parse_args())
    h.require(['nginx', 'wrk'])

    with h.workdir('load-bench-', args.keep) as work:
        bind = ('unix:' + os.path.join(work, 'gateway.sock') if args.transport == 'unix'
                else '127.0.0.1:%d' % h.free_port())
        argv = [sys.executable, '-m', 'gateway', 'fastcgi', 'gateway.demo:app', '--bind', bind]
        if args.workers:
            argv += ['--workers', str(args.workers)]
        server = h.Group('gateway', argv, work, env=dict(os.environ, PYTHONPATH=h.REPO))
        nginx = h.start_server(h.Nginx(work), h.fastcgi_site(bind, True, args.pool))
        demo = lambda body: b'gateway demo' in body    # noqa: E731
        h.ready(nginx.port, '/app/', demo, server)
        wrk = h.Wrk(work)
        url = 'http://127.0.0.1:%d/app/' % nginx.port
        print('machine: %s' % h.machine_line())
        print('server:  %s' % shlex.join(argv))
        print('load:    %s' % shlex.join(wrk.argv(url, args.duration, args.connections,
                                                    args.threads, args.wrk_timeout)))
        if args.warmup:
            warm = wrk.run(url, args.warmup, args.connections, threads=args.threads,
                           timeout=args.wrk_timeout)
            print('warm-up: %ds, %.0f req/s' % (args.warmup, warm['rps']), flush=True)
        workers = server.workers()
        rss = {pid: [h.rss_mib(pid)] for pid in workers + [server.pid]}
        logs = {'gateway': server.log_path, 'nginx': os.path.join(work, 'error.log')}
        marks = {name: size(path) for name, path in logs.items()}
        load = wrk.start(url, args.duration, args.connections, threads=args.threads,
                         timeout=args.wrk_timeout)
        for _ in range(int(args.duration / RSS_EVERY) + 12):    # wrk's -d bounds it
            try:
                load.wait(RSS_EVERY)
                break
            except subprocess.TimeoutExpired:
                for pid in rss:
                    rss[pid].append(h.rss_mib(pid))
        result = wrk.finish(load, 60)
        for pid in rss:
            rss[pid].append(h.rss_mib(pid))
        replaced = server.workers() != workers
        problems = {name: log_problems(path, marks[name]) for name, path in logs.items()}
        try:
            h.ready(nginx.port, '/app/', demo, server, timeout=10)
            still = True
        except h.BenchError:
            still = False

    print('\nrequests %d in %.1fs: %.0f req/s, latency p50 %.2f ms, p99 %.2f ms, max %.2f ms'
          % (result['requests'], result['seconds'], result['rps'], result['p50_ms'],
             result['p99_ms'], result['max_ms']))
    print('non-2xx %d, socket errors %d %s' % (result['non2xx'], result['socket_errors'],
                                              result['socket_detail']))
    print('RSS MiB, every %gs:' % RSS_EVERY)
    growth = {}
    for pid, values in rss.items():
        role = 'arbiter' if pid == server.pid else 'worker'
        if role == 'worker':
            growth[pid] = None if None in (values[0], values[-1]) else values[-1] - values[0]
        print('  %-7s %-7d %s' % (role, pid, ' '.join(h.figure(v, '%.1f') for v in values)))
    for name, lines in problems.items():
        print('%s log: %d warning/error line(s) during the run' % (name, len(lines)))
        for line in lines[-5:]:
            print('  ' + line)
    checks = [('no non-2xx responses', not result['non2xx']),
              ('no socket errors', not result['socket_errors']),
              ('every worker served to the end (none replaced)',
               not replaced and None not in growth.values()),
              ('RSS growth of each worker below %g MiB' % args.rss_bound,
               all(g is not None and g < args.rss_bound for g in growth.values())),
              ('the demo page still answers', still)]
    status = h.verdict(checks)
    h.write_results('load', {
        'settings': {k: getattr(args, k) for k in ('duration', 'connections', 'threads', 'warmup',
                                                   'workers', 'pool', 'transport', 'rss_bound')},
        'server': argv, 'wrk': result, 'rss_mib': {str(pid): v for pid, v in rss.items()},
        'log_problems': problems, 'checks': checks, 'passed': status == 0})
    return status


if __name__ == '__main__':
    h.run(main)

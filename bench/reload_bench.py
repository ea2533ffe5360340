#!/usr/bin/env python3
"""Reloads under POST load through fronts that reuse connections: requests lost, before and after.

``gateway fastcgi consume:app --workers 2`` behind nginx (upstream
``keepalive`` pool, ``fastcgi_keep_conn on``: nginx/app-fastcgi.conf) and
behind Apache mod_proxy_fcgi (apache/proxy-fcgi.conf, ``enablereuse=on``),
each under ``wrk -t1 -c32`` POSTing a 480-byte form (tests/support/load.py's
script) for the whole run. Every --interval seconds the arbiter gets SIGHUP,
and the next one waits for its log line "reload complete" and for the
replaced workers to exit. wrk's report counts the requests not answered 2xx
and the socket errors.

"before" is the gateway package as it was at --before (by default the
commit before the hand-over of connections, gateway/fastcgi/handover.py,
came), taken out with git archive; "after" is this checkout's. The fronts'
configurations are this checkout's for both.

PASS needs no failed request "after", behind every front.
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import os
import shlex
import signal
import subprocess
import sys
import time

import harness as h
from support.load import parse_report, write_post_script

FRONTS = ('nginx', 'apache')
# Apache's event MPM closes every idle keep-alive client connection of a
# child whose threads are all busy (25 by default, fewer than wrk's 32
# connections): wrk would count the one it was writing on, between the
# client and Apache, as a read error that is no reload's doing.
APACHE_THREADS = '\nThreadsPerChild 64\nMaxRequestWorkers 256\n'


def before_ref():
    found = subprocess.run(['git', '-C', h.REPO, 'log', '--diff-filter=A', '--format=%H', '--',
                            'gateway/fastcgi/handover.py'], capture_output=True, text=True)
    commits = found.stdout.split()
    if found.returncode or not commits:
        raise h.BenchError('cannot find the commit that added gateway/fastcgi/handover.py; '
                           'name one with --before')
    return commits[-1] + '^'


def log_count(group, text):
    with open(group.log_path, errors='replace') as f:
        return f.read().count(text)


def start_front(front, work, bind):
    if front == 'nginx':
        return h.start_server(h.Nginx(work), h.fastcgi_site(bind, True, 32))
    with open(os.path.join(h.REPO, 'apache', 'proxy-fcgi.conf')) as f:
        site = f.read() + APACHE_THREADS
    return h.start_server(h.Apache(work), site, env={'GATEWAY_FASTCGI_URL': 'fcgi://' + bind},
                          modules=('proxy', 'proxy_fcgi'))


def one_run(front, version, code, args, work):
    """*args.rounds* reloads of a server running *code* behind *front*."""
    run_dir = os.path.join(work, '%s-%s' % (front, version))
    os.makedirs(run_dir)
    bind = '127.0.0.1:%d' % h.free_port()
    argv = [sys.executable, '-m', 'gateway', 'fastcgi', 'consume:app', '--bind', bind,
            '--workers', str(args.workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, h.APPS]))
    server = h.Group('gateway', argv, run_dir, cwd=h.APPS, env=env)
    web = start_front(front, run_dir, bind)
    h.ready(web.port, '/app/', lambda body: body.strip() == b'0', server)
    h.wait(lambda: len(server.workers()) == args.workers, 30, 'every worker')
    script = write_post_script(os.path.join(run_dir, 'post.lua'))
    bound = int(args.rounds * (args.interval + 30) + 10)
    wrk = h.track(subprocess.Popen(
        [h.find('wrk'), '-t1', '-c%d' % args.connections, '-d%ds' % bound, '--timeout', '10s',
         '-s', script, 'http://127.0.0.1:%d/app/' % web.port],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    reloads = []
    for number in range(1, args.rounds + 1):
        time.sleep(args.interval)
        if wrk.poll() is not None:
            raise h.BenchError('wrk ended early: %s' % wrk.stdout.read())
        before = set(server.workers())
        done = log_count(server, 'reload complete')
        began = time.monotonic()
        os.kill(server.pid, signal.SIGHUP)
        h.wait(lambda: log_count(server, 'reload complete') > done, 30, 'reload %d' % number)
        h.wait(lambda: not before & set(server.workers()), 30, 'the replaced workers to exit')
        reloads.append(time.monotonic() - began)
    wrk.send_signal(signal.SIGINT)
    output, _ = wrk.communicate(timeout=30)
    h.untrack(wrk)
    h.stop(web)
    h.stop(server)
    figures = parse_report(output)
    figures.update(front=front, version=version, reload_seconds=reloads,
                   lost=figures['non2xx'] + figures['socket_errors'])
    print('%-7s %-7s %8d requests in %5.1fs, non-2xx %3d, socket errors %3d, reloads took'
          ' %.2f-%.2fs' % (front, version, figures['requests'], figures['seconds'],
                           figures['non2xx'], figures['socket_errors'], min(reloads),
                           max(reloads)), flush=True)
    return figures


def main():
    parser = h.arguments(__doc__, duration=None, rounds=10, connections=32)
    parser.add_argument('--interval', type=float, default=1.0, metavar='S',
                        help='seconds of load before each reload (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=2, metavar='N',
                        help="the server's --workers (default: %(default)s)")
    parser.add_argument('--before', metavar='REF',
                        help='git revision of the "before" code (default: the commit before '
                             'gateway/fastcgi/handover.py was added)')
    args = parser.parse_args()
    if min(args.rounds, args.workers, args.connections) < 1 or args.interval < 0:
        parser.error('--rounds, --workers and --connections must be positive')
    h.require(['nginx', 'apache2', 'mod_proxy_fcgi', 'wrk'])
    ref = args.before or before_ref()

    runs = []
    with h.workdir('reload-bench-', args.keep) as work:
        versions = {'before': h.package_at(ref, os.path.join(work, 'before')), 'after': h.REPO}
        print('machine: %s' % h.machine_line())
        print('before:  gateway package at %s' % ref)
        print('reloads: %d x (%gs of wrk -t1 -c%d POST, then SIGHUP), %d workers'
              % (args.rounds, args.interval, args.connections, args.workers), flush=True)
        for front in FRONTS:
            for version in ('before', 'after'):
                runs.append(one_run(front, version, versions[version], args, work))

    checks = [('no request lost after, behind %s (%d)' % (run['front'], run['lost']),
               run['lost'] == 0) for run in runs if run['version'] == 'after']
    status = h.verdict(checks)
    h.write_results('reload', {
        'settings': {k: getattr(args, k) for k in ('rounds', 'interval', 'workers',
                                                   'connections')},
        'before': ref, 'runs': runs, 'checks': checks, 'passed': status == 0})
    return status


if __name__ == '__main__':
    h.run(main)

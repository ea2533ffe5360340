#!/usr/bin/env python3
"""What the access log and the status bookkeeping cost a request.

``gateway fastcgi APP --workers 1``, requests sent one after another over
one kept-alive connection, for two applications: ``hello`` (the server's
own work and nothing else, the harshest ratio) and ``flask`` (a route and a
JSON answer, bench/apps/flask_app.py), each in three set-ups:

* ``off``: this checkout, no --access-log, no --status-path;
* ``on``: this checkout with --access-log FILE and --status-path /status
  (where this checkout has it; the results say which options were on);
* ``base``: the code before either existed (``git archive bd60d5b``), for
  what the bookkeeping that is always on costs.

Two figures per set-up, each per request:

* instructions of the worker process under ``valgrind --tool=callgrind``:
  two runs of --small and --large requests (PYTHONHASHSEED=0), and the
  difference divided by the difference in requests, so that starting and
  stopping cancel out. Deterministic to a fraction of a percent;
* CPU microseconds of the worker (user + system, from /proc), over
  --requests requests after a warm-up, --rounds rounds interleaved; other
  work on the machine moves it (NOISY says when).

PASS needs ``on`` within 3% of ``off`` by instructions, for each
application. Output: a table and bench/results/ops_cost-UTC.json. Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import harness as h
from gateway.fastcgi.client import Client, cgi_params

BASE = 'bd60d5b'        # before the access log and the status page
LIMIT = 0.03
BOOTED = re.compile(rb'worker \d+ booted \(pid (\d+)\)')
HEADERS = dict(HTTP_HOST='localhost', HTTP_USER_AGENT='Mozilla/5.0 (X11; Linux x86_64; rv:120.0)',
               HTTP_REFERER='http://localhost/', HTTP_ACCEPT='*/*')
APPS = {'hello': ('hello:app', cgi_params('/', **HEADERS)),
        'flask': ('flask_app:app', cgi_params('/users/42', **HEADERS))}


def options(name, work):
    """The server's extra options in set-up *name*, and what they mean."""
    if name != 'on':
        return []
    extra = ['--access-log', os.path.join(work, 'access.log')]
    helptext = subprocess.run([sys.executable, '-m', 'gateway', 'fastcgi', '--help'],
                              capture_output=True, text=True, cwd=h.REPO,
                              env=dict(os.environ, PYTHONPATH=h.REPO)).stdout
    if '--status-path' in helptext:
        extra += ['--status-path', '/status']
    return extra


def start(name, code, work, extra, app, wrapper=()):
    port = h.free_port()
    argv = [*wrapper, sys.executable, '-m', 'gateway', 'fastcgi', APPS[app][0], '--bind',
            '127.0.0.1:%d' % port, '--workers', '1', '--timeout', '0', *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, h.APPS]), PYTHONHASHSEED='0')
    group = h.Group(name, argv, work, env=env, cwd=h.APPS)

    def booted():
        if not group.alive():
            raise h.BenchError('%s exited:\n%s' % (name, group.tail()))
        with open(group.log_path, 'rb') as f:
            found = BOOTED.search(f.read())
        return found and int(found.group(1))
    worker = h.wait(booted, 300, name + ' booted')
    return group, port, worker


def send(port, count, app):
    params = APPS[app][1]
    with Client(('127.0.0.1', port), timeout=60) as client:
        for _ in range(count):
            reply = client.request(params, keep_conn=True)
            if reply.status != 200:
                raise h.BenchError('answered %d' % reply.status)


def cpu_us(name, code, work, extra, app, requests, number):
    group, port, worker = start('%s-%s-%d' % (app, name, number), code, work, extra, app)
    try:
        send(port, 500, app)     # warm-up
        before, machine, client = h.cpu_seconds([worker]), h.machine_cpu()[0], h.own_cpu()
        wall = time.monotonic()
        send(port, requests, app)
        used = h.cpu_seconds([worker]) - before
        elapsed = time.monotonic() - wall
        whole = h.machine_cpu()[0] - machine
        client = h.own_cpu() - client
    finally:
        group.stop()
    cpus = os.cpu_count() or 1
    # What ran besides this worker and this client, as a share of the machine.
    other = max(0.0, whole - used - client) / (elapsed * cpus)
    return {'cpu_us': used / requests * 1e6, 'other_share': min(other, 1.0)}


def instructions(name, code, work, extra, app, count):
    out = os.path.join(work, 'cg-%s-%s-%d' % (app, name, count))
    os.makedirs(out)
    group, port, worker = start('%s-%s-cg-%d' % (app, name, count), code, work, extra, app,
                                ['valgrind', '--tool=callgrind', '--callgrind-out-file=%s/%%p'
                                 % out])
    try:
        send(port, count, app)
    finally:
        group.stop(timeout=120)
    path = os.path.join(out, str(worker))
    if not os.path.exists(path):
        raise h.BenchError('no callgrind output for the worker (pid %d) in %s: %s'
                           % (worker, out, os.listdir(out)))
    with open(path) as f:
        for line in f:
            if line.startswith(('summary:', 'totals:')):
                return int(line.split()[1])
    raise h.BenchError('no totals in ' + path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--requests', type=int, default=20000, help='per CPU round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--small', type=int, default=200, help='requests, first callgrind run')
    parser.add_argument('--large', type=int, default=1200, help='requests, second callgrind run')
    parser.add_argument('--keep', action='store_true', help='keep the logs and callgrind files')
    parser.add_argument('--apps', nargs='+', choices=sorted(APPS), default=['hello', 'flask'])
    args = parser.parse_args()
    if not shutil.which('valgrind'):
        raise h.BenchError('valgrind is missing: apt-get install -y valgrind')
    names = ['off', 'on', 'base']
    results, checks = {}, []
    with h.workdir('ops-cost-', keep=args.keep) as work:
        code = {'off': h.REPO, 'on': h.REPO, 'base': h.package_at(BASE, os.path.join(work, 'rev-' + BASE))}
        extra = {name: options(name, work) for name in names}
        for app in args.apps:
            results[app] = measure_app(app, names, code, extra, work, args)
    print(h.machine_line())
    print('on: %s; CPU: %d requests a round, median of %d rounds'
          % (' '.join(extra['on']), args.requests, args.rounds))
    for app, found in results.items():
        per_request, cpu, cost = found['instructions_per_request'], found['cpu_us'], found['cost']
        print('\n%s%s' % (app, ', CPU NOISY (%s)' % found['noisy'] if found['noisy'] else ''))
        h.table(['set-up', 'instructions/request', 'CPU us/request'],
                [[name, '%.0f' % per_request[name], '%.1f' % cpu[name]] for name in names])
        print('on against off: %+.2f%% instructions, %+.1f%% CPU; against %s: %+.2f%%, %+.1f%%'
              % (100 * cost['instructions'], 100 * cost['cpu'], BASE,
                 100 * cost['instructions_vs_base'], 100 * cost['cpu_vs_base']))
        checks.append(('%s: access log and status on cost at most 3%% of the instructions of a '
                       'request (%+.2f%%)' % (app, 100 * cost['instructions']),
                       cost['instructions'] <= LIMIT))
    h.write_results('ops_cost', {
        'options_on': extra['on'], 'base': BASE, 'requests': args.requests,
        'rounds': args.rounds, 'callgrind_requests': [args.small, args.large],
        'apps': results})
    return h.verdict(checks)


def measure_app(app, names, code, extra, work, args):
    per_request = {}
    for name in names:
        small = instructions(name, code[name], work, extra[name], app, args.small)
        large = instructions(name, code[name], work, extra[name], app, args.large)
        per_request[name] = (large - small) / (args.large - args.small)
        print('%s %-5s %.0f instructions per request' % (app, name, per_request[name]),
              file=sys.stderr)
    runs = {name: [] for name in names}
    for number, name in h.interleaved(names, args.rounds):
        runs[name].append(cpu_us(name, code[name], work, extra[name], app, args.requests,
                                 number))
        print('%s round %d %-5s %.1f us per request' % (app, number, name,
                                                      runs[name][-1]['cpu_us']), file=sys.stderr)
    cpu = {name: statistics.median(r['cpu_us'] for r in rs) for name, rs in runs.items()}
    other = max(r['other_share'] for rs in runs.values() for r in rs)
    spread = max(h.spread([r['cpu_us'] for r in rs]) for rs in runs.values())
    noisy = []
    if other > h.NOISY_SHARE:
        noisy.append('other work up to %.0f%% of the CPUs' % (100 * other))
    if spread > h.NOISY_SPREAD:
        noisy.append('rounds spread up to %.0f%%' % (100 * spread))
    return {'instructions_per_request': per_request, 'cpu_us': cpu, 'cpu_runs': runs,
            'noisy': '; '.join(noisy),
            'cost': {'instructions': per_request['on'] / per_request['off'] - 1,
                     'cpu': cpu['on'] / cpu['off'] - 1,
                     'instructions_vs_base': per_request['on'] / per_request['base'] - 1,
                     'cpu_vs_base': cpu['on'] / cpu['base'] - 1}}


if __name__ == '__main__':
    h.run(main)

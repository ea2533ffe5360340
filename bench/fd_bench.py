#!/usr/bin/env python3
"""Out of file descriptors: a worker's CPU time and log lines, before and after.

``gateway fastcgi hello:app --workers 1`` under ``prlimit --nofile=N:N``
(default 40), with --connections (default 80) connections held open, each
having sent a BEGIN_REQUEST: the worker accepts until it is out of
descriptors, and accept() then fails with EMFILE. From the first such log
line on, the worker's CPU time (from /proc) and the server's log lines are
counted over --window seconds. Then the held connections close and one
request must be answered.

Each --rev (default: the code before the fix, bd60d5b, and this checkout)
runs in turn, the older from ``git archive REV gateway`` in a temporary
directory. PASS needs this checkout's worker under 10% of one CPU over the
window and at most 2 log lines, and its request answered after.
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import argparse
import os
import re
import socket
import sys
import time

import harness as h
from gateway.fastcgi.client import cgi_params, encode_begin_request, request

BEFORE = 'bd60d5b'      # the last commit before the fix
ACCEPT_FAILED = re.compile(rb'accept\(\) failed')


def checkout(rev, work):
    """A directory holding the gateway package as it was at *rev*; this
    checkout's own for 'HEAD'."""
    if rev == 'HEAD':
        return h.REPO
    return h.package_at(rev, os.path.join(work, 'rev-' + rev))


def log_lines(group):
    with open(group.log_path, 'rb') as f:
        return f.read().splitlines()


def measure(rev, work, args):
    code = checkout(rev, work)
    bind = ('127.0.0.1', h.free_port())
    argv = ['prlimit', '--nofile=%d:%d' % (args.limit, args.limit), sys.executable, '-m',
            'gateway', 'fastcgi', 'hello:app', '--bind', '%s:%d' % bind, '--workers', '1',
            '--read-timeout', '0', '--request-read-timeout', '0']
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, h.APPS]))
    server = h.Group('gateway-' + rev, argv, work, cwd=h.APPS, env=env)
    held = []
    try:
        h.wait(lambda: any(b'booted' in line for line in log_lines(server)), 30,
               'the worker to boot')
        (worker,) = h.wait(lambda: h.descendants(server.pid)[-1:] or None, 10, 'the worker')
        for _ in range(args.connections):
            sock = socket.create_connection(bind, timeout=5)
            held.append(sock)
            sock.sendall(encode_begin_request(1, keep_conn=True))
        h.wait(lambda: any(ACCEPT_FAILED.search(line) for line in log_lines(server)), 30,
               'accept() to fail')
        lines_before = len(log_lines(server))
        cpu_before = h.cpu_seconds([worker])
        time.sleep(args.window)     # the measurement window
        cpu = h.cpu_seconds([worker]) - cpu_before
        lines = log_lines(server)[lines_before:]
        for sock in held:
            sock.close()
        held = []
        try:
            answer = request(bind, cgi_params('/'), timeout=15)
            served = answer.status == 200
        except OSError:
            served = False
        sample = [line.decode(errors='replace') for line in lines[:1] + lines[-1:]]
    finally:
        for sock in held:
            sock.close()
        server.stop()
    return {'rev': rev, 'cpu_seconds': round(cpu, 3), 'cpu_share': round(cpu / args.window, 3),
            'log_lines': len(lines), 'served_after': served, 'log_sample': sample}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rev', action='append', metavar='REV',
                        help='a commit to measure; repeat (default: %s and HEAD, this checkout)'
                             % BEFORE)
    parser.add_argument('--limit', type=int, default=40, metavar='N',
                        help='soft and hard RLIMIT_NOFILE of the server (default: %(default)s)')
    parser.add_argument('--connections', type=int, default=80, metavar='N',
                        help='connections held open (default: %(default)s)')
    parser.add_argument('--window', type=float, default=3.0, metavar='S',
                        help='seconds measured (default: %(default)s)')
    parser.add_argument('--keep', action='store_true', help='keep the logs')
    args = parser.parse_args()
    revs = args.rev or [BEFORE, 'HEAD']
    h.require(['prlimit'])
    print('machine: %s' % h.machine_line())
    print('server:  prlimit --nofile=%d:%d gateway fastcgi hello:app --workers 1; %d connections '
          'held, %gs measured' % (args.limit, args.limit, args.connections, args.window))
    runs = []
    with h.workdir('fd-bench-', args.keep) as work:
        for rev in revs:
            run = measure(rev, work, args)
            runs.append(run)
            print('%-8s CPU %.2fs (%3.0f%% of one CPU)  log lines %6d  served after: %s'
                  % (rev, run['cpu_seconds'], 100 * run['cpu_share'], run['log_lines'],
                     'yes' if run['served_after'] else 'NO'), flush=True)
    last = runs[-1]
    checks = [('%s: under 10%% of a CPU while out of descriptors' % last['rev'],
               last['cpu_share'] < 0.10),
              ('%s: at most 2 log lines in %gs' % (last['rev'], args.window),
               last['log_lines'] <= 2),
              ('%s: a request served once descriptors are free' % last['rev'],
               last['served_after'])]
    status = h.verdict(checks)
    h.write_results('fd', {'settings': {'limit': args.limit, 'connections': args.connections,
                                        'window': args.window},
                           'runs': runs, 'checks': checks, 'passed': status == 0})
    return status


if __name__ == '__main__':
    h.run(main)

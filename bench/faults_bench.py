#!/usr/bin/env python3
"""Faults benchmark: how soon a killed worker's replacement serves, under load.

Starts a private nginx on a free port of 127.0.0.1 (the configuration
``load_bench.py`` generates: the application at /app through
``nginx/app-fastcgi.conf``, an upstream keepalive pool, fastcgi_keep_conn)
in front of ``python -m gateway fastcgi bench.fcgi.pid:app --workers 2``,
puts it under ``wrk -t1 -c32`` for the whole run, and --rounds times, every
--interval seconds, kills the oldest worker with SIGKILL and measures the
time from the kill to the first request served by its replacement (the
application notes when it served its first request, on the same monotonic
clock: the figure includes the fork, the import of the application and
nginx's first connection to the new worker).

It reports each round, the median and the worst, wrk's totals (a non-2xx
response or socket error is a request the kills cost), and PASS or FAIL
against: every replacement served within --bound seconds (default 1), and
at most one failed request per kill (each worker runs one request at a
time). Only 127.0.0.1 is contacted; wrk is bounded by its duration, every
wait by a deadline; everything started is stopped on exit, also on Ctrl-C.
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

from fastcgi_bench import BenchError, Interrupted, Process, parse_wrk, port_open, wait_until
from load_bench import (add_tool_arguments, find_tools, nginx_config, prepare_run,
                        print_verdict, server_environment)
from loopback import free_port, http_get

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APP_SPEC = 'bench.fcgi.pid:app'


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=10, metavar='N',
                        help='workers killed, one per round (default: %(default)s)')
    parser.add_argument('--interval', type=float, default=2.0, metavar='S',
                        help='seconds of load before each kill (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=2, metavar='N',
                        help="the server's --workers (default: %(default)s)")
    parser.add_argument('--connections', type=int, default=32, metavar='N',
                        help='wrk connections (default: %(default)s)')
    parser.add_argument('--pool', type=int, default=16, metavar='N',
                        help='keepalive N of the upstream (default: %(default)s)')
    parser.add_argument('--bound', type=float, default=1.0, metavar='S',
                        help='kill to first request served by the replacement that passes '
                             '(default: %(default)s)')
    add_tool_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.workers < 1 or args.connections < 1 or args.interval <= 0:
        parser.error('--rounds, --workers, --connections and --interval must be positive')
    # What nginx_config (shared with load_bench.py) reads.
    args.threads = 1
    args.wrk_timeout = 5
    return args


def main(argv=None):
    args = parse_args(argv)
    nginx_bin, wrk = find_tools(args)

    tmp = prepare_run('faults-bench-')
    markers = os.path.join(tmp, 'markers')
    os.makedirs(markers)
    port = free_port()
    bind = '127.0.0.1:%d' % free_port()
    conf = nginx_config(tmp, port, bind, args)
    server_argv = [args.python, '-m', 'gateway', 'fastcgi', APP_SPEC, '--bind', bind,
                   '--workers', str(args.workers)]
    nginx_argv = [nginx_bin, '-p', tmp, '-c', conf]
    duration = int(args.rounds * args.interval + 4)
    wrk_argv = [wrk, '-t1', '-c%d' % args.connections, '-d%ds' % duration, '--timeout', '5s',
                'http://127.0.0.1:%d/app/' % port]
    print('server:  %s' % shlex.join(server_argv))
    print('nginx:   %s   (upstream keepalive %d, fastcgi_keep_conn on)'
          % (shlex.join(nginx_argv), args.pool))
    print('load:    %s' % shlex.join(wrk_argv))
    print('faults:  %d x (%gs of load, then SIGKILL to the oldest worker)'
          % (args.rounds, args.interval))
    sys.stdout.flush()

    env = server_environment(GATEWAY_BENCH_MARKERS=markers)
    server = nginx = load = None
    keep = args.keep
    rounds = []
    try:
        server = Process('gateway', server_argv, os.path.join(tmp, 'gateway.log'), env=env)
        nginx = Process('nginx', nginx_argv, os.path.join(tmp, 'nginx.out'))
        wait_until(lambda: nginx.alive() and port_open(port), 15, 'nginx')
        wait_until(lambda: len(server.workers()) == args.workers
                   and http_get(port, '/app/')[0] == 200, 30, 'the server through nginx')
        load = subprocess.Popen(wrk_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        for number in range(1, args.rounds + 1):
            time.sleep(args.interval)
            if load.poll() is not None:
                raise BenchError('wrk ended early: %s' % load.stderr.read())
            before = server.workers()
            victim = before[0]
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            fresh = wait_until(lambda: set(server.workers()) - set(before), 10,
                               'a replacement for worker %d' % victim)
            (replacement,) = fresh
            marker = os.path.join(markers, 'first-%d' % replacement)
            wait_until(lambda: os.path.exists(marker), 10,
                       'worker %d to serve a request' % replacement)
            with open(marker) as f:
                served = float(f.read()) - killed
            rounds.append((victim, replacement, served))
            print('round %2d  killed %-7d replacement %-7d served after %6.1f ms'
                  % (number, victim, replacement, served * 1000), flush=True)
        out, err = load.communicate(timeout=duration + 30)
        if load.returncode:
            raise BenchError('wrk failed (%d): %s' % (load.returncode, err.strip()))
        result = parse_wrk(out)
    except (KeyboardInterrupt, Interrupted):
        print('\ninterrupted; nginx, wrk and the server stopped', file=sys.stderr)
        return 130
    except BenchError:
        keep = True
        print('configuration and logs kept in %s' % tmp, file=sys.stderr)
        raise
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait(10)
        if nginx is not None:
            nginx.stop(signal.SIGQUIT)
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    served = [r[2] for r in rounds]
    lost = result['non2xx'] + result['socket_errors']
    print()
    print('kill to first request served by the replacement: median %.1f ms, worst %.1f ms'
          % (statistics.median(served) * 1000, max(served) * 1000))
    print('wrk: %d requests in %ds (%.0f req/s), non-2xx %d, socket errors %d (%s)'
          % (result['requests'], duration, result['rps'], result['non2xx'],
             result['socket_errors'], result['socket_detail'] or 'none reported'))
    checks = [
        ('every replacement served within %gs' % args.bound, max(served) < args.bound),
        ('at most one failed request per kill (%d kills, %d failed)' % (len(rounds), lost),
         lost <= len(rounds)),
    ]
    if keep:
        print('kept: %s' % tmp)
    return print_verdict(checks)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        print('error: %s' % error, file=sys.stderr)
        sys.exit(2)

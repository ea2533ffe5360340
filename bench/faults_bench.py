#!/usr/bin/env python3
"""Killed workers under load: how soon a replacement serves; PASS or FAIL.

``gateway fastcgi pid:app --workers 2`` behind nginx as load_bench.py runs
it (nginx/app-fastcgi.conf, keepalive pool, fastcgi_keep_conn on), under
wrk -t1 -c32 for the whole run. Every --interval seconds the oldest worker
is killed with SIGKILL, and the time from the kill to the first request its
replacement served is read from the application's own note
(bench/apps/pid.py, the same monotonic clock): the arbiter noticing, the
fork, the import of the application, nginx's first connection to it.

PASS needs every replacement serving within --bound seconds and at most one
failed request per kill (a worker runs one request at a time).
Exit status: 0 PASS, 1 FAIL, 2 could not run.
"""

import os
import shlex
import signal
import statistics
import sys
import time

import harness as h


def main():
    parser = h.arguments(__doc__, duration=None, rounds=10, connections=32)
    parser.add_argument('--interval', type=float, default=2.0, metavar='S',
                        help='seconds of load before each kill (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=2, metavar='N',
                        help="the server's --workers (default: %(default)s)")
    parser.add_argument('--bound', type=float, default=1.0, metavar='S',
                        help='kill to first request served that passes (default: %(default)s)')
    args = parser.parse_args()
    if min(args.rounds, args.workers, args.connections) < 1 or args.interval <= 0:
        parser.error('--rounds, --workers, --connections and --interval must be positive')
    h.require(['nginx', 'wrk'])

    rounds = []
    with h.workdir('faults-bench-', args.keep) as work:
        markers = os.path.join(work, 'markers')
        os.makedirs(markers)
        bind = '127.0.0.1:%d' % h.free_port()
        argv = [sys.executable, '-m', 'gateway', 'fastcgi', 'pid:app', '--bind', bind,
                '--workers', str(args.workers)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([h.REPO, h.APPS]),
                   GATEWAY_BENCH_MARKERS=markers)
        server = h.Group('gateway', argv, work, cwd=h.APPS, env=env)
        nginx = h.start_server(h.Nginx(work), h.fastcgi_site(bind, True, 16))
        h.ready(nginx.port, '/app/', lambda body: body.strip().isdigit(), server)
        h.wait(lambda: len(server.workers()) == args.workers, 30, 'every worker')
        wrk = h.Wrk(work)
        duration = int(args.rounds * args.interval + 4)
        load = wrk.start('http://127.0.0.1:%d/app/' % nginx.port, duration, args.connections)
        print('machine: %s' % h.machine_line())
        print('server:  %s' % shlex.join(argv))
        print('faults:  %d x (%gs of wrk -t1 -c%d, then SIGKILL to the oldest worker)'
              % (args.rounds, args.interval, args.connections), flush=True)
        for number in range(1, args.rounds + 1):
            time.sleep(args.interval)
            if load.poll() is not None:
                raise h.BenchError('wrk ended early: %s' % load.stderr.read())
            before = server.workers()
            killed = time.monotonic()
            os.kill(before[0], signal.SIGKILL)
            (fresh,) = h.wait(lambda: set(server.workers()) - set(before), 10,
                                    'a replacement for worker %d' % before[0])
            marker = os.path.join(markers, 'first-%d' % fresh)
            h.wait(lambda: os.path.exists(marker), 10, 'worker %d to serve' % fresh)
            with open(marker) as f:
                served = (float(f.read()) - killed) * 1000
            rounds.append({'killed': before[0], 'replacement': fresh, 'served_ms': served})
            print('round %2d  killed %-7d replacement %-7d served after %6.1f ms'
                  % (number, before[0], fresh, served), flush=True)
        result = wrk.finish(load, duration + 30)

    served = [r['served_ms'] for r in rounds]
    lost = result['non2xx'] + result['socket_errors']
    print('\nkill to first request served by the replacement: median %.1f ms, worst %.1f ms'
          % (statistics.median(served), max(served)))
    print('wrk: %d requests in %.0fs (%.0f req/s), non-2xx %d, socket errors %d %s'
          % (result['requests'], result['seconds'], result['rps'], result['non2xx'],
             result['socket_errors'], result['socket_detail']))
    checks = [('every replacement served within %gs' % args.bound,
               max(served) < args.bound * 1000),
              ('at most one failed request per kill (%d kills, %d failed)' % (len(rounds), lost),
               lost <= len(rounds))]
    status = h.verdict(checks)
    h.write_results('faults', {
        'settings': {k: getattr(args, k) for k in ('rounds', 'interval', 'workers',
                                                   'connections', 'bound')},
        'server': argv, 'rounds': rounds, 'wrk': result, 'checks': checks,
        'passed': status == 0})
    return status


if __name__ == '__main__':
    h.run(main)

#!/usr/bin/env python3
"""What --preload saves: the memory of a pool whose application builds about
50 MB when imported (bench/apps/big_import.py), with each worker importing
it (the default) and with the arbiter importing it once before forking.

For each mode, rounds interleaved: start `gateway fastcgi` with --workers N,
wait until every worker has booted, send --requests requests (so that the
workers have run the application, as in service), then read every process's
/proc/PID/smaps_rollup: PSS (each shared page counted once across the
processes that share it, split between them) and RSS, summed over the
workers and over the arbiter and the workers. Memory does not depend on
what else the machine runs, so one round says it; more show it holds.
Output: a table, and bench/results/preload_memory-UTC.json.
"""

import os
import statistics
import sys

import harness as h
from support.fcgi_client import ServerProcess, get, server_env

APP = 'big_import:application'


def memory_kib(pid):
    """{'Pss': KiB, 'Rss': KiB} of process *pid*."""
    found = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            name, _, rest = line.partition(':')
            if name in ('Pss', 'Rss'):
                found[name] = int(rest.split()[0])
    return found


def measure(preload, workers, requests):
    args = [APP, '--bind', '127.0.0.1:0', '--workers', str(workers), '--log-level', 'info']
    if preload:
        args.append('--preload')
    env = server_env(PYTHONPATH=os.pathsep.join([h.REPO, h.APPS]))
    with ServerProcess(args, env=env, cwd=h.APPS) as server:
        address = server.address(timeout=60)
        pids = server.wait_booted(workers, timeout=120)
        served = {get(address, '/', query='x' * (n % 50)).body.split()[0] for n in range(requests)}
        per_worker = [memory_kib(pid) for pid in pids]
        arbiter = memory_kib(server.proc.pid)
    mib = lambda kib: round(kib / 1024, 1)     # noqa: E731
    return {
        'workers_pss_mib': mib(sum(m['Pss'] for m in per_worker)),
        'workers_rss_mib': mib(sum(m['Rss'] for m in per_worker)),
        'arbiter_pss_mib': mib(arbiter['Pss']),
        'arbiter_rss_mib': mib(arbiter['Rss']),
        'total_pss_mib': mib(arbiter['Pss'] + sum(m['Pss'] for m in per_worker)),
        'workers_that_served': len(served),
    }


def main():
    parser = h.argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--requests', type=int, default=400)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    if not os.path.exists('/proc/self/smaps_rollup'):
        raise h.BenchError('needs /proc/PID/smaps_rollup (Linux 4.14 or later)')
    runs = {'import in each worker': [], '--preload': []}
    for _ in range(args.rounds):
        for name in runs:
            runs[name].append(measure(name == '--preload', args.workers, args.requests))
            print('%-22s %s' % (name, runs[name][-1]), file=sys.stderr)
    median = {name: {key: statistics.median(run[key] for run in rounds) for key in rounds[0]}
              for name, rounds in runs.items()}
    plain, pre = median['import in each worker'], median['--preload']
    saving = {key: round(1 - pre[key] / plain[key], 3)
              for key in ('workers_pss_mib', 'total_pss_mib', 'workers_rss_mib')}
    print(h.machine_line())
    print('%d workers, %d requests, median of %d rounds\n' % (args.workers, args.requests,
                                                              args.rounds))
    h.table(['mode', 'PSS workers MiB', 'PSS all MiB', 'RSS workers MiB'],
            [[name, m['workers_pss_mib'], m['total_pss_mib'], m['workers_rss_mib']]
             for name, m in median.items()])
    print('\n--preload saves %.0f%% of the PSS of the workers, %.0f%% with the arbiter counted'
          % (100 * saving['workers_pss_mib'], 100 * saving['total_pss_mib']))
    h.write_results('preload_memory', {'workers': args.workers, 'requests': args.requests,
                                       'rounds': runs, 'median': median, 'saving': saving})
    return h.verdict([('--preload uses less memory in total (PSS)', saving['total_pss_mib'] > 0),
                      ('every mode served from several workers',
                       all(m['workers_that_served'] > 1 for m in median.values()))])


if __name__ == '__main__':
    h.run(main)

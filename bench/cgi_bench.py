#!/usr/bin/env python3
"""CGI under a real Apache (mpm_event, mod_cgid, ScriptAlias): the gateway
against the interpreter's start-up alone and against wsgiref.

  F  floor: a script that prints a fixed response (start-up and nothing else)
  S  wsgiref.handlers.CGIHandler().run(app)
  G  gateway.handlers.CGIHandler().run(app)
  E  scripts/gateway-cgi, the program the package installs, GATEWAY_APP=hello:app

Every endpoint answers Hello, world! (bench/apps/hello.py) from the same
interpreter: by default a fresh venv of --python, the start-up a deployment
has (--no-venv: --python as it is). wrk loads each endpoint in turn, rounds
interleaved. CPU per request is that of Apache and every CGI process it
starts, from a cgroup of the benchmark's own where one can be made: it moves
far less with the machine's other load than requests/s do.

Targets, by requests/s: G >= 0.90 x F and G >= 1.30 x S (--check: exit 1
when one is missed).
"""

import os
import sys

import harness as h

TARGETS = (('G', 'F', 0.90), ('G', 'S', 1.30))
RATIOS = (('S', 'F'), ('E', 'F'), ('E', 'G'))
# One child of 32 threads is plenty for -c4; MaxKeepAliveRequests 0 keeps
# wrk's connections open, so only the CGI processes come and go.
SITE = '''
StartServers 1
ServerLimit 2
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 8
MaxSpareThreads 64
MaxKeepAliveRequests 0
CGIDScriptTimeout 30
<Directory "{cgi}">
    Require all granted
</Directory>
'''


def main():
    parser = h.arguments(__doc__, duration=10, rounds=3, connections=4)
    parser.add_argument('--warmup', type=int, default=2, metavar='S',
                        help='one untimed wrk run per endpoint first (default: %(default)s)')
    parser.add_argument('--endpoints', default='F,S,G,E', metavar='LIST',
                        help='which of F,S,G,E (default: %(default)s)')
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter of every endpoint (default: this one)')
    parser.add_argument('--venv', action='store_true', default=True,
                        help='run a fresh venv of --python (the default)')
    parser.add_argument('--no-venv', dest='venv', action='store_false',
                        help='run --python as it is, with its site-packages')
    parser.add_argument('--check', action='store_true',
                        help='exit with status 1 when a target is missed')
    args = h.check_arguments(parser, parser.parse_args())
    keys = [k for k in args.endpoints.upper().split(',') if k]
    if not keys or any(k not in h.CGI_SCRIPTS for k in keys):
        parser.error('--endpoints: choose among F,S,G,E')
    h.require(['apache2', 'mod_cgid', 'wrk'])

    with h.workdir('cgi-bench-', args.keep) as work:
        python = h.venv(args.python, work) if args.venv else os.path.abspath(args.python)
        cgi = os.path.join(work, 'cgi')
        os.makedirs(cgi)
        site = SITE.format(cgi=cgi) + ''.join(
            'SetEnv %s "%s"\n' % kv for kv in h.CGI_ENV.items()) + ''.join(
            'ScriptAlias /%s "%s"\n' % (k.lower(), h.write_script(
                os.path.join(cgi, k.lower() + '.cgi'), python, h.CGI_SCRIPTS[k])) for k in keys)
        cpu = h.Cgroup.make('cgi-bench')
        apache = h.Apache(work)
        if cpu:
            with cpu.joined():
                h.start_server(apache, site)
        else:
            h.start_server(apache, site)
        print('machine: %s' % h.machine_line())
        print('Apache %s, mpm_event + mod_cgid on 127.0.0.1:%d; python %s%s' % (
            h.version_of([h.find('apache2'), '-v']), apache.port, python,
            ' (a fresh venv of %s)' % args.python if args.venv else ''))
        print('CPU per request: %s' % ('Apache and its CGI processes, cgroup %s' % cpu.path
                                       if cpu else 'unavailable (no cgroup of our own)'))
        for key in keys:
            h.ready(apache.port, '/' + key.lower(), b'Hello, world!\n')
        wrk = h.Wrk(work)
        url = 'http://127.0.0.1:%d/' % apache.port
        for key in keys:
            if args.warmup:
                wrk.run(url + key.lower(), args.warmup, args.connections)
        runs = {key: [] for key in keys}
        for number, key in h.interleaved(keys, args.rounds):
            r = wrk.measure(url + key.lower(), args.duration, args.connections,
                            {'apache': cpu.seconds} if cpu else {}, timeout=10)
            runs[key].append(r)
            print('round %d  %s  %7.1f req/s  %s CPU ms/req  p50 %.1f ms%s' % (
                number, key, r['rps'], h.figure(r.get('apache_cpu_us', 0) / 1000 or None, '%.2f'),
                r['p50_ms'], '  non-2xx %d, socket errors %d' % (r['non2xx'], r['socket_errors'])
                if r['non2xx'] or r['socket_errors'] else ''), flush=True)
        for key in keys:    # a setup that broke on the way must not pass
            h.ready(apache.port, '/' + key.lower(), b'Hello, world!\n', timeout=10)

    summaries = {k: h.summary(rs, ['rps', 'apache_cpu_us', 'p50_ms', 'p99_ms'])
                 for k, rs in runs.items()}
    cpu_ms = {k: s['apache_cpu_us'] / 1000 for k, s in summaries.items() if 'apache_cpu_us' in s}


    def ratio(a, b):
        """a/b by requests/s, and by the inverse of CPU per request."""
        if a not in summaries or b not in summaries:
            return None, None
        by_cpu = cpu_ms[b] / cpu_ms[a] if a in cpu_ms and b in cpu_ms else None
        return summaries[a]['rps'] / summaries[b]['rps'], by_cpu
    print()
    h.table(['', 'endpoint', 'req/s', 'x F', 'CPU ms/req', 'x F by CPU', 'p50 ms', 'p99 ms',
             'spread'],
            [[k, h.CGI_WHAT[k], '%.1f' % s['rps'], h.figure(ratio(k, 'F')[0], '%.2f'),
              h.figure(cpu_ms.get(k), '%.2f'), h.figure(ratio(k, 'F')[1], '%.2f'),
              '%.1f' % s['p50_ms'], '%.1f' % s['p99_ms'], '%.0f%%' % (s['spread'] * 100)]
             for k, s in summaries.items()], left=2)
    print('CPU ms/req: Apache and its CGI processes per request; medians over the rounds.')
    print('\nratios of requests/s [and the inverse ratio of CPU per request]:')
    found = {}
    for a, b in [(a, b) for a, b, _ in TARGETS] + list(RATIOS):
        found['%s/%s' % (a, b)] = by_rps, by_cpu = ratio(a, b)
        if by_rps is not None:
            print('  %s/%s = %.3f  [by CPU: %s]' % (a, b, by_rps, h.figure(by_cpu, '%.3f')))
    noise = h.noise(runs)
    checks = [('%s/%s >= %.2f' % (a, b, least), found['%s/%s' % (a, b)][0] >= least)
              for a, b, least in TARGETS if found['%s/%s' % (a, b)][0] is not None]
    errors = sum(r['non2xx'] + r['socket_errors'] for rs in runs.values() for r in rs)
    checks.append(('no non-2xx responses or socket errors', not errors))
    status = h.verdict(checks)
    h.write_results('cgi', {
        'settings': {'duration': args.duration, 'rounds': args.rounds,
                     'connections': args.connections, 'python': python, 'venv': args.venv},
        'versions': {'apache2': h.version_of([h.find('apache2'), '-v'])},
        'cpu_accounting': cpu.path if cpu else None, 'summary': summaries,
        'ratios': {k: {'rps': v[0], 'cpu': v[1]} for k, v in found.items()},
        'checks': checks, 'noise': noise, 'runs': runs})
    return status if args.check else 0


if __name__ == '__main__':
    h.run(main)

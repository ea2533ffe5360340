#!/usr/bin/env python3
"""What the scoreboard costs a request: instructions, counted by callgrind.

A keep-alive FastCGI request (the shape nginx sends with fastcgi_keep_conn
on) served over a socketpair by a real ServedConnection with a real
Worker's request callback, a hello-world application, N requests in one
process; the client's side runs in the same process and is counted too, so
the share printed is a lower bound of the server's. Each case runs under
``valgrind --tool=callgrind`` twice, with --small and --large requests:
the difference over the difference in requests is what one request costs,
start-up cancelled out.

Cases: ``none`` (no scoreboard record: nothing is told of the requests)
and ``scoreboard`` (the record every worker under an arbiter has: the start
time in shared memory, the request's PARAMS and end times in the worker's
lists, copied by its publisher thread off the request's path; the thread's
CPU clock read at both ends).

Exit status: 0 when the scoreboard costs under --budget percent (default
2) of a request, 1 when not, 2 when valgrind is missing.
"""

import argparse
import os
import re
import subprocess
import sys

import harness as h

REQUEST_LOOP = r'''
import os, socket, sys
sys.path.insert(0, os.environ['GATEWAY_CODE'])
from gateway.fastcgi.client import RecordReader, cgi_params, encode_request
from gateway.fastcgi.config import Config
from gateway.fastcgi.connection import ServedConnection
from gateway.fastcgi.scoreboard import Scoreboard
from gateway.fastcgi.worker import Worker, server_values

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
    return [b'hello']

config = Config(workers=1)
record = Scoreboard(4, 1).claim(1) if os.environ['CASE'] == 'scoreboard' else None
ours, theirs = socket.socketpair()
worker = Worker([], app, config, heartbeat=record)
conn = ServedConnection(ours, app, config, server_values(config, 1))
conn.on_request = worker._on_request[0]
request = encode_request(1, cgi_params('/hello', query='x=1'), keep_conn=True)
reader = RecordReader()
for _ in range(int(os.environ['REQUESTS'])):
    theirs.sendall(request)
    conn.handle_readable()
    ended = False
    while not ended:
        ended = any(r.type == 3 for r in reader.feed(theirs.recv(65536)))
'''

COLLECTED = re.compile(rb'Collected : (\d+)')


def instructions(script, case, requests):
    env = dict(os.environ, GATEWAY_CODE=h.REPO, CASE=case, REQUESTS=str(requests))
    done = subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null',
                           sys.executable, script], env=env, capture_output=True, timeout=900)
    found = COLLECTED.search(done.stderr)
    if done.returncode or not found:
        raise h.BenchError('callgrind failed: ' + done.stderr.decode(errors='replace')[-500:])
    return int(found.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--small', type=int, default=200, metavar='N')
    parser.add_argument('--large', type=int, default=1200, metavar='N')
    parser.add_argument('--budget', type=float, default=2.0, metavar='PERCENT')
    args = parser.parse_args()
    h.require(['valgrind'])
    print('machine: %s' % h.machine_line())
    per_request = {}
    with h.workdir('scoreboard-cost-') as work:
        script = os.path.join(work, 'requests.py')
        with open(script, 'w') as f:
            f.write(REQUEST_LOOP)
        for case in ('none', 'scoreboard'):
            small = instructions(script, case, args.small)
            large = instructions(script, case, args.large)
            per_request[case] = (large - small) / (args.large - args.small)
            print('%-10s %9.0f instructions per request' % (case, per_request[case]), flush=True)
    extra = per_request['scoreboard'] - per_request['none']
    share = 100 * extra / per_request['none']
    print('the scoreboard: %+.0f instructions per request, %.2f%%' % (extra, share))
    status = h.verdict([('under %g%% of a request' % args.budget, share < args.budget)])
    h.write_results('scoreboard_cost', {'settings': vars(args), 'per_request': per_request,
                                        'extra': extra, 'percent': share,
                                        'passed': status == 0})
    return status


if __name__ == '__main__':
    h.run(main)

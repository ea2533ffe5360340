#!/usr/bin/env python3
"""What one FastCGI request costs a worker, in counts that hold on a shared machine.

A request as nginx sends it with fastcgi_keep_conn on (BEGIN_REQUEST with
FCGI_KEEP_CONN, the variables of nginx/app-fastcgi.conf with Debian's
fastcgi_params, the empty PARAMS and STDIN records, in one write) is sent
again and again over one connection to `gateway fastcgi APP --workers 0`,
the serving loop of a worker in a process of its own; every answer is
checked against the first.

  instructions  the server under valgrind --tool=callgrind, its counters
                zeroed after a warm-up and dumped after --requests
                requests: user-space instructions per request, the same from
                one run to the next whatever else the machine does (the
                kernel's share, the system calls, is not counted), and the
                C functions they are spent in
  opcodes       the same loop in this process under a tracer: Python
                bytecodes per request, by function (where the instructions
                go, in the code's own terms)

Results: bench/results/per_request-UTC.json. Exit status 2 when valgrind
(apt-get install valgrind) or an application's packages are missing.
"""

import collections
import os
import re
import socket
import subprocess
import sys
import threading
import time

import harness as h

sys.path.insert(0, h.REPO)
from gateway.fastcgi import client as fcgi  # noqa: E402

APPS = {'hello': ('hello:app', '/app/', '/'),
        'flask': ('flask_app:app', '/app/users/42', '/users/42')}
WARM_UP = 200
_END_REQUEST = bytes([1, fcgi.FCGI_END_REQUEST, 0, 1, 0, 8, 0, 0])


def nginx_request(uri, path_info):
    """The bytes nginx 1.22 sends for GET *uri* from wrk (Host only), as
    nginx/app-fastcgi.conf and Debian's fastcgi_params configure it."""
    params = {
        'QUERY_STRING': '', 'REQUEST_METHOD': 'GET', 'CONTENT_TYPE': '', 'CONTENT_LENGTH': '',
        'SCRIPT_NAME': '/app', 'REQUEST_URI': uri, 'DOCUMENT_URI': uri,
        'DOCUMENT_ROOT': '/usr/share/nginx/html', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REQUEST_SCHEME': 'http', 'GATEWAY_INTERFACE': 'CGI/1.1',
        'SERVER_SOFTWARE': 'nginx/1.22.1', 'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '51680',
        'REMOTE_USER': '', 'SERVER_ADDR': '127.0.0.1', 'SERVER_PORT': '8080',
        'SERVER_NAME': '', 'REDIRECT_STATUS': '200', 'HTTP_HOST': '127.0.0.1',
        'PATH_INFO': path_info,
    }
    return fcgi.encode_request(1, params, keep_conn=True)


def drive(address, request, count, first=None):
    """Send *request* *count* times over one connection, each after the
    answer to the one before; the last answer (checked against *first*)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection(address, timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise h.BenchError('the server at %s:%d never listened' % address)
            time.sleep(0.05)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answer = b''
        for _ in range(count):
            sock.sendall(request)
            answer = b''
            while _END_REQUEST not in answer[-16:]:
                data = sock.recv(1 << 16)
                if not data:
                    raise h.BenchError('the server closed the connection')
                answer += data
            if first is not None and answer != first:
                raise h.BenchError('answers differ: %r, then %r' % (first[:200], answer[:200]))
    return answer


def server_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([h.REPO, h.APPS]),
                PYTHONDONTWRITEBYTECODE='1')


def instructions(python, spec, request, count, directory):
    """User-space instructions per request, and the C functions that spend
    the most of them (their own instructions, per request)."""
    port = h.free_port()
    out = os.path.join(directory, 'callgrind.out')
    argv = [h.find('valgrind'), '--tool=callgrind', '--callgrind-out-file=' + out + '.%p',
            python, '-m', 'gateway', 'fastcgi', spec, '--bind', '127.0.0.1:%d' % port,
            '--workers', '0', '--log-level', 'warning']
    # The pyc files made first, so that no run pays for compiling.
    subprocess.run([python, '-m', 'compileall', '-q', os.path.join(h.REPO, 'gateway')],
                   check=True)
    server = h.Group('callgrind', argv, directory, env=dict(server_env(),
                                                             PYTHONDONTWRITEBYTECODE=''))
    try:
        first = drive(('127.0.0.1', port), request, WARM_UP)
        control = h.find('callgrind_control')
        subprocess.run([control, '-z', str(server.pid)], check=True, capture_output=True)
        drive(('127.0.0.1', port), request, count, first)
        subprocess.run([control, '-d', str(server.pid)], check=True, capture_output=True)
    finally:
        h.stop(server)
    dumps = [name for name in os.listdir(directory)
             if re.fullmatch(r'callgrind\.out\.%d\.\d+' % server.pid, name)]
    if not dumps:
        raise h.BenchError('callgrind wrote no dump:\n' + server.tail())
    own = own_costs(os.path.join(directory, sorted(dumps)[0]))
    total = sum(own.values())
    return total / count, [(name, cost / count) for name, cost in own.most_common(15)]


def own_costs(path):
    """Each function's own instructions in a callgrind dump (the costs of
    the calls it makes left out)."""
    names, own = {}, collections.Counter()
    function, after_call = None, False
    with open(path) as f:
        for line in f:
            if line.startswith(('fn=', 'cfn=')):
                number, _, name = line.split('=', 1)[1].strip().partition(' ')
                if name:
                    names[number] = name
                if line.startswith('fn='):
                    function = names.get(number, number)
            elif line.startswith('calls='):
                after_call = True
            elif line[:1].isdigit() or line[:1] in '+-*':
                if after_call:
                    after_call = False      # the inclusive cost of that call
                    continue
                fields = line.split()
                if len(fields) > 1 and function is not None:
                    own[function] += int(fields[1])
    return own


def opcodes(spec, request, count):
    """Python bytecodes per request, by function, with the server's loop
    run in this process under a tracer."""
    from gateway.fastcgi.config import Config
    from gateway.fastcgi.worker import Worker
    sys.path.insert(0, h.APPS)
    counts = collections.Counter()

    def trace(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == 'opcode':
            code = frame.f_code
            counts[code.co_filename, code.co_name] += 1
        return trace

    def serve(requests):
        listener = socket.create_server(('127.0.0.1', 0))
        address = listener.getsockname()
        config = Config(app=spec, workers=0, binds=['%s:%d' % address])
        worker = Worker([listener], config.load_application(), config)
        failed = []

        def client():
            try:
                drive(address, request, requests)
            except BaseException as error:
                failed.append(error)
            finally:
                worker.stop(graceful=False)
        threading.Thread(target=client, daemon=True).start()
        counts.clear()
        sys.settrace(trace)
        try:
            worker.run()
        finally:
            sys.settrace(None)
            listener.close()
        if failed:
            raise h.BenchError('the client failed: %s' % failed[0])
        return collections.Counter(counts)

    # The client thread's own bytecodes and the start and stop are the same
    # in both runs: the difference is the requests'.
    # (The client runs untraced: settrace holds for the thread that set it.)
    short, long = serve(WARM_UP), serve(WARM_UP + count)
    per_request = {key: (long[key] - short.get(key, 0)) / count for key in long}
    total = sum(per_request.values())
    top = sorted(per_request.items(), key=lambda item: -item[1])[:25]
    return total, [('%s:%s' % (os.path.relpath(path, h.REPO) if path.startswith(h.REPO)
                                else os.path.basename(path), name), n) for (path, name), n in top]


def gateway_commit():
    done = subprocess.run(['git', '-C', h.REPO, 'rev-parse', '--short', 'HEAD'],
                          capture_output=True, text=True)
    return done.stdout.strip() or '?'


def main():
    parser = h.arguments(__doc__, 0, 0, 1)
    parser.add_argument('--apps', default='hello', help='comma-separated: %s (default: hello)'
                        % ', '.join(APPS))
    parser.add_argument('--requests', type=int, default=2000, metavar='N',
                        help='requests counted, after %d to warm up (default: %%(default)s)'
                        % WARM_UP)
    parser.add_argument('--python', default=sys.executable,
                        help='the interpreter the server runs under valgrind (default: this one)')
    parser.add_argument('--skip-instructions', action='store_true',
                        help='only count bytecodes (no valgrind)')
    args = parser.parse_args()
    apps = args.apps.split(',')
    if not set(apps) <= set(APPS) or args.requests < 1:
        parser.error('--apps takes %s; --requests at least 1' % ', '.join(APPS))
    if not args.skip_instructions:
        h.require(['valgrind', 'callgrind_control'])
    print('machine: %s' % h.machine_line())
    print('%d requests over one connection (keep-conn), after %d to warm up'
          % (args.requests, WARM_UP))
    results = {}
    with h.workdir('per_request', args.keep) as directory:
        for app in apps:
            spec, uri, path_info = APPS[app]
            if app == 'flask':
                h.require(['flask'])
            request = nginx_request(uri, path_info)
            result = results[app] = {'app': spec, 'uri': uri}
            if not args.skip_instructions:
                per, top = instructions(args.python, spec, request, args.requests, directory)
                result.update(instructions=per, instructions_by_c_function=top)
                print('\n%s (GET %s): %s instructions a request'
                      % (app, uri, format(round(per), ',')))
                h.table(['C function', 'instructions a request'],
                        [(name, format(round(n), ',')) for name, n in top[:10]])
            total, top = opcodes(spec, request, min(args.requests, 1000))
            result.update(opcodes=total, opcodes_by_function=top)
            print('\n%s: %.0f Python bytecodes a request' % (app, total))
            h.table(['function', 'bytecodes a request'], [(name, '%.0f' % n) for name, n in top])
    h.write_results('per_request', {'gateway': gateway_commit(), 'requests': args.requests,
                                    'warm_up': WARM_UP, 'python': args.python,
                                    'results': results})
    return 0


if __name__ == '__main__':
    h.run(main)

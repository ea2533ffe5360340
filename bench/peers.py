#!/usr/bin/env python3
"""The gateway against what users pick instead, side by side in one run.

Every backend serves the same application with 2 processes behind one front:
nginx (1 worker) or Apache (mpm_event, 1 child). Each measurement starts the
backend and its front afresh, checks the exact answer, warms up for a
second, then loads the front with wrk -t1 -c32 while reading the CPU time of
the backend's processes and of the front's; the backends take turns round
by round, in an order that rotates.

  gateway-tcp        gateway fastcgi over TCP, nginx fastcgi_keep_conn off
  gateway-tcp-ka     the same, fastcgi_keep_conn on and an upstream keepalive pool
  gateway-unix       gateway fastcgi over a unix socket, keep_conn off
  gateway-unix-ka    the same, keep_conn on and a pool
  uwsgi              uWSGI, its own protocol (uwsgi_pass)
  uwsgi-fastcgi      uWSGI --fastcgi-socket (it closes every connection)
  granian            granian --interface wsgi, HTTP (proxy_pass, keepalive)
  gunicorn           gunicorn's sync worker, HTTP (proxy_pass)
  flup               flup's prefork FastCGI server (keep_conn off: a pooled
                     connection would hold a child for good)
  apache-gateway     Apache mod_proxy_fcgi, enablereuse=on (the shipped
                     apache/proxy-fcgi.conf), to gateway fastcgi over TCP
  mod_wsgi           Apache mod_wsgi in daemon mode, processes=2 (threads:
                     its default, 15)

Applications: hello (bench/apps/hello.py, GET /app/) and flask
(bench/apps/flask_app.py, GET /app/users/42: a route with a parameter, a
JSON answer). What is not installed is named with its install command and
left out of the table; the exit status is 0 only when everything ran
without an error. Results: bench/results/peers-UTC.json and a chart beside
it, peers-UTC.png.
"""

import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections import namedtuple

import harness as h

APPS = {
    # name: (WSGI spec, URL path, what it needs)
    'hello': ('hello:app', '/app/', []),
    'flask': ('flask_app:app', '/app/users/42', ['flask']),
}
WORKERS = 2
POOL = 32
KEEPALIVE = 'keepalive_requests 1000000;'    # wrk's connections stay open

GATEWAY = '{py} -m gateway fastcgi {app} --bind {upstream} --workers 2 --log-level warning'
UWSGI = ('{uwsgi} --{protocol}-socket {address} --master --processes 2 --module {app} '
         '--need-app --disable-logging --die-on-term --chmod-socket=666')
GRANIAN = ('{py} -m granian --interface wsgi --workers 2 --host 127.0.0.1 --port {port} '
           '--log-level warning {app}')
GUNICORN = '{py} -m gunicorn --workers 2 --worker-class sync --bind {upstream} {app}'
FLUP = ('{py} -c "from flup.server.fcgi_fork import WSGIServer; from {module} import app; '
        'WSGIServer(app, bindAddress=(\'127.0.0.1\', {port}), minSpare=2, maxSpare=2, '
        'maxChildren=2).run()"')

UWSGI_SITE = '''
    upstream backend {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:PORT;
        %s
        location ~ ^/app(/.*)?$ {{
            include /etc/nginx/uwsgi_params;
            uwsgi_param SCRIPT_NAME /app;
            uwsgi_param PATH_INFO $1;
            uwsgi_pass backend;
        }}
    }}''' % KEEPALIVE
HTTP_SITE = '''
    upstream backend {{ server {upstream}; keepalive %d; }}
    server {{
        listen 127.0.0.1:PORT;
        %s
        location /app/ {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}''' % (POOL, KEEPALIVE)
# One child of 64 threads, as nginx runs one worker.
APACHE_MPM = '''
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxKeepAliveRequests 0
'''
PROXY_FCGI_SITE = APACHE_MPM + 'Include {repo}/apache/proxy-fcgi.conf\n'
MOD_WSGI_SITE = APACHE_MPM + '''
WSGISocketPrefix {dir}/wsgi
WSGIDaemonProcess bench processes=2 display-name=%{{GROUP}} home={apps} python-path={python_path}
WSGIScriptAlias /app {apps}/{module}.py process-group=bench application-group=%{{GLOBAL}}
WSGICallableObject app
<Directory {apps}>
    Require all granted
</Directory>
'''


def fastcgi(keep_conn):
    return lambda upstream, **fields: h.fastcgi_site(upstream, keep_conn, POOL, KEEPALIVE)


Backend = namedtuple('Backend', 'name front transport needs start site')
BACKENDS = [
    Backend('gateway-tcp', 'nginx', 'tcp', [], GATEWAY, fastcgi(False)),
    Backend('gateway-tcp-ka', 'nginx', 'tcp', [], GATEWAY, fastcgi(True)),
    Backend('gateway-unix', 'nginx', 'unix', [], GATEWAY, fastcgi(False)),
    Backend('gateway-unix-ka', 'nginx', 'unix', [], GATEWAY, fastcgi(True)),
    Backend('uwsgi', 'nginx', 'tcp', ['uwsgi'], UWSGI.replace('{protocol}', 'uwsgi'),
            UWSGI_SITE.format),
    Backend('uwsgi-fastcgi', 'nginx', 'tcp', ['uwsgi'], UWSGI.replace('{protocol}', 'fastcgi'),
            fastcgi(False)),
    Backend('granian', 'nginx', 'tcp', ['granian'], GRANIAN, HTTP_SITE.format),
    Backend('gunicorn', 'nginx', 'tcp', ['gunicorn'], GUNICORN, HTTP_SITE.format),
    Backend('flup', 'nginx', 'tcp', ['flup'], FLUP, fastcgi(False)),
    Backend('apache-gateway', 'apache', 'tcp', ['apache2', 'mod_proxy_fcgi'], GATEWAY,
            PROXY_FCGI_SITE.format),
    Backend('mod_wsgi', 'apache', 'tcp', ['apache2', 'mod_wsgi'], None, MOD_WSGI_SITE.format),
]
BY_NAME = {b.name: b for b in BACKENDS}
# The gateway against each kind of peer: (ours, theirs).
RATIOS = [('gateway-tcp-ka', 'granian'), ('gateway-unix-ka', 'granian'),
          ('gateway-tcp', 'uwsgi'), ('gateway-tcp-ka', 'uwsgi'), ('gateway-unix-ka', 'uwsgi'),
          ('apache-gateway', 'mod_wsgi')]
FIGURES = ['rps', 'backend_cpu_us', 'front_cpu_us', 'p50_ms', 'p99_ms', 'rss_mib']


def package_version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def mod_wsgi_python():
    """The Python version mod_wsgi embeds ("3.11"), from what it links."""
    out = subprocess.run(['ldd', h.find('mod_wsgi')], capture_output=True, text=True,
                         timeout=30).stdout
    found = re.search(r'libpython(\d+\.\d+)', out)
    return found.group(1) if found else '?'


def skipped(app, backend):
    """Why *backend* cannot serve *app* here, or None."""
    lacking = h.missing(backend.needs + APPS[app][2])
    if not lacking and backend.name == 'mod_wsgi' and APPS[app][2]:
        # Its Python imports this interpreter's site-packages: same version only.
        here = '%d.%d' % sys.version_info[:2]
        if mod_wsgi_python() != here:
            lacking.append('Flask for mod_wsgi\'s Python %s (this one is %s)'
                           % (mod_wsgi_python(), here))
    return 'missing: ' + '; '.join(lacking) if lacking else None


def versions():
    bin_version = {name: h.version_of([h.find(name), flag]) for name, flag in
                   (('nginx', '-v'), ('apache2', '-v'), ('wrk', '-v'), ('uwsgi', '--version'))
                   if h.find(name)}
    found = {name: package_version(name) for name in ('granian', 'gunicorn', 'flup', 'flask')}
    commit = subprocess.run(['git', '-C', h.REPO, 'describe', '--always', '--dirty'],
                            capture_output=True, text=True, timeout=30).stdout.strip()
    found.update(bin_version, gateway='%s (%s)' % (package_version('gateway'), commit))
    if h.find('mod_wsgi'):
        found['mod_wsgi'] = '%s, Python %s' % tuple(h.version_of(
            ['dpkg-query', '-W', '-f', '${Version}', package]) for package in
            ('libapache2-mod-wsgi-py3', 'libpython' + mod_wsgi_python()))
    return found


def expected_body(app):
    if app == 'hello':
        import hello
        return hello.BODY
    import flask_app
    return flask_app.app.test_client().get(APPS[app][1][len('/app'):]).data


def wsgi_daemons(apache):
    return [pid for pid in h.descendants(apache.process.pid)
            if h.command_line(pid).startswith('(wsgi:')]


def measure(args, wrk, work, app, backend, body):
    """One measurement of *backend* serving *app*: wrk's figures, CPU per
    request of the backend and the front, and the workers' RSS."""
    spec, path, _ = APPS[app]
    directory = tempfile.mkdtemp(prefix='%s-%s-' % (app, backend.name), dir=work)
    port = h.free_port()
    address = os.path.join(directory, 'backend.sock') if backend.transport == 'unix' else \
        '127.0.0.1:%d' % port
    flask = h.find('flask')
    fields = dict(py=sys.executable, uwsgi=h.find('uwsgi'), app=spec, module=spec.split(':')[0],
                  apps=h.APPS, repo=h.REPO, dir=directory, port=port, address=address,
                  upstream=('unix:' if backend.transport == 'unix' else '') + address,
                  python_path=os.pathsep.join(
                      [h.APPS] + [os.path.dirname(os.path.dirname(flask))] * bool(flask)))
    group = front = None
    try:
        if backend.start:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([h.REPO, h.APPS]))
            group = h.Group(backend.name, shlex.split(backend.start.format(**fields)),
                            directory, env=env, cwd=h.APPS)
        if backend.front == 'nginx':
            front = h.start_server(h.Nginx(directory), backend.site(**fields))
        else:
            front = h.start_server(h.Apache(directory), backend.site(**fields),
                                   env={'GATEWAY_FASTCGI_URL': 'fcgi://' + address},
                                   modules=['proxy', 'proxy_fcgi'] if group else ['wsgi'])
        h.ready(front.port, path, body, *[g for g in [group] if g])
        url = 'http://127.0.0.1:%d%s' % (front.port, path)
        wrk.run(url, 1, args.connections)
        serving = group.pids if group else lambda: wsgi_daemons(front)

        def front_pids():
            theirs = set(serving())
            return [p for p in [front.process.pid] + h.descendants(front.process.pid)
                    if p not in theirs]
        result = wrk.measure(url, args.duration, args.connections, {
            'backend': lambda: h.cpu_seconds(serving()),
            'front': lambda: h.cpu_seconds(front_pids())})
        rss = [h.rss_mib(pid) for pid in (group.workers() if group else wsgi_daemons(front))]
        result.update(workers_rss_mib=rss, rss_mib=statistics.median([x for x in rss if x] or [0]))
        return result
    finally:
        if front:
            h.stop(front)
        if group:
            group.stop()


def print_table(app, results, summaries, absent):
    print('\n%s (GET %s)' % (app, APPS[app][1]))
    rows = []
    for backend in BACKENDS:
        s = summaries.get(backend.name)
        if s is None:
            if backend.name in absent:
                rows.append([backend.name, backend.front] + ['-'] * 7)
            continue
        errors = sum(r['non2xx'] + r['socket_errors'] for r in results[backend.name])
        rows.append([backend.name, backend.front, h.figure(s['rps']),
                     h.figure(s.get('backend_cpu_us')), h.figure(s.get('front_cpu_us')),
                     h.figure(s.get('p50_ms'), '%.2f'), h.figure(s.get('p99_ms'), '%.2f'),
                     h.figure(s.get('rss_mib'), '%.1f'),
                     '%.0f%%' % (s['spread'] * 100) + (' ERRORS %d' % errors if errors else '')])
    h.table(['backend', 'front', 'req/s', 'CPU us/req', 'front us/req', 'p50 ms', 'p99 ms',
             'RSS MiB', 'spread'], rows)
    for name, why in absent.items():
        print('  %s: %s' % (name, why))


def ratios(summaries):
    found = []
    for ours, theirs in RATIOS:
        if ours in summaries and theirs in summaries:
            a, b = summaries[ours], summaries[theirs]
            found.append({'ours': ours, 'theirs': theirs, 'rps': a['rps'] / b['rps'],
                          'cpu': b['backend_cpu_us'] / a['backend_cpu_us']})
    return found


def chart(path, tables, title):
    """Requests/s and CPU per request, an application a column: the gateway
    in one colour, its peers in another."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    apps = list(tables)
    fig, axes = pyplot.subplots(2, len(apps), figsize=(6.5 * len(apps), 8.5), squeeze=False)
    for column, app in enumerate(apps):
        names = [b.name for b in BACKENDS if b.name in tables[app]['summary']
                 or b.name in tables[app]['absent']][::-1]
        for row, (key, label) in enumerate((('rps', 'requests/s (more is better)'),
                                            ('backend_cpu_us', 'backend CPU µs per request '
                                             '(less is better)'))):
            axis = axes[row][column]
            values = [tables[app]['summary'].get(n, {}).get(key, 0) for n in names]
            rounds = [[r[key] for r in tables[app]['runs'].get(n, [])] or [0] for n in names]
            # The bar is the median; the whisker spans the rounds.
            whiskers = [[v - min(r) for v, r in zip(values, rounds)],
                        [max(r) - v for v, r in zip(values, rounds)]]
            colours = ['tab:blue' if 'gateway' in n else 'tab:gray' for n in names]
            axis.barh(['%s (%s)' % (n, BY_NAME[n].front) for n in names], values, color=colours,
                      xerr=whiskers, error_kw={'ecolor': 'black', 'lw': 0.8, 'capsize': 2})
            for y, (name, value, r) in enumerate(zip(names, values, rounds)):
                absent = tables[app]['absent'].get(name)
                axis.text(max(r + [value]), y, ' ' + absent.split(':')[0] if absent
                          else ' %.0f' % value, va='center', fontsize=8)
            axis.set_title('%s: %s' % (app, label), fontsize=10)
            axis.margins(x=0.15)
            axis.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot.close(fig)


def main():
    parser = h.arguments(__doc__, duration=5, rounds=3, connections=32)
    parser.add_argument('--apps', default=','.join(APPS), metavar='LIST',
                        help='applications (default: %(default)s)')
    parser.add_argument('--only', default=','.join(BY_NAME), metavar='LIST',
                        help='backends (default: all, %(default)s)')
    args = h.check_arguments(parser, parser.parse_args())
    apps = [a for a in args.apps.split(',') if a]
    names = [n for n in args.only.split(',') if n]
    unknown = [x for x in apps if x not in APPS] + [x for x in names if x not in BY_NAME]
    if unknown or not apps or not names:
        parser.error('unknown: %s' % ', '.join(unknown) if unknown else 'nothing to measure')
    h.require(['nginx', 'wrk'])
    sys.path.insert(0, h.APPS)

    absent, bodies, todo = {app: {} for app in apps}, {}, []
    for app in apps:
        for name in names:
            why = skipped(app, BY_NAME[name])
            if why:
                absent[app][name] = why
                print('%s / %s: %s' % (app, name, why))
            else:
                todo.append((app, name))
        if any(a == app for a, _ in todo):
            bodies[app] = expected_body(app)
    print('machine: %s' % h.machine_line())
    print('wrk -t1 -c%d -d%ds, %d round(s) of %d measurements, %d worker processes each'
          % (args.connections, args.duration, args.rounds, len(todo), WORKERS), flush=True)

    results = {app: {} for app in apps}
    failed = {}
    with h.workdir('peers-bench-', args.keep) as work:
        wrk = h.Wrk(work)
        for number, (app, name) in h.interleaved(todo, args.rounds):
            if (app, name) in failed:
                continue
            try:
                r = measure(args, wrk, work, app, BY_NAME[name], bodies[app])
            except h.BenchError as error:
                failed[app, name] = str(error).splitlines()[0]
                absent[app][name] = 'failed: ' + failed[app, name]
                print('round %d  %-5s %-16s FAILED: %s' % (number, app, name, error), flush=True)
                continue
            results[app].setdefault(name, []).append(r)
            print('round %d  %-5s %-16s %8.0f req/s %6.0f CPU us/req  other work %3.0f%%%s'
                  % (number, app, name, r['rps'], r['backend_cpu_us'], r['other_share'] * 100,
                     '  non-2xx %d, socket errors %d' % (r['non2xx'], r['socket_errors'])
                     if r['non2xx'] or r['socket_errors'] else ''), flush=True)

    tables = {}
    every = {}
    for app in apps:
        summaries = {name: h.summary(runs, FIGURES) for name, runs in results[app].items()
                     if (app, name) not in failed}
        tables[app] = {'summary': summaries, 'absent': absent[app], 'ratios': ratios(summaries),
                       'runs': results[app]}
        every.update({'%s/%s' % (app, n): rs for n, rs in results[app].items()})
        print_table(app, results[app], summaries, absent[app])
        if tables[app]['ratios']:
            print('ratios (above 1: the gateway serves more, or spends less CPU per request):')
        for r in tables[app]['ratios']:
            print('  %-15s / %-9s  req/s %5.2fx   CPU per request %5.2fx'
                  % (r['ours'], r['theirs'], r['rps'], r['cpu']))
    print('\nCPU us/req: user and system time of the backend\'s processes (supervisor and\n'
          'workers) per request; front us/req: the same for nginx or Apache. RSS: median\n'
          'of the worker processes after the run. Medians over the rounds.')
    found = h.noise(every)
    errors = any(r['non2xx'] or r['socket_errors'] for rs in every.values() for r in rs)
    path = h.write_results('peers', {
        'settings': {'duration': args.duration, 'rounds': args.rounds,
                     'connections': args.connections, 'workers': WORKERS, 'pool': POOL},
        'versions': versions(), 'noise': found, 'apps': tables})
    if h.find('matplotlib'):
        title = '%s%s\n%s\nbars: the median of the rounds, whiskers: their range; blue: the ' \
            'gateway, grey: its peers' % (h.command(), '   NOISY' if found['noisy'] else '',
                                          h.machine_line())
        chart(path[:-len('.json')] + '.png', tables, title)
        print('chart:   %s' % os.path.relpath(path[:-len('.json')] + '.png'))
    else:
        print('no chart: ' + h.missing(['matplotlib'])[0])
    complete = not failed and not errors and not any(absent.values())
    return 0 if complete else 1


if __name__ == '__main__':
    h.run(main)

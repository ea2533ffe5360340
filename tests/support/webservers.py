"""Real Apache, nginx, lighttpd, HAProxy, Caddy and h2o instances on
loopback, for the tests and the benchmarks (bench/harness.py) that need them.

Each instance gets a private configuration, pid file and logs in a temporary
directory and listens on a free 127.0.0.1 port. Apache started by root
would switch its children to another user, who cannot reach a Python under
/root; run inside a user namespace instead, it stays the invoking user.
"""

import http.client
import os
import re
import shutil
import socket
import subprocess

from support.helpers import REPO, wait_until  # noqa: F401 (re-exported for front tests)

APACHE_MODULES = '/usr/lib/apache2/modules'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def port_open(port, host='127.0.0.1'):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_request(port, method, path, body=None, headers=None, timeout=30):
    """(status, headers dict with lower-case names, body bytes)."""
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None and not any(k.lower() == 'transfer-encoding' for k in headers or {}):
            connection.putheader('Content-Length', str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


class Server:
    """A web server process with its own directory; stop() returns its error log."""

    name = 'server'

    def __init__(self, directory):
        self.directory = str(directory)
        self.port = free_port()
        self.process = None

    def start(self, command, env=None):
        self.output = open(os.path.join(self.directory, 'output.log'), 'wb')
        self.process = subprocess.Popen(command, stdout=self.output, stderr=subprocess.STDOUT,
                                        env=env, cwd=self.directory)

        def up():
            if self.process.poll() is not None:
                raise RuntimeError(f'{self.name} exited with {self.process.returncode}:\n'
                                   + self.log())
            return port_open(self.port)
        wait_until(up, what=f'{self.name} listening on port {self.port}')
        return self

    def log(self):
        text = []
        for name in ('output.log', 'error.log'):
            path = os.path.join(self.directory, name)
            if os.path.exists(path):
                with open(path, errors='replace') as stream:
                    text.append(stream.read())
        return '\n'.join(text)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process:
            self.output.close()
        return self.log()

    def request(self, method, path, body=None, headers=None):
        return http_request(self.port, method, path, body, headers)


def _as_invoking_user(command):
    if os.geteuid() == 0 and shutil.which('unshare'):
        return ['unshare', '--user'] + command
    return command


class Apache(Server):
    name = 'apache2'

    def start(self, site, env=None, modules=()):
        modules = ['mpm_event', 'authz_core', 'alias', 'cgid', 'env', 'headers', 'mime',
                   'setenvif', *modules]
        config = os.path.join(self.directory, 'httpd.conf')
        loads = '\n'.join(f'LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so'
                          for name in modules)
        with open(config, 'w') as stream:
            stream.write(f"""\
ServerRoot "{self.directory}"
ServerName localhost
Listen 127.0.0.1:{self.port}
PidFile "{self.directory}/httpd.pid"
ErrorLog "{self.directory}/error.log"
LogLevel warn
ScriptSock "{self.directory}/cgid.sock"
DefaultRuntimeDir "{self.directory}"
Mutex file:{self.directory}
TypesConfig /etc/mime.types
{loads}
DocumentRoot "{self.directory}"
{site}
""")
        environment = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), **(env or {})}
        return super().start(_as_invoking_user(['apache2', '-f', config, '-DFOREGROUND']),
                             environment)


def _with_port(config, port):
    # PORT alone, not inside SERVER_PORT
    return re.sub(r'\bPORT\b', str(port), config)


class Nginx(Server):
    name = 'nginx'

    def start(self, http_block):
        config = os.path.join(self.directory, 'nginx.conf')
        temp = os.path.join(self.directory, 'temp')
        os.makedirs(temp, exist_ok=True)
        with open(config, 'w') as stream:
            stream.write(f"""\
worker_processes 1;
daemon off;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    fastcgi_temp_path {temp}/fastcgi;
    proxy_temp_path {temp}/proxy;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{_with_port(http_block, self.port)}
}}
""")
        return super().start(_as_invoking_user(['nginx', '-c', config, '-p', self.directory]))


def repo_file(*parts):
    return os.path.join(REPO, *parts)


def _text(path):
    with open(path) as stream:
        return stream.read()


def _config_without(directory, parts, line=None):
    """The repository's file *parts*, or when *line* is given a copy of it in
    *directory* without the one line that holds *line* (a setting a test
    turns off, to see what the web server does without)."""
    path = repo_file(*parts)
    if line is None:
        return path
    text = _text(path)
    kept = [each for each in text.splitlines(True) if line not in each]
    assert len(kept) == len(text.splitlines()) - 1, f'{line!r}: not exactly one such line'
    path = os.path.join(directory, parts[-1])
    with open(path, 'w') as stream:
        stream.write(''.join(kept))
    return path


def _server_env(**variables):
    return {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), **variables}


# The four servers below mount the application at /app with the files of
# their folder in this repository (lighttpd/, haproxy/, caddy/, h2o/); only
# where they listen and where the FastCGI server is are the tests' own.

class Lighttpd(Server):
    """lighttpd/app-fastcgi.conf, included as the image's lighttpd.conf does:
    lighttpd starts ``GATEWAY_CGI fastcgi`` itself, its socket on fd 0."""

    name = 'lighttpd'

    def start(self, env):
        config = os.path.join(self.directory, 'lighttpd.conf')
        with open(config, 'w') as stream:
            stream.write(f"""\
var.gateway_config_dir = "{repo_file('lighttpd')}"
var.gateway_run_dir = "{self.directory}"
server.modules = ( "mod_magnet", "mod_fastcgi" )
server.bind = "127.0.0.1"
server.port = {self.port}
server.document-root = "{self.directory}"
server.errorlog = "{self.directory}/error.log"
server.upload-dirs = ( "{self.directory}" )
include "{repo_file('lighttpd', 'app-fastcgi.conf')}"
""")
        return super().start(['lighttpd', '-D', '-f', config], _server_env(**env))


class HAProxy(Server):
    """haproxy/haproxy.cfg as it is, with *fastcgi* ("HOST:PORT" or a unix
    socket's path) for GATEWAY_FASTCGI_ADDRESS; *without* names a line of it
    left out (the path-info one, to see what HAProxy does without)."""

    name = 'haproxy'

    def start(self, fastcgi, without=None):
        config = _config_without(self.directory, ('haproxy', 'haproxy.cfg'), without)
        return super().start(['haproxy', '-db', '-f', config], _server_env(
            GATEWAY_HTTP_ADDRESS=f'127.0.0.1:{self.port}', GATEWAY_FASTCGI_ADDRESS=fastcgi))


class Caddy(Server):
    """caddy/app-fastcgi.caddy imported as caddy/Caddyfile does, with
    *fastcgi* ("HOST:PORT" or "unix//PATH"); *without* as for HAProxy."""

    name = 'caddy'

    def start(self, fastcgi, without=None):
        snippet = _config_without(self.directory, ('caddy', 'app-fastcgi.caddy'), without)
        config = os.path.join(self.directory, 'Caddyfile')
        with open(config, 'w') as stream:
            stream.write(f"""\
{{
\tadmin off
\tauto_https off
}}
:{self.port} {{
\tbind 127.0.0.1
\troute {{
\t\timport {snippet}
\t\trespond 404
\t}}
}}
""")
        return super().start(['caddy', 'run', '--config', config, '--adapter', 'caddyfile'],
                             _server_env(GATEWAY_FASTCGI_ADDRESS=fastcgi,
                                         XDG_DATA_HOME=self.directory,
                                         XDG_CONFIG_HOME=self.directory))


class H2O(Server):
    """h2o/h2o.conf with the changes the image's entrypoint makes (its
    fastcgi.connect line, *connect*: e.g. "{host: 127.0.0.1, port: 9000,
    type: tcp}") and those a test's place needs (where it listens, logs and
    buffers)."""

    name = 'h2o'

    def start(self, connect):
        lines = []
        for line in _text(repo_file('h2o', 'h2o.conf')).splitlines():
            key = line.strip().partition(':')[0]
            if key == 'listen':
                line = f'listen: {{host: 127.0.0.1, port: {self.port}}}'
            elif key == 'error-log':
                line = f'error-log: {self.directory}/error.log'
            elif key == 'access-log':
                line = f'access-log: {self.directory}/access.log'
            elif key == 'temp-buffer-path':
                line = f'temp-buffer-path: {self.directory}'
            elif key == 'fastcgi.connect':
                line = f'{line.partition(":")[0]}: {connect}'
            lines.append(line)
        config = os.path.join(self.directory, 'h2o.conf')
        with open(config, 'w') as stream:
            stream.write('\n'.join(lines) + '\n')
        return super().start(['h2o', '-c', config], _server_env())


def fastcgi_site(upstream, keep_conn=True, keepalive=8, extra=''):
    """An http block for Nginx.start(): the application at /app through the
    shipped nginx/app-fastcgi.conf, passed to *upstream* ("HOST:PORT" or
    "unix:PATH"), with *extra* directives in the server block."""
    return f"""
    upstream gateway_fastcgi {{
        server {upstream};
        keepalive {keepalive};
        keepalive_timeout 50s;
    }}
    server {{
        listen 127.0.0.1:PORT;
        fastcgi_keep_conn {'on' if keep_conn else 'off'};
        {extra}
        include {repo_file('nginx', 'app-fastcgi.conf')};
    }}
"""


class FastCGIBehindNginx:
    """``gateway fastcgi ARGS`` on a loopback port with a real nginx in
    front: ``server`` (support.fcgi_client.ServerProcess: its log, its workers),
    ``nginx`` (Nginx) and ``request()`` through nginx. A context manager
    that stops both."""

    def __init__(self, directory, args, keep_conn=True, keepalive=8, extra='', env=None):
        from support.fcgi_client import ServerProcess, server_env
        self.server = ServerProcess(['--bind', '127.0.0.1:0', *args],
                                    env=server_env(**(env or {})))
        self.nginx = None
        try:
            host, port = self.server.address()
            self.nginx = Nginx(directory).start(
                fastcgi_site(f'{host}:{port}', keep_conn, keepalive, extra))
        except BaseException:
            self.server.kill()
            raise
        self.port = self.nginx.port

    def request(self, method, path, body=None, headers=None, timeout=30):
        return http_request(self.port, method, path, body, headers, timeout)

    def close(self):
        try:
            if self.nginx is not None:
                self.nginx.stop()
        finally:
            self.server.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

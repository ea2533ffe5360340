"""The gateway's FastCGI server behind a real nginx, with and without
connection reuse, over TCP and over a unix socket."""

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from support.helpers import REPO, TESTS, unavailable
from support.front_contract import FrontContract, environ_of
from support.webservers import Nginx, free_port, repo_file, wait_until


class FastCGIServer:
    """`python -m gateway fastcgi` in a child process."""

    def __init__(self, bind, *args, app='gateway.demo:app'):
        self.bind = bind
        env = {**os.environ, 'PYTHONPATH': f'{REPO}:{TESTS}'}
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'gateway', 'fastcgi', app, '--bind', bind, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=TESTS)
        wait_until(self.ready, what=f'the FastCGI server on {bind}')

    def ready(self):
        if self.process.poll() is not None:
            raise RuntimeError('the FastCGI server exited:\n' + self.process.stdout.read().decode())
        if self.bind.startswith('unix:'):
            family, address = socket.AF_UNIX, self.bind[5:]
        else:
            host, port = self.bind.rsplit(':', 1)
            family, address = socket.AF_INET, (host, int(port))
        with socket.socket(family) as sock:
            try:
                sock.connect(address)
                return True
            except OSError:
                return False

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return self.process.returncode, output.decode(errors='replace')


def nginx_site(upstream, keep_conn):
    return f"""
    upstream gateway_fastcgi {{
        server {upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:PORT;
        client_max_body_size 20m;
        fastcgi_keep_conn {'on' if keep_conn else 'off'};
        include {repo_file('nginx', 'app-fastcgi.conf')};
    }}
"""


@pytest.fixture(scope='module', params=[('tcp', True), ('tcp', False), ('unix', True),
                                        ('unix', False)],
                ids=['tcp-keepconn', 'tcp', 'unix-keepconn', 'unix'])
def front(request, tmp_path_factory):
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')
    transport, keep_conn = request.param
    directory = tmp_path_factory.mktemp('nginx')
    if transport == 'tcp':
        bind = f'127.0.0.1:{free_port()}'
        upstream = bind
    else:
        bind = f'unix:{directory}/fastcgi.sock'
        upstream = bind
    backend = FastCGIServer(bind, '--workers', '2')
    server = Nginx(directory).start(nginx_site(upstream, keep_conn))
    server.backend = backend
    yield server
    server.stop()
    returncode, output = backend.stop()
    assert returncode == 0, output


class TestNginxFastCGI(FrontContract):

    def test_fastcgi_variables(self, front):
        env = environ_of(front, '/app/env/x')
        assert 'GATEWAY_INTERFACE' in env and env['REQUEST_URI'] == '/app/env/x'
        assert env['wsgi.url_scheme'] == 'http'

    def test_many_requests_in_a_row(self, front):
        for index in range(200):
            status, _, body = front.request('GET', f'/app/bytes/{index}')
            assert status == 200 and len(body) == index


def test_the_application_cannot_steer_nginx_with_x_accel_headers(tmp_path):
    # With X-Accel-Redirect honoured, nginx would answer with its internal
    # location instead of the application's response.
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')
    from support.webservers import FastCGIBehindNginx
    internal = 'location /internal-only { internal; return 200 "an internal location\\n"; }'
    with FastCGIBehindNginx(tmp_path, ['apps.fcgiapps:accel_redirect', '--workers', '1'],
                            extra=internal) as front:
        status, headers, body = front.request('GET', '/app/x')
    assert (status, body) == (200, b'the application answered')
    assert not any(name.startswith('x-accel') for name in headers)

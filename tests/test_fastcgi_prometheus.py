"""The status page through nginx/status.conf, and scraped by a real
Prometheus: Prometheus -> nginx (HTTP) -> the gateway (FastCGI)."""

import json
import os
import shutil
import socket
import urllib.parse

import pytest

from support.helpers import unavailable, wait_until
from support.fcgi_client import ServerProcess, get
from support.webservers import Nginx, Server, http_request, repo_file

APP = 'apps.fcgiapps:router'


def _status_site(upstream):
    return f"""
    upstream gateway_fastcgi {{
        server {upstream};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:PORT;
        fastcgi_keep_conn on;
        include {repo_file('nginx', 'status.conf')};
        include {repo_file('nginx', 'app-fastcgi.conf')};
    }}
"""


class Prometheus(Server):
    name = 'prometheus'

    def start(self, target):
        config = os.path.join(self.directory, 'prometheus.yml')
        with open(config, 'w') as stream:
            stream.write(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gateway
    metrics_path: /status
    params:
      openmetrics: ['']
    static_configs:
      - targets: ['{target}']
""")
        super().start(['prometheus', f'--config.file={config}',
                       f'--storage.tsdb.path={self.directory}/data',
                       f'--web.listen-address=127.0.0.1:{self.port}'])
        # Listening comes before being ready (its storage opened): 503 until then.
        wait_until(lambda: http_request(self.port, 'GET', '/-/ready')[0] == 200,
                   what='Prometheus ready')
        return self

    def query(self, expression):
        status, _, body = http_request(
            self.port, 'GET', '/api/v1/query?' + urllib.parse.urlencode({'query': expression}))
        assert status == 200, body
        return json.loads(body)['data']['result']


@pytest.fixture
def gateway_behind_nginx(tmp_path):
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2',
                        '--status-path', '/status', '--ping-path', '/ping']) as server:
        host, port = server.address()
        server.wait_booted(2)
        (tmp_path / 'nginx').mkdir()
        nginx = Nginx(tmp_path / 'nginx').start(_status_site(f'{host}:{port}'))
        try:
            yield server, nginx
        finally:
            nginx.stop()


def test_nginx_exposes_status_and_ping_and_the_application_still_answers(gateway_behind_nginx):
    server, nginx = gateway_behind_nginx
    status, headers, body = nginx.request('GET', '/ping')
    assert (status, body) == (200, b'pong\n')
    status, headers, body = nginx.request('GET', '/status?openmetrics')
    assert status == 200 and headers['content-type'].startswith('application/openmetrics-text')
    assert body.endswith(b'# EOF\n')
    status, _, body = nginx.request('GET', '/status?json&full')
    assert status == 200 and json.loads(body)['pool'] == APP
    status, _, body = nginx.request('GET', '/app/hello')
    assert status == 200 and b'pool' not in body
    status, _, body = nginx.request('GET', '/status?xml')
    assert status == 400 and b'openmetrics' in body


def test_nginx_refuses_the_status_location_to_other_addresses(gateway_behind_nginx):
    # 127.0.0.2 is this machine too, but not an address status.conf allows:
    # it stands for any other client.
    _, nginx = gateway_behind_nginx
    for path in ('/status', '/ping'):
        with socket.socket() as sock:
            sock.settimeout(10)
            try:
                sock.bind(('127.0.0.2', 0))
            except OSError:
                unavailable('no 127.0.0.2 on the loopback interface')
            sock.connect(('127.0.0.1', nginx.port))
            sock.sendall(f'GET {path} HTTP/1.0\r\nHost: x\r\n\r\n'.encode())
            answer = b''
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b'HTTP/1.1 403 '), answer[:200]
    assert nginx.request('GET', '/status')[0] == 200     # from 127.0.0.1


def test_a_real_prometheus_scrapes_the_openmetrics_page(gateway_behind_nginx, tmp_path):
    if not shutil.which('prometheus'):
        unavailable('prometheus is not installed (scripts/test installs it)')
    server, nginx = gateway_behind_nginx
    for _ in range(3):
        assert nginx.request('GET', '/app/hello')[0] == 200
    (tmp_path / 'prometheus').mkdir()
    prometheus = Prometheus(tmp_path / 'prometheus').start(f'127.0.0.1:{nginx.port}')
    try:
        def scraped():
            found = prometheus.query('phpfpm_accepted_connections_total{job="gateway"}')
            return found if found and float(found[0]['value'][1]) >= 3 else None
        [sample] = wait_until(scraped, timeout=60, interval=0.5,
                              what='the sample in Prometheus: ' + prometheus.log()[-2000:])
        assert sample['metric']['pool'] == APP
        [up] = prometheus.query('up{job="gateway"}')
        assert up['value'][1] == '1'
        [total] = prometheus.query('phpfpm_total_processes{job="gateway"}')
        assert total['value'][1] == '2'
    finally:
        prometheus.stop()

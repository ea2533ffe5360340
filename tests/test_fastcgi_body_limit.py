"""--max-body-size through a real Apache mod_proxy_fcgi (apache/proxy-fcgi.conf
as it is), which applies no limit of its own to a chunked upload: it streams
the body to the server as the client sends it, with no CONTENT_LENGTH. The
connection's own rules (bytes in, records out) are test_fastcgi_connection's.
"""

import http.client
import shutil
import socket

import pytest

from gateway.fastcgi.answers import CONTENT_TOO_LARGE
from support.fcgi_client import ServerProcess, cgi_params, request, wait_until
from support.helpers import unavailable
from support.webservers import Apache, repo_file

APP = 'apps.fcgiapps:router'
LIMIT = 1 << 20


def chunked_post(port, path, body, block=64 * 1024):
    """POST *body* chunked to Apache; (status, response body). Apache may
    answer and close before the whole body is sent."""
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        try:
            sock.sendall(f'POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'
                         f'Transfer-Encoding: chunked\r\n\r\n'.encode('ascii'))
            for start in range(0, len(body), block):
                piece = body[start:start + block]
                sock.sendall(b'%x\r\n%s\r\n' % (len(piece), piece))
            sock.sendall(b'0\r\n\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


@pytest.fixture(scope='module')
def apache(tmp_path_factory):
    if not shutil.which('apache2'):
        unavailable('apache2 is not installed (scripts/test installs it)')
    server = ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                            '--max-body-size', '1M'])
    try:
        host, port = server.address()
        site = open(repo_file('apache', 'proxy-fcgi.conf')).read()
        front = Apache(tmp_path_factory.mktemp('apache')).start(
            site, env={'GATEWAY_FASTCGI_URL': f'fcgi://{host}:{port}'},
            modules=('proxy', 'proxy_fcgi'))
    except BaseException:
        server.kill()
        raise
    yield front, server
    front.stop()
    server.kill()


def test_a_chunked_body_at_the_limit_arrives_whole(apache):
    front, _ = apache
    body = bytes(range(256)) * (LIMIT // 256)
    assert chunked_post(front.port, '/app/echo', body) == (200, body)


def test_a_chunked_body_over_the_limit_is_answered_413(apache):
    front, server = apache
    mark = server.mark()
    status, _ = chunked_post(front.port, '/app/echo', bytes(LIMIT + 1))
    assert status == 413
    server.wait_for_log(r'POST /app/echo from .*: body over --max-body-size 1048576: \d+ of an '
                        r'unknown number of bytes received; answered 413 Content Too Large',
                        start=mark)
    # The worker serves on, and the connection Apache reuses (enablereuse=on)
    # is still good: no request fails on it.
    assert [front.request('GET', '/app/pid')[0] for _ in range(3)] == [200] * 3


def test_a_declared_body_over_the_limit_is_answered_413_before_the_application(apache):
    front, server = apache
    mark = server.mark()
    status, _, _ = front.request('POST', '/app/echo', body=bytes(2 * LIMIT))
    assert status == 413
    server.wait_for_log(r'CONTENT_LENGTH 2097152 is over --max-body-size 1048576; answered 413',
                        start=mark)
    assert front.request('POST', '/app/echo', body=b'small')[2] == b'small'


def test_bodies_refused_have_their_access_log_lines(tmp_path):
    access_log = tmp_path / 'access.log'
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1', '--max-body-size', '10',
                        '--access-log', str(access_log), '--access-log-format',
                        '"%r" %s %b']) as server:
        # Declared: refused before the application; streamed: cut as it is read.
        declared = request(server.address(), cgi_params('/echo', method='POST',
                                                        CONTENT_LENGTH='11'), b'x' * 11)
        streamed = request(server.address(), cgi_params('/echo', method='POST'), b'x' * 11)
        body = CONTENT_TOO_LARGE.partition(b'\r\n\r\n')[2]
        assert (declared.status, declared.body) == (streamed.status, streamed.body) == (413, body)
        wait_until(lambda: access_log.exists() and len(access_log.read_text().splitlines()) == 2,
                   what='two access log lines')
    assert access_log.read_text().splitlines() == [f'"POST /echo HTTP/1.1" 413 {len(body)}'] * 2

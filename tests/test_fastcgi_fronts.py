"""The gateway's FastCGI server behind lighttpd, HAProxy, Caddy and h2o, on
loopback, each configured with its folder of this repository (lighttpd/,
haproxy/, caddy/, h2o/: support.webservers says what the tests change).

Each passes the front contract, where the web server allows (the
differences are overridden below, each with its reason); the fronts that
do not split the path at the mount point (h2o always, Caddy without
"split", HAProxy without "path-info") pass it with the gateway's
--script-name /app. The same configurations run in containers in
tests/containers.
"""

import os
import shutil
import sys

import pytest

from support.fcgi_client import ServerProcess, server_env
from support.front_contract import (ERROR_BODY, UNDERSCORE_TWINS, FrontContract, chunked,
                                    environ_of)
from support.helpers import REPO, TESTS, all_at_once, unavailable, wait_until
from support.webservers import H2O, Caddy, HAProxy, Lighttpd

DEMO = 'gateway.demo:app'


def need(program):
    if not shutil.which(program):
        unavailable(f'{program} is not installed (scripts/test installs it)')


class Behind:
    """A web server of *front_class* in front of ``gateway fastcgi ARGS`` on a
    loopback port (*connect* turns the server's (host, port) into what the
    web server's start() takes); request() goes through the web server."""

    def __init__(self, directory, front_class, args, connect, app=DEMO, **settings):
        need(front_class.name)
        self.server = ServerProcess([app, '--bind', '127.0.0.1:0', *args])
        try:
            self.front = front_class(directory).start(connect(*self.server.address()),
                                                      **settings)
        except BaseException:
            self.server.kill()
            raise
        self.port = self.front.port

    def request(self, method, path, body=None, headers=None):
        return self.front.request(method, path, body, headers)

    def log(self):
        return self.server.log

    def close(self):
        try:
            self.front.stop()
        finally:
            self.server.kill()


def tcp(host, port):
    return f'{host}:{port}'


def h2o_tcp(host, port):
    return f'{{host: {host}, port: {port}, type: tcp}}'


@pytest.fixture(scope='module')
def behind(tmp_path_factory):
    """behind(front_class, args, connect, **settings): a Behind, closed
    with the module."""
    opened = []

    def start(*args, **settings):
        opened.append(Behind(tmp_path_factory.mktemp('front'), *args, **settings))
        return opened[-1]
    yield start
    for each in opened:
        each.close()


# --- lighttpd: it starts the gateway itself ---------------------------------------

class Spawned:
    """lighttpd, which runs ``GATEWAY_CGI fastcgi`` itself with its listening
    socket on fd 0 (lighttpd/app-fastcgi.conf)."""

    def __init__(self, directory, app=DEMO):
        need('lighttpd')
        program = os.path.join(directory, 'gateway')
        with open(program, 'w') as stream:
            stream.write(f'#!/bin/sh\nexec {sys.executable} -m gateway "$@"\n')
        os.chmod(program, 0o755)
        self.front = Lighttpd(directory).start({
            'GATEWAY_CGI': program, 'GATEWAY_APP': app, 'PYTHONPATH': f'{REPO}:{TESTS}'})
        self.port = self.front.port

    def request(self, method, path, body=None, headers=None):
        return self.front.request(method, path, body, headers)

    def log(self):
        return self.front.log()


@pytest.fixture(scope='module')
def lighttpd(tmp_path_factory):
    front = Spawned(str(tmp_path_factory.mktemp('lighttpd')))
    yield front
    front.front.stop()


class TestLighttpd(FrontContract):

    @pytest.fixture
    def front(self, lighttpd):
        return lighttpd

    def test_gateway_serves_the_socket_lighttpd_passes_as_fd_0(self, front):
        assert front.request('GET', '/app/env')[0] == 200
        log = front.log()
        assert '(fd 0)' in log and 'arbiter started' in log, log

    def test_nothing_but_the_mount_point_reaches_the_gateway(self, front):
        assert front.request('GET', '/application')[0] == 404


# --- HAProxy ---------------------------------------------------------------------

# HAProxy gives a FastCGI server only bodies of known length: it buffers a
# chunked body to learn it (option http-buffer-request), and refuses with
# 400 one that does not fit its 16 KiB buffer (haproxy/haproxy.cfg).
HAPROXY_CHUNKED_FITS = 8000


class HAProxyContract(FrontContract):

    def test_chunked_post_body(self, front):
        body = os.urandom(HAPROXY_CHUNKED_FITS)
        status, _, echoed = front.request('POST', '/app/echo', body=chunked(body),
                                          headers={'Transfer-Encoding': 'chunked'})
        assert status == 200 and echoed == body
        status = front.request('POST', '/app/echo', body=chunked(os.urandom(100000)),
                               headers={'Transfer-Encoding': 'chunked'})[0]
        assert status == 400


@pytest.fixture(scope='module')
def haproxy(behind):
    return behind(HAProxy, ['--workers', '2'], tcp)


class TestHAProxy(HAProxyContract):

    @pytest.fixture
    def front(self, haproxy):
        return haproxy

    def test_head_is_answered_with_the_headers_of_get(self, front):
        # HAProxy answered 502 when a body followed the headers of a HEAD
        # answer ("PH" in its log): the gateway now sends none, as PHP-FPM.
        head = front.request('HEAD', '/app/bytes/5000')
        get = front.request('GET', '/app/bytes/5000')
        for headers in (head[1], get[1]):
            headers.pop('date', None)
        assert (head[0], head[1], head[2]) == (200, get[1], b'')
        assert get[1]['content-length'] == '5000' and len(get[2]) == 5000


@pytest.fixture(scope='module')
def haproxy_to_threads(behind):
    return behind(HAProxy, ['--workers', '1', '--threads', '4'], tcp, app='apps.fcgiapps:router')


def test_haproxy_sends_one_request_per_connection_as_get_values_says(haproxy_to_threads):
    # haproxy.cfg allows multiplexing (option mpxs-conns) and asks
    # (option get-values): the gateway answers FCGI_MPXS_CONNS=0, so HAProxy
    # opens a connection per concurrent request. Four requests meet in the
    # application at once; one multiplexed onto a busy connection would get
    # CANT_MPX_CONN, and HAProxy a 5xx.
    front = haproxy_to_threads
    results = all_at_once(4, front.request, 'GET', '/app/barrier?4')
    assert [(status, body) for status, _, body in results] == [(200, b'together')] * 4
    assert 'CANT_MPX_CONN' not in front.log()


@pytest.fixture(scope='module')
def haproxy_without_path_info(behind):
    return behind(HAProxy, ['--workers', '1', '--script-name', '/app'], tcp,
                  without='path-info ^(/app)')


class TestHAProxyWithoutPathInfo(HAProxyContract):
    """Without "path-info", HAProxy sends the whole path as SCRIPT_NAME and no
    PATH_INFO; --script-name /app splits it."""

    @pytest.fixture
    def front(self, haproxy_without_path_info):
        return haproxy_without_path_info


# --- Caddy -----------------------------------------------------------------------

class CaddyContract(FrontContract):

    def test_chunked_post_body(self, front):
        # Caddy 2.6 sends a chunked body with CONTENT_LENGTH=-1, no CGI
        # length: the gateway answers 500 without running the application,
        # and says why (caddy/app-fastcgi.caddy).
        status, _, body = front.request('POST', '/app/echo', body=chunked(b'x' * 1000),
                                        headers={'Transfer-Encoding': 'chunked'})
        assert (status, body) == (500, ERROR_BODY)
        wait_until(lambda: "CONTENT_LENGTH is not a non-negative integer: '-1'" in front.log(),
                   what='the reason in the log')


@pytest.fixture(scope='module')
def caddy(behind):
    return behind(Caddy, ['--workers', '1'], tcp)


class TestCaddy(CaddyContract):

    @pytest.fixture
    def front(self, caddy):
        return caddy

    def test_status_header_is_not_passed_on(self, front):
        # Caddy would send the CGI "Status:" line on to the client as a
        # header too (header_down -Status in app-fastcgi.caddy).
        assert 'status' not in front.request('GET', '/app/env')[1]


@pytest.fixture(scope='module')
def caddy_without_split(behind):
    return behind(Caddy, ['--workers', '1', '--script-name', '/app'], tcp, without='split /app')


class TestCaddyWithoutSplit(CaddyContract):
    """Without "split", Caddy sends SCRIPT_NAME empty and the whole path as
    PATH_INFO; --script-name /app splits it."""

    @pytest.fixture
    def front(self, caddy_without_split):
        return caddy_without_split


def test_caddy_without_split_or_script_name_gives_the_whole_path(behind):
    front = behind(Caddy, ['--workers', '1'], tcp, app='apps.fcgiapps:path_info',
                   without='split /app')
    assert front.request('GET', '/app/env/x')[2] == b'/app/env/x'


# --- h2o -------------------------------------------------------------------------

@pytest.fixture(scope='module')
def h2o(behind):
    return behind(H2O, ['--workers', '1', '--script-name', '/app'], h2o_tcp)


class TestH2O(FrontContract):
    """h2o always sends SCRIPT_NAME empty and the whole path as PATH_INFO: the
    gateway runs with --script-name /app (h2o/h2o.conf says so)."""

    @pytest.fixture
    def front(self, h2o):
        return h2o

    @UNDERSCORE_TWINS
    def test_header_with_underscore_is_not_merged(self, front, headers):
        # h2o passes "X_Real_User" on: both fields arrive as
        # HTTP_X_REAL_USER, and the gateway keeps the last one sent. h2o has
        # no setting to drop them (h2o/h2o.conf).
        env = environ_of(front, '/app/env', **headers)
        assert env['HTTP_X_REAL_USER'] == list(headers.values())[-1]


def test_h2o_without_script_name_gives_the_whole_path(behind):
    front = behind(H2O, ['--workers', '1'], h2o_tcp, app='apps.fcgiapps:path_info')
    status, _, body = front.request('GET', '/app/env/x')
    assert (status, body) == (200, b'/app/env/x')

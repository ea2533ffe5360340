"""The FastCGI AUTHORIZER role: served on purpose (--roles, flup's roles=),
the application seeing FCGI_ROLE; then through a real Apache's
mod_authnz_fcgi (apache/authnz-fcgi.conf in front of apache/proxy-fcgi.conf)
protecting /app: allowed, refused with the application's own 401 or 403,
and a Variable-X-User reaching the protected resource."""

import json
import shutil
import socket

import pytest

from gateway.fastcgi import protocol as p
from gateway.fastcgi.client import (Client, encode_begin_request, encode_params,
                                    encode_request)
from gateway.fastcgi.compat import WSGIServer
from support.fcgi_client import ServerProcess, cgi_params
from support.helpers import unavailable, wait_until
from support.webservers import Apache, repo_file

GUARDED = 'apps.fcgiapps:guarded'
BOTH = ['--roles', 'responder,authorizer']


def authorizer_request(target, params, stdin=None):
    """One AUTHORIZER request as mod_authnz_fcgi sends it: BEGIN_REQUEST and
    PARAMS, no FCGI_KEEP_CONN, and no STDIN at all (*stdin* adds one)."""
    with socket.create_connection(target, timeout=10) as sock:
        message = (encode_begin_request(1, p.FCGI_AUTHORIZER) + encode_params(1, params)
                   if stdin is None else encode_request(1, params, stdin, role=p.FCGI_AUTHORIZER))
        sock.sendall(message)
        return Client(sock, owned=False).response(1)


def test_authorizer_role_is_refused_unless_served():
    with ServerProcess([GUARDED, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        response = authorizer_request(server.address(), cgi_params('/'))
        assert response.protocol_status == p.FCGI_UNKNOWN_ROLE and response.stdout == b''
        server.wait_for_log(r'refused with UNKNOWN_ROLE: role 2 is not served \(--roles\)')


def test_authorizer_request_runs_the_application_with_fcgi_role():
    # No STDIN comes: reading wsgi.input must not wait for it. FCGI_ROLE is
    # the BEGIN_REQUEST's, whatever PARAMS say; SCRIPT_NAME and PATH_INFO
    # are not sent (FastCGI 6.3), and --script-name lets such a request by.
    args = ['apps.fcgiapps:router', '--bind', '127.0.0.1:0', '--workers', '1',
            '--script-name', '/app', *BOTH]
    with ServerProcess(args) as server:
        target = server.address()
        params = {name: value for name, value in cgi_params('/').items()
                  if name not in ('SCRIPT_NAME', 'PATH_INFO')}
        response = authorizer_request(target, {**params, 'FCGI_ROLE': 'RESPONDER'})
        assert (response.status, response.body) == (200, b'Hello, World!')
        guarded = ServerProcess([GUARDED, '--bind', '127.0.0.1:0', '--workers', '1', *BOTH])
        with guarded:
            answer = authorizer_request(guarded.address(), {
                **params, 'FCGI_APACHE_ROLE': 'AUTHENTICATOR',
                'HTTP_AUTHORIZATION': 'Bearer alice'}, stdin=b'')
            assert answer.status == 200 and 'Variable-X-User: alice' in answer.head
            # A responder request of the same server: FCGI_ROLE says so.
            from support.fcgi_client import request
            seen = json.loads(request(guarded.address(), cgi_params('/x')).body)
            assert seen['FCGI_ROLE'] == 'RESPONDER'


@pytest.mark.parametrize('roles, served', [
    ('responder', (1,)), ('authorizer', (2,)), ('responder, AUTHORIZER', (1, 2))])
def test_roles_option(roles, served):
    from gateway.cli import build_parser
    assert build_parser().parse_args(['app', '--roles', roles]).roles == served


def test_roles_option_refuses_the_filter_role():
    with ServerProcess([GUARDED, '--bind', '127.0.0.1:0', '--roles', 'filter']) as server:
        assert server.wait() == 2
        assert 'the roles served are responder and authorizer' in server.log


def test_flup_roles_argument():
    app = lambda environ, start_response: []        # noqa: E731
    assert WSGIServer(app).config.roles == (p.FCGI_RESPONDER,)
    both = WSGIServer(app, roles=(p.FCGI_RESPONDER, p.FCGI_AUTHORIZER))
    assert both.config.roles == (p.FCGI_RESPONDER, p.FCGI_AUTHORIZER)
    with pytest.raises(ValueError, match='only FCGI_RESPONDER'):
        WSGIServer(app, roles=(p.FCGI_FILTER,))


# --- behind Apache's mod_authnz_fcgi ------------------------------------------------

class Guarded:
    """Apache with proxy-fcgi.conf and authnz-fcgi.conf as they are, both
    pointing at one ``gateway fastcgi`` on loopback."""

    def __init__(self, directory, roles):
        if not shutil.which('apache2'):
            unavailable('apache2 is not installed (scripts/test installs it)')
        self.server = ServerProcess([GUARDED, '--bind', '127.0.0.1:0', '--workers', '1',
                                     *roles])
        try:
            host, port = self.server.address()
            site = ''.join(open(repo_file('apache', name)).read()
                           for name in ('proxy-fcgi.conf', 'authnz-fcgi.conf'))
            self.apache = Apache(directory).start(site, env={
                'GATEWAY_FASTCGI_URL': f'fcgi://{host}:{port}',
                'GATEWAY_AUTHORIZER_URL': f'fcgi://{host}:{port}/'},
                modules=('proxy', 'proxy_fcgi', 'authnz_fcgi', 'authn_core'))
        except BaseException:
            self.server.kill()
            raise

    def request(self, path, **headers):
        return self.apache.request('GET', path, headers=headers)

    def close(self):
        try:
            self.apache.stop()
        finally:
            self.server.kill()


@pytest.fixture(scope='module')
def guarded(tmp_path_factory):
    front = Guarded(tmp_path_factory.mktemp('apache'), BOTH)
    yield front
    front.close()


def test_allowed_request_reaches_the_resource_with_the_variables_set(guarded):
    status, _, body = guarded.request('/app/env/x', Authorization='Bearer alice')
    assert status == 200
    # Variable-X-User: alice from the authorizer arrives as X-User; Variable-
    # REMOTE_USER made the user (UserExpr), whom the authorizer phase let by.
    assert json.loads(body) == {
        'AUTHORIZED_AS': 'AUTHORIZER', 'FCGI_ROLE': 'RESPONDER', 'PATH_INFO': '/env/x',
        'REMOTE_USER': 'alice', 'SCRIPT_NAME': '/app', 'X-User': 'alice'}


def test_refusal_is_the_applications_answer(guarded):
    status, headers, body = guarded.request('/app/env')
    assert (status, body) == (401, b'who are you?\n')
    assert headers['www-authenticate'] == 'Bearer realm="gateway"'
    status, _, body = guarded.request('/app/env', Authorization='Bearer mallory')
    assert (status, body) == (403, b'mallory may not\n')


def test_a_server_not_playing_the_role_refuses_everyone(tmp_path):
    # Without --roles authorizer, UNKNOWN_ROLE: Apache answers 500, no one
    # gets through (an application unaware of the role would have answered
    # 200 to every authorizer request).
    front = Guarded(tmp_path, [])
    try:
        assert front.request('/app/env', Authorization='Bearer alice')[0] == 500
        wait_until(lambda: 'refused with UNKNOWN_ROLE' in front.server.log,
                   what='the refusal in the log')
    finally:
        front.close()

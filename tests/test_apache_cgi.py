"""The gateway as a CGI program under a real Apache (ScriptAlias, mod_cgid)."""

import json
import os
import shutil
import sysconfig

import pytest

from conftest import REPO, TESTS, unavailable
from webservers import Apache, repo_file

ERROR_BODY = b'A server error occurred.  Please contact the administrator.'


def gateway_program():
    """The `gateway` command installed for this interpreter (not a shim)."""
    path = os.path.join(sysconfig.get_path('scripts'), 'gateway')
    return path if os.access(path, os.X_OK) else None


def site():
    with open(repo_file('apache', 'cgi.conf')) as stream:
        return stream.read()


@pytest.fixture(scope='module')
def apache(tmp_path_factory):
    if not shutil.which('apache2'):
        unavailable('apache2 is not installed (scripts/test installs it)')
    program = gateway_program()
    if not program:
        unavailable('the gateway command is not installed (pip install -e .)')
    server = Apache(tmp_path_factory.mktemp('apache'))
    server.start(site(), env={'GATEWAY_CGI': program, 'GATEWAY_APP': 'gateway.demo:app',
                              'PYTHONPATH': f'{REPO}:{TESTS}'})
    yield server
    server.stop()


def env_of(apache, path, **headers):
    status, response_headers, body = apache.request('GET', path, headers=headers)
    assert status == 200, (status, body, apache.log()[-2000:])
    return json.loads(body)


@pytest.mark.parametrize('path, script_name, path_info', [
    ('/app/env', '/app', '/env'),
    ('/app/env/', '/app', '/env/'),
    ('/app/env/a/b', '/app', '/env/a/b'),
    ('/app/env/a%20b/c%2Bd', '/app', '/env/a b/c+d'),
    ('/app/env/caf%C3%A9', '/app', '/env/caf\xc3\xa9'),      # UTF-8 bytes, as latin-1
    ('/app/env/caf%E9', '/app', '/env/caf\xe9'),             # latin-1 bytes
])
def test_script_name_and_path_info(apache, path, script_name, path_info):
    env = env_of(apache, path)
    assert (env['SCRIPT_NAME'], env['PATH_INFO']) == (script_name, path_info)
    assert env['GATEWAY_INTERFACE'] == 'CGI/1.1'


def test_app_root_has_no_path_info(apache):
    status, headers, body = apache.request('GET', '/app')
    assert status == 200 and b'gateway demo' in body
    status, headers, body = apache.request('GET', '/app/')
    assert status == 200 and b'gateway demo' in body


def test_query_string(apache):
    assert env_of(apache, '/app/env?a=1&b=%20x')['QUERY_STRING'] == 'a=1&b=%20x'


@pytest.mark.parametrize('size', [0, 1, 1024 * 1024])
def test_post_body_round_trip(apache, size):
    body = os.urandom(size)
    status, headers, echoed = apache.request('POST', '/app/echo', body=body,
                                             headers={'Content-Type': 'application/octet-stream'})
    assert status == 200 and echoed == body


def test_head_has_headers_but_no_body(apache):
    # Apache re-frames CGI output itself (chunked for GET, no length for HEAD).
    status, headers, body = apache.request('HEAD', '/app/bytes/5000')
    assert status == 200 and headers['content-type'] == 'application/octet-stream'
    assert body == b''


def test_large_response(apache):
    status, headers, body = apache.request('GET', '/app/bytes/10485760')
    assert status == 200 and len(body) == 10485760 and body[:16] == b'0123456789abcdef'


def test_proxy_header_never_becomes_http_proxy(apache):
    env = env_of(apache, '/app/env', Proxy='http://attacker.invalid:3128')
    assert 'HTTP_PROXY' not in env


def test_authorization_reaches_the_app(apache):
    env = env_of(apache, '/app/env', Authorization='Basic dXNlcjpwYXNz')
    assert env['HTTP_AUTHORIZATION'] == 'Basic dXNlcjpwYXNz'


def test_header_with_underscore_is_not_merged(apache):
    env = env_of(apache, '/app/env', **{'X-Real-User': 'alice', 'X_Real_User': 'mallory'})
    assert env['HTTP_X_REAL_USER'] == 'alice'


def test_app_error_is_a_500_and_the_traceback_stays_in_the_log(apache):
    status, headers, body = apache.request('GET', '/app/error')
    assert status == 500 and body == ERROR_BODY
    log = apache.log()
    assert 'the demo application failed on purpose' in log


def test_broken_app_setting_is_a_500_with_a_clear_log_line(tmp_path):
    if not shutil.which('apache2') or not gateway_program():
        unavailable('apache2 and the gateway command are needed')
    server = Apache(tmp_path)
    server.start(site(), env={'GATEWAY_CGI': gateway_program(),
                              'GATEWAY_APP': 'no_such_module:app', 'PYTHONPATH': REPO})
    try:
        status, headers, body = server.request('GET', '/app/env')
    finally:
        log = server.stop()
    assert status == 500 and body == ERROR_BODY
    assert "cannot import 'no_such_module'" in log

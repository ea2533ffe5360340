"""The gateway as a CGI program under a real Apache (ScriptAlias, mod_cgid)."""

import os
import shutil
import sysconfig

import pytest

from support.helpers import REPO, TESTS, unavailable
from support.front_contract import ERROR_BODY, FrontContract, environ_of
from support.webservers import Apache, repo_file


def gateway_program():
    """The `gateway-cgi` program installed for this interpreter (not a shim)."""
    path = os.path.join(sysconfig.get_path("scripts"), "gateway-cgi")
    return path if os.access(path, os.X_OK) else None


def site():
    with open(repo_file('apache', 'cgi.conf')) as stream:
        return stream.read()


def start_apache(directory, app, program=None):
    """apache/cgi.conf with *program* (default: the gateway-cgi program) at /app."""
    if not shutil.which('apache2'):
        unavailable('apache2 is not installed (scripts/test installs it)')
    if not gateway_program():
        unavailable('the gateway-cgi program is not installed (pip install -e .)')
    return Apache(directory).start(site(), env={'GATEWAY_CGI': program or gateway_program(),
                                                'GATEWAY_APP': app,
                                                'PYTHONPATH': f'{REPO}:{TESTS}'})


@pytest.fixture(scope='module')
def front(tmp_path_factory):
    server = start_apache(tmp_path_factory.mktemp('apache'), 'gateway.demo:app')
    yield server
    server.stop()


class TestApacheScriptAlias(FrontContract):

    def test_cgi_variables(self, front):
        env = environ_of(front, '/app/env/x')
        assert env['GATEWAY_INTERFACE'] == 'CGI/1.1' and env['wsgi.url_scheme'] == 'http'

    def test_authorization_reaches_the_app(self, front):
        env = environ_of(front, '/app/env', Authorization='Basic dXNlcjpwYXNz')
        assert env['HTTP_AUTHORIZATION'] == 'Basic dXNlcjpwYXNz'

    def test_traceback_stays_in_the_error_log(self, front):
        front.request('GET', '/app/error')
        assert 'the demo application failed on purpose' in front.log()


def test_broken_app_setting_is_a_500_with_a_clear_log_line(tmp_path):
    server = start_apache(tmp_path, 'no_such_module:app')
    try:
        status, headers, body = server.request('GET', '/app/env')
    finally:
        log = server.stop()
    assert status == 500 and body == ERROR_BODY
    assert "cannot import 'no_such_module'" in log


def test_a_body_the_application_never_reads_does_not_reset_the_response(tmp_path):
    # mod_cgid gives the program a socket for stdin: exiting with request
    # bytes unread there resets it, and Apache discards the response.
    server = start_apache(tmp_path, 'apps.cliapps:application')
    try:
        for size in (1, 200, 300000):
            status, _, body = server.request('POST', '/app/x', body=b'x' * size)
            assert (status, body) == (200, b'default /app|/x'), size
    finally:
        log = server.stop()
    assert 'AH00574' not in log

"""The gateway behind IIS-style fronts, in containers of the base image.

tests/iis_fronts/iisfront.py plays IIS 10: it hands each request to the
gateway with the variables IIS sends (SCRIPT_NAME the mapped script, PATH_INFO
the whole URL path, PATH_TRANSLATED its physical path, SERVER_SOFTWARE
Microsoft-IIS/10.0), as CGI (one process per request, stdout and stderr on
one pipe) or as FastCGI (reused processes, each with a connected socket as
its stdin, one request at a time), after the request-filtering and httpErrors
rules of iis/*/web.config. The gateway commands are the ones iis/ configures,
with the Windows paths replaced.

The front maps the demo app at /app, where the contract expects it, and also
at /app.wsgi, the name the iis/ files use: on a real server IIS splits the
script from the path info only at a name with an extension, with the same
variables otherwise.
"""

import json
import os
from contextlib import contextmanager

import pytest

from support.helpers import TESTS, all_at_once
from containers.conftest import base_image, docker_client, gateway_image  # noqa: F401 (fixtures)
from support.front_contract import ERROR_BODY, FrontContract, environ_of
from iis_fronts import webconfig
from support.webservers import http_request, wait_until

pytestmark = pytest.mark.container

APP = 'gateway.demo:app'
PORT = 8080
FRONTS = os.path.join(TESTS, 'iis_fronts')
# The image's own paths, for the Windows ones in the configuration.
LOCAL = {'python': 'python3', 'directory': '/tmp', 'PYTHONPATH': '/opt/gateway'}


def front_settings(parts, module, **settings):
    """The front's settings from iis/<parts>: its request filtering, httpErrors
    and handler mapping, with *settings* added."""
    root = webconfig.load(*parts)
    allow_double_escaping, max_length = webconfig.request_filtering(root)
    return {'port': PORT, 'directory': LOCAL['directory'],
            'scripts': ['/app', '/' + webconfig.handler(root, module)['path']],
            'applications': ['/wild'],
            'header_limits': webconfig.header_limits(root),
            'allow_double_escaping': allow_double_escaping,
            'max_allowed_content_length': max_length,
            'existing_response': webconfig.existing_response(root), **settings}


def cgi_settings():
    script_processor = webconfig.handler(webconfig.load('cgi', 'web.config'),
                                         'CgiModule')['scriptProcessor']
    command = webconfig.localized(webconfig.cgi_command(script_processor), LOCAL['python'],
                                  APP, LOCAL['directory'])
    return front_settings(('cgi', 'web.config'), 'CgiModule', mode='cgi', command=command)


def fastcgi_settings(**settings):
    application, environment = webconfig.fastcgi_application(
        webconfig.load('fastcgi', 'applicationHost.xml'))
    command = webconfig.localized(webconfig.fastcgi_command(application), LOCAL['python'],
                                  APP, LOCAL['directory'])
    environment = {**environment, 'GATEWAY_APP': APP, 'PYTHONPATH': LOCAL['PYTHONPATH']}
    return front_settings(
        ('fastcgi', 'web.config'), 'FastCgiModule', **{
            'mode': 'fastcgi', 'command': command, 'environment': environment,
            'stderr_mode': application['stderrMode'],
            'max_instances': int(application['maxInstances']),
            'instance_max_requests': int(application['instanceMaxRequests']), **settings})


class IISFront:
    """A running front container; ``request`` as FrontContract wants it."""

    def __init__(self, container):
        self.container = container
        self.port = int(container.get_exposed_port(PORT))

    def request(self, method, path, body=None, headers=None):
        return http_request(self.port, method, path, body, headers)

    def status(self):
        return json.loads(self.request('GET', '/_front/status')[2])

    def logs(self):
        out, err = self.container.get_logs()
        return (out + err).decode(errors='replace')


@contextmanager
def running_front(image, settings):
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image, command=['python3', '/fronts/iisfront.py',
                                                json.dumps(settings)])
    container.with_volume_mapping(FRONTS, '/fronts', 'ro').with_exposed_ports(PORT)
    try:
        container.start()
        front = IISFront(container)

        def up():
            try:
                return front.request('GET', '/_front/status')[0] == 200
            except OSError:
                return False
        try:
            wait_until(up, timeout=60, what='the IIS-style front')
        except TimeoutError as error:
            raise AssertionError(f'{error}\n{front.logs()}') from None
        yield front
    finally:
        container.stop()


def wildcard(settings, application='/wild'):
    """*settings* for an IIS application at *application* whose handler is a
    wildcard mapping (path="*"): IIS sends the whole path as SCRIPT_NAME and
    as PATH_INFO, so the gateway's command says where the application is
    mounted (iis/README.md)."""
    command = list(settings['command'])
    where = command.index('gateway') + 2        # after "-m gateway cgi" or "fastcgi"
    command[where:where] = ['--script-name', application]
    return {**settings, 'scripts': [], 'applications': [application], 'command': command}


@pytest.fixture(scope='module')
def cgi_front(gateway_image):  # noqa: F811
    with running_front(gateway_image('base'), cgi_settings()) as front:
        yield front


@pytest.fixture(scope='module')
def fastcgi_front(gateway_image):  # noqa: F811
    with running_front(gateway_image('base'), fastcgi_settings()) as front:
        yield front


@pytest.fixture(scope='module')
def cgi_wildcard_front(gateway_image):  # noqa: F811
    with running_front(gateway_image('base'), wildcard(cgi_settings())) as front:
        yield front


@pytest.fixture(scope='module')
def fastcgi_wildcard_front(gateway_image):  # noqa: F811
    with running_front(gateway_image('base'), wildcard(fastcgi_settings())) as front:
        yield front


class IISContract(FrontContract):
    """The contract, where IIS itself answers differently."""

    # '/app/env/a%20b/c%2Bd' is left out: IIS refuses it (below).
    @pytest.mark.parametrize('path, path_info', [
        ('/app/env', '/env'),
        ('/app/env/', '/env/'),
        ('/app/env/a/b', '/env/a/b'),
        ('/app/env/a%20b/c', '/env/a b/c'),
        ('/app/env/caf%C3%A9', '/env/caf\xc3\xa9'),
        ('/app/env/caf%E9', '/env/caf\xe9'),
    ])
    def test_script_name_and_path_info(self, front, path, path_info):
        super().test_script_name_and_path_info(front, path, path_info)

    def test_plus_in_the_path_is_refused_by_request_filtering(self, front):
        # allowDoubleEscaping="false", IIS's default: a decoded path still holding
        # "+" or "%" is refused with 404.11 before any handler runs.
        status, headers, _ = front.request('GET', '/app/env/a%20b/c%2Bd')
        assert (status, headers.get('x-front-substatus')) == (404, '11')

    def test_proxy_header_never_becomes_http_proxy(self, front):
        # The web.config's headerLimits rule (Proxy, sizeLimit 0; KB 3179800):
        # IIS answers 404.10 and the gateway never runs.
        status, headers, body = front.request('GET', '/app/env',
                                              headers={'Proxy': 'http://attacker.invalid:3128'})
        assert (status, headers.get('x-front-substatus')) == (404, '10')
        assert b'HTTP_PROXY' not in body

    def test_iis_path_variables_are_undone(self, front):
        env = environ_of(front, '/app/env/a/b')
        # IIS sent PATH_INFO=/app/env/a/b; the gateway's IIS mode strips /app.
        assert (env['SCRIPT_NAME'], env['PATH_INFO']) == ('/app', '/env/a/b')
        assert env['PATH_TRANSLATED'] == 'C:\\inetpub\\wwwroot\\app\\env\\a\\b'
        assert env['SERVER_SOFTWARE'] == 'Microsoft-IIS/10.0'

    def test_script_named_as_in_the_iis_files(self, front):
        env = environ_of(front, '/app.wsgi/env/a/b')
        assert (env['SCRIPT_NAME'], env['PATH_INFO']) == ('/app.wsgi', '/env/a/b')
        status, _, body = front.request('GET', '/app.wsgi')
        assert status == 200 and b'href="/app.wsgi/env"' in body

    @pytest.mark.parametrize('path, path_info', [
        ('/wild/env/x', '/env/x'), ('/wild/env', '/env'), ('/wild/env/', '/env/')])
    def test_wildcard_mapping_in_an_iis_application(self, wildcard_front, path, path_info):
        # A wildcard mapping (path="*") sends the whole path as SCRIPT_NAME
        # and PATH_INFO (PTVS issue 1029): --iis leaves SCRIPT_NAME=/wild/env/x
        # and PATH_INFO="", --script-name /wild then splits at the mount point.
        env = environ_of(wildcard_front, path)
        assert (env['SCRIPT_NAME'], env['PATH_INFO']) == ('/wild', path_info)
        assert env['URL'] == path

    def test_wildcard_mapping_root_and_links(self, wildcard_front):
        status, _, body = wildcard_front.request('GET', '/wild')
        assert status == 200 and b'href="/wild/env"' in body

    def test_content_headers_are_only_cgi_variables(self, front):
        # IIS passes every request header as HTTP_*, Content-Type and
        # Content-Length included; PEP 3333 wants them only as CONTENT_*.
        env = environ_of(front, '/app/env', **{'Content-Type': 'text/plain'})
        assert env['CONTENT_TYPE'] == 'text/plain'
        assert 'HTTP_CONTENT_TYPE' not in env and 'HTTP_CONTENT_LENGTH' not in env

    def test_header_spelt_with_underscores_alone_is_passed_on(self, front):
        # Unlike nginx and Apache, IIS keeps it (iis/README.md): nothing
        # between IIS and the application drops it either.
        env = environ_of(front, '/app/env', X_Real_User='mallory')
        assert env['HTTP_X_REAL_USER'] == 'mallory'


class TestIISCGI(IISContract):

    @pytest.fixture
    def front(self, cgi_front):
        return cgi_front

    @pytest.fixture
    def wildcard_front(self, cgi_wildcard_front):
        return cgi_wildcard_front

    def test_app_error_is_a_plain_500(self, front):
        # IIS reads a CGI program's stderr as part of its output (KB 150835), so
        # under --iis the traceback goes to --log-file (or nowhere), never stderr.
        super().test_app_error_is_a_plain_500(front)

    def test_cgi_variables(self, front):
        env = environ_of(front, '/app/env/x?q=1')
        assert env['GATEWAY_INTERFACE'] == 'CGI/1.1' and env['QUERY_STRING'] == 'q=1'
        assert env['APPL_MD_PATH'] == '/LM/W3SVC/1/ROOT'
        assert env['wsgi.url_scheme'] == 'http'


class TestIISFastCGI(IISContract):

    @pytest.fixture
    def front(self, fastcgi_front):
        return fastcgi_front

    @pytest.fixture
    def wildcard_front(self, fastcgi_wildcard_front):
        return fastcgi_wildcard_front

    def test_app_error_is_a_plain_500(self, front):
        # With stderrMode=ReturnGeneric500 a single STDERR record would turn this
        # into IIS's own 500 page: the gateway sends none by default.
        status, headers, body = front.request('GET', '/app/error')
        assert (status, body) == (500, ERROR_BODY) and 'x-front-substatus' not in headers

    def test_fastcgi_variables(self, front):
        env = environ_of(front, '/app/env/x?q=1')
        assert env['REQUEST_URI'] == '/app/env/x?q=1'
        assert env['SCRIPT_FILENAME'] == 'C:\\inetpub\\wwwroot\\app'
        assert env['wsgi.url_scheme'] == 'http'

    def test_one_process_serves_request_after_request(self, front):
        instances = set()
        for index in range(30):
            status, headers, body = front.request('GET', f'/app/bytes/{index}')
            assert status == 200 and len(body) == index
            instances.add(headers['x-front-instance'])
        assert len(instances) == 1

    def test_concurrent_requests_get_more_processes(self, front):
        results = all_at_once(8, front.request, 'GET', '/app/bytes/1000000')
        assert [(status, len(body)) for status, _, body in results] == [(200, 1000000)] * 8
        status = front.status()
        assert 1 <= status['started'] <= 4 and status['exits'] == []


def test_fastcgi_process_exits_when_iis_closes_its_pipe(gateway_image):  # noqa: F811
    # instanceMaxRequests reached: IIS closes the pipe, the process must exit
    # by itself (status 0) and the next request gets a fresh one.
    settings = fastcgi_settings(instance_max_requests=3, max_instances=1)
    with running_front(gateway_image('base'), settings) as front:
        instances = []
        for _ in range(7):
            status, headers, _ = front.request('GET', '/app/env')
            assert status == 200
            instances.append(headers['x-front-instance'])
        assert instances == ['1', '1', '1', '2', '2', '2', '3']
        assert front.status()['exits'] == [0, 0], front.logs()

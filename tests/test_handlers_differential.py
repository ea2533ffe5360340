"""The same requests through stdlib wsgiref and through gateway: same bytes."""

import io
import re

import pytest

import gateway.handlers as gw
import wsgiref.handlers as std
from apps import wsgi_apps
from support.cgi_support import cgi_env, run_cgi_code

DATE = re.compile(rb'Date: [^\r]*\r\n')


def environ(**extra):
    env = {
        'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.0', 'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80', 'SCRIPT_NAME': '', 'PATH_INFO': '/p', 'QUERY_STRING': 'q=1',
        'HTTP_X_FOO': 'bar',
    }
    env.update(extra)
    return env


def run_in_process(module, class_name, app, env, body=b'', **attributes):
    out, err = io.BytesIO(), io.StringIO()
    handler = getattr(module, class_name)(io.BytesIO(body), out, err, env)
    for name, value in attributes.items():
        setattr(handler, name, value)
    handler.run(app)
    return DATE.sub(b'Date: X\r\n', out.getvalue()), err.getvalue()


def last_line(log):
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ''


@pytest.mark.parametrize('app', wsgi_apps.DIFFERENTIAL, ids=lambda app: app.__name__)
@pytest.mark.parametrize('class_name', ['SimpleHandler', 'BaseCGIHandler'])
@pytest.mark.parametrize('protocol', ['HTTP/1.0', 'HTTP/1.1', 'HTTP/0.9'])
def test_same_bytes_as_wsgiref(app, class_name, protocol):
    env = environ(SERVER_PROTOCOL=protocol, REQUEST_METHOD='POST', CONTENT_LENGTH='4')
    expected_out, expected_err = run_in_process(std, class_name, app, dict(env), b'ping')
    out, err = run_in_process(gw, class_name, app, dict(env), b'ping')
    assert out == expected_out
    assert bool(err) == bool(expected_err)
    assert last_line(err) == last_line(expected_err)


@pytest.mark.parametrize('software', [None, 'MyServer/1.0'])
def test_same_preamble_with_server_software(software):
    env = environ()
    attributes = {'server_software': software, 'http_version': '1.1'}
    expected = run_in_process(std, 'SimpleHandler', wsgi_apps.hello, dict(env), **attributes)
    actual = run_in_process(gw, 'SimpleHandler', wsgi_apps.hello, dict(env), **attributes)
    assert actual == expected
    if software:
        assert b'\r\nServer: MyServer/1.0\r\n' in actual[0]


def test_date_and_server_come_first_in_that_order():
    out, _ = run_in_process(gw, 'SimpleHandler', wsgi_apps.hello, environ(),
                            server_software='S/1')
    assert out.startswith(b'HTTP/1.0 200 OK\r\nDate: X\r\nServer: S/1\r\nContent-Type:')


def test_custom_error_attributes_are_used_like_wsgiref():
    attributes = {'error_status': '503 Busy', 'error_headers': [('X-E', '1')],
                  'error_body': b'busy'}
    expected = run_in_process(std, 'BaseCGIHandler', wsgi_apps.error_before_start, environ(),
                              **attributes)
    actual = run_in_process(gw, 'BaseCGIHandler', wsgi_apps.error_before_start, environ(),
                            **attributes)
    assert actual[0] == expected[0] == b'Status: 503 Busy\r\nX-E: 1\r\nContent-Length: 4\r\n\r\nbusy'


CGI_CODE = """
import sys
from apps import wsgi_apps
from {module} import {cls}
{cls}().run(getattr(wsgi_apps, sys.argv[1]))
"""


@pytest.mark.parametrize('app', [wsgi_apps.hello, wsgi_apps.two_chunks, wsgi_apps.echo_environ,
                                 wsgi_apps.echo_body, wsgi_apps.not_found,
                                 wsgi_apps.error_before_start],
                         ids=lambda app: app.__name__)
@pytest.mark.parametrize('cls', ['CGIHandler', 'IISCGIHandler'])
def test_cgi_process_same_bytes_as_wsgiref(app, cls):
    env = cgi_env({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '5', 'SCRIPT_NAME': '/app.py',
                   'PATH_INFO': '/app.py/x', 'HTTP_X_FOO': 'foo', 'QUERY_STRING': 'a=b'})
    results = []
    for module in ('wsgiref.handlers', 'gateway.handlers'):
        out, err, rc = run_cgi_code(CGI_CODE.format(module=module, cls=cls), env, b'hello',
                                    args=(app.__name__,))
        assert rc == 0, err
        results.append((out, last_line(err)))
    assert results[1] == results[0]
    assert results[1][0].startswith(b'Status: ')

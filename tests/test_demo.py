"""The demo application is every image's default: it must not leak or hoard.

Under CGI the request's variables and the process's own environment share
os.environ, so /env shows only what a request brings; what the demo reads
and sends for one request is capped at 1 MiB.
"""

import io
import json

import pytest

from support.cgi_support import cgi_env, run_gateway_cgi, split_cgi_response
from gateway import demo

CAP = 1 << 20


def call(path, method='GET', body=b'', **environ):
    """Run the demo in-process; (status, headers, body, bytes it read)."""
    stream = io.BytesIO(body)
    env = {'REQUEST_METHOD': method, 'SCRIPT_NAME': '/app', 'PATH_INFO': path,
           'wsgi.input': stream, 'wsgi.url_scheme': 'http', **environ}
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer['status'], answer['headers'] = status, headers
    content = b''.join(demo.application(env, start_response))
    return answer['status'], dict(answer['headers']), content, stream.tell()


def test_env_shows_the_request_not_the_process_environment():
    secrets = {'DB_PASSWORD': 'hunter2', 'AWS_SECRET_ACCESS_KEY': 'abc', 'GATEWAY_APP': 'x:y',
               'HOME': '/home/app', 'LANG': 'C.UTF-8'}
    env = cgi_env({**secrets, 'GATEWAY_APP': 'gateway.demo:application', 'PATH_INFO': '/env',
                   'HTTP_X_PROBE': 'probe', 'QUERY_STRING': 'a=1', 'GATEWAY_FRONT': 'test'})
    out, err, rc = run_gateway_cgi(env)
    status, _, body = split_cgi_response(out)
    shown = json.loads(body)
    assert status == '200 OK', err
    assert (shown['HTTP_X_PROBE'], shown['QUERY_STRING'], shown['SCRIPT_NAME'],
            shown['PATH_INFO'], shown['GATEWAY_FRONT'], shown['wsgi.url_scheme']) == \
        ('probe', 'a=1', '/app', '/env', 'test', 'http')
    leaked = set(shown) & {*secrets, 'PATH', 'PYTHONPATH'}
    assert not leaked
    assert 'hunter2' not in body.decode()


@pytest.mark.parametrize('size', [0, 1, CAP])
def test_echo_returns_bodies_up_to_the_cap(size):
    body = bytes(range(256)) * (size // 256) + b'x' * (size % 256)
    status, headers, content, _ = call('/echo', 'POST', body, CONTENT_LENGTH=str(size))
    assert (status, content, headers['Content-Length']) == ('200 OK', body, str(size))


def test_a_declared_body_over_the_cap_is_refused_unread():
    status, _, _, read = call('/echo', 'POST', bytes(CAP + 1), CONTENT_LENGTH=str(CAP + 1))
    assert (status, read) == ('413 Content Too Large', 0)


def test_a_body_of_unknown_length_is_read_one_byte_past_the_cap_at_most():
    status, _, _, read = call('/echo', 'POST', bytes(50 * CAP))
    assert (status, read) == ('413 Content Too Large', CAP + 1)


@pytest.mark.parametrize('count, status, length', [
    (CAP, '200 OK', CAP),
    (CAP + 1, '400 Bad Request', None),
    (1 << 30, '400 Bad Request', None),
])
def test_bytes_sends_at_most_the_cap(count, status, length):
    got, headers, content, _ = call(f'/bytes/{count}')
    assert got == status
    if length is not None:
        assert len(content) == length == int(headers['Content-Length'])

"""What every front (web server + gateway) must do with the demo app at /app.

A test module subclasses FrontContract and provides a ``front`` fixture: an
object whose ``request(method, path, body=None, headers=None)`` returns
(status, headers with lower-case names, body bytes).
"""

import json
import os

import pytest

ERROR_BODY = b'A server error occurred.  Please contact the administrator.'


def environ_of(front, path, **headers):
    status, _, body = front.request('GET', path, headers=headers)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def chunked(body, size=4096):
    parts = [b'%x\r\n%s\r\n' % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b''.join(parts) + b'0\r\n\r\n'


# A header and its twin spelt with "_", which CGI names alike (HTTP_X_REAL_USER),
# sent in both orders: a front that merged the two would keep the last.
UNDERSCORE_TWINS = pytest.mark.parametrize('headers', [
    {'X-Real-User': 'alice', 'X_Real_User': 'mallory'},
    {'X_Real_User': 'mallory', 'X-Real-User': 'alice'},
], ids=['dashed-first', 'underscored-first'])


class FrontContract:

    @pytest.mark.parametrize('path, path_info', [
        ('/app/env', '/env'),
        ('/app/env/', '/env/'),
        ('/app/env/a/b', '/env/a/b'),
        ('/app/env/a%20b/c%2Bd', '/env/a b/c+d'),
        ('/app/env/caf%C3%A9', '/env/caf\xc3\xa9'),   # UTF-8 bytes, as latin-1 (PEP 3333)
        ('/app/env/caf%E9', '/env/caf\xe9'),          # latin-1 bytes
    ])
    def test_script_name_and_path_info(self, front, path, path_info):
        env = environ_of(front, path)
        assert (env['SCRIPT_NAME'], env['PATH_INFO']) == ('/app', path_info)

    @pytest.mark.parametrize('path', ['/app', '/app/'])
    def test_app_root(self, front, path):
        status, headers, body = front.request('GET', path)
        assert status == 200 and b'gateway demo' in body

    def test_query_string(self, front):
        assert environ_of(front, '/app/env?a=1&b=%20x&c=caf%C3%A9')['QUERY_STRING'] == \
            'a=1&b=%20x&c=caf%C3%A9'

    @pytest.mark.parametrize('size', [0, 1024 * 1024])
    def test_post_body_round_trip(self, front, size):
        body = os.urandom(size)
        status, _, echoed = front.request('POST', '/app/echo', body=body,
                                          headers={'Content-Type': 'application/octet-stream'})
        assert status == 200 and echoed == body

    def test_chunked_post_body(self, front):
        body = os.urandom(100000)
        status, _, echoed = front.request('POST', '/app/echo', body=chunked(body),
                                          headers={'Transfer-Encoding': 'chunked'})
        assert status == 200 and echoed == body

    def test_head_has_no_body(self, front):
        status, headers, body = front.request('HEAD', '/app/bytes/5000')
        assert status == 200 and headers['content-type'] == 'application/octet-stream'
        assert body == b''

    def test_large_response(self, front):
        # The demo's largest: 16 blocks of 64 KiB, many FastCGI records.
        status, _, body = front.request('GET', '/app/bytes/1048576')
        assert status == 200 and len(body) == 1048576
        assert body == (b'0123456789abcdef' * 65536)

    def test_app_error_is_a_plain_500(self, front):
        status, _, body = front.request('GET', '/app/error')
        assert status == 500 and body == ERROR_BODY

    def test_proxy_header_never_becomes_http_proxy(self, front):
        env = environ_of(front, '/app/env', Proxy='http://attacker.invalid:3128')
        assert 'HTTP_PROXY' not in env

    @UNDERSCORE_TWINS
    def test_header_with_underscore_is_not_merged(self, front, headers):
        env = environ_of(front, '/app/env', **headers)
        assert env['HTTP_X_REAL_USER'] == 'alice'

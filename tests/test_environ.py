"""CGI environment rules: PEP 3333 transcoding, the IIS path fix-up, httpoxy."""

import subprocess
import sys

import pytest

from support.cgi_support import cgi_env, run_cgi_code, split_cgi_response
from support.helpers import REPO
from gateway.handlers import iis_path_info, transcode_environ

READ = ("import sys\n"
        "from {module} import read_environ\n"
        "env = read_environ()\n"
        "print(ascii([env.get(k) for k in sys.argv[1:]]))\n")


def read_in_child(module, environb, names, locale='C.UTF-8'):
    env = {b'PYTHONPATH': REPO.encode(), b'LC_ALL': locale.encode(), **environb}
    proc = subprocess.run([sys.executable, '-c', READ.format(module=module), *names],
                          env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout)  # the child printed ascii() of a list of str


# Paths as a browser sends them raw: UTF-8 bytes, and latin-1 bytes that are
# not valid UTF-8. PEP 3333: the app must see exactly those bytes, as latin-1.
PATHS = [b'/caf\xc3\xa9/\xe2\x82\xac', b'/caf\xe9', b'/plain', b'/mixed\xc3\xa9\xff']


@pytest.mark.parametrize('raw', PATHS)
@pytest.mark.parametrize('locale', ['C.UTF-8', 'C'])
def test_request_bytes_survive_as_latin1(raw, locale):
    environb = {b'PATH_INFO': raw, b'SCRIPT_NAME': b'/s\xc3\xa9', b'HTTP_X_NAME': raw,
                b'QUERY_STRING': b'q=' + raw, b'REQUEST_URI': b'/s\xc3\xa9' + raw}
    names = ['PATH_INFO', 'SCRIPT_NAME', 'HTTP_X_NAME', 'QUERY_STRING', 'REQUEST_URI']
    got = read_in_child('gateway.handlers', environb, names, locale)
    latin1 = raw.decode('latin-1')
    assert got == [latin1, '/s\xc3\xa9', latin1, 'q=' + latin1, '/s\xc3\xa9' + latin1]
    for value in got:
        value.encode('latin-1')  # PEP 3333 native strings: never a surrogate


@pytest.mark.parametrize('raw', PATHS)
def test_same_as_wsgiref_for_its_variables(raw):
    environb = {b'PATH_INFO': raw, b'HTTP_COOKIE': raw, b'REDIRECT_HTTP_X': raw,
                b'SSL_CLIENT_S_DN': raw, b'CONFIG_VAR': b'plain'}
    names = ['PATH_INFO', 'HTTP_COOKIE', 'REDIRECT_HTTP_X', 'SSL_CLIENT_S_DN', 'CONFIG_VAR']
    assert read_in_child('gateway.handlers', environb, names) == \
        read_in_child('wsgiref.handlers', environb, names)


def test_request_uri_is_transcoded_unlike_wsgiref():
    environb = {b'REQUEST_URI': b'/caf\xe9'}
    assert read_in_child('gateway.handlers', environb, ['REQUEST_URI']) == ['/caf\xe9']
    stdlib = read_in_child('wsgiref.handlers', environb, ['REQUEST_URI'])[0]
    with pytest.raises(UnicodeEncodeError, match=r"can't encode character '\\udce9'"):
        stdlib.encode('latin-1')   # wsgiref leaves a surrogate escape behind


def test_windows_rules_per_server():
    decoded = '/caf\xe9/\u20ac'      # what Windows hands Python: already text
    utf8_as_latin1 = decoded.encode('utf-8').decode('latin-1')
    iis = transcode_environ({'SERVER_SOFTWARE': 'Microsoft-IIS/10.0', 'PATH_INFO': decoded,
                             'APPDATA': decoded}, platform='win32', encoding='cp1252')
    assert iis['PATH_INFO'] == utf8_as_latin1
    assert iis['APPDATA'] == decoded           # not from the request: untouched
    apache = transcode_environ({'SERVER_SOFTWARE': 'Apache/2.4', 'PATH_INFO': '/caf\xe9'},
                               platform='win32', encoding='cp1252')
    assert apache['PATH_INFO'] == '/caf\xe9'
    python = transcode_environ({'SERVER_SOFTWARE': 'SimpleHTTP/0.6 Python/3.11',
                                'PATH_INFO': decoded}, platform='win32', encoding='cp1252')
    assert python['PATH_INFO'] == utf8_as_latin1
    other = transcode_environ({'SERVER_SOFTWARE': 'Other/1', 'PATH_INFO': '/caf\xe9\u20ac'},
                              platform='win32', encoding='cp1252')
    assert other['PATH_INFO'] == '/caf\xe9\x80'   # cp1252 bytes, read as latin-1


@pytest.mark.parametrize('script, path, expected', [
    ('/app.py', '/app.py', ''),
    ('/app.py', '/app.py/', '/'),
    ('/app.py', '/app.py/x/y', '/x/y'),
    ('/app.py', '/other/x', '/other/x'),            # does not start with SCRIPT_NAME
    ('/app.py', '/app.pyc/x', '/app.pyc/x'),        # SCRIPT_NAME a prefix of a longer segment
    ('/app.py', '/app.pyx', '/app.pyx'),
    ('', '/x', '/x'),
    ('/dir/app.py', '/dir/app.py/a', '/a'),
])
def test_iis_path_info(script, path, expected):
    assert iis_path_info({'SCRIPT_NAME': script, 'PATH_INFO': path}) == expected


SHOW = ("import sys, json, os\n"
        "from gateway.handlers import {cls}\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    keys = ('SCRIPT_NAME', 'PATH_INFO', 'PATH_TRANSLATED', 'HTTP_PROXY')\n"
        "    seen = {{k: environ.get(k) for k in keys}}\n"
        "    seen['os.environ HTTP_PROXY'] = os.environ.get('HTTP_PROXY')\n"
        "    import subprocess\n"
        "    seen['child'] = subprocess.run(['env'], capture_output=True).stdout.decode()\n"
        "    return [json.dumps(seen).encode()]\n"
        "{cls}().run(app)\n")


@pytest.mark.parametrize('path, expected', [('/app.py', ''), ('/app.py/', '/'),
                                            ('/app.py/x/y', '/x/y'), ('/elsewhere', '/elsewhere')])
def test_iis_cgi_handler_end_to_end(path, expected):
    import json
    env = cgi_env({'SCRIPT_NAME': '/app.py', 'PATH_INFO': path,
                   'PATH_TRANSLATED': r'C:\inetpub\wwwroot' + path.replace('/', '\\'),
                   'SERVER_SOFTWARE': 'Microsoft-IIS/10.0'})
    out, err, rc = run_cgi_code(SHOW.format(cls='IISCGIHandler'), env)
    status, _, body = split_cgi_response(out)
    seen = json.loads(body)
    assert status == '200 OK'
    assert seen['SCRIPT_NAME'] == '/app.py' and seen['PATH_INFO'] == expected
    assert seen['PATH_TRANSLATED'] == env['PATH_TRANSLATED']   # left as IIS set it


@pytest.mark.parametrize('cls', ['CGIHandler', 'IISCGIHandler'])
def test_httpoxy_dropped_from_environ_os_environ_and_children(cls):
    import json
    env = cgi_env({'HTTP_PROXY': 'http://attacker.invalid:3128'})
    out, err, rc = run_cgi_code(SHOW.format(cls=cls), env)
    seen = json.loads(split_cgi_response(out)[2])
    assert seen['HTTP_PROXY'] is None
    assert seen['os.environ HTTP_PROXY'] is None
    assert 'attacker' not in seen['child']


def environ_seen_by_the_app(base_env):
    """The environ an application gets from BaseCGIHandler given *base_env*."""
    import io
    from gateway.handlers import BaseCGIHandler
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response('200 OK', [])
        return []
    BaseCGIHandler(io.BytesIO(), io.BytesIO(), io.StringIO(), base_env).run(app)
    return seen


def test_httpoxy_dropped_by_base_cgi_handler():
    seen = environ_seen_by_the_app({'HTTP_PROXY': 'http://x', 'HTTP_HOST': 'h'})
    assert 'HTTP_PROXY' not in seen and seen['HTTP_HOST'] == 'h'


def test_cgi_input_stops_at_content_length():
    code = ("from gateway.handlers import CGIHandler\n"
            "def app(environ, start_response):\n"
            "    body = environ['wsgi.input'].read()\n"
            "    more = environ['wsgi.input'].read(10)\n"
            "    start_response('200 OK', [])\n"
            "    return [body + b'|' + more]\n"
            "CGIHandler().run(app)\n")
    out, err, rc = run_cgi_code(code, cgi_env({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '5'}),
                                stdin=b'helloEXTRA-NOT-BODY')
    assert split_cgi_response(out)[2] == b'hello|'


def test_cgi_input_without_length_reads_to_eof():
    code = ("from gateway.handlers import CGIHandler\n"
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            "    return [b''.join(environ['wsgi.input'])]\n"
            "CGIHandler().run(app)\n")
    out, err, rc = run_cgi_code(code, cgi_env({'REQUEST_METHOD': 'POST'}), stdin=b'a\nb\nc')
    assert split_cgi_response(out)[2] == b'a\nb\nc'


def test_non_numeric_content_length_is_a_500_with_a_log_line():
    code = ("from gateway.handlers import CGIHandler\n"
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            "    return [environ['wsgi.input'].read()]\n"
            "CGIHandler().run(app)\n")
    out, err, rc = run_cgi_code(code, cgi_env({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': 'ten'}))
    assert split_cgi_response(out)[0] == '500 Internal Server Error'
    assert "CONTENT_LENGTH is not a non-negative integer: 'ten'" in err


def test_content_headers_only_as_cgi_variables():
    seen = environ_seen_by_the_app({'CONTENT_TYPE': 'text/plain', 'HTTP_CONTENT_TYPE': 'text/plain',
                                    'HTTP_CONTENT_LENGTH': '0', 'CONTENT_LENGTH': '0'})
    assert seen['CONTENT_TYPE'] == 'text/plain' and seen['CONTENT_LENGTH'] == '0'
    assert 'HTTP_CONTENT_TYPE' not in seen and 'HTTP_CONTENT_LENGTH' not in seen

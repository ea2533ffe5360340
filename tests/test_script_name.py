"""--script-name PREFIX: the application mounted at PREFIX whatever the web
server split (gateway.handlers.mounted_path), for both entry points.

The rule in-process first, every case the option's help promises; then
``gateway cgi`` and ``gateway fastcgi`` as processes. The web servers that
need it (h2o, Caddy without split, HAProxy without path-info) are in
test_fastcgi_fronts.py, IIS's wildcard mapping in test_iis_fronts.py.
"""

import pytest

from gateway.apploader import load_application, with_mount_point
from gateway.handlers import mounted_path, script_name_prefix

from support.cgi_support import cgi_env, run_gateway_cgi, split_cgi_response
from support.fcgi_client import ServerProcess, cgi_params, request

NOT_FOUND = b'Not Found\n'


def run(app, **variables):
    """(status, SCRIPT_NAME, PATH_INFO, body) of *app* for a request with the
    CGI *variables* (PATH_INFO left out when None); the path variables are
    those the application saw, None when it was not called."""
    environ = {name: value for name, value in variables.items() if value is not None}
    seen, answer = [], []

    def recording(environ, start_response):
        seen.append((environ['SCRIPT_NAME'], environ['PATH_INFO']))
        start_response('200 OK', [])
        return [b'called']

    def start_response(status, headers):
        answer.append(status)
    body = b''.join(app(recording)(environ, start_response))
    script_name, path_info = seen[0] if seen else (None, None)
    return answer[0], script_name, path_info, body


def mounted(prefix):
    return lambda inner: with_mount_point(inner, prefix)


# (SCRIPT_NAME, PATH_INFO) as a web server sent them -> as the application
# mounted at /app sees them, or None: 404 and the application not called.
AT_APP = [
    # h2o, Caddy without split: SCRIPT_NAME empty, the whole path in PATH_INFO.
    (('', '/app'), ('/app', '')),
    (('', '/app/'), ('/app', '/')),
    (('', '/app/env/x'), ('/app', '/env/x')),
    (('', '/app//x'), ('/app', '//x')),
    (('', '/appother'), None),
    (('', '/application/x'), None),
    (('', '/APP/x'), None),          # paths are compared as they are, case included
    (('', '/'), None),
    (('', ''), None),
    (('', '/ap'), None),
    # HAProxy without path-info: the whole path as SCRIPT_NAME, no PATH_INFO.
    (('/app/env/x', None), ('/app', '/env/x')),
    (('/app', None), ('/app', '')),
    (('/appother', None), None),
    # A server that split at the mount point already: kept as it is.
    (('/app', '/env/x'), ('/app', '/env/x')),
    (('/app', ''), ('/app', '')),
    # A server that split elsewhere: joined again, then split at /app.
    (('/app/env', '/x'), ('/app', '/env/x')),
    (('/other', '/app/x'), None),
]


@pytest.mark.parametrize('sent, seen', AT_APP)
@pytest.mark.parametrize('prefix', ['/app', '/app/', '/app//'])
def test_mount_point(prefix, sent, seen):
    status, script_name, path_info, body = run(mounted(prefix), SCRIPT_NAME=sent[0],
                                               PATH_INFO=sent[1])
    if seen is None:
        assert (status, script_name, body) == ('404 Not Found', None, NOT_FOUND)
    else:
        assert (status, (script_name, path_info)) == ('200 OK', seen)


@pytest.mark.parametrize('sent, seen', [
    (('', '/'), ('', '/')),
    (('', ''), ('', '')),
    (('', '/app/x'), ('', '/app/x')),
    (('/app/x', None), ('', '/app/x')),
])
def test_root_mount_point_takes_every_path(sent, seen):
    # "/" is the root: SCRIPT_NAME empty, the whole path as PATH_INFO (for
    # HAProxy without path-info, which sends the whole path as SCRIPT_NAME).
    assert run(mounted('/'), SCRIPT_NAME=sent[0], PATH_INFO=sent[1])[1:3] == seen


@pytest.mark.parametrize('prefix, path_info, seen', [
    # PREFIX is a decoded path, as PATH_INFO is: "/my%20app/x" in the URL
    # arrives as "/my app/x" and matches "/my app".
    ('/my app', '/my app/x', ('/my app', '/x')),
    # A "%" in PREFIX is a "%", not an escape: it matches a path whose URL
    # held "%25".
    ('/my%20app', '/my app/x', None),
    ('/my%20app', '/my%20app/x', ('/my%20app', '/x')),
    # Non-ASCII: PREFIX's UTF-8 bytes, as latin-1 (PEP 3333), as the request's.
    ('/caf\xe9', '/caf\xc3\xa9/x', ('/caf\xc3\xa9', '/x')),
    ('/caf\xe9', '/caf\xe9/x', None),
])
def test_mount_point_is_a_decoded_path(prefix, path_info, seen):
    status, script_name, path_info, _ = run(mounted(prefix), SCRIPT_NAME='',
                                            PATH_INFO=path_info)
    assert ((script_name, path_info) if status == '200 OK' else None) == seen


@pytest.mark.parametrize('prefix', ['app', '', 'app/', '*'])
def test_mount_point_must_be_a_path(prefix):
    with pytest.raises(ValueError, match="must be a URL path starting with '/'"):
        script_name_prefix(prefix)


def test_iis_path_info_is_undone_first():
    # An IIS wildcard mapping sends the whole path as both variables.
    app = load_application(None, lambda e, s: s('200 OK', []) or [
        ('%s|%s' % (e['SCRIPT_NAME'], e['PATH_INFO'])).encode()], iis=True, script_name='/wild')
    answer = []
    body = app({'SCRIPT_NAME': '/wild/env/x', 'PATH_INFO': '/wild/env/x'},
               lambda status, headers: answer.append(status))
    assert (answer, b''.join(body)) == (['200 OK'], b'/wild|/env/x')


def test_other_variables_are_left_alone():
    environ = {'SCRIPT_NAME': '', 'PATH_INFO': '/app/x', 'REQUEST_URI': '/app/x?q',
               'PATH_TRANSLATED': '/srv/app/x'}
    assert mounted_path(environ, '/app') == ('/app', '/x')
    with_mount_point(lambda e, s: [], '/app')(environ, None)
    assert environ == {'SCRIPT_NAME': '/app', 'PATH_INFO': '/x', 'REQUEST_URI': '/app/x?q',
                       'PATH_TRANSLATED': '/srv/app/x'}


# --- the entry points ---------------------------------------------------------------

@pytest.mark.parametrize('how', ['option', 'variable'])
def test_cgi_command(how):
    env = cgi_env({'SCRIPT_NAME': '', 'PATH_INFO': '/app/a/b'})
    args = ('--script-name', '/app', 'apps.cliapps:app') if how == 'option' else (
        'apps.cliapps:app',)
    if how == 'variable':
        env['GATEWAY_SCRIPT_NAME'] = '/app'
    out, err, rc = run_gateway_cgi(env, args=args)
    assert (rc, err, split_cgi_response(out)[2]) == (0, '', b'app /app|/a/b')
    out, err, rc = run_gateway_cgi({**env, 'PATH_INFO': '/elsewhere'}, args=args)
    status, headers, body = split_cgi_response(out)
    assert (status, body, rc) == ('404 Not Found', NOT_FOUND, 0)


def test_cgi_command_refuses_a_mount_point_that_is_no_path():
    out, err, rc = run_gateway_cgi(cgi_env(), args=('--script-name', 'app', 'apps.cliapps:app'))
    assert (out, rc) == (b'', 1)
    assert "gateway cgi: --script-name: the mount point must be a URL path" in err


@pytest.mark.parametrize('how', ['option', 'variable'])
def test_fastcgi_server(how):
    args, env = ['apps.cliapps:app', '--bind', '127.0.0.1:0', '--workers', '1'], {}
    if how == 'option':
        args += ['--script-name', '/app/']
    from support.fcgi_client import server_env
    env = server_env(**({'GATEWAY_SCRIPT_NAME': '/app/'} if how == 'variable' else {}))
    with ServerProcess(args, env=env) as server:
        target = server.address()
        assert request(target, cgi_params('/app/a/b')).body == b'app /app|/a/b'
        assert request(target, cgi_params('', SCRIPT_NAME='/app/a')).body == b'app /app|/a'
        response = request(target, cgi_params('/apple'))
        assert (response.status, response.body) == (404, NOT_FOUND)


def test_fastcgi_server_refuses_a_mount_point_that_is_no_path():
    with ServerProcess(['apps.cliapps:app', '--bind', '127.0.0.1:0',
                        '--script-name', 'app']) as server:
        assert server.wait() == 2
        assert "argument --script-name: the mount point must be a URL path" in server.log

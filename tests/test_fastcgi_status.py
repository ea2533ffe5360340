"""Status and ping (--status-path, --ping-path, --status-bind): answered by
the gateway, never the application, in PHP-FPM's fields, even when every
worker is hung; their bad input refused before anything starts."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from support.helpers import unavailable, wait_until
from support.fcgi_client import ServerProcess, get, server_env
from gateway import cli
from gateway.fastcgi import status as status_page
from gateway.fastcgi.client import cgi_params, encode_request
from gateway.fastcgi.config import Config
from gateway.fastcgi.scoreboard import READY, Scoreboard

APP = 'apps.fcgiapps:router'
OWN = ['--status-path', '/status', '--ping-path', '/ping']

# PHP-FPM's fields (its status page's documentation), which its exporters read.
PHP_FPM_POOL = ('pool', 'process manager', 'start time', 'start since', 'accepted conn',
                'listen queue', 'max listen queue', 'listen queue len', 'idle processes',
                'active processes', 'total processes', 'max active processes',
                'max children reached', 'slow requests')
PHP_FPM_ROW_JSON = ('pid', 'state', 'start time', 'start since', 'requests',
                    'request duration', 'request method', 'request uri', 'content length',
                    'user', 'script', 'last request cpu', 'last request memory')


def _board_with_a_request(uri='/x', method='GET'):
    board = Scoreboard(2, 1)
    record = board.claim(1)
    record.set_header(pid=os.getpid(), state=READY)
    record.started(0, cgi_params(uri, method=method))
    record.finished(0)
    record.publish()
    return board


# ---------------------------------------------------------------------------
# The formats, in this process
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('query, expected', [
    ('', ('text', False)), ('full', ('text', True)), ('json', ('json', False)),
    ('json&full', ('json', True)), ('full&html', ('html', True)),
    ('openmetrics=', ('openmetrics', False)),
])
def test_the_query_chooses_the_format(query, expected):
    assert status_page.parse_query(query) == expected


def test_an_unknown_format_names_the_formats():
    with pytest.raises(ValueError) as caught:
        status_page.parse_query('json&xml')
    assert "'xml'" in str(caught.value) and 'text, json, openmetrics, html' in str(caught.value)


def test_text_and_json_carry_php_fpm_fields():
    board = _board_with_a_request('/p?q=1', 'POST')
    snapshot = status_page.snapshot(Config(app='my.app:application'), board, [], full=True)
    text = status_page.render(snapshot, 'text')
    for field in PHP_FPM_POOL:
        assert re.search(rf'^{field}: +\S', text, re.M), field
    # One column for every value, as PHP-FPM aligns them.
    assert len({line.index(':') + len(line.split(':', 1)[1]) - len(line.split(':', 1)[1].lstrip())
                for line in text.splitlines() if ':' in line and not line.startswith('start time')}) == 1
    assert re.search(r'^request URI: +/p\?q=1$', text, re.M)
    assert re.search(r'^start time: +\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$', text, re.M)
    document = json.loads(status_page.render(snapshot, 'json'))
    assert set(PHP_FPM_POOL) <= set(document)
    [row] = document['processes']
    assert set(PHP_FPM_ROW_JSON) <= set(row)
    assert (row['pid'], row['request method'], row['request uri']) == (os.getpid(), 'POST',
                                                                       '/p?q=1')
    assert document['pool'] == 'my.app:application' and isinstance(document['start time'], int)
    board.close()


def test_html_escapes_what_the_requests_put_there():
    board = _board_with_a_request('/<script>alert(1)</script>')
    page = status_page.render(status_page.snapshot(Config(), board, [], full=True), 'html')
    assert '<script>alert' not in page and '&lt;script&gt;alert(1)&lt;/script&gt;' in page
    board.close()


def _promtool():
    path = shutil.which('promtool')
    if path is None:
        unavailable('promtool (Debian package prometheus) is not installed')
    return path


@pytest.mark.parametrize('full', [False, True])
def test_openmetrics_passes_promtool(full):
    board = _board_with_a_request()
    text = status_page.render(status_page.snapshot(Config(app='a'), board, [], full=full),
                              'openmetrics')
    board.close()
    assert text.endswith('# EOF\n') and 'phpfpm_accepted_connections_total{pool="a"} 1' in text
    checked = subprocess.run([_promtool(), 'check', 'metrics'], input=text.encode(),
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ---------------------------------------------------------------------------
# A real server
# ---------------------------------------------------------------------------

def _status(target, query=''):
    response = get(target, '/status', query=query)
    assert response.status == 200, response.stdout
    return response


def test_ping_and_status_are_the_gateways_not_the_applications():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2', *OWN,
                        '--ping-response', 'still here']) as server:
        address = server.address()
        pids = server.wait_booted(2)
        ping = get(address, '/ping')
        assert (ping.status, ping.body) == (200, b'still here\n')
        assert get(address, '/hello').body != ping.body     # the application answers the rest
        for _ in range(5):
            assert get(address, '/hello').status == 200
        # Published a few times a second: poll until the page has them.
        document = wait_until(
            lambda: (lambda d: d if d['accepted conn'] >= 7 else None)(
                json.loads(_status(address, 'json&full').body)),
            what='the requests counted on the status page')
        assert document['total processes'] == 2 and document['active processes'] >= 1
        assert sorted({row['pid'] for row in document['processes']}) == sorted(pids)
        assert 'Content-Type: application/json' in _status(address, 'json').head
        text = _status(address).body.decode()
        assert text.startswith('pool:') and 'process manager:      static' in text
        assert 'text/html' in _status(address, 'html').head
        bad = get(address, '/status', query='xml')
        assert bad.status == 400 and bad.body.count(b'\n') == 1 and b'openmetrics' in bad.body


def test_the_arbiter_answers_when_every_worker_is_hung(tmp_path):
    status_socket = str(tmp_path / 'status.sock')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '2', '--timeout', '0',
                        *OWN, '--status-bind', f'unix:{status_socket}']) as server:
        address = server.address()
        server.wait_booted(2)
        server.wait_for_log(r'status and ping answered by the arbiter on unix:')
        hung = [socket.create_connection(address) for _ in range(2)]
        try:
            for number, sock in enumerate(hung):
                sock.sendall(encode_request(1, cgi_params('/slow', query='3600')))
                wait_until(lambda: server.count('slow request started') > number,
                           what='the hung request started')
            # Every worker is now inside the application, for an hour.
            document = wait_until(
                lambda: (lambda d: d if all(r['request uri'] == '/slow?3600'
                                            for r in d['processes']) else None)(
                    json.loads(_status(status_socket, 'json&full').body)),
                what='both hung requests on the status page')
            assert (document['active processes'], document['idle processes']) == (2, 0)
            assert {row['state'] for row in document['processes']} == {'Running'}
            assert get(status_socket, '/ping').body == b'pong\n'
            other = get(status_socket, '/hello')
            assert other.status == 404 and b'--status-path' in other.body
            text = _status(status_socket, 'full').body.decode()
            assert text.count('state:                Running') == 2
        finally:
            for sock in hung:
                sock.close()
        server.send_signal(signal.SIGINT)
        assert server.wait() == 0
    assert not os.path.exists(status_socket)


@pytest.mark.parametrize('args, says', [
    (['--status-path', 'status'], "--status-path: 'status' does not start with /"),
    (['--ping-path', 'ping?x'], "--ping-path: 'ping?x' does not start with /"),
    (['--ping-path', '/p?x'], 'without a query'),
    (['--status-path', '/s', '--ping-path', '/s'], '--status-path and --ping-path are both /s'),
    (['--status-path', '/s', '--status-bind', '127.0.0.1'], "bad --bind '127.0.0.1'"),
    (['--status-bind', '127.0.0.1:0'], '--status-bind answers --status-path and --ping-path'),
    (['--status-path', '/s', '--workers', '0', '--status-bind', '127.0.0.1:0'],
     '--status-bind needs an arbiter'),
])
def test_bad_status_options_are_one_line_and_exit_2(args, says, capsys):
    assert cli.fastcgi_main([APP, '--bind', '127.0.0.1:0', *args]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('gateway fastcgi: error:'), err
    assert says in err, err


def test_a_path_in_a_variable_is_checked_too(monkeypatch, capsys):
    monkeypatch.setenv('GATEWAY_STATUS_PATH', 'status')
    assert cli.fastcgi_main([APP, '--bind', '127.0.0.1:0']) == 2
    err = capsys.readouterr().err
    assert err.startswith("gateway fastcgi: error: GATEWAY_STATUS_PATH='status': "), err


def test_an_unusable_status_bind_starts_nothing(tmp_path):
    taken = socket.create_server(('127.0.0.1', 0))
    pool_socket = tmp_path / 'pool.sock'
    try:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [os.sys.executable, '-m', 'gateway', 'fastcgi', APP, '--bind', f'unix:{pool_socket}',
             '--status-path', '/status', '--status-bind', f'127.0.0.1:{port}'],
            env=server_env(), capture_output=True, timeout=30, cwd=tmp_path)
    finally:
        taken.close()
    errors = [line for line in done.stderr.decode().splitlines() if 'error' in line]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert errors[0].startswith(f'gateway fastcgi: error: --status-bind: ') and str(port) in errors[0]
    assert 'booted' not in done.stderr.decode() and not pool_socket.exists()


def test_one_process_without_an_arbiter_has_its_page_too():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '0', '--threads', '2',
                        *OWN]) as server:
        address = server.address()
        assert get(address, '/hello').status == 200
        document = json.loads(_status(address, 'json&full').body)
        assert document['total processes'] == 2 and len(document['processes']) == 2
        assert {row['pid'] for row in document['processes']} == {server.proc.pid}
        assert document['accepted conn'] >= 2     # /hello, and this request


def test_the_single_connection_of_iis_answers_them_too():
    from gateway.fastcgi.client import Client
    from gateway.fastcgi.server import serve_stream
    from support.helpers import in_background

    def application(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'the application']
    ours, theirs = socket.socketpair()
    config = Config(workers=0, status_path='/status', ping_path='/ping')
    served = in_background(serve_stream, ours, application, config)
    with Client(theirs) as client:
        assert client.request(cgi_params('/app')).body == b'the application'
        assert client.request(cgi_params('/ping'), keep_conn=True).body == b'pong\n'
        page = client.request(cgi_params('/status', query='json'), keep_conn=True)
        assert json.loads(page.body)['accepted conn'] == 3
    theirs.close()      # IIS closes the pipe: the process's work is done
    served()
    ours.close()

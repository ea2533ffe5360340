"""``gateway request`` and ``gateway status`` against a real server: the
answer printed for a person, the exit status, one line for each way of not
getting an answer."""

import json
import os
import socket
import subprocess
import sys

import pytest

from support.helpers import unavailable, wait_until
from support.fcgi_client import TESTS, ServerProcess, server_env

APP = 'apps.fcgiapps:router'


def gateway(*args, stdin=None, user=None, python=sys.executable):
    """Run ``python -m gateway ARGS``: (exit status, stdout bytes, stderr text)."""
    command = [python, '-m', 'gateway', *args]
    done = subprocess.run(command, env=server_env(), cwd=TESTS, capture_output=True,
                          input=stdin, timeout=60, user=user)
    return done.returncode, done.stdout, done.stderr.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp('client')
    os.chmod(directory, 0o755)
    path = str(directory / 'fastcgi.sock')
    with ServerProcess([APP, '--bind', f'unix:{path}', '--workers', '1', '--unix-mode', '600',
                        '--status-path', '/status', '--ping-path', '/ping']) as process:
        process.wait_booted(1)
        yield f'unix:{path}'


def test_request_prints_status_line_headers_and_body(server):
    status, out, err = gateway('request', server, '/echo', '--method', 'POST',
                               '--data', 'hello', '--header', 'Content-Type: text/plain')
    assert status == 0, err
    head, _, body = out.partition(b'\n\n')
    lines = head.decode().splitlines()
    assert lines[0] == 'Status: 200 OK' and 'Content-Length: 5' in lines
    assert body == b'hello'


def test_request_sends_headers_params_and_a_body_from_a_file(server, tmp_path):
    body_file = tmp_path / 'body'
    body_file.write_bytes(b'x' * 70000)
    status, out, _ = gateway('request', server, '/echo?a=1', '-X', 'PUT', '-d', f'@{body_file}')
    assert status == 0 and out.endswith(b'\n\n' + b'x' * 70000)
    status, out, _ = gateway('request', server, '/peer', '--param', 'REMOTE_ADDR=192.0.2.7')
    assert status == 0 and out.endswith(b'192.0.2.7 GET /peer')


def test_a_non_2xx_answer_is_printed_and_exits_1(server):
    status, out, _ = gateway('request', server, '/status', '--data', '', '-X', 'GET',
                             '--param', 'QUERY_STRING=xml')
    assert status == 1 and out.startswith(b'Status: 400 Bad Request\n')


def test_ping_through_request_is_the_health_check(server):
    status, out, _ = gateway('request', server, '/ping', '--quiet')
    assert (status, out) == (0, b'')


def test_status_prints_the_page_as_text_or_json(server):
    status, out, _ = gateway('status', server)
    assert status == 0 and out.startswith(b'pool:') and b'accepted conn:' in out
    status, out, _ = gateway('status', server, '--json', '--full')
    document = json.loads(out)
    assert status == 0 and len(document['processes']) == 1 and document['pool'] == APP


def test_status_at_a_path_that_is_not_the_status_page(server):
    status, _, err = gateway('status', server, '--path', '/elsewhere')
    assert status == 1 and err.count('\n') == 1 and 'is that its --status-path?' in err


@pytest.mark.parametrize('address, says', [
    ('unix:/nonexistent/fastcgi.sock', 'no such socket'),
    ('127.0.0.1:PORT', 'connection refused: nothing listens there'),
])
def test_no_answer_is_one_line_naming_the_address_and_exits_3(address, says):
    if 'PORT' in address:
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            address = address.replace('PORT', str(sock.getsockname()[1]))
    status, out, err = gateway('request', address, '/ping')
    assert (status, out) == (3, b'')
    assert err.count('\n') == 1 and address in err and says in err, err


def test_a_socket_this_user_cannot_open_is_named(server):
    if os.getuid() != 0:
        unavailable('switching to another user needs root')
    # This interpreter may live where another user cannot run it (under
    # /root); the system's can, and the package needs nothing else.
    if not os.access('/usr/bin/python3', os.X_OK):
        unavailable('no /usr/bin/python3 to run as another user')
    status, _, err = gateway('request', server, '/ping', user='nobody',
                             python='/usr/bin/python3')
    assert status == 3 and err.count('\n') == 1
    assert server in err and 'permission denied' in err and 'uid 65534' in err


def test_a_peer_the_server_refuses_is_told_so():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--web-server-addrs', '192.0.2.1']) as process:
        host, port = process.address()
        process.wait_booted(1)
        status, _, err = gateway('request', f'{host}:{port}', '/ping')
        assert status == 3 and err.count('\n') == 1
        assert 'closed the connection without answering' in err and '--web-server-addrs' in err
        wait_until(lambda: process.count('refused: not in') > 0, what='the refusal logged')


@pytest.mark.parametrize('args, says', [
    (['request', 'somewhere', '/'], "bad address 'somewhere'"),
    (['request', '127.0.0.1:9', 'relative'], "PATH 'relative' must start with /"),
    (['request', '127.0.0.1:9', '/', '--header', 'nocolon'], "--header 'nocolon'"),
    (['request', '127.0.0.1:9', '/', '--param', 'novalue'], "--param 'novalue'"),
    (['request', '127.0.0.1:9', '/', '--data', '@/nonexistent'], '--data @/nonexistent'),
    (['status'], 'the following arguments are required: ADDRESS'),
])
def test_usage_errors_exit_2(args, says):
    status, _, err = gateway(*args)
    assert status == 2 and err.count('\n') == 1 and says in err, err

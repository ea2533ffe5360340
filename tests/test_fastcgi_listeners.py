"""Where the FastCGI server listens: --bind forms, fd 0 as web servers hand
it over, unix socket files, and FCGI_WEB_SERVER_ADDRS."""

import grp
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from support.helpers import unavailable

from support.fcgi_client import ServerProcess, cgi_params, get, read_until_end_request, server_env
from gateway.fastcgi import listeners as L
from gateway.fastcgi import client as c
from gateway.fastcgi import protocol as p

APP = 'apps.fcgiapps:router'


def _has_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


@pytest.fixture
def ipv6_loopback():
    if not _has_ipv6():
        unavailable('no IPv6 loopback here')


needs_ipv6 = pytest.mark.usefixtures('ipv6_loopback')


# ---------------------------------------------------------------------------
# --bind syntax
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, kind, target', [
    ('127.0.0.1:9000', 'inet', ('127.0.0.1', 9000)),
    ('localhost:0', 'inet', ('localhost', 0)),
    ('[::1]:9000', 'inet6', ('::1', 9000)),
    ('[::]:80', 'inet6', ('::', 80)),
    ('unix:/run/app/fcgi.sock', 'unix', '/run/app/fcgi.sock'),
    ('unix:relative.sock', 'unix', 'relative.sock'),
    ('fd://3', 'fd', 3),
])
def test_bind_forms(text, kind, target):
    address = L.parse_bind(text)
    assert (address.kind, address.target) == (kind, target)
    assert str(address) == text


@pytest.mark.parametrize('text, says', [
    ('9000', 'expected HOST:PORT'),
    ('127.0.0.1', 'expected HOST:PORT'),
    ('127.0.0.1:http', 'port must be a number'),
    ('127.0.0.1:70000', 'port must be a number'),
    ('::1:9000', 'brackets'),
    ('[::1]9000', '[ADDRESS]:PORT'),
    ('[not-v6]:9000', 'not an IPv6 address'),
    ('unix:', 'needs a path'),
    ('fd://x', 'file descriptor number'),
    ('', 'expected'),
])
def test_bad_bind_says_what_is_wrong(text, says):
    with pytest.raises(L.BindSyntaxError, match=r'(?i)' + says.replace('[', r'\[').replace(']', r'\]')):
        L.parse_bind(text)


# ---------------------------------------------------------------------------
# Opening listeners, in this process
# ---------------------------------------------------------------------------

def test_ipv4_listener_with_reuseaddr_and_backlog():
    listener = L.open_listener('127.0.0.1:0', backlog=7)
    try:
        sock = listener.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        port = sock.getsockname()[1]
        assert listener.name == f'127.0.0.1:{port}'
    finally:
        listener.close()


@needs_ipv6
def test_ipv6_listener_is_ipv6_only():
    listener = L.open_listener('[::1]:0')
    try:
        assert listener.sock.family == socket.AF_INET6
        assert listener.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert listener.name.startswith('[::1]:')
    finally:
        listener.close()


def test_address_in_use_is_reported_as_such():
    first = L.open_listener('127.0.0.1:0')
    try:
        port = first.sock.getsockname()[1]
        with pytest.raises(L.ListenError, match='address already in use: 127.0.0.1:%d' % port):
            L.open_listener(f'127.0.0.1:{port}')
    finally:
        first.close()


def test_unix_socket_mode_and_group_by_name_and_id(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name
    for given in (group, str(os.getgid())):
        path = str(tmp_path / f'by-{given}.sock')
        listener = L.open_listener('unix:' + path, unix_mode=0o660, unix_group=given)
        try:
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == os.getgid()
            assert f'mode 0660, group {group}' in listener.name
        finally:
            listener.close()
            listener.remove_socket_file()
        assert not os.path.exists(path)


SWAP_AFTER_BIND = """
import json, os, sys
from gateway.fastcgi import listeners as L

path, victim, group = sys.argv[1:]
events = []

def attacker(event, args):
    # Whoever can write the socket's directory replaces the socket with a
    # symlink as soon as bind() has made it, before anything else touches
    # the path.
    if event == 'socket.bind' and args[1] == path:
        events.append('bind')
    elif event in ('os.chmod', 'os.chown') and args[0] == path:
        events.append(event)
        if not os.path.islink(path):
            os.rename(path, path + '.moved')
            os.symlink(victim, path)

sys.addaudithook(attacker)
listener = L.open_listener('unix:' + path, unix_mode=0o660, unix_group=group)
print(json.dumps(events))
"""


def test_a_symlink_swapped_in_after_bind_changes_nothing_it_points_to(tmp_path):
    """The socket's mode is set when bind() creates it and its group is
    changed without following a link: a symlink put in its place cannot
    lend the mode or the group to another file. Before, chmod() and chown()
    of the path followed it."""
    victim = tmp_path / 'victim.conf'
    victim.write_text('secret')
    victim.chmod(0o600)
    before = victim.stat()
    groups = [g for g in grp.getgrall() if g.gr_gid != before.st_gid]
    group = groups[0].gr_name if os.geteuid() == 0 and groups else str(os.getgid())
    path = str(tmp_path / 'app.sock')
    done = subprocess.run([sys.executable, '-c', SWAP_AFTER_BIND, path, str(victim), group],
                          env=server_env(), capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    after = victim.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_gid) == (0o600, before.st_gid), events
    assert events[0] == 'bind' and 'os.chmod' not in events, events
    created = os.lstat(path + '.moved') if os.path.exists(path + '.moved') else os.lstat(path)
    assert stat.S_ISSOCK(created.st_mode) and stat.S_IMODE(created.st_mode) == 0o660


def test_unix_socket_mode_is_set_at_creation(tmp_path):
    for mode in (0o600, 0o660, 0o666):
        path = str(tmp_path / f'{mode:o}.sock')
        listener = L.open_listener('unix:' + path, unix_mode=mode)
        try:
            assert stat.S_IMODE(os.lstat(path).st_mode) == mode
        finally:
            listener.close()
            listener.remove_socket_file()


def test_unix_socket_given_to_another_group(tmp_path):
    if os.geteuid() != 0:
        unavailable('giving a socket to another group needs root')
    other = next(g for g in grp.getgrall() if g.gr_gid != os.getgid())
    path = str(tmp_path / 'other.sock')
    listener = L.open_listener('unix:' + path, unix_mode=0o660, unix_group=other.gr_name)
    try:
        assert os.stat(path).st_gid == other.gr_gid
    finally:
        listener.close()
        listener.remove_socket_file()


def test_unknown_group_is_refused(tmp_path):
    with pytest.raises(L.ListenError, match='no such group'):
        L.open_listener('unix:' + str(tmp_path / 'x.sock'), unix_group='no-such-group-here')


def test_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / 'stale.sock')
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()            # the file stays, nobody listens: a crashed server's leftover
    listener = L.open_listener('unix:' + path)
    try:
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(path)     # the new socket answers
        probe.close()
    finally:
        listener.close()
        listener.remove_socket_file()


def test_live_socket_is_not_stolen(tmp_path):
    path = str(tmp_path / 'live.sock')
    first = L.open_listener('unix:' + path)
    try:
        with pytest.raises(L.ListenError, match='address already in use'):
            L.open_listener('unix:' + path)
        assert os.path.exists(path)
    finally:
        first.close()
        first.remove_socket_file()


def test_non_socket_file_is_never_deleted(tmp_path):
    path = tmp_path / 'precious.txt'
    path.write_text('data')
    with pytest.raises(L.ListenError, match='exists and is not a socket; refusing to delete it'):
        L.open_listener(f'unix:{path}')
    assert path.read_text() == 'data'


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(L.ListenError, match='the directory .*nowhere does not exist'):
        L.open_listener(f'unix:{tmp_path}/nowhere/app.sock')


def test_unwritable_directory_mentions_search_permission(tmp_path, monkeypatch):
    # Root may write anywhere, so the refusal is simulated.
    monkeypatch.setattr(L.os, 'access', lambda path, mode: False)
    with pytest.raises(L.ListenError, match=r'not writable.*\+x\) permission on every parent'):
        L.open_listener(f'unix:{tmp_path}/app.sock')


def test_socket_file_replaced_by_another_server_is_left_alone(tmp_path):
    path = str(tmp_path / 'shared.sock')
    ours = L.open_listener('unix:' + path)
    ours.close()
    os.unlink(path)
    theirs = L.open_listener('unix:' + path)
    try:
        ours.remove_socket_file()
        assert os.path.exists(path)
    finally:
        theirs.close()
        theirs.remove_socket_file()


def test_inherited_fd_must_be_listening():
    a, b = socket.socketpair()
    try:
        with pytest.raises(L.ListenError, match='not listening'):
            L.inherited_listener(a.fileno(), f'fd://{a.fileno()}')
    finally:
        a.close()
        b.close()


def test_stdin_kinds():
    listening = socket.create_server(('127.0.0.1', 0))
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        assert L.stdin_kind(listening.fileno()) == 'listening'
        assert L.stdin_kind(a.fileno()) == 'connection'
        assert L.stdin_kind(r) is None
    finally:
        for s in (listening, a, b):
            s.close()
        os.close(r)
        os.close(w)


# ---------------------------------------------------------------------------
# FCGI_WEB_SERVER_ADDRS
# ---------------------------------------------------------------------------

def test_peer_check():
    allowed = L.allowed_peers('127.0.0.1, ::1')
    assert L.peer_allowed(('127.0.0.1', 5000), allowed)
    assert L.peer_allowed(('::ffff:127.0.0.1', 5000, 0, 0), allowed)     # IPv4-mapped
    assert L.peer_allowed(('::1', 5000, 0, 0), allowed)
    assert L.peer_allowed(('0:0:0:0:0:0:0:1', 5000, 0, 0), allowed)      # another spelling
    assert not L.peer_allowed(('127.0.0.2', 5000), allowed)
    assert not L.peer_allowed(('::2', 5000, 0, 0), allowed)
    assert L.peer_allowed('', allowed)                                   # unix peer
    assert L.peer_allowed(b'', allowed)
    # Unset: None, and anyone may connect (but see the wildcard tests).
    assert L.allowed_peers(None, environ={}) is None
    assert L.peer_allowed(('192.0.2.1', 1), None)
    from_env = L.allowed_peers(None, environ={'FCGI_WEB_SERVER_ADDRS': '10.1.1.1'})
    assert L.peer_allowed(('10.1.1.1', 1), from_env)
    assert not L.peer_allowed(('10.1.1.2', 1), from_env)
    with pytest.raises(ValueError, match="'web.example' is not an IP address"):
        L.allowed_peers('127.0.0.1,web.example')


def test_peer_check_with_networks():
    """Container networks hand out addresses from a range: CIDR entries,
    IPv4-mapped peers matching IPv4 ranges."""
    allowed = L.allowed_peers('10.0.0.0/8, fd00::/8, 192.0.2.7')
    for peer in (('10.1.2.3', 1), ('::ffff:10.200.0.1', 1, 0, 0), ('fd12:3456::1', 1, 0, 0),
                 ('192.0.2.7', 1), ('::ffff:192.0.2.7', 1, 0, 0)):
        assert L.peer_allowed(peer, allowed), peer
    for peer in (('11.0.0.1', 1), ('::ffff:11.0.0.1', 1, 0, 0), ('fe80::1', 1, 0, 0),
                 ('192.0.2.8', 1), ('::a00:1', 1, 0, 0)):
        assert not L.peer_allowed(peer, allowed), peer
    # Host bits in a range are the range that holds them, as `ip addr` prints it.
    assert L.peer_allowed(('172.18.9.9', 1), L.allowed_peers('172.18.0.5/16'))
    # An IPv4-mapped range is its IPv4 range.
    assert L.peer_allowed(('10.9.9.9', 1), L.allowed_peers('::ffff:10.0.0.0/104'))


def test_anyone_only_on_purpose():
    anyone = L.allowed_peers('any')
    assert anyone.anyone and L.peer_allowed(('192.0.2.1', 1), anyone)
    assert L.allowed_peers(None, environ={'FCGI_WEB_SERVER_ADDRS': ' ANY '}).anyone
    assert not L.allowed_peers('10.0.0.0/8').anyone


@pytest.mark.parametrize('value, says', [
    ('', "--web-server-addrs: empty"),
    (' , ', "--web-server-addrs: empty"),
    (',,', "--web-server-addrs: empty"),
    ('any, 10.0.0.1', "'any' stands alone"),
    ('10.0.0.0/33', "'10.0.0.0/33' is not an IP address or network"),
])
def test_bad_allow_lists_are_refused(value, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        L.allowed_peers(value)
    with pytest.raises(ValueError, match=re.escape(says.replace('--web-server-addrs',
                                                                'FCGI_WEB_SERVER_ADDRS'))):
        L.allowed_peers(None, environ={'FCGI_WEB_SERVER_ADDRS': value})


@pytest.mark.parametrize('text, everywhere', [
    ('0.0.0.0:9000', True), ('[::]:9000', True), ('0:9000', True), ('[0:0::0]:9000', True),
    ('127.0.0.1:9000', False), ('[::1]:9000', False), ('localhost:9000', False),
    ('unix:/run/app.sock', False), ('fd://3', False),
])
def test_which_binds_listen_everywhere(text, everywhere):
    assert L.listens_everywhere(L.parse_bind(text)) is everywhere


def _refused(address):
    """True when the server closes the connection without answering."""
    try:
        get(address, timeout=5)
    except (ConnectionError, OSError):
        return True
    return False


@needs_ipv6
def test_web_server_addrs_accept_and_refuse_v4_and_v6():
    env = server_env(FCGI_WEB_SERVER_ADDRS='127.0.0.1,::2')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--bind', '[::1]:0', '--workers', '1'],
                       env=env) as server:
        v4, v6 = server.addresses(2)
        assert get(v4, '/peer').status == 200
        assert _refused(v6)
        server.wait_for_log(r'refused: not in FCGI_WEB_SERVER_ADDRS')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--bind', '[::1]:0', '--workers', '1',
                        '--web-server-addrs', '::1']) as server:
        v4, v6 = server.addresses(2)
        assert _refused(v4)
        assert get(v6, '/peer').status == 200


def test_web_server_addrs_ranges_in_a_server():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--web-server-addrs', '127.0.0.0/30']) as server:
        assert get(server.address(), '/peer').status == 200
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--web-server-addrs', '10.0.0.0/8, fd00::/8']) as server:
        assert _refused(server.address())
        server.wait_for_log(r'connection from 127\.0\.0\.1 refused: not in --web-server-addrs')


# ---------------------------------------------------------------------------
# Real processes on each transport
# ---------------------------------------------------------------------------

def test_serves_on_ipv4():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        response = get(server.address(), '/peer')
        assert response.status == 200
        assert response.body == b'127.0.0.1 GET /peer'


@needs_ipv6
def test_serves_on_ipv6():
    with ServerProcess([APP, '--bind', '[::1]:0', '--workers', '1']) as server:
        host, port = server.address()
        assert host == '::1'
        assert get((host, port)).body == b'Hello, World!'


def test_serves_on_unix_socket_and_removes_it_at_exit(tmp_path):
    path = str(tmp_path / 'app.sock')
    with ServerProcess([APP, '--bind', 'unix:' + path, '--workers', '1',
                        '--unix-mode', '666']) as server:
        assert server.address() == path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        assert get(path, '/echo').status == 200
        server.send_signal(15)
        assert server.wait() == 0
    assert not os.path.exists(path)


def test_serves_on_an_inherited_fd():
    sock = socket.create_server(('127.0.0.1', 0))
    try:
        fd = sock.fileno()
        with ServerProcess([APP, '--bind', f'fd://{fd}', '--workers', '1'], pass_fds=[fd]) as server:
            server.wait_booted(1)
            assert 'listening on 127.0.0.1:' in server.log and f'(fd://{fd})' in server.log
            assert get(sock.getsockname(), '/pid').status == 200
    finally:
        sock.close()


def test_listening_socket_on_fd_0_as_spawn_fcgi_hands_it(tmp_path):
    # spawn-fcgi and mod_fcgid bind the socket, then start the program with
    # it as stdin (FCGI_LISTENSOCK_FILENO) and no address on the command line.
    path = str(tmp_path / 'spawned.sock')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(16)
    try:
        with ServerProcess([APP, '--workers', '2'], stdin=sock.fileno()) as server:
            server.wait_booted(2)
            assert f'listening on unix:{path} (fd 0)' in server.log
            for _ in range(3):
                assert get(path).body == b'Hello, World!'
            server.send_signal(15)
            assert server.wait() == 0
        assert os.path.exists(path), 'the socket file belongs to whoever created it'
    finally:
        sock.close()


def test_connected_socket_on_fd_0_is_served_in_process_iis_style():
    # IIS gives each process one connection on stdin and sends its requests
    # over it one after another; here a socketpair stands in for the pipe.
    ours, theirs = socket.socketpair()
    with ServerProcess([APP], stdin=theirs.fileno()) as server:
        theirs.close()
        ours.settimeout(10)
        for index in range(4):
            body = b'request %d' % index
            ours.sendall(c.encode_begin_request(1, keep_conn=True)
                         + c.encode_params(1, cgi_params('/echo', method='POST', body=body))
                         + c.encode_stdin(1, body))
            response = read_until_end_request(ours)
            assert (response.status, response.body, response.protocol_status) == (200, body, 0)
        assert 'arbiter' not in server.log
        ours.close()            # IIS closes the pipe: the process ends
        assert server.wait() == 0


@pytest.mark.parametrize('how', ['flag', 'variable'])
def test_iis_path_info_fixed_on_the_stdin_transport(how):
    ours, theirs = socket.socketpair()
    app = 'apps.fcgiapps:path_info'
    args, env = ([app, '--iis'], {}) if how == 'flag' else ([app], {'GATEWAY_IIS': '1'})
    with ServerProcess(args, stdin=theirs.fileno(), env=server_env(**env)) as server:
        theirs.close()
        ours.settimeout(10)
        for path, expected in (('/app.py/x/y', b'/x/y'), ('/app.py', b''), ('/other', b'/other')):
            params = cgi_params('/path', SCRIPT_NAME='/app.py', PATH_INFO=path)
            ours.sendall(c.encode_begin_request(1, keep_conn=True)
                         + c.encode_params(1, params) + c.encode_stdin(1, b''))
            response = read_until_end_request(ours)
            assert (response.status, response.body) == (200, expected)
        ours.close()
        assert server.wait() == 0


def test_cgi_fcgi_as_an_independent_client():
    cgi_fcgi = shutil.which('cgi-fcgi')
    if cgi_fcgi is None:
        unavailable('cgi-fcgi (Debian package libfcgi-bin) is not installed; scripts/test installs it')
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1']) as server:
        host, port = server.address()
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'REQUEST_METHOD': 'POST',
               'SCRIPT_NAME': '', 'PATH_INFO': '/echo', 'QUERY_STRING': '',
               'SERVER_NAME': 'localhost', 'SERVER_PORT': '80', 'SERVER_PROTOCOL': 'HTTP/1.1',
               'CONTENT_LENGTH': '11', 'CONTENT_TYPE': 'text/plain'}
        done = subprocess.run([cgi_fcgi, '-bind', '-connect', f'{host}:{port}'], env=env,
                              input=b'hello world', capture_output=True, timeout=15)
        assert done.returncode == 0, done.stderr
        head, _, body = done.stdout.partition(b'\r\n\r\n')
        assert body == b'hello world'
        assert b'Status: 200 OK' in head


# ---------------------------------------------------------------------------
# IIS on Windows: the named pipe on stdin, exercised here over a socketpair
# with a stand-in for msvcrt (the stream only needs os.read/os.write)
# ---------------------------------------------------------------------------

@pytest.fixture
def windows_listeners(monkeypatch):
    import importlib.util
    import types

    fake_msvcrt = types.SimpleNamespace(setmode=lambda fd, mode: None,
                                        get_osfhandle=lambda fd: fd)
    monkeypatch.setitem(sys.modules, 'msvcrt', fake_msvcrt)
    monkeypatch.setattr(os, 'O_BINARY', 0x8000, raising=False)
    monkeypatch.setattr(sys, 'platform', 'win32')
    import ctypes
    kernel32 = types.SimpleNamespace(GetFileType=_FakeGetFileType())
    monkeypatch.setattr(ctypes, 'windll', types.SimpleNamespace(kernel32=kernel32), raising=False)
    spec = importlib.util.spec_from_file_location('gateway.fastcgi.listeners_on_windows',
                                                  L.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeGetFileType:
    argtypes = restype = None

    def __call__(self, handle):
        return 3 if stat.S_ISSOCK(os.fstat(handle).st_mode) else 1   # FILE_TYPE_PIPE or DISK


def test_windows_pipe_stream_serves_iis_requests(windows_listeners):
    import threading
    from gateway.fastcgi.config import Config
    from gateway.fastcgi.server import serve_stream
    from apps.fcgiapps import router

    ours, theirs = socket.socketpair()
    r, w = os.pipe()
    try:
        assert windows_listeners.stdin_kind(theirs.fileno()) == 'connection'
        assert windows_listeners.stdin_kind(r) is None
        stream = windows_listeners._PipeStream(os.dup(theirs.fileno()))
        theirs.close()
        server = threading.Thread(target=serve_stream, args=(stream, router, Config()), daemon=True)
        server.start()
        ours.settimeout(10)
        for keep_conn in (True, True, False):
            ours.sendall(c.encode_begin_request(1, keep_conn=keep_conn)
                         + c.encode_params(1, cgi_params('/echo', method='POST', body=b'piped'))
                         + c.encode_stdin(1, b'piped'))
            assert read_until_end_request(ours).body == b'piped'
        ours.close()
        server.join(10)
        assert not server.is_alive()
        assert stream.fileno() == -1 or stream.recv(10) == b''
        stream.close()
        assert stream.fileno() == -1
    finally:
        ours.close()
        os.close(r)
        os.close(w)

"""Every front of the appliance, in containers, passes the front contract.

Each front is a web-server container of the nginx or Apache image, told by
GATEWAY_FRONT how to serve the demo application at /app; the fronts that talk
to the gateway's FastCGI server share one server container (``fastcgi_app``),
over TCP or over a unix socket on a shared volume. Containers run locked down,
as docker-compose.yml runs them. The fronts (conftest's ``front``) are started
once per session and shared with the other modules that test them.
"""

import http.client
import os
import textwrap
from contextlib import ExitStack

import pytest

from support.front_contract import UNDERSCORE_TWINS, FrontContract, chunked, environ_of

from .conftest import (
    ERROR_LOG_LINE, FASTCGI_SERVER_FRONTS, SOCKET, SOCKET_DIR, own_app_directory, run_front,
    wait_until,
)

pytestmark = pytest.mark.container


# The answer to a chunked request body of 100,000 bytes, on the fronts that
# cannot pass one on (haproxy/haproxy.cfg, caddy/app-fastcgi.caddy).
CHUNKED_REFUSED = {"haproxy-fastcgi": 400, "caddy-fastcgi": 500}
# The start of SERVER_SOFTWARE, for the fronts that pass no GATEWAY_FRONT.
SERVER_SOFTWARE = {"nginx-fastcgi": "nginx/", "nginx-fastcgi-replicas": "nginx/",
                   "lighttpd-fastcgi": "lighttpd",
                   "haproxy-fastcgi": "HAProxy ", "caddy-fastcgi": "Caddy/", "h2o-fastcgi": "h2o"}


class TestFront(FrontContract):

    def test_front_names_itself_on_the_demo_page(self, front):
        status, _, body = front.request("GET", "/app/")
        # Where the web server passes no GATEWAY_FRONT to the FastCGI server,
        # its SERVER_SOFTWARE names it.
        expected = SERVER_SOFTWARE.get(front.front, front.front)
        assert status == 200 and f"Served by <b>{expected}".encode() in body

    @UNDERSCORE_TWINS
    def test_header_with_underscore_is_not_merged(self, front, headers):
        if front.front == "h2o-fastcgi":
            # h2o passes "X_Real_User" on (h2o/h2o.conf): both fields arrive
            # as HTTP_X_REAL_USER, and the gateway keeps the last one sent.
            env = environ_of(front, "/app/env", **headers)
            assert env["HTTP_X_REAL_USER"] == list(headers.values())[-1]
            return
        super().test_header_with_underscore_is_not_merged(front, headers)

    def test_chunked_post_body(self, front):
        if front.front not in CHUNKED_REFUSED:
            return super().test_chunked_post_body(front)
        # HAProxy gives a FastCGI server only bodies of known length (400 past
        # its buffer); Caddy 2.6 sends CONTENT_LENGTH=-1 for a chunked body,
        # which the gateway refuses (500). A body that fits HAProxy's buffer
        # goes through.
        status = front.request("POST", "/app/echo", body=chunked(os.urandom(100000)),
                               headers={"Transfer-Encoding": "chunked"})[0]
        assert status == CHUNKED_REFUSED[front.front]
        if front.front == "haproxy-fastcgi":
            body = os.urandom(8000)
            assert front.request("POST", "/app/echo", body=chunked(body),
                                 headers={"Transfer-Encoding": "chunked"})[2] == body

    def test_authorization_reaches_the_app(self, front):
        env = environ_of(front, "/app/env", Authorization="Basic dXNlcjpwYXNz")
        assert env["HTTP_AUTHORIZATION"] == "Basic dXNlcjpwYXNz"

    def test_traceback_goes_to_the_log_only(self, front):
        # The fronts are shared: count this request's line, not any earlier one.
        before = front.app_errors()
        status, _, body = front.request("GET", "/app/error")
        assert status == 500 and ERROR_LOG_LINE.encode() not in body
        wait_until(lambda: front.app_errors() > before, timeout=10,
                   what=f"the traceback in the log of {front.name}")

    def test_health_check_and_nothing_else(self, front):
        assert front.request("GET", "/healthz")[0] == 200
        assert front.request("GET", "/application")[0] == 404


def connections_to_server(front):
    """Open connections from the front's container to the FastCGI server."""
    code, output = front.container.exec(["cat", "/proc/net/tcp", "/proc/net/unix"])
    assert code == 0, output
    rows = [line.split() for line in output.decode().splitlines()]
    if front.transport.startswith("tcp"):
        # remote address :2328 (port 9000), state 01 (ESTABLISHED)
        return sum(1 for row in rows if len(row) > 3 and row[2].endswith(":2328") and row[3] == "01")
    # a connected stream socket (state 03) to SOCKET: the server's end is
    # listed in the namespace of the side that connected
    return sum(1 for row in rows if len(row) > 7 and row[-1] == SOCKET and row[5] == "03")


# Caddy 2.6's FastCGI transport opens a connection for each request and
# closes it after the response: nothing to reuse. Nor does nginx passing to
# a name it resolves at request time (nginx/replicas-site.conf): its
# keepalive pool belongs to an upstream block.
NO_REUSE = {"caddy-fastcgi", "nginx-fastcgi-replicas"}


@pytest.mark.parametrize("front", FASTCGI_SERVER_FRONTS, indirect=True)
def test_connections_to_the_fastcgi_server_are_reused(front):
    # One client connection, kept open as a browser does: a client that
    # closes as soon as it has Content-Length bytes may make the web server
    # drop its connection to the server before END_REQUEST arrives.
    client = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    try:
        for index in range(20):
            client.request("GET", f"/app/bytes/{index}")
            response = client.getresponse()
            assert response.status == 200 and len(response.read()) == index
        if front.front in NO_REUSE:
            wait_until(lambda: connections_to_server(front) == 0, timeout=5,
                       what="every connection to the FastCGI server closed")
            return
        count = wait_until(lambda: connections_to_server(front), timeout=5,
                           what="a connection kept open to the FastCGI server")
    finally:
        client.close()
    assert count < 20, f"{count} connections open after 20 requests"


@pytest.mark.parametrize("front", ["apache-fcgid"], indirect=True)
def test_mod_fcgid_starts_the_gateway_on_the_socket_it_passes_as_fd_0(front):
    assert front.request("GET", "/app/env")[0] == 200
    probe = textwrap.dedent("""\
        import os
        for pid in filter(str.isdigit, os.listdir('/proc')):
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = f.read().rstrip(b'\\0').split(b'\\0')
            if b'fastcgi' in argv:
                print(*(arg.decode() for arg in argv))
    """)
    code, output = front.container.exec(["python3", "-c", probe])
    assert code == 0, output
    assert output.decode().splitlines() == [
        "/usr/bin/python3 /usr/local/bin/gateway fastcgi --workers 0"]
    # The server says what it serves: the socket in FcgidIPCDir, found on fd 0.
    assert "/run/apache2/fcgid/" in front.log() and "(fd 0)" in front.log()


def test_socket_is_open_to_the_group_only(fastcgi_app):
    probe = textwrap.dedent(f"""\
        import os, socket, stat
        def attempt(action, *args):
            try:
                st = action(*args)
                return f"{{oct(stat.S_IMODE(st.st_mode))}}:{{st.st_gid}}" if st else "ok"
            except PermissionError:
                return "denied"
        def write(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY))
            os.unlink(path)
        print(attempt(os.stat, {SOCKET_DIR!r}), attempt(os.stat, {SOCKET!r}),
              attempt(socket.socket(socket.AF_UNIX).connect, {SOCKET!r}),
              attempt(write, {SOCKET_DIR + "/probe"!r}))
    """)
    wrapped = fastcgi_app.get_wrapped_container()
    seen = {}
    for user in ("gateway", "www-data", "nobody"):
        code, output = wrapped.exec_run(["python3", "-c", probe], user=user)
        assert code == 0, output
        seen[user] = output.decode().split()
    # www-data, the web servers' user, is in the gateway group: it may connect
    # but not write in the directory (the server's working directory).
    assert seen == {
        "gateway": ["0o2750:10001", "0o660:10001", "ok", "ok"],
        "www-data": ["0o2750:10001", "0o660:10001", "ok", "denied"],
        "nobody": ["0o2750:10001", "denied", "denied", "denied"],
    }


# The fronts that run the gateway in the web server's container (the others
# are covered by the docker-compose.yml test).
@pytest.mark.parametrize("name", ["nginx-cgi", "apache-fcgid", "lighttpd-fastcgi"])
def test_mounted_application(name, request, tmp_path):
    settings = {"GATEWAY_APP": "hello:application", "PYTHONPATH": "/srv/app"}
    with ExitStack() as stack:
        front = run_front(stack, request, name, env=settings,
                          volumes=[(own_app_directory(tmp_path), "/srv/app", "ro")])
        status, _, body = front.request("GET", "/app/x/y")
        assert (status, body) == (200, b"hello from /app/x/y"), front.log()
        assert front.request("GET", "/app/env")[2] == b"hello from /app/env"

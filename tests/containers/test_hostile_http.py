"""Hostile HTTP through every front of the appliance.

What a client can send (a Proxy header, header names with "_", oversized
heads and bodies, dot segments and encoded slashes in the path) and what an
application can answer (a header holding CR or LF): each front either refuses
it, with the status asserted here, or passes the application exactly what is
asserted here. The limits are the ones the configurations state (nginx/,
apache/, lighttpd/, haproxy/, caddy/, h2o/);
``test_configurations_state_the_limits`` keeps the two in step. Where web
servers differ, the tables below say how, each difference with its reason.

The fronts are conftest's ``front``: the same containers as test_fronts.py.
"""

import hashlib
import http.client
import json
import os
import posixpath
import re
import socket

import pytest

from support.front_contract import ERROR_BODY, environ_of

from .conftest import CGI_FRONTS, LOOPBACK, REPO, wait_until

container = pytest.mark.container

# Largest request body on every front (client_max_body_size 10m;
# LimitRequestBody, FcgidMaxRequestLen and the Content-Length rule).
MAX_BODY = 10 * 1024 * 1024
# A header value that fits every front.
FIELD_FITS = 8000
# A header field each web server refuses alone, and its answer: nginx wants a
# header line in one 8k buffer, Apache a field of at most 8190 bytes; the
# others limit only the whole head (lighttpd 8 KiB, HAProxy its 16 KiB buffer
# less 1 KiB, Caddy 32 KiB and Go's 4 KiB more, h2o about 410 KB).
FIELD_TOO_LONG = {
    "nginx": (9000, 400), "apache": (9000, 400), "lighttpd": (9000, 431),
    "haproxy": (16000, 400), "caddy": (40000, 431), "h2o": (500000, 400),
}
# A request line each web server refuses, and its answer (nginx's 8k buffer,
# LimitRequestLine 8190, haproxy.cfg's rule at 8190; lighttpd, Caddy and h2o
# count it in the head's limit).
LINE_TOO_LONG = {
    "nginx": (8300, 414), "apache": (8300, 414), "lighttpd": (8300, 431),
    "haproxy": (8300, 414), "caddy": (40000, 431), "h2o": (500000, 400),
}
# Where PATH_TRANSLATED (the document root and PATH_INFO) points, per server
# that sends one: Apache and lighttpd map PATH_INFO onto their document root,
# HAProxy onto its fcgi-app's docroot, Caddy onto its root (the result
# cleaned); nginx and h2o send none.
DOCUMENT_ROOT = {"apache": "/var/www/html", "lighttpd": "/var/www/html",
                 "haproxy": "/var/www/html", "caddy": "/var/www/html"}


def server_of(front):
    """The web server in front: nginx, apache, lighttpd, haproxy, caddy, h2o."""
    return front.front.partition("-")[0]


def kind_of(front):
    """The front, whatever its transport: its GATEWAY_FRONT."""
    return front.front


# --- helpers ------------------------------------------------------------------

def exchange(port, head, blocks=(), timeout=60):
    """Send ``head`` and then ``blocks`` on a new connection; return the
    response (status, headers, body) the server gives, read after sending as
    much as the server would take (it may answer and close before the end)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for block in blocks:
                sock.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer is already on its way
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())


def raw_response(port, path, timeout=30):
    """The bytes of the response to ``GET path``, as they came on the wire."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                     .encode("ascii"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def post_head(path, framing, length):
    header = ("Transfer-Encoding: chunked" if framing == "chunked"
              else f"Content-Length: {length}")
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/octet-stream\r\n{header}\r\n\r\n").encode("ascii")


def body_blocks(body, framing, size=256 * 1024):
    for start in range(0, len(body), size):
        block = body[start:start + size]
        yield b"%x\r\n%s\r\n" % (len(block), block) if framing == "chunked" else block
    if framing == "chunked":
        yield b"0\r\n\r\n"


def post(front, path, body, framing):
    return exchange(front.port, post_head(path, framing, len(body)), body_blocks(body, framing))


def refused_before_the_app(front, send):
    """Run ``send()`` (a request to the demo's /error) and return its status,
    after checking the application never ran for it: /error logs a traceback
    each time it runs, so a request known to reach the application is sent
    next and must be the only one logged."""
    before = front.app_errors()
    status = send()[0]
    assert front.request("GET", "/app/error")[0] == 500
    wait_until(lambda: front.app_errors() > before, timeout=10,
               what=f"the traceback of the second request in {front.name}'s log")
    assert front.app_errors() == before + 1, "the refused request reached the application"
    return status


# --- httpoxy ------------------------------------------------------------------

@container
@pytest.mark.parametrize("name", ["Proxy", "pRoXy"])
def test_proxy_header_reaches_neither_environ_nor_process_environment(front, name):
    headers = {name: "http://attacker.invalid:3128", "X-Gateway-Probe": "seen"}
    env = environ_of(front, "/app/env", **headers)
    assert "HTTP_PROXY" not in env and env["HTTP_X_GATEWAY_PROBE"] == "seen"
    status, _, body = front.request("GET", "/app/process-env", headers=headers)
    assert status == 200
    names = json.loads(body)
    assert "HTTP_PROXY" not in names
    # The endpoint does see request headers where a server puts them in the
    # process environment, as a CGI runner does; a FastCGI server's
    # environment is its own.
    assert ("HTTP_X_GATEWAY_PROBE" in names) == (front.name in CGI_FRONTS), names


# --- response splitting -------------------------------------------------------

@container
@pytest.mark.parametrize("kind", ["crlf", "lf", "cr", "name", "status"])
def test_response_header_with_cr_or_lf_is_refused(front, kind):
    # The log names the refused header (a repr: "X-Injected: KIND" in it).
    marker = f"X-Injected: {kind}"
    before = front.log().count(marker)
    raw = raw_response(front.port, f"/app/bad-header/{kind}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 500 Internal Server Error", raw[:300]
    assert ERROR_BODY in body
    assert b"injected" not in raw.lower() and b"x-demo" not in head.lower()
    wait_until(lambda: front.log().count(marker) > before, timeout=10,
               what=f"the refused {kind!r} header in {front.name}'s log")
    assert front.request("GET", "/app/env")[0] == 200


# --- header names with "_" ----------------------------------------------------

# The web servers that pass a header named with "_" on (as HTTP_X_REAL_USER,
# the name "X-Real-User" has): h2o has no setting against it (h2o/h2o.conf).
UNDERSCORE_PASSED = {"h2o"}


@container
def test_header_named_with_underscores_never_reaches_the_app(front):
    # nginx drops the header (underscores_in_headers off), Apache makes no
    # CGI variable of it, HAProxy deletes it (fcgi-app's default), lighttpd's
    # and Caddy's configurations drop it: the gateway never sees it.
    env = environ_of(front, "/app/env", X_Real_User="mallory")
    if server_of(front) in UNDERSCORE_PASSED:
        assert env["HTTP_X_REAL_USER"] == "mallory"
        return
    assert "HTTP_X_REAL_USER" not in env
    assert not any("mallory" in value for value in env.values() if isinstance(value, str))


# --- oversized heads ----------------------------------------------------------

@container
def test_header_at_the_size_limit_arrives_intact(front):
    value = os.urandom(FIELD_FITS // 2).hex()
    assert environ_of(front, "/app/env", **{"X-Big": value})["HTTP_X_BIG"] == value


@container
def test_header_over_the_size_limit_is_refused_by_the_web_server(front):
    size, status_wanted = FIELD_TOO_LONG[server_of(front)]
    headers = {"X-Big": "a" * size}
    status = refused_before_the_app(
        front, lambda: front.request("GET", "/app/error", headers=headers))
    assert status == status_wanted


@container
def test_request_line_over_the_limit_is_refused_by_the_web_server(front):
    length, status_wanted = LINE_TOO_LONG[server_of(front)]
    path = "/app/error?" + "a" * length
    status = refused_before_the_app(front, lambda: front.request("GET", path))
    assert status == status_wanted


# The largest head each front takes, as headers of FIELD_FITS bytes: nginx,
# four 8k buffers for the request line and headers; Apache, 100 header fields
# (Host included) of up to 8190 bytes, about 780 KB, which the gateway takes
# (its limit on PARAMS is 1 MiB, Linux's on a CGI program's environment
# larger still); mod_fcgid sends all the variables in one FastCGI record,
# at most 64 KiB.
LARGEST_HEAD = {
    "nginx-fastcgi": 3, "nginx-fastcgi-replicas": 3, "nginx-cgi": 3,
    "apache-cgi": 98, "apache-proxy-fcgi": 98, "apache-fcgid": 7,
    "lighttpd-fastcgi": 1, "haproxy-fastcgi": 1, "caddy-fastcgi": 4, "h2o-fastcgi": 52,
}
# Heads past those limits, as (headers, bytes each), and the status that
# refuses them: 400 from the web server, or 500 from mod_fcgid ("can't init
# env request header" in Apache's log).
TOO_LARGE_HEADS = {
    "nginx": [((5, 7000), 400)],
    "apache": [((100, 10), 400)],
    "apache-fcgid": [((100, 10), 400), ((9, FIELD_FITS), 500)],
    # lighttpd: the request line and the fields together within 8 KiB.
    "lighttpd": [((2, 5000), 431)],
    # HAProxy: the head within its buffer (15 KiB), at most 100 fields.
    "haproxy": [((3, 7000), 400), ((100, 10), 400)],
    # Caddy: the head within 32 KiB (max_header_size), and the 4 KiB Go's
    # HTTP server allows beyond.
    "caddy": [((6, 7000), 431)],
    # h2o: at most 100 fields, and the head within about 410 KB.
    "h2o": [((100, 10), 400), ((60, FIELD_FITS), 400)],
}


@container
def test_largest_head_the_front_accepts_reaches_the_app_intact(front):
    count = LARGEST_HEAD[kind_of(front)]
    headers = {f"X-Big-{index}": os.urandom(FIELD_FITS // 2).hex() for index in range(count)}
    env = environ_of(front, "/app/env", **headers)
    for name, value in headers.items():
        assert env["HTTP_" + name.upper().replace("-", "_")] == value


@container
def test_head_over_the_total_limit_is_refused_before_the_app(front):
    cases = TOO_LARGE_HEADS.get(kind_of(front)) or TOO_LARGE_HEADS[server_of(front)]
    for (count, size), status_wanted in cases:
        headers = {f"X-Big-{index}": "a" * size for index in range(count)}
        status = refused_before_the_app(
            front, lambda: front.request("GET", "/app/error", headers=headers))
        assert status == status_wanted, (count, size)


# A URL path of about 4 KiB and more: nginx passes it on; Apache answers 403,
# as it maps PATH_INFO onto its document root (PATH_TRANSLATED) and that name
# is longer than the file system takes ("File name too long" in its log).
# lighttpd, HAProxy and Caddy build PATH_TRANSLATED too, but look nothing up.
LONG_PATH_STATUS = {server: {4000: 200, 4800: 200}
                    for server in ("nginx", "lighttpd", "haproxy", "caddy", "h2o")}
LONG_PATH_STATUS["apache"] = {4000: 200, 4800: 403}


@container
@pytest.mark.parametrize("length", [4000, 4800])
def test_long_path(front, length):
    path = "/app/env/" + ("abcdefg/" * length)[:length - len("/app/env/")]
    status, _, body = front.request("GET", path)
    assert status == LONG_PATH_STATUS[server_of(front)][length]
    if status == 200:
        assert json.loads(body)["PATH_INFO"] == path[len("/app"):]


# --- response headers a web server acts on -------------------------------------

@container
def test_x_accel_redirect_from_the_application_is_not_obeyed(front):
    status, headers, body = front.request("GET", "/app/x-accel-redirect")
    assert (status, body) == (200, b"the application answered")
    # nginx alone acts on the header, and its configurations say not to
    # (fastcgi_ignore_headers); the others pass it on to the client.
    assert "x-accel-redirect" not in headers or server_of(front) != "nginx"


# --- oversized bodies ---------------------------------------------------------

# Chunked bodies at the limit that some fronts do not pass on, and their
# answer: HAProxy gives a FastCGI server only bodies of known length, and one
# that does not fit its buffer gets 400; Caddy 2.6 sends a chunked body with
# CONTENT_LENGTH=-1, no CGI length, which the gateway answers 500 without
# running the application; h2o refuses a chunked body that reaches
# limit-request-body (one byte less passes), where a declared length may.
CHUNKED_REFUSED = {"haproxy-fastcgi": 400, "caddy-fastcgi": 500, "h2o-fastcgi": 413}


@container
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_at_the_limit_arrives_intact(front, framing):
    body = os.urandom(MAX_BODY)
    if framing == "chunked" and kind_of(front) in CHUNKED_REFUSED:
        status = refused_before_the_app(front, lambda: post(front, "/app/error", body, framing))
        assert status == CHUNKED_REFUSED[kind_of(front)]
        return
    status, _, answer = post(front, "/app/digest", body, framing)
    assert status == 200
    assert json.loads(answer) == {"length": MAX_BODY, "sha256": hashlib.sha256(body).hexdigest()}


@container
def test_declared_body_over_the_limit_is_refused_before_the_app(front):
    body = bytes(MAX_BODY + 1)
    status = refused_before_the_app(front, lambda: post(front, "/app/error", body, "length"))
    assert status == 413


# A chunked body one byte over the limit, per front: (status, whether the
# application may have run). nginx reads the whole body first; mod_fcgid too
# (and refuses it with a 500: FcgidMaxRequestLen); mod_cgid starts the
# program before the body and gives 413 once it passes the limit. lighttpd
# and h2o read it first; HAProxy refuses it as past its buffer (400); Caddy
# sends the whole body before it reads the answer, and request_body stops it
# at the limit (413) before the gateway has refused its CONTENT_LENGTH=-1.
# Apache applies no limit to a chunked body it passes to mod_proxy_fcgi: the
# gateway's --max-body-size 10M cuts it where it passes the limit, and
# answers 413 (the application has run, reading it, and not answered yet).
CHUNKED_OVER_THE_LIMIT = {
    "nginx-fastcgi": (413, False),
    "nginx-fastcgi-replicas": (413, False),
    "nginx-cgi": (413, False),
    "apache-cgi": (413, True),
    "apache-fcgid": (500, False),
    "apache-proxy-fcgi": (413, True),
    "lighttpd-fastcgi": (413, False),
    "haproxy-fastcgi": (400, False),
    "caddy-fastcgi": (413, False),
    "h2o-fastcgi": (413, False),
}


@container
def test_chunked_body_over_the_limit_is_refused(front):
    status_wanted, app_may_run = CHUNKED_OVER_THE_LIMIT[kind_of(front)]
    body = bytes(MAX_BODY + 1)
    if app_may_run:
        status = post(front, "/app/digest", body, "chunked")[0]
    else:
        status = refused_before_the_app(front, lambda: post(front, "/app/error", body, "chunked"))
    assert status == status_wanted
    assert front.request("GET", "/app/env")[0] == 200


# --- dot segments and encoded slashes in the path ------------------------------

# path sent -> {server: (status, PATH_INFO the application gets, or None)}.
# nginx, Apache, lighttpd and h2o remove dot segments, "%2e%2e" ones
# included, before they route: a path that climbs out of /app is theirs to
# answer (404, or 400 when it climbs above the root), and PATH_INFO never
# holds a ".." segment. nginx, lighttpd and h2o decode "%2F" into "/" first;
# Apache refuses it (AllowEncodedSlashes Off). HAProxy and Caddy pass dot
# segments on as they come: their configurations refuse a path holding a
# ".." segment once decoded ("%2F" included) with 400, and leave "." and
# "//" in PATH_INFO, which climb nowhere.
SERVERS = ("nginx", "apache", "lighttpd", "haproxy", "caddy", "h2o")
RESOLVING = ("nginx", "apache", "lighttpd", "h2o")
REFUSING = ("haproxy", "caddy")


def outcomes(default=None, **by_server):
    """{server: outcome}: *default* for every server not named."""
    return {server: by_server.get(server, default) for server in SERVERS}


TRAVERSAL = {
    "/app/../../etc/passwd": outcomes((400, None), lighttpd=(404, None), h2o=(404, None)),
    "/app/%2e%2e/%2e%2e/etc/passwd": outcomes((400, None), lighttpd=(404, None),
                                              h2o=(404, None)),
    "/app/env/../../etc/passwd": outcomes((404, None), haproxy=(400, None), caddy=(400, None)),
    "/app/env/%2e%2e/%2e%2e/etc/passwd": outcomes((404, None), haproxy=(400, None),
                                                  caddy=(400, None)),
    "/app/env/..%2F..%2Fetc%2Fpasswd": outcomes((404, None), haproxy=(400, None),
                                                caddy=(400, None)),
    "/app/env/x/../y": outcomes((200, "/env/y"), haproxy=(400, None), caddy=(400, None)),
    "/app/env/x/%2e%2e/y": outcomes((200, "/env/y"), haproxy=(400, None), caddy=(400, None)),
    "/app/env/x/.%2e/y": outcomes((200, "/env/y"), haproxy=(400, None), caddy=(400, None)),
    "/app/env/x/./y//z": outcomes((200, "/env/x/y/z"), h2o=(200, "/env/x/y//z"),
                                  haproxy=(200, "/env/x/./y//z"), caddy=(200, "/env/x/./y//z")),
    "/app/env/x%2Fy": outcomes((200, "/env/x/y"), apache=(404, None)),
    "/app/env/x%2F..%2Fy": outcomes((200, "/env/y"), apache=(404, None), haproxy=(400, None),
                                    caddy=(400, None)),
    # Not dot segments: passed on as they are, for the application to judge.
    "/app/env/..;/x": outcomes((200, "/env/..;/x")),
    "/app/env/x%5c..%5cy": outcomes((200, "/env/x\\..\\y")),
    "/app/env/%2e%2e.x": outcomes((200, "/env/...x")),
}


@container
@pytest.mark.parametrize("path", list(TRAVERSAL))
def test_dot_segments_never_reach_path_info(front, path):
    server = server_of(front)
    status_wanted, path_info = TRAVERSAL[path][server]
    status, _, body = front.request("GET", path)
    assert status == status_wanted, body[:300]
    assert b"root:" not in body  # no file's content, whoever answered
    if path_info is None:
        return
    env = json.loads(body)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", path_info)
    assert ".." not in env["PATH_INFO"].split("/")
    # The request as sent stays in REQUEST_URI; a server that has a document
    # root maps PATH_INFO onto it (Caddy cleaning the result), a name the
    # gateway passes on and never opens.
    assert env["REQUEST_URI"] == path
    root = DOCUMENT_ROOT.get(server)
    if root is None:
        assert "PATH_TRANSLATED" not in env
    elif server == "caddy":
        assert env["PATH_TRANSLATED"] == posixpath.normpath(root + path_info)
    else:
        assert env["PATH_TRANSLATED"] == root + path_info


# --- the configurations say what the tests assert -------------------------------

def directives(path, name):
    """The values of every ``name`` directive in the file at ``path``."""
    pattern = re.compile(rf"^\s*{name}\s+(.+?);?\s*$", re.MULTILINE)
    return pattern.findall((REPO / path).read_text())


def test_configurations_state_the_limits():
    assert directives("nginx/nginx.conf", "client_max_body_size") == ["10m"]
    assert directives("nginx/nginx.conf", "large_client_header_buffers") == ["4 8k"]
    assert directives("nginx/nginx.conf", "underscores_in_headers") == ["off"]
    assert directives("apache/gateway.conf", "LimitRequestLine") == ["8190"]
    assert directives("apache/gateway.conf", "LimitRequestFieldSize") == ["8190"]
    assert directives("apache/gateway.conf", "LimitRequestFields") == ["100"]
    for name in ("gateway", "cgi", "fcgid"):
        assert directives(f"apache/{name}.conf", "LimitRequestBody") == [str(MAX_BODY)], name
    assert directives("apache/fcgid.conf", "FcgidMaxRequestLen") == [str(MAX_BODY)]
    for name in ("cgi", "proxy-fcgi", "fcgid"):
        assert directives(f"apache/{name}.conf", "<If") == [
            f'"%{{HTTP:Content-Length}} -gt {MAX_BODY}">'], name
        assert directives(f"apache/{name}.conf", "Redirect") == ["413"], name
    assert directives("lighttpd/lighttpd.conf", "server.max-request-size") == ["= 10240"]
    assert directives("lighttpd/lighttpd.conf", "server.max-request-field-size") == ["= 8192"]
    assert directives("haproxy/haproxy.cfg", "tune.bufsize") == ["16384"]
    assert directives("haproxy/haproxy.cfg", "tune.http.maxhdr") == ["101"]
    assert "{ req.hdr_val(content-length) gt 10485760 }" in (REPO / "haproxy/haproxy.cfg").read_text()
    assert directives("caddy/app-fastcgi.caddy", "max_size") == ["10MiB"]
    assert directives("caddy/Caddyfile", "max_header_size") == ["32KiB"]
    assert "int({http.request.header.Content-Length}) > 10485760" in (
        REPO / "caddy/app-fastcgi.caddy").read_text()
    assert directives("h2o/h2o.conf", "limit-request-body:") == ["10485760"]

"""Fixtures for tests that build and run the repository's container images.

Tests marked ``container`` need a Docker engine. Without one they are skipped,
with the reason, on a user's machine, but they fail when the CI environment
variable is true: CI must never pass by skipping them (see ``no_engine``).

The images are built from the Dockerfile targets. Their base image,
debian:bookworm-slim, is pulled when a registry can be reached and otherwise
built locally by scripts/build-base-image. Built images are kept (so the next
run reuses the build cache); every container, network and volume a test
creates is removed. Ports are published on 127.0.0.1 only.

Containers of the appliance run as docker-compose.yml runs them (LOCKED_DOWN,
TMPFS): read-only root file system, tmpfs on /run and /tmp, no capabilities.

Environment:
  GATEWAY_TEST_IMAGE_PREFIX  name prefix of the built images (gateway-test)
  GATEWAY_BUILD_NETWORK      network mode of the build containers, e.g. host
                             (default: the engine's default network)
"""

import json
import os
import socket
import struct
import subprocess
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from support.helpers import unavailable
from support.webservers import http_request

# Ryuk, testcontainers' reaper, is pulled from a registry: the fixtures below
# remove their containers themselves instead.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "debian:bookworm-slim"
IMAGE_PREFIX = os.environ.get("GATEWAY_TEST_IMAGE_PREFIX", "gateway-test")
TARGETS = ("app", "nginx", "apache", "fronts")
WEB_TARGETS = ("nginx", "apache", "fronts")
HEALTH_PATH = "/healthz"
LOOPBACK = "127.0.0.1"
# Where the FastCGI server's socket is shared with the fronts (a volume).
SOCKET_DIR = "/run/gateway"
SOCKET = f"{SOCKET_DIR}/fastcgi.sock"
# The FastCGI server's name on the test network; and that of the one run
# with --script-name /app, for the fronts that do not split the path there.
APP_HOST = "app"
MOUNTED_APP_HOST = "app-mounted"
LOCKED_DOWN = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}
# tmpfs mounts (path: mount options) per image; Apache's user creates its run
# and lock directories in /run.
TMPFS = {
    "app": {"/run": "", "/tmp": ""},
    "nginx": {"/run": "", "/tmp": ""},
    "apache": {"/run": "uid=33,gid=33", "/tmp": ""},
    "fronts": {"/run": "", "/tmp": ""},
}
FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6
FCGI_RESPONDER = 1
# The CGI environment of a plain "GET /" over FastCGI.
FASTCGI_PROBE = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
    "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
}


def no_engine(reason, environ=os.environ):
    """Skip the current test for want of a Docker engine; fail it under CI."""
    unavailable(f"Docker engine not reachable: {reason}", environ)


def wait_until(condition, *, timeout, what, interval=0.2):
    """Poll ``condition()`` until it returns a true value before ``timeout`` s.

    Returns that value. An exception raised by ``condition`` counts as "not
    yet"; the last one is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = condition()
        except Exception as error:  # not ready yet: remember why
            result, last = None, error
        else:
            last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def image_tag(target):
    return f"{IMAGE_PREFIX}-{target}:latest"


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for a reachable engine (else skip or fail, see no_engine)."""
    try:
        import docker
        import requests
    except ImportError as error:
        no_engine(f"the Python docker SDK is not installed ({error}); pip install -e '.[test]'")
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
        no_engine(str(error))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _container_tests_need_an_engine(request):
    if request.node.get_closest_marker("container") is not None:
        request.getfixturevalue("docker_client")


@pytest.fixture(scope="session")
def base_image(docker_client):
    """Make sure the Dockerfile's base image exists: pull it, or build it locally."""
    import docker

    try:
        docker_client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repository, tag = BASE_IMAGE.split(":")
    try:
        docker_client.images.pull(repository, tag=tag)
        return BASE_IMAGE
    except docker.errors.DockerException:
        pass  # no registry: build it here
    script = REPO / "scripts" / "build-base-image"
    result = subprocess.run(
        [str(script), "--image", BASE_IMAGE],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{BASE_IMAGE} could not be pulled and {script} failed "
            f"(exit {result.returncode}):\n{result.stdout[-4000:]}",
            pytrace=False,
        )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def gateway_image(base_image):
    """``gateway_image(target)`` builds a Dockerfile target once per session; returns its tag."""
    import docker
    from testcontainers.core.image import DockerImage

    built = {}
    network = os.environ.get("GATEWAY_BUILD_NETWORK") or None

    def build(target):
        if target not in built:
            image = DockerImage(
                path=str(REPO), tag=image_tag(target), clean_up=False,
                target=target, forcerm=True, network_mode=network,
            )
            try:
                image.build()
            except docker.errors.BuildError as error:
                lines = "".join(
                    entry.get("stream") or entry.get("error") or ""
                    for entry in error.build_log if isinstance(entry, dict)
                )
                pytest.fail(
                    f"docker build --target {target} failed: {error.msg}\n{lines[-6000:]}",
                    pytrace=False,
                )
            built[target] = image_tag(target)
        return built[target]

    return build


def unique_name(what):
    return f"{IMAGE_PREFIX}-{what}-{uuid.uuid4().hex[:12]}"


@contextmanager
def started(image, *, ports=(), tmpfs=None, **kwargs):
    """Run a container of ``image``; remove it (and its anonymous volumes) on exit.

    ``ports`` are published on 127.0.0.1, on ports the engine picks (see
    ``host_port``); ``tmpfs`` maps paths to tmpfs mount options. Other keyword
    arguments go to testcontainers' DockerContainer (env, command, network,
    network_aliases, volumes) and from there to docker's containers.create.
    """
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image, **kwargs)
    for port in ports:
        # docker's form for "this address, any port" (with_bind_ports takes
        # no address)
        container.with_exposed_ports(port).ports[str(port)] = (LOOPBACK,)
    for path, options in (tmpfs or {}).items():
        container.with_tmpfs_mount(path, options)  # docker's option string
    try:
        container.start()
        yield container
    finally:
        container.stop()  # also removes a container that failed to start


def run_once(docker_client, image, command, **kwargs):
    """Run ``command`` in a new container of ``image``; return (exit code, output)."""
    container = docker_client.containers.create(image, command=command, **kwargs)
    try:
        container.start()
        status = container.wait(timeout=120)
        return status["StatusCode"], container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


# Every process of a container, as JSON: its command line, real, effective,
# saved and file-system uids and gids, effective and bounding capability
# sets, and whether it may gain privileges (NoNewPrivs 1: it may not).
PROCESS_PROBE = """
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/status") as stream:
            fields = dict(line.split(":", 1) for line in stream if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            command = stream.read().replace(b"\\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue  # gone meanwhile
    found.append({
        "pid": int(pid), "command": command,
        "uids": [int(uid) for uid in fields["Uid"].split()],
        "gids": [int(gid) for gid in fields["Gid"].split()],
        "cap_eff": int(fields["CapEff"], 16), "cap_bnd": int(fields["CapBnd"], 16),
        "no_new_privs": int(fields["NoNewPrivs"]),
    })
print(json.dumps(found))
"""


def processes_of(wrapped):
    """PROCESS_PROBE's report on the running docker container ``wrapped``."""
    code, output = wrapped.exec_run(["python3", "-c", PROCESS_PROBE])
    assert code == 0, output
    return json.loads(output)


def assert_least_privilege(processes, where):
    """No process of ``processes`` (processes_of's report) is root's, holds or
    may gain a capability, or may gain privileges at all."""
    assert processes, f"{where}: no process found"
    for process in processes:
        if process["command"] == "runc init":
            # The container runtime setting up a process it is starting in
            # the container (a health check, a probe): root for a moment,
            # then the container's user, with its limits.
            continue
        what = f"{where}: {process['command']!r} (pid {process['pid']})"
        assert 0 not in process["uids"] and 0 not in process["gids"], what
        assert process["cap_eff"] == 0 and process["cap_bnd"] == 0, what
        assert process["no_new_privs"] == 1, what


def fastcgi_request(host, port, params, stdin=b"", timeout=5):
    """Send one FastCGI RESPONDER request; return the STDOUT stream's bytes.

    A deliberately small, independent client (no keep-alive, request id 1).
    """
    def record(kind, content=b""):
        return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content

    def length(n):
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)

    pairs = b"".join(length(len(k)) + length(len(v)) + k + v for k, v in (
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in params.items()))
    message = record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0))
    message += record(FCGI_PARAMS, pairs) + record(FCGI_PARAMS)
    message += (record(FCGI_STDIN, stdin) if stdin else b"") + record(FCGI_STDIN)
    stdout = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(message)
        stream = sock.makefile("rb")
        while True:
            header = stream.read(8)
            if len(header) < 8:
                raise ConnectionError(f"FastCGI connection closed before END_REQUEST ({header!r})")
            _, kind, _, size, padding = struct.unpack("!BBHHBx", header)
            content = stream.read(size + padding)[:size]
            if kind == FCGI_STDOUT:
                stdout += content
            elif kind == FCGI_END_REQUEST:
                return stdout


def _http_ready(host, port):
    import requests

    return requests.get(f"http://{host}:{port}{HEALTH_PATH}", timeout=2).status_code == 200


def _fastcgi_ready(host, port, path="/"):
    return fastcgi_request(host, port, dict(FASTCGI_PROBE, PATH_INFO=path)).startswith(
        b"Status: 200")


def _mounted_fastcgi_ready(host, port):
    # --script-name /app: "/" is outside, and answered 404.
    return _fastcgi_ready(host, port, "/app/")


# What each target serves: its port inside the container, and the check that
# it answers there.
SERVES = {
    "app": (9000, _fastcgi_ready),
    "nginx": (8080, _http_ready),
    "apache": (8080, _http_ready),
    "fronts": (8080, _http_ready),
    "app-mounted": (9000, _mounted_fastcgi_ready),   # the app image, --script-name /app
}


@pytest.fixture(scope="session")
def server(gateway_image):
    """``server(target)``: a running container of ``target`` that answers on its
    published port (``host_port(container, target)``); one per target for the
    whole session.

    The image's HEALTHCHECK is kept but run every second, so its verdict comes
    quickly.
    """
    running = {}

    def start(target):
        if target not in running:
            container = stack.enter_context(started(
                gateway_image(target), ports=(SERVES[target][0],),
                healthcheck={"interval": 1_000_000_000, "start_period": 1_000_000_000},
            ))
            running[target] = wait_serving(container, target)
        return running[target]

    with ExitStack() as stack:
        yield start


def host_port(container, target):
    """(host, port) where the test reaches ``target``'s served port."""
    return LOOPBACK, int(container.get_exposed_port(SERVES[target][0]))


def logs(container):
    """Everything the container wrote so far, stdout and stderr."""
    out, err = container.get_logs()
    return (out + err).decode(errors="replace")


def wait_serving(container, target, timeout=60):
    """Wait until ``container`` of image ``target`` answers on its published port."""
    host, port = host_port(container, target)
    try:
        wait_until(lambda: SERVES[target][1](host, port), timeout=timeout,
                   what=f"{target} to answer on {host}:{port}")
    except AssertionError as error:
        raise AssertionError(f"{error}\ncontainer output:\n{logs(container)}") from None
    return container


@pytest.fixture(scope="session")
def docker_network(docker_client):
    """A docker network of its own, on which containers find each other by name."""
    from testcontainers.core.network import Network

    network = Network()
    network.name = unique_name("net")
    network.create()
    yield network
    network.remove()


@pytest.fixture(scope="session")
def socket_volume(docker_client):
    """The name of a fresh volume for the FastCGI server's socket directory."""
    volume = docker_client.volumes.create(unique_name("socket"))
    yield volume.name
    volume.remove(force=True)


def network_subnets(docker_client, network):
    """The address ranges of a docker network, comma-separated."""
    config = docker_client.networks.get(network.name).attrs["IPAM"]["Config"] or []
    subnets = [entry["Subnet"] for entry in config if entry.get("Subnet")]
    assert subnets, f"network {network.name} has no subnet: {config!r}"
    return ",".join(subnets)


@pytest.fixture(scope="session")
def fastcgi_app(gateway_image, docker_client, docker_network, socket_volume):
    """The gateway's FastCGI server (the app image) serving FRONT_APP, reachable
    on the test network as APP_HOST:9000 and through SOCKET in ``socket_volume``
    (mode 660), run as docker-compose.yml runs it (--max-body-size 10M, the
    fronts' limit, which Apache does not apply to a chunked body it proxies). TCP connections are taken
    from the test network (the published port reaches it through the
    network's gateway) and from the container's own health check."""
    command = ["gateway", "fastcgi", "--bind", f"unix:{SOCKET}", "--bind", "0.0.0.0:9000",
               "--web-server-addrs",
               network_subnets(docker_client, docker_network) + ",127.0.0.1",  # + health check
               "--unix-mode", "660", "--max-body-size", "10M"]
    with started(gateway_image("app"), ports=(9000,), command=command,
                 network=docker_network, network_aliases=[APP_HOST],
                 env=FRONT_APP["env"],
                 volumes=[(socket_volume, SOCKET_DIR, "rw"), *FRONT_APP["volumes"]],
                 tmpfs=TMPFS["app"], **LOCKED_DOWN) as container:
        yield wait_serving(container, "app")


@pytest.fixture(scope="session")
def fastcgi_app_mounted(gateway_image, docker_client, docker_network):
    """As ``fastcgi_app``, over TCP only, at MOUNTED_APP_HOST:9000, run with
    --script-name /app: for h2o, which sends the whole path as PATH_INFO."""
    command = ["gateway", "fastcgi", "--bind", "0.0.0.0:9000", "--script-name", "/app",
               "--web-server-addrs", network_subnets(docker_client, docker_network) + ",127.0.0.1",
               "--max-body-size", "10M"]
    with started(gateway_image("app"), ports=(9000,), command=command,
                 network=docker_network, network_aliases=[MOUNTED_APP_HOST],
                 env=FRONT_APP["env"], volumes=FRONT_APP["volumes"],
                 tmpfs=TMPFS["app"], **LOCKED_DOWN) as container:
        yield wait_serving(container, "app-mounted")


# A user's own application, for the mount tests.
OWN_APP = '''\
def application(environ, start_response):
    body = ("hello from %s%s" % (environ["SCRIPT_NAME"], environ.get("PATH_INFO", ""))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def own_app_directory(tmp_path):
    """A directory with the module hello (application), readable by the containers' users."""
    directory = tmp_path / "myapp"
    directory.mkdir()
    (directory / "hello.py").write_text(OWN_APP)
    os.chmod(directory, 0o755)
    os.chmod(directory / "hello.py", 0o644)
    return directory


# The fronts of the appliance: name -> (image, GATEWAY_FRONT, how it reaches
# the FastCGI server: None when it runs the gateway itself, "tcp" or "unix";
# "tcp-mounted": over TCP, to the server run with --script-name /app).
FRONTS = {
    "nginx-fastcgi-tcp": ("nginx", "nginx-fastcgi", "tcp"),
    "nginx-fastcgi-unix": ("nginx", "nginx-fastcgi", "unix"),
    # the name "app" resolved by the network's DNS at request time
    "nginx-fastcgi-replicas-tcp": ("nginx", "nginx-fastcgi-replicas", "tcp"),
    "nginx-cgi": ("nginx", "nginx-cgi", None),
    "apache-cgi": ("apache", "apache-cgi", None),
    "apache-proxy-fcgi-tcp": ("apache", "apache-proxy-fcgi", "tcp"),
    "apache-proxy-fcgi-unix": ("apache", "apache-proxy-fcgi", "unix"),
    "apache-fcgid": ("apache", "apache-fcgid", None),
    "lighttpd-fastcgi": ("fronts", "lighttpd-fastcgi", None),
    "haproxy-fastcgi-unix": ("fronts", "haproxy-fastcgi", "unix"),
    "caddy-fastcgi-tcp": ("fronts", "caddy-fastcgi", "tcp"),
    "h2o-fastcgi-tcp": ("fronts", "h2o-fastcgi", "tcp-mounted"),
}
FASTCGI_SERVER_FRONTS = [name for name, (_, _, transport) in FRONTS.items() if transport]
# The fronts that run the gateway as a CGI program, one process per request.
CGI_FRONTS = ["nginx-cgi", "apache-cgi"]
# What the demo application's /error writes to the log (with its traceback).
ERROR_LOG_LINE = "the demo application failed on purpose"
# The last line of that traceback: once per error (the line of source code
# the traceback quotes also holds ERROR_LOG_LINE).
ERROR_LOG_EXCEPTION = "RuntimeError: " + ERROR_LOG_LINE


class Front:
    """A front container, published on 127.0.0.1, as FrontContract wants it."""

    def __init__(self, name, container, server=None):
        self.name = name
        self.image, self.front, self.transport = FRONTS[name]
        self.container = container
        self.server = server  # the FastCGI server container, if any
        self.port = host_port(container, self.image)[1]

    def request(self, method, path, body=None, headers=None):
        return http_request(self.port, method, path, body, headers)

    def log(self):
        """The log the application's errors go to."""
        return logs(self.server or self.container)

    def app_errors(self):
        """How many times the demo's /error has run, as its log shows."""
        return self.log().count(ERROR_LOG_EXCEPTION)


# The application the fronts serve: the demo, and /digest to read bodies up
# to the fronts' limits (tests/containers/frontapp/frontapp.py).
FRONT_APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frontapp")
FRONT_APP = {"env": {"GATEWAY_APP": "frontapp:application", "PYTHONPATH": "/srv/frontapp"},
             "volumes": [(FRONT_APP_DIR, "/srv/frontapp", "ro")]}


def run_front(stack, request, name, **settings):
    """Start front ``name``'s web-server container serving FRONT_APP;
    ``settings`` add to its environment and volumes."""
    image, front, transport = FRONTS[name]
    env = {"GATEWAY_FRONT": front, **FRONT_APP["env"], **settings.pop("env", {})}
    volumes = [*FRONT_APP["volumes"], *settings.pop("volumes", [])]
    server = None
    if transport == "tcp-mounted":
        server = request.getfixturevalue("fastcgi_app_mounted")
        env["GATEWAY_FASTCGI"] = f"{MOUNTED_APP_HOST}:9000"
    elif transport:
        server = request.getfixturevalue("fastcgi_app")
        if transport == "tcp":
            env["GATEWAY_FASTCGI"] = f"{APP_HOST}:9000"
        else:  # the images' default address: SOCKET
            volumes.append((request.getfixturevalue("socket_volume"), SOCKET_DIR, "rw"))
    container = stack.enter_context(started(
        request.getfixturevalue("gateway_image")(image), ports=(8080,), env=env,
        volumes=volumes, network=request.getfixturevalue("docker_network"),
        tmpfs=TMPFS[image], **LOCKED_DOWN, **settings))
    return Front(name, wait_serving(container, image), server)


@pytest.fixture(scope="session")
def front_pool(request, gateway_image, docker_network, socket_volume):
    """``front_pool(name)``: front ``name`` running the demo, started once per
    session and shared by every module that tests the fronts. (The fixtures
    it names are there to be torn down after it.)"""
    running = {}

    def get(name):
        if name not in running:
            running[name] = run_front(stack, request, name)
        return running[name]

    with ExitStack() as stack:
        yield get


@pytest.fixture(scope="module", params=list(FRONTS))
def front(request, front_pool):
    """Each front in turn (parametrize it indirectly to pick some)."""
    return front_pool(request.param)

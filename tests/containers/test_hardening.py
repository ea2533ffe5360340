"""Every container of the appliance runs with least privilege.

For each front (conftest's ``front``, run as docker-compose.yml runs its
services: read-only root file system, no capabilities, no new privileges)
and for the FastCGI server: no process runs as root or holds a capability,
none can gain one, and nothing outside the tmpfs mounts can be written. The
FastCGI server's unix socket, shared through a volume, accepts the fronts'
user and no one outside the gateway group, from any container.
docker-compose.yml's services get the same process checks in test_compose.py.
"""

import errno
import json

import pytest

from .conftest import (
    LOCKED_DOWN, PROCESS_PROBE, SOCKET, SOCKET_DIR, TMPFS, assert_least_privilege, processes_of,
    run_once,
)

pytestmark = pytest.mark.container

# What the web servers' user may do in each image's tmpfs mounts: write in
# /tmp, and in /run for Apache (its run and lock directories); /run is
# root's in the nginx image, which writes only under /tmp.
TMPFS_WRITES = {
    "nginx": {"/tmp": "written", "/run": "EACCES"},
    "apache": {"/tmp": "written", "/run": "written"},
    "fronts": {"/tmp": "written", "/run": "EACCES"},
}
# A process each front's web server runs, by its command line.
WEB_SERVER_PROCESS = {
    "nginx": "nginx: worker process", "apache": "apache2", "lighttpd-fastcgi": "lighttpd -D",
    "haproxy-fastcgi": "haproxy -db", "caddy-fastcgi": "caddy run", "h2o-fastcgi": "h2o -c",
}
# Paths of the images' own files that nobody may change.
READ_ONLY = ["/", "/etc", "/opt/gateway/gateway", "/usr/local/bin"]


def test_front_processes_are_unprivileged_and_cannot_gain_privileges(front):
    # A request first, so that the processes that serve it exist: mod_fcgid
    # starts the gateway on the first one.
    assert front.request("GET", "/app/env")[0] == 200
    processes = processes_of(front.container.get_wrapped_container())
    assert_least_privilege(processes, front.name)
    commands = " ".join(process["command"] for process in processes)
    assert WEB_SERVER_PROCESS.get(front.image, WEB_SERVER_PROCESS.get(front.front)) in commands
    if front.front == "apache-fcgid":
        assert "gateway fastcgi --workers 0" in commands
    if front.front == "lighttpd-fastcgi":
        assert "gateway fastcgi" in commands
    if front.front == "nginx-cgi":
        assert "fcgiwrap" in commands


def test_fastcgi_server_processes_are_unprivileged_and_cannot_gain_privileges(fastcgi_app):
    processes = processes_of(fastcgi_app.get_wrapped_container())
    assert_least_privilege(processes, "the FastCGI server")
    # the arbiter and its workers
    assert sum("gateway fastcgi" in process["command"] for process in processes) >= 2


WRITE_PROBE = """
import errno, json, os, sys
result = {}
for directory in sys.argv[1:]:
    path = os.path.join(directory, ".gateway-write-probe")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(path)
        result[directory] = "written"
    except OSError as error:
        result[directory] = errno.errorcode[error.errno]
print(json.dumps(result))
"""


def test_front_root_file_system_is_read_only(front):
    wrapped = front.container.get_wrapped_container()
    assert wrapped.attrs["HostConfig"]["ReadonlyRootfs"] is True
    writes = TMPFS_WRITES[front.image]
    assert sorted(writes) == sorted(TMPFS[front.image])
    code, output = wrapped.exec_run(["python3", "-c", WRITE_PROBE, *READ_ONLY, *writes])
    assert code == 0, output
    # EROFS, not EACCES: the file system refuses whoever asks.
    assert json.loads(output) == {
        **{path: errno.errorcode[errno.EROFS] for path in READ_ONLY}, **writes}


CONNECT_PROBE = f"""
import socket
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect({SOCKET!r})
    print("connected")
except PermissionError:
    print("denied")
"""


@pytest.mark.parametrize("user, outcome", [
    ("www-data", "connected"),   # the fronts' user, in the gateway group
    ("nobody", "denied"),        # an account of the image, not in the group
    ("10002:10002", "denied"),   # a uid and gid no account of the image has
])
def test_socket_from_another_container_is_for_the_group_only(
        user, outcome, fastcgi_app, socket_volume, gateway_image, docker_client):
    code, output = run_once(
        docker_client, gateway_image("nginx"), ["python3", "-c", CONNECT_PROBE], user=user,
        volumes={socket_volume: {"bind": SOCKET_DIR, "mode": "rw"}},
        tmpfs={path: options for path, options in TMPFS["nginx"].items()}, **LOCKED_DOWN)
    assert (code, output.strip()) == (0, outcome)


def test_process_probe_sees_root_where_there_is_root(docker_client, gateway_image):
    # The probe the checks above rely on does report uid 0 and capabilities
    # when a process has them.
    code, output = run_once(docker_client, gateway_image("app"),
                            ["python3", "-c", PROCESS_PROBE], user="root")
    assert code == 0, output
    (probe,) = json.loads(output)
    assert probe["uids"] == [0, 0, 0, 0] and probe["cap_eff"] != 0 and probe["no_new_privs"] == 0

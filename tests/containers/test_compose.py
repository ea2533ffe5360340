"""docker-compose.yml brings the whole appliance up, as its comments say.

Each test runs its own compose project (a unique name, ports picked here)
with ``docker compose`` or, without it, ``docker-compose``, and takes it down
with its volumes afterwards. The images are built through compose from the
Dockerfile (the build cache makes that quick once the image tests built them).
"""

import json
import os
import re
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from support.helpers import unavailable
from support.webservers import free_port, http_request

from .conftest import (
    REPO, SOCKET, SOCKET_DIR, assert_least_privilege, own_app_directory, processes_of, unique_name,
    wait_until,
)

pytestmark = pytest.mark.container

COMPOSE_FILE = REPO / "docker-compose.yml"
# service: (its port variable in docker-compose.yml, GATEWAY_FRONT)
FRONTS = {
    "nginx": ("GATEWAY_NGINX_PORT", "nginx-fastcgi"),
    "apache-cgi": ("GATEWAY_APACHE_CGI_PORT", "apache-cgi"),
    "apache-fcgi": ("GATEWAY_APACHE_FCGI_PORT", "apache-proxy-fcgi"),
}
UP_TIMEOUT = 900  # seconds; building every image from an empty cache takes minutes
SERVE_TIMEOUT = 120


@pytest.fixture(scope="session")
def compose_command(docker_client, base_image):
    """The compose command line: the docker CLI plugin, else docker-compose.
    (The Dockerfile's base image must exist first: there may be no registry.)"""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run(
                [*command, "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=60).returncode == 0:
            return command
    unavailable("neither 'docker compose' nor 'docker-compose' is installed")


@contextmanager
def compose_up(command, *files):
    """``up`` a compose project of COMPOSE_FILE (and ``files``) with free ports;
    yield (project name, {service: port}); ``down -v`` whatever happens."""
    project = unique_name("compose")
    ports = {service: free_port() for service in FRONTS}
    env = dict(os.environ)
    env.update((variable, str(ports[service])) for service, (variable, _) in FRONTS.items())
    base = [*command, "--project-name", project, "--file", str(COMPOSE_FILE)]
    for extra in files:
        base += ["--file", str(extra)]

    def run(*arguments, timeout):
        return subprocess.run([*base, *arguments], cwd=REPO, env=env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    try:
        result = run("up", "--detach", "--build", timeout=UP_TIMEOUT)
        assert result.returncode == 0, f"compose up failed:\n{result.stdout[-6000:]}"
        try:
            for service, port in ports.items():
                wait_until(lambda: http_request(port, "GET", "/app/env", timeout=5)[0] == 200,
                           timeout=SERVE_TIMEOUT,
                           what=f"{service} to serve /app/env on port {port}")
        except AssertionError as error:
            output = run("logs", "--no-color", "--tail", "60", timeout=60).stdout
            raise AssertionError(f"{error}\ncompose logs:\n{output[-8000:]}") from None
        yield project, ports
    finally:
        result = run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)
        assert result.returncode == 0, f"compose down failed:\n{result.stdout[-4000:]}"


def project_containers(docker_client, project):
    """{service: container} of a compose project."""
    label = f"com.docker.compose.project={project}"
    found = docker_client.containers.list(filters={"label": label})
    return {container.labels["com.docker.compose.service"]: container for container in found}


def test_compose_serves_the_demo_on_every_front(compose_command, docker_client):
    with compose_up(compose_command) as (project, ports):
        for service, port in ports.items():
            status, _, body = http_request(port, "GET", "/app/env/a/b?x=1")
            env = json.loads(body)
            assert (status, env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == \
                (200, "/app", "/env/a/b", "x=1"), service
            if service != "nginx":  # nginx passes no GATEWAY_FRONT to the FastCGI server
                assert env["GATEWAY_FRONT"] == FRONTS[service][1]
        containers = project_containers(docker_client, project)
        assert set(containers) == {"app", *FRONTS}
        for service, container in containers.items():
            config = container.attrs["HostConfig"]
            assert config["ReadonlyRootfs"] and config["CapDrop"] == ["ALL"], service
            assert container.attrs["Config"]["User"] not in ("", "root", "0"), service
            # every process the service runs, now that each front has served
            assert_least_privilege(processes_of(container), service)
            # every port is published on the loopback interface only
            for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
                assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings or ()), service
        code, output = containers["app"].exec_run(
            ["stat", "-c", "%a %G %n", SOCKET_DIR, SOCKET])
        assert output.decode().splitlines() == [
            f"2750 gateway {SOCKET_DIR}", f"660 gateway {SOCKET}"]
        wait_until(lambda: all(map(healthy, containers.values())), timeout=60,
                   what="every service healthy")


def healthy(container):
    container.reload()
    return container.attrs["State"]["Health"]["Status"] == "healthy"


def documented_override():
    """The docker-compose.override.yml shown in docker-compose.yml's comments."""
    text = COMPOSE_FILE.read_text()
    block = re.search(r"^#   services:\n(?:^#  .*\n)+", text, re.MULTILINE)
    assert block, "no override example in docker-compose.yml's comments"
    return "".join(line[4:] + "\n" for line in block.group(0).splitlines())


def test_compose_serves_a_mounted_application_as_documented(compose_command, tmp_path):
    override = documented_override()
    assert "GATEWAY_APP: hello:application" in override and "./myapp:/srv/app:ro" in override
    directory = own_app_directory(tmp_path)
    # relative paths are the project directory's, the repository
    (tmp_path / "override.yml").write_text(override.replace("./myapp", str(directory)))
    with compose_up(compose_command, tmp_path / "override.yml") as (_, ports):
        for service, port in ports.items():
            assert http_request(port, "GET", "/app/x/y")[2] == b"hello from /app/x/y", service

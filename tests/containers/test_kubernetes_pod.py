"""The nginx container of deploy/kubernetes/deployment.yaml's pod, run from
the nginx image as the pod runs it: its preStop hook stops nginx the
graceful way. Kubernetes stops a container with SIGTERM, nginx's fast stop,
which drops requests in progress; the hook asks for a graceful stop first,
so a request still arriving is answered and nginx exits 0."""

import socket
from pathlib import Path

import pytest

from support.helpers import in_background
from support.webservers import http_request

from .conftest import LOCKED_DOWN, TMPFS, host_port, started, wait_until

pytestmark = pytest.mark.container

DEPLOYMENT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "deployment.yaml"

# Whether a worker of nginx is draining: its title says so. (The words
# are split so that this script's own command line does not hold them.)
SHUTTING_DOWN = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            if b"is shutting" + b" down" in stream.read():
                raise SystemExit(0)
    except OSError:
        pass
raise SystemExit(1)
"""


def pod_container(name):
    import yaml

    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    return next(container for container in deployment["spec"]["template"]["spec"]["containers"]
                if container["name"] == name)


def test_the_prestop_hook_lets_nginx_finish_a_request_and_exit_0(gateway_image):
    nginx = pod_container("nginx")
    hook = nginx["lifecycle"]["preStop"]["exec"]["command"]
    environment = {variable["name"]: variable["value"] for variable in nginx["env"]}
    with started(gateway_image("nginx"), ports=[8080], tmpfs=TMPFS["nginx"], env=environment,
                 **LOCKED_DOWN) as container:
        wrapped = container.get_wrapped_container()
        address = host_port(container, "nginx")
        wait_until(lambda: http_request(address[1], "GET", "/healthz")[0] == 200, timeout=60,
                   what="nginx serving")
        # A request in progress: its body not all sent yet.
        client = socket.create_connection(address, timeout=30)
        client.sendall(b"POST /app/echo HTTP/1.1\r\nHost: pod\r\nContent-Length: 4\r\n\r\nab")
        stopping = in_background(wrapped.exec_run, hook)
        wait_until(lambda: wrapped.exec_run(["python3", "-c", SHUTTING_DOWN])[0] == 0,
                   timeout=60, what="nginx draining after the preStop hook's nginx -s quit")
        client.sendall(b"cd")
        answer = client.makefile("rb").readline()
        client.close()
        # answered (by nginx: no gateway runs beside it here), not cut off
        assert answer.startswith(b"HTTP/1.1 "), answer
        status = wrapped.wait(timeout=60)
        assert status["StatusCode"] == 0, wrapped.logs()[-2000:]
        stopping(timeout=60)

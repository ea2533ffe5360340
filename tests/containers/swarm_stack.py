"""deploy/swarm/stack.yml deployed on a Docker Swarm for the tests: a
single-node swarm made for them when the engine is in none, the stack under
a name of its own, its tasks and their addresses, and its removal.

Everything here drives the real engine: the docker CLI for what only it
does (``docker swarm``, ``docker stack``), the SDK for the rest.
"""

import os
import subprocess
from contextlib import contextmanager

from support.helpers import unavailable

from .conftest import REPO, unique_name, wait_until

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yml"
STACK_LABEL = "com.docker.stack.namespace"
# What the stack file calls the FastCGI server's service, its network and port.
APP, NGINX, NETWORK, APP_PORT = "app", "nginx", "fastcgi", 9000
# A network Docker makes on "swarm init" and leaves behind on "swarm leave".
GATEWAY_BRIDGE = "docker_gwbridge"
CONVERGE_TIMEOUT = 240   # seconds: tasks started, healthy, on the network


def docker(*arguments, timeout=120, env=None, check=True):
    """Run the docker CLI; its output (stdout and stderr together)."""
    result = subprocess.run(["docker", *arguments], env=env, timeout=timeout,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check:
        assert result.returncode == 0, \
            f"docker {' '.join(arguments)} failed ({result.returncode}):\n{result.stdout[-4000:]}"
    return result


@contextmanager
def single_node_swarm(docker_client):
    """Use the engine's swarm, or make one (and leave it after, taking the
    network it leaves behind too). Skips, or fails under CI=true, when the
    engine cannot be a swarm manager."""
    state = docker_client.info()["Swarm"]
    if state["LocalNodeState"] == "active":
        if not state.get("ControlAvailable"):
            unavailable("this engine is a swarm worker: stacks are deployed from a manager")
        yield
        return
    if state["LocalNodeState"] != "inactive":
        unavailable(f"the engine's swarm is {state['LocalNodeState']}")
    had_bridge = bool(docker_client.networks.list(names=[GATEWAY_BRIDGE]))
    # The swarm's own traffic on loopback: this engine only, nothing exposed.
    made = docker("swarm", "init", "--advertise-addr", "127.0.0.1",
                  "--listen-addr", "127.0.0.1:2377", check=False)
    if made.returncode != 0:
        unavailable(f"docker swarm init failed: {made.stdout.strip()}")
    try:
        yield
    finally:
        docker("swarm", "leave", "--force")
        if not had_bridge:
            for network in docker_client.networks.list(names=[GATEWAY_BRIDGE]):
                network.remove()


class Stack:
    """The stack deployed as ``name`` (see deployed())."""

    def __init__(self, docker_client, name, port):
        self.client = docker_client
        self.name = name
        self.port = port
        self.removed = False

    def service(self, short=APP):
        return self.client.services.get(f"{self.name}_{short}")

    def running_tasks(self, short=APP):
        return [task for task in self.service(short).tasks(filters={"desired-state": "running"})
                if task["Status"]["State"] == "running"]

    def addresses(self, task):
        """A task's HOST:PORT on the stack's network, as nginx names it."""
        for attachment in task.get("NetworksAttachments") or ():
            if attachment["Network"]["Spec"]["Name"] == f"{self.name}_{NETWORK}":
                return [f"{address.split('/')[0]}:{APP_PORT}"
                        for address in attachment["Addresses"]]
        return []

    def replicas(self):
        """{address: task} of the app's running replicas."""
        return {address: task for task in self.running_tasks()
                for address in self.addresses(task)}

    def converged(self, count):
        """The app's running replicas once there are ``count``, each on the
        network and no other task of the service still running; else None."""
        tasks = self.service().tasks()
        running = [task for task in tasks if task["Status"]["State"] == "running"]
        wanted = [task for task in tasks if task["DesiredState"] == "running"]
        if len(running) == len(wanted) == count and all(map(self.addresses, running)):
            return self.replicas()
        return None

    def wait_converged(self, count, timeout=CONVERGE_TIMEOUT):
        return wait_until(lambda: self.converged(count), timeout=timeout,
                          what=f"{count} running replicas of {self.name}_{APP}")

    def scale(self, count):
        docker("service", "scale", "--detach", f"{self.name}_{APP}={count}")

    def container_of(self, task):
        return self.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])

    def update_state(self):
        """The app's last update: (state, message), or None before any."""
        service = self.service()
        status = service.attrs.get("UpdateStatus")
        return (status["State"], status.get("Message", "")) if status else None

    def leftovers(self):
        """What the engine still holds of the stack: services, containers,
        networks, volumes, configs and secrets labelled with its name."""
        label = {"label": f"{STACK_LABEL}={self.name}"}
        found = {
            "services": [s.name for s in self.client.services.list(filters=label)],
            "containers": [c.name for c in self.client.containers.list(all=True, filters=label)],
            "networks": [n.name for n in self.client.networks.list(filters=label)],
            "volumes": [v.name for v in self.client.volumes.list(filters=label)],
            "configs": [c.name for c in self.client.configs.list(filters=label)],
            "secrets": [s.name for s in self.client.secrets.list(filters=label)],
        }
        # By name too: anything the stack made carries it as a prefix.
        found["networks"] += [n.name for n in self.client.networks.list()
                              if n.name.startswith(f"{self.name}_")
                              and n.name not in found["networks"]]
        return {kind: names for kind, names in found.items() if names}

    def remove(self, timeout=CONVERGE_TIMEOUT):
        """docker stack rm, then wait until the engine holds nothing of it."""
        self.removed = True
        docker("stack", "rm", self.name)
        try:
            wait_until(lambda: not self.leftovers(), timeout=timeout,
                       what=f"stack {self.name} gone")
        except AssertionError as error:
            raise AssertionError(f"{error}; left: {self.leftovers()}") from None

    def logs(self, short, tail=60):
        return docker("service", "logs", "--no-task-ids", "--tail", str(tail),
                      f"{self.name}_{short}", check=False, timeout=60).stdout


@contextmanager
def deployed(docker_client, app_image, nginx_image, port, replicas):
    """``docker stack deploy`` the stack file under a fresh name with these
    images, nginx on ``port`` and ``replicas`` of the app; yield the Stack
    once every replica and nginx run; remove it (if the test has not) after."""
    name = unique_name("swarm").replace("-", "")[:40]
    env = dict(os.environ, GATEWAY_APP_IMAGE=app_image, GATEWAY_NGINX_IMAGE=nginx_image,
               GATEWAY_NGINX_PORT=str(port), GATEWAY_REPLICAS=str(replicas))
    stack = Stack(docker_client, name, port)
    try:
        # The images are this engine's own: no registry to ask for digests.
        docker("stack", "deploy", "--resolve-image", "never", "--compose-file",
               str(STACK_FILE), name, env=env)
        try:
            stack.wait_converged(replicas)
            wait_until(lambda: len(stack.running_tasks(NGINX)) == 1, timeout=CONVERGE_TIMEOUT,
                       what=f"nginx of {name} running")
        except AssertionError as error:
            raise AssertionError(f"{error}\napp:\n{stack.logs(APP)}\nnginx:\n{stack.logs(NGINX)}"
                                 ) from None
        yield stack
    finally:
        if not stack.removed:
            stack.remove()


def wait_update_done(stack, timeout=CONVERGE_TIMEOUT):
    """Wait for the app's rolling update to end; its final (state, message)."""
    def ended():
        state = stack.update_state()
        return state if state and state[0] in ("completed", "paused", "rollback_completed") \
            else None
    return wait_until(ended, timeout=timeout, what=f"the update of {stack.name}_{APP}",
                      interval=0.5)

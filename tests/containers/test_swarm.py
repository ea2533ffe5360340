"""deploy/swarm/stack.yml on a real Docker Swarm (one node, made for the
tests when the engine is in none), under a bounded load of GET and POST
requests through nginx's published port: scaling the FastCGI server out, a
rolling update to another image, a replica killed, the stack removed.

Replicas are told apart by the X-Gateway-Replica header nginx adds (the
address it passed the request to). Each scenario prints its request counts
(``pytest -rP`` shows them).
"""

import socket
import time

import pytest

from support.replica_load import Load
from support.webservers import free_port

from .conftest import IMAGE_PREFIX, REPO, wait_until
from .swarm_stack import (
    APP, CONVERGE_TIMEOUT, NGINX, deployed, docker, single_node_swarm, wait_update_done,
)

pytestmark = [pytest.mark.container, pytest.mark.swarm]

CLIENTS = 4
WARM_UP = 100           # requests answered before the change under test
SERVE_TIMEOUT = 120     # seconds for every replica to have answered


@pytest.fixture(scope="module")
def swarm(docker_client):
    with single_node_swarm(docker_client):
        yield


@pytest.fixture(scope="module")
def stack(gateway_image, swarm, docker_client):
    app, nginx = gateway_image("app"), gateway_image("nginx")
    with deployed(docker_client, app, nginx, free_port(), replicas=1) as stack:
        yield stack


@pytest.fixture(scope="module")
def rolled_image(gateway_image, docker_client):
    """The app image again, from the same Dockerfile, with a label that makes
    it another image (another id) under another tag."""
    current = docker_client.images.get(gateway_image("app"))
    tag = f"{IMAGE_PREFIX}-app:rolled"
    image, _ = docker_client.images.build(
        path=str(REPO), target="app", tag=tag, rm=True, forcerm=True,
        labels={"org.gateway.test.rollout": "second"})
    assert image.id != current.id
    return tag


def warmed_up(load):
    load.wait_for(lambda load: len(load.snapshot()) >= WARM_UP, timeout=SERVE_TIMEOUT,
                  what=f"{WARM_UP} requests answered")


def each_answers_after(load, mark, replicas):
    """Wait until every replica of ``replicas`` answered a request sent after ``mark``."""
    load.wait_for(lambda load: set(replicas) <= set(load.replicas_since(mark)),
                  timeout=SERVE_TIMEOUT,
                  what=f"answers from each of {sorted(replicas)}")


def report(scenario, load):
    summary = load.summary()
    print(f"swarm {scenario}: {summary['requests']} requests ({summary['GET']} GET, "
          f"{summary['POST']} POST), {summary['failed']} failed "
          f"({summary['failed POST']} POST), answered by {summary['replicas']} replicas, "
          f"{summary['passed over']} after nginx passed over a replica; "
          f"failures: {summary['first failures']}")
    return summary


def upstream_errors(stack):
    """nginx's last complaints about the replicas, for a failure's message."""
    lines = stack.logs(NGINX, tail=20000).splitlines()
    return "\n".join([line for line in lines if "upstream" in line][-20:])


def test_scaling_out_under_load_every_replica_serves_and_nothing_fails(stack):
    stack.scale(1)
    alone = stack.wait_converged(1)
    with Load(stack.port, clients=CLIENTS) as load:
        warmed_up(load)
        stack.scale(3)
        replicas = stack.wait_converged(3)
        each_answers_after(load, load.mark(), replicas)
    report("scale 1 -> 3", load)
    assert set(alone) < set(replicas)
    assert load.failures() == [], upstream_errors(stack)
    # nobody but the replicas answered
    assert set(load.replicas_since(0)) == set(replicas)


def test_rolling_update_under_load_loses_no_request(stack, rolled_image):
    stack.scale(3)
    before = stack.wait_converged(3)
    with Load(stack.port, clients=CLIENTS) as load:
        warmed_up(load)
        docker("service", "update", "--detach", "--no-resolve-image", "--image", rolled_image,
               f"{stack.name}_{APP}")
        state = wait_update_done(stack)
        after = stack.wait_converged(3)
        each_answers_after(load, load.mark(), after)
    report("rolling update", load)
    assert state[0] == "completed", state
    assert {task["Spec"]["ContainerSpec"]["Image"] for task in after.values()} == {rolled_image}
    assert not {task["ID"] for task in before.values()} & {task["ID"] for task in after.values()}
    assert load.failures() == [], upstream_errors(stack)


def test_killing_a_replica_loses_at_most_its_requests_in_flight(stack):
    stack.scale(3)
    replicas = stack.wait_converged(3)
    address, victim = sorted(replicas.items())[0]
    with Load(stack.port, clients=CLIENTS) as load:
        warmed_up(load)
        kill_sent = time.monotonic()
        stack.container_of(victim).kill()
        killed = time.monotonic()

        def replaced():
            now = stack.converged(3)
            return now if now and victim["ID"] not in {t["ID"] for t in now.values()} else None
        after = wait_until(replaced, timeout=CONVERGE_TIMEOUT,
                           what=f"the swarm to replace the replica at {address}")
        each_answers_after(load, load.mark(), after)
    report("docker kill of one replica", load)
    failures = load.failures()
    # Only requests in flight on that replica when it died may fail: sent
    # before the kill took effect, answered after it was sent, one per
    # client at most.
    assert len(failures) <= CLIENTS, (failures, upstream_errors(stack))
    for failure in failures:
        assert failure.started < killed and failure.ended > kill_sent, failure
        assert failure.replica == address, failure   # nginx names the replica it lost
    states = {task["ID"]: task["Status"]["State"] for task in stack.service().tasks()}
    assert states[victim["ID"]] in ("failed", "shutdown", "complete"), states[victim["ID"]]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_removing_the_stack_leaves_nothing_behind(stack):
    assert set(stack.leftovers()) >= {"services", "containers", "networks"}
    stack.remove()
    assert stack.leftovers() == {}
    wait_until(lambda: refused(stack.port), timeout=60, what=f"port {stack.port} closed")

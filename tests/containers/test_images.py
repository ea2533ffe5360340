"""The images built from the Dockerfile targets start, serve, and run unprivileged."""

import pytest

from .conftest import (
    FASTCGI_PROBE, HEALTH_PATH, TARGETS, WEB_TARGETS, fastcgi_request, host_port, no_engine,
    processes_of, run_once, wait_until,
)

# Programs each image must provide, checked with ``command -v``.
PROGRAMS = {
    "app": ["python3"],
    "nginx": ["python3", "nginx", "fcgiwrap"],
    "apache": ["python3", "apache2"],
    "fronts": ["python3", "lighttpd", "haproxy", "caddy", "h2o"],
}



@pytest.mark.parametrize("ci, outcome", [
    ({"CI": "true"}, pytest.fail.Exception),
    ({"CI": "1"}, pytest.fail.Exception),
    ({"CI": "false"}, pytest.skip.Exception),
    ({}, pytest.skip.Exception),
])
def test_missing_engine_skips_for_users_and_fails_under_ci(ci, outcome):
    with pytest.raises(outcome, match="Docker engine not reachable: no socket"):
        no_engine("no socket", environ=ci)


@pytest.mark.container
@pytest.mark.parametrize("target", WEB_TARGETS)
def test_web_server_answers_health_check(target, server):
    import requests

    host, port = host_port(server(target), target)
    health = requests.get(f"http://{host}:{port}{HEALTH_PATH}", timeout=5)
    assert health.status_code == 200
    assert health.text.strip() == "ok"
    assert requests.get(f"http://{host}:{port}/no-such-page", timeout=5).status_code == 404


@pytest.mark.container
def test_app_serves_the_default_app_over_fastcgi(server):
    import json

    host, port = host_port(server("app"), "app")
    output = fastcgi_request(host, port, dict(FASTCGI_PROBE, PATH_INFO="/env", QUERY_STRING="a=1"))
    head, _, body = output.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"Status: 200 OK"
    assert b"Content-Type: application/json" in head.split(b"\r\n")
    variables = json.loads(body)  # the demo app, the image's default GATEWAY_APP
    assert variables["QUERY_STRING"] == "a=1"
    assert variables["PATH_INFO"] == "/env"


@pytest.mark.container
@pytest.mark.parametrize("target", TARGETS)
def test_image_healthcheck_turns_healthy(target, server):
    wrapped = server(target).get_wrapped_container()

    def health():
        wrapped.reload()
        return wrapped.attrs["State"]["Health"]["Status"]

    assert wait_until(lambda: health() == "healthy", timeout=60,
                      what=f"{target}: Docker health status 'healthy'")
    assert wrapped.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"


@pytest.mark.container
def test_app_health_is_a_fastcgi_ping_the_server_answers(server):
    container = server("app")
    wrapped = container.get_wrapped_container()
    assert wrapped.attrs["Config"]["Healthcheck"]["Test"][1:4] == [
        "gateway", "request", "127.0.0.1:9000"]
    # The server answers the ping itself (GATEWAY_PING_PATH in the image):
    # the demo application would answer /ping with its own page.
    code, output = container.exec(["gateway", "request", "127.0.0.1:9000", "/ping"])
    assert code == 0 and output.endswith(b"\n\npong\n"), output
    code, output = container.exec(["gateway", "status", "127.0.0.1:9000"])
    assert code == 0 and output.startswith(b"pool:"), output


@pytest.mark.container
@pytest.mark.parametrize("target", TARGETS)
def test_server_runs_unprivileged(target, server):
    container = server(target)
    code, output = container.exec(["id", "-u"])
    assert code == 0 and int(output.decode()) != 0
    # Every process, the check itself included, but the runtime's "runc
    # init" of a health check being started (see assert_least_privilege).
    processes = [process for process in processes_of(container.get_wrapped_container())
                 if process["command"] != "runc init"]
    uids = sorted({uid for process in processes for uid in process["uids"]})
    assert uids and 0 not in uids, f"{target} runs processes as root: uids {uids}"


@pytest.mark.container
@pytest.mark.parametrize("target, socket", [
    ("nginx", "/tmp/fcgiwrap.sock"),  # fcgiwrap, nginx's CGI runner
    ("apache", "/run/apache2/socks/cgisock.*"),  # mod_cgid's daemon
])
def test_web_server_cgi_runner_is_listening(target, socket, server):
    container = server(target)
    code, output = container.exec(["sh", "-c", f"for s in {socket}; do test -S \"$s\" || exit 1; done"])
    assert code == 0, f"{target}: no CGI socket {socket}: {output!r}"


@pytest.mark.container
def test_apache_loads_the_gateway_modules(gateway_image, docker_client):
    code, output = run_once(docker_client, gateway_image("apache"),
                            ["sh", "-c", ". /etc/apache2/envvars && apache2 -M"])
    assert code == 0, output
    for module in ("cgid_module", "proxy_fcgi_module", "fcgid_module"):
        assert module in output


@pytest.mark.container
@pytest.mark.parametrize("target", TARGETS)
def test_image_has_programs_and_gateway_package(target, gateway_image, docker_client):
    image = gateway_image(target)
    code, output = run_once(docker_client, image, ["sh", "-c", "command -v " + " ".join(PROGRAMS[target])])
    assert code == 0, f"{target} lacks one of {PROGRAMS[target]}: {output}"
    # A CGI script gets a bare environment: the package must import without
    # PYTHONPATH, and as the image's unprivileged user.
    code, output = run_once(docker_client, image, [
        "env", "-i", "/usr/bin/python3", "-c",
        "import os, gateway; print(os.getuid(), gateway.__file__)",
    ])
    assert code == 0, output
    uid, path = output.split()
    assert int(uid) != 0
    assert path == "/opt/gateway/gateway/__init__.py"




@pytest.mark.container
def test_nginx_replicas_front_resolves_the_name_at_request_time(gateway_image, docker_client):
    environment = {"GATEWAY_FRONT": "nginx-fastcgi-replicas", "GATEWAY_FASTCGI": "app:9000"}
    code, output = run_once(docker_client, gateway_image("nginx"), ["gateway-nginx", "-T"],
                            environment=environment)
    assert code == 0, output
    assert "resolver 127.0.0.11 valid=2s" in output
    assert "set $gateway_fastcgi app:9000;" in output
    assert "fastcgi_pass $gateway_fastcgi;" in output
    assert "fastcgi_pass gateway_fastcgi;" not in output


@pytest.mark.container
@pytest.mark.parametrize("variables, named", [
    ({}, "GATEWAY_FASTCGI="),
    ({"GATEWAY_FASTCGI": "unix:/run/gateway/fastcgi.sock"}, "GATEWAY_FASTCGI=unix:"),
    ({"GATEWAY_FASTCGI": "app:9000", "GATEWAY_RESOLVER": "10.0.0.2;x"}, "GATEWAY_RESOLVER="),
], ids=["no-address", "unix-socket", "bad-resolver"])
def test_nginx_replicas_front_refuses_what_it_cannot_resolve(variables, named, gateway_image,
                                                             docker_client):
    code, output = run_once(docker_client, gateway_image("nginx"), ["gateway-nginx"],
                            environment={"GATEWAY_FRONT": "nginx-fastcgi-replicas", **variables})
    assert (code, output.count("\n")) == (2, 1), output
    assert output.startswith("gateway-nginx: ") and named in output

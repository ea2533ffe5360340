"""deploy/kubernetes/: no cluster runs here, so the manifests are checked
offline. Each object against the schemas of a current Kubernetes release
(kubernetes-validate, strict: an unknown or misspelt field fails), every
file through yamllint, then what the objects must agree on (the pod's
labels, ports, the socket, the probes, the stop), and the pod's own parts
run for real: its nginx site in front of its gateway command line.
"""

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.fcgi_client import ServerProcess, server_env
from support.helpers import REPO, unavailable, wait_until
from support.webservers import Nginx, free_port, http_request, port_open, repo_file


def need(module):
    """Import ``module`` from the test extra (a skip, or under CI a failure, without it)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{error}: pip install -e '.[test]'")

MANIFESTS = sorted((Path(REPO) / 'deploy' / 'kubernetes').glob('*.yaml'))
STACK_FILE = Path(REPO) / 'deploy' / 'swarm' / 'stack.yml'
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 100}
  document-start: disable
"""


def documents(path):
    with open(path) as stream:
        return [document for document in need('yaml').safe_load_all(stream) if document]


def objects():
    """{kind: object} of every manifest (one object of each kind)."""
    found = {}
    for path in MANIFESTS:
        for document in documents(path):
            assert document['kind'] not in found, f"two {document['kind']} objects"
            found[document['kind']] = document
    return found


def containers():
    """{name: container} of the Deployment's pod."""
    pod = objects()['Deployment']['spec']['template']['spec']
    return {container['name']: container for container in pod['containers']}


def option(command, name):
    """The value given to ``name`` on a command line."""
    assert name in command, f'{name} not in {command}'
    return command[command.index(name) + 1]


def env_of(container):
    return {variable['name']: variable['value'] for variable in container.get('env', ())}


def test_there_are_manifests_of_every_kind():
    assert set(objects()) == {'Deployment', 'Service', 'HorizontalPodAutoscaler',
                              'PodDisruptionBudget', 'ConfigMap'}


@pytest.mark.parametrize('path', MANIFESTS, ids=lambda path: path.name)
def test_each_object_is_valid_for_a_current_kubernetes(path):
    kubernetes_validate = need('kubernetes_validate')
    version = kubernetes_validate.latest_version()
    assert tuple(map(int, version.split('.')[:2])) >= (1, 33), version
    for document in documents(path):
        # raises ValidationError, naming the field, on anything the API
        # server would refuse or not know
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize('path', [*MANIFESTS, STACK_FILE], ids=lambda path: path.name)
def test_yamllint_finds_nothing(path):
    linter, config = need('yamllint.linter'), need('yamllint.config')
    problems = list(linter.run(path.read_text(), config.YamlLintConfig(YAMLLINT_CONFIG),
                               str(path)))
    assert [f'{p.line}:{p.column} {p.message}' for p in problems] == []


def test_every_container_is_locked_down():
    pod = objects()['Deployment']['spec']['template']['spec']
    assert pod['securityContext']['runAsNonRoot'] is True
    assert pod['securityContext']['seccompProfile'] == {'type': 'RuntimeDefault'}
    assert pod['automountServiceAccountToken'] is False
    assert 'hostNetwork' not in pod and 'hostPID' not in pod
    for name, container in containers().items():
        context = container['securityContext']
        assert context['runAsUser'] != 0 and context['runAsGroup'] != 0, name
        assert context['readOnlyRootFilesystem'] is True, name
        assert context['allowPrivilegeEscalation'] is False, name
        assert context.get('privileged', False) is False, name
        assert context['capabilities'] == {'drop': ['ALL']}, name
        # the autoscaler's utilisation is of what each container requests
        assert container['resources']['requests']['cpu'], name


def test_the_pod_shares_the_socket_of_the_gateway_command_line():
    app, nginx = containers()['app'], containers()['nginx']
    assert app['command'][:2] == ['gateway', 'fastcgi']
    socket = option(app['command'], '--bind')
    assert socket.startswith('unix:')
    directory = os.path.dirname(socket[len('unix:'):])
    mounts = {name: {m['mountPath']: m['name'] for m in c['volumeMounts']}
              for name, c in containers().items()}
    assert mounts['app'][directory] == mounts['nginx'][directory]
    volumes = {v['name']: v for v in objects()['Deployment']['spec']['template']['spec']['volumes']}
    assert 'emptyDir' in volumes[mounts['app'][directory]]
    # nginx reaches it through the site the ConfigMap mounts over the image's
    site = objects()['ConfigMap']['data']['fastcgi-site.conf']
    assert re.search(rf'server {re.escape(socket)};', site)
    assert env_of(nginx)['GATEWAY_FRONT'] == 'nginx-fastcgi'
    # and only the group can: the gateway's group is the pod's fsGroup
    assert option(app['command'], '--unix-mode') == '660'
    assert objects()['Deployment']['spec']['template']['spec']['securityContext']['fsGroup'] == \
        app['securityContext']['runAsGroup']


def test_the_probes_ask_the_ping_path_of_the_pool_and_of_the_arbiter():
    app = containers()['app']
    ping = env_of(app)['GATEWAY_PING_PATH']
    pool, arbiter = option(app['command'], '--bind'), option(app['command'], '--status-bind')
    for probe, address in (('startupProbe', pool), ('readinessProbe', pool),
                           ('livenessProbe', arbiter)):
        command = app[probe]['exec']['command']
        assert command[:4] == ['gateway', 'request', address, ping], probe
        # the probe's own limit stays inside the kubelet's
        assert float(option(command, '--timeout')) < app[probe]['timeoutSeconds'], probe


def test_the_stop_fits_in_the_grace_period():
    pod = objects()['Deployment']['spec']['template']['spec']
    app, nginx = containers()['app'], containers()['nginx']
    app_wait = int(app['lifecycle']['preStop']['exec']['command'][-1])
    assert app['lifecycle']['preStop']['exec']['command'][0] == 'sleep'
    nginx_stop = nginx['lifecycle']['preStop']['exec']['command'][-1]
    nginx_wait = int(re.match(r'sleep (\d+); nginx -s quit;', nginx_stop).group(1))
    graceful = float(option(app['command'], '--graceful-timeout'))
    # nginx stops taking requests before the gateway stops accepting them
    assert nginx_wait < app_wait
    # the gateway's drain ends before the kubelet's SIGKILL
    assert pod['terminationGracePeriodSeconds'] > app_wait + graceful


def test_the_objects_select_the_deployments_pods():
    found = objects()
    deployment = found['Deployment']
    labels = deployment['spec']['template']['metadata']['labels']
    assert deployment['spec']['selector']['matchLabels'].items() <= labels.items()
    assert found['Service']['spec']['selector'].items() <= labels.items()
    assert found['PodDisruptionBudget']['spec']['selector']['matchLabels'].items() <= \
        labels.items()
    target = found['HorizontalPodAutoscaler']['spec']['scaleTargetRef']
    assert (target['kind'], target['name']) == ('Deployment', deployment['metadata']['name'])
    # never fewer pods than asked for during a rolling update
    assert deployment['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0
    ports = {port['name']: port['containerPort'] for port in containers()['nginx']['ports']}
    assert [p['targetPort'] for p in found['Service']['spec']['ports']] == ['http']
    assert 'http' in ports


def test_prometheus_is_pointed_at_the_status_on_a_port_the_service_does_not_expose():
    annotations = objects()['Deployment']['spec']['template']['metadata']['annotations']
    assert annotations['prometheus.io/scrape'] == 'true'
    port, path = int(annotations['prometheus.io/port']), annotations['prometheus.io/path']
    assert port in [p['containerPort'] for p in containers()['nginx']['ports']]
    assert port not in [p.get('targetPort') for p in objects()['Service']['spec']['ports']]
    site = objects()['ConfigMap']['data']['fastcgi-site.conf']
    server = site[site.index(f'listen {port};'):]
    app = containers()['app']
    assert re.search(rf'location = {re.escape(path)} {{', server)
    assert f"fastcgi_param SCRIPT_NAME {env_of(app)['GATEWAY_STATUS_PATH']};" in server
    assert 'fastcgi_param QUERY_STRING openmetrics;' in server
    # to the arbiter's socket, which answers when every worker is busy
    upstream = re.search(r'fastcgi_pass (\w+);', server).group(1)
    assert re.search(rf'upstream {upstream} {{\s*server '
                     rf"{re.escape(option(app['command'], '--status-bind'))};", site)


def sockets(app):
    """The unix sockets the gateway's command line names."""
    return [argument for argument in app['command'] if argument.startswith('unix:')]


def on_loopback(directory):
    """The pod's socket addresses moved into ``directory``: a function of
    one argument, which it returns unchanged if it names none."""
    def local(argument):
        if argument.startswith('unix:/run/gateway/'):
            return f"unix:{directory}/{argument[len('unix:/run/gateway/'):]}"
        return argument
    return local


@pytest.fixture
def pod_on_loopback(tmp_path):
    """The pod's two parts on this machine: its gateway command line and
    environment (its sockets in ``tmp_path``), and nginx with its
    ConfigMap's site (the ports free ones, the image's includes the
    repository's files). Yields (http port, metrics port, on_loopback's
    function for the sockets)."""
    if not shutil.which('nginx'):
        unavailable('nginx is not installed (scripts/test installs it)')
    app = containers()['app']
    local = on_loopback(tmp_path)
    server = ServerProcess([local(argument) for argument in app['command'][2:]],
                           env=server_env(**env_of(app)))
    try:
        server.address()
        annotations = objects()['Deployment']['spec']['template']['metadata']['annotations']
        metrics_port = free_port()
        site = objects()['ConfigMap']['data']['fastcgi-site.conf']
        for address in sockets(app):
            site = site.replace(address, local(address))
        site = site.replace('/etc/nginx/gateway/', repo_file('nginx') + '/')
        site = site.replace('listen 8080 default_server;', 'listen 127.0.0.1:PORT;')
        site = site.replace(f"listen {annotations['prometheus.io/port']};",
                            f'listen 127.0.0.1:{metrics_port};')
        nginx = Nginx(tmp_path).start(site)
        try:
            wait_until(lambda: port_open(metrics_port), what='the metrics port open')
            yield nginx.port, metrics_port, local
        finally:
            nginx.stop()
    finally:
        server.kill()


def test_the_pods_nginx_site_serves_the_gateway_command_line(pod_on_loopback):
    port, _, _ = pod_on_loopback
    status, _, body = http_request(port, 'GET', '/app/env/x?y=1')
    assert status == 200, body
    assert b'"SCRIPT_NAME": "/app"' in body and b'"PATH_INFO": "/env/x"' in body
    assert http_request(port, 'GET', '/healthz')[0] == 200


@pytest.mark.parametrize('probe', ['startupProbe', 'readinessProbe', 'livenessProbe'])
def test_each_probe_passes_against_the_pods_gateway(pod_on_loopback, probe):
    _, _, local = pod_on_loopback
    command = [local(argument) for argument in containers()['app'][probe]['exec']['command']]
    assert command[0] == 'gateway'
    result = subprocess.run([sys.executable, '-m', 'gateway', *command[1:]], env=server_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert result.returncode == 0, result.stdout


def test_prometheus_gets_openmetrics_from_the_pods_metrics_port(pod_on_loopback):
    _, metrics_port, _ = pod_on_loopback
    annotations = objects()['Deployment']['spec']['template']['metadata']['annotations']
    status, headers, body = http_request(metrics_port, 'GET', annotations['prometheus.io/path'])
    assert status == 200, body
    assert headers['content-type'].startswith('application/openmetrics-text')
    assert b'phpfpm_accepted_connections_total' in body and body.endswith(b'# EOF\n')
    # nothing else there, and the application is not reachable through it
    assert http_request(metrics_port, 'GET', '/app/env')[0] == 404

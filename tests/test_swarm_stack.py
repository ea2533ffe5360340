"""deploy/swarm/stack.yml read as docker stack deploy reads it (defaults
interpolated), without an engine: what its parts must agree on, and the
app service's entrypoint, which holds SIGTERM back while nginx forgets the
replica, run with sh. tests/containers/test_swarm.py deploys it for real."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.helpers import REPO, unavailable, wait_until

STACK_FILE = Path(REPO) / 'deploy' / 'swarm' / 'stack.yml'


def stack():
    """The stack file with each ${NAME:-default} as its default and $$ as $."""
    try:
        import yaml
    except ImportError as error:
        unavailable(f"{error}: pip install -e '.[test]'")
    text = re.sub(r'\$\{[A-Z_]+:-([^}]*)\}', r'\1', STACK_FILE.read_text())
    return yaml.safe_load(text.replace('$$', '$'))


def option(command, name):
    return command[command.index(name) + 1]


def seconds(duration):
    return float(re.fullmatch(r'(\d+)s', duration).group(1))


def test_the_replicas_admit_their_network_and_the_health_check():
    app = stack()['services']['app']
    subnet = stack()['networks']['fastcgi']['ipam']['config'][0]['subnet']
    allowed = option(app['command'], '--web-server-addrs').split(',')
    assert allowed == [subnet, '127.0.0.1']
    # the health check asks the ping path the server answers, on loopback
    port = option(app['command'], '--bind').rsplit(':', 1)[1]
    check = app['healthcheck']['test']
    assert check[:5] == ['CMD', 'gateway', 'request', f'127.0.0.1:{port}',
                         app['environment']['GATEWAY_PING_PATH']]
    assert app['deploy']['endpoint_mode'] == 'dnsrr'
    assert app['deploy']['update_config']['order'] == 'start-first'
    nginx = stack()['services']['nginx']
    assert nginx['environment']['GATEWAY_FASTCGI'] == 'app:9000'
    assert [port['mode'] for port in nginx['ports']] == ['host']


def test_the_stop_grace_period_covers_the_delay_and_the_drain():
    app = stack()['services']['app']
    delay = float(re.search(r"sleep (\d+); kill -TERM", app['entrypoint'][2]).group(1))
    drain = float(option(app['command'], '--graceful-timeout'))
    assert seconds(app['stop_grace_period']) > delay + drain


def run_entrypoint(*server):
    """The app service's entrypoint, as the container runs it, in front of
    ``server`` (a command line), in a session of its own."""
    entrypoint = stack()['services']['app']['entrypoint']
    return subprocess.Popen([*entrypoint, *server], start_new_session=True)


def test_the_entrypoint_exits_as_the_server_does():
    wrapper = run_entrypoint(sys.executable, '-c', 'raise SystemExit(2)')
    assert wrapper.wait(30) == 2


def test_the_entrypoint_passes_sigterm_on_and_waits_for_the_server(tmp_path):
    marker = tmp_path / 'stopped'
    # A server that stops on SIGTERM, saying so, after a moment's work.
    server = (
        'import signal, sys, time\n'
        'def stop(*_):\n'
        f'    time.sleep(0.5); open({str(marker)!r}, "w").write("TERM"); sys.exit(0)\n'
        'signal.signal(signal.SIGTERM, stop)\n'
        f'open({str(tmp_path / "ready")!r}, "w").close()\n'
        'time.sleep(60)\n')
    wrapper = run_entrypoint(sys.executable, '-c', server)
    try:
        wait_until(lambda: (tmp_path / 'ready').exists(), timeout=30, what='the server started')
        wrapper.send_signal(signal.SIGTERM)
        # the wrapper ends only once the server has stopped, with its status
        assert wrapper.wait(30) == 0
        assert marker.read_text() == 'TERM'
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait(5)


@pytest.mark.parametrize('service', ['app', 'nginx'])
def test_every_service_is_locked_down(service):
    spec = stack()['services'][service]
    assert spec['read_only'] is True and spec['cap_drop'] == ['ALL']
    assert {mount['target'] for mount in spec['volumes'] if mount['type'] == 'tmpfs'} == \
        {'/run', '/tmp'}

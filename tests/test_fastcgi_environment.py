"""Every ``gateway fastcgi`` option from the environment: GATEWAY_<OPTION>,
the command line first, a bad value refused in one line naming the variable."""

import re

import pytest

from support.fcgi_client import ServerProcess, get, server_env, wait_until
from gateway import cli
from gateway.environment_options import variable_for

APP = 'apps.fcgiapps:router'


def _long_options(parser):
    return [action.option_strings[-1] for action in parser._actions
            if action.option_strings and action.option_strings[-1] != '--help']


def test_help_names_the_variable_of_every_option(capsys):
    assert cli.fastcgi_main(['--help']) == 0
    text = re.sub(r'\s+', ' ', capsys.readouterr().out)
    options = _long_options(cli.build_parser())
    assert len(options) > 20
    for option in options:
        assert f'${variable_for(option)}' in text, option
    assert '$GATEWAY_LOG_FILE or $GATEWAY_LOG]' in text


def test_an_option_added_later_reads_its_variable_too(monkeypatch):
    monkeypatch.setenv('GATEWAY_SOME_NEW_OPTION', '42')
    parser = cli.build_parser()
    parser.add_argument('--some-new-option', type=int, default=0)
    assert parser.parse_args([]).some_new_option == 42
    assert parser.parse_args(['--some-new-option', '7']).some_new_option == 7


@pytest.mark.parametrize('variable, value, says', [
    ('GATEWAY_THREADS', 'many', "'many' is not a number of threads"),
    ('GATEWAY_TIMEOUT', '-1', "'-1' is not a number of seconds"),
    ('GATEWAY_FCGI_STDERR', 'maybe', "'maybe' is neither on"),
    ('GATEWAY_LOG_LEVEL', 'loud', "'loud' is not one of debug"),
    ('GATEWAY_BIND', '127.0.0.1:0 nowhere', "bad --bind 'nowhere'"),
    ('GATEWAY_ROLES', 'filter', 'the roles served are responder and authorizer'),
    ('GATEWAY_WEB_SERVER_ADDRS', 'nginx.local', "'nginx.local' is not an IP address"),
])
def test_a_bad_value_in_a_variable_is_one_line_naming_it(variable, value, says, monkeypatch,
                                                          capsys):
    monkeypatch.setenv(variable, value)
    assert cli.fastcgi_main([APP, '--bind', '127.0.0.1:0']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('gateway fastcgi: error:'), err
    assert variable in err and says in err, err


def _threads_served(env, *args):
    """How many threads a one-process server says it runs with."""
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '0', *args],
                       env=server_env(**env)) as server:
        found = server.wait_for_log(r'serving in this process \(pid \d+\), (\d+) thread')
        assert get(server.address(), '/hello').status == 200
        return int(found.group(1))


def test_a_variable_sets_the_option_and_the_command_line_wins():
    assert _threads_served({'GATEWAY_THREADS': '3'}) == 3
    assert _threads_served({'GATEWAY_THREADS': '3'}, '--threads', '2') == 2


def test_repeatable_options_take_several_values_and_old_variables_still_count(tmp_path):
    log_file = tmp_path / 'server.log'
    env = server_env(GATEWAY_BIND='127.0.0.1:0 127.0.0.1:0', GATEWAY_WORKERS='0',
                     GATEWAY_LOG=str(log_file), GATEWAY_APP=APP)
    # GATEWAY_LOG (--log-file's older name) still sends the log to the file.
    def ports():
        text = log_file.read_text() if log_file.exists() else ''
        found = re.findall(r'listening on 127\.0\.0\.1:(\d+)', text)
        return found if len(found) == 2 and 'serving in this process' in text else None
    with ServerProcess([], env=env):
        for port in wait_until(ports, what='two addresses in the log file'):
            assert get(('127.0.0.1', int(port)), '/hello').status == 200

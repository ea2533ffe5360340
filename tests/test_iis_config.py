"""The IIS configurations in iis/: well-formed, consistent where IIS compares
strings, and naming command lines the gateway accepts in its IIS mode."""

import os
import xml.etree.ElementTree as ET

import pytest

from gateway.cli import parse_cgi_args
from gateway.cli import build_parser
from gateway.fastcgi.config import Config
from iis_fronts import webconfig
from iis_fronts.webconfig import IIS, split_command_line

FILES = [('cgi', 'web.config'), ('cgi', 'applicationHost.xml'),
         ('fastcgi', 'web.config'), ('fastcgi', 'applicationHost.xml')]
WEB_CONFIGS = [('cgi', 'web.config'), ('fastcgi', 'web.config')]


def cgi_handler():
    return webconfig.handler(webconfig.load('cgi', 'web.config'), 'CgiModule')


def fastcgi_handler():
    return webconfig.handler(webconfig.load('fastcgi', 'web.config'), 'FastCgiModule')


def fastcgi_application():
    return webconfig.fastcgi_application(webconfig.load('fastcgi', 'applicationHost.xml'))


def readme():
    with open(os.path.join(IIS, 'README.md'), encoding='utf-8') as stream:
        return stream.read()


@pytest.mark.parametrize('parts', FILES, ids='/'.join)
def test_files_are_well_formed_configuration_xml(parts):
    # Also catches "--" inside an XML comment, which IIS refuses to load.
    root = ET.parse(os.path.join(IIS, *parts)).getroot()
    assert root.tag == 'configuration'
    assert root.find('system.webServer') is not None


@pytest.mark.parametrize('handler, module', [(cgi_handler, 'CgiModule'),
                                             (fastcgi_handler, 'FastCgiModule')])
def test_handler_maps_a_virtual_script_with_iis_path_info(handler, module):
    attributes = handler()
    assert attributes['modules'] == module
    assert attributes['verb'] == '*'
    # IIS splits script and path info only at a file name with an extension.
    assert attributes['path'] == 'app.wsgi'
    # No file has to exist; the gateway undoes allowPathInfo="false" itself.
    assert attributes['resourceType'] == 'Unspecified'
    assert attributes['requireAccess'] == 'Script'
    assert attributes['allowPathInfo'] == 'false'


def test_cgi_restriction_allows_exactly_the_handler_command():
    # IIS compares the whole command line, arguments included.
    restrictions = webconfig.cgi_restrictions(webconfig.load('cgi', 'applicationHost.xml'))
    assert [(entry['path'], entry['allowed']) for entry in restrictions] == \
        [(cgi_handler()['scriptProcessor'], 'true')]


def test_cgi_mapping_asks_iis_for_no_query_words():
    # IIS substitutes a query's words (RFC 3875 4.4) for "%s" in a script map;
    # the gateway would then drop its own last arguments to be rid of them.
    assert '%' not in cgi_handler()['scriptProcessor']


def test_fastcgi_script_processor_is_full_path_bar_arguments():
    application, _ = fastcgi_application()
    assert fastcgi_handler()['scriptProcessor'] == \
        f"{application['fullPath']}|{application['arguments']}"


def test_fastcgi_full_path_needs_no_quoting():
    # IIS puts fullPath at the head of the command line as it is: a path with
    # a space would need quotes inside the attribute (and in scriptProcessor).
    application, _ = fastcgi_application()
    assert ' ' not in application['fullPath']
    assert split_command_line(application['fullPath'])[0] == application['fullPath']


def test_both_mappings_use_one_interpreter():
    application, _ = fastcgi_application()
    assert webconfig.cgi_command(cgi_handler()['scriptProcessor'])[0] == application['fullPath']


def test_cgi_command_selects_iis_cgi_handler():
    rest = webconfig.gateway_args(webconfig.cgi_command(cgi_handler()['scriptProcessor']))
    assert rest[0] == 'cgi'
    # IIS passes no per-mapping environment to a CGI program: all on the command line.
    spec, iis, directory, log_file, script_name = parse_cgi_args(rest[1:], {})
    assert iis is True and script_name is None
    assert spec == 'myproject.wsgi:application'
    assert directory == 'C:\\inetpub\\gateway\\app'


def test_fastcgi_command_selects_iis_mode_over_stdin(capsys):
    application, environment = fastcgi_application()
    rest = webconfig.gateway_args(webconfig.fastcgi_command(application))
    assert rest[0] == 'fastcgi'
    try:
        args = build_parser().parse_args(rest[1:])
    except SystemExit:
        args = None
    if args is None:
        pytest.fail(f'gateway fastcgi refuses {rest[1:]}: {capsys.readouterr().err.strip()}')
    assert getattr(args, 'iis', None) is True, 'the IIS PATH_INFO fix is not selected'
    assert args.bind == []          # no address: the pipe IIS leaves on stdin
    assert not args.fcgi_stderr     # no STDERR records for IIS's stderrMode to act on
    assert args.app is None and environment['GATEWAY_APP'] == 'myproject.wsgi:application'
    assert environment['PYTHONPATH'] == 'C:\\inetpub\\gateway\\app'


def test_gateway_sends_no_stderr_records_unless_asked():
    # The fragment's stderrMode advice rests on this default.
    application, _ = fastcgi_application()
    assert Config().fcgi_stderr is False
    assert application['stderrMode'] == 'ReturnGeneric500'
    assert application['protocol'] == 'NamedPipe'


def test_fastcgi_pool_settings_are_numbers():
    application, _ = fastcgi_application()
    for name in ('maxInstances', 'instanceMaxRequests', 'activityTimeout', 'requestTimeout',
                 'idleTimeout', 'signalBeforeTerminateSeconds'):
        assert application[name].isdigit(), name


@pytest.mark.parametrize('parts', WEB_CONFIGS, ids='/'.join)
def test_proxy_header_is_refused(parts):
    # httpoxy: Microsoft's preferred rule (KB 3179800), a Proxy header of at most 0 bytes.
    assert webconfig.header_limits(webconfig.load(*parts)) == {'proxy': 0}


@pytest.mark.parametrize('parts', WEB_CONFIGS, ids='/'.join)
def test_application_errors_pass_through(parts):
    root = webconfig.load(*parts)
    assert webconfig.existing_response(root) == 'PassThrough'
    # IIS's other request-filtering defaults stay as they are.
    assert webconfig.request_filtering(root) == (False, 30000000)


def test_readme_commands_repeat_the_configuration_exactly():
    text = readme()
    application, environment = fastcgi_application()
    assert f"path='{cgi_handler()['scriptProcessor']}'" in text
    assert f"fullPath='{application['fullPath']}',arguments='{application['arguments']}'" in text
    for name, value in environment.items():
        assert f"name='{name}',value='{value}'" in text
    assert "header='Proxy',sizeLimit='0'" in text


@pytest.mark.parametrize('line, argv', [
    ('C:\\py\\python.exe -m gateway cgi --iis',
     ['C:\\py\\python.exe', '-m', 'gateway', 'cgi', '--iis']),
    ('"C:\\Program Files\\Python312\\python.exe" -m gateway',
     ['C:\\Program Files\\Python312\\python.exe', '-m', 'gateway']),
    ('p.exe --chdir "C:\\My App\\\\" x:y', ['p.exe', '--chdir', 'C:\\My App\\', 'x:y']),
    ('p.exe a\\\\b "c\\"d" e\\\\\\"f', ['p.exe', 'a\\\\b', 'c"d', 'e\\"f']),
    ('p.exe "a ""quoted"" word"  \t last', ['p.exe', 'a "quoted" word', 'last']),
    ('p.exe ""', ['p.exe', '']),
])
def test_command_lines_split_as_windows_programs_see_them(line, argv):
    assert split_command_line(line) == argv


def test_gateway_args_knows_the_console_script_too():
    assert webconfig.gateway_args(['C:\\venv\\Scripts\\gateway.exe', 'cgi', '--iis']) == \
        ['cgi', '--iis']
    with pytest.raises(ValueError, match='does not run "-m gateway"'):
        webconfig.gateway_args(['C:\\py\\python.exe', 'gateway', 'cgi'])


def test_localized_command_keeps_every_option():
    argv = webconfig.cgi_command(cgi_handler()['scriptProcessor'])
    assert webconfig.localized(argv, 'python3', 'gateway.demo:app', '/tmp') == \
        ['python3', '-m', 'gateway', 'cgi', '--iis', '--chdir', '/tmp', 'gateway.demo:app']

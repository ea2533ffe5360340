"""The IIS configuration files in iis/, read the way IIS reads them.

Finds the handler mappings, the FastCGI process pool, the ISAPI/CGI
restriction and the request-filtering rules; splits command lines the way a
Windows program receives them; and turns the gateway command a configuration
names into the same command for a POSIX test machine.
"""

import os
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IIS = os.path.join(REPO, 'iis')

# IIS's defaults where a file leaves a setting out.
DEFAULT_MAX_ALLOWED_CONTENT_LENGTH = 30000000   # requestLimits maxAllowedContentLength
DEFAULT_STDERR_MODE = 'ReturnStdErrIn500'       # fastCgi/application stderrMode
DEFAULT_EXISTING_RESPONSE = 'Auto'              # httpErrors existingResponse


def load(*parts):
    """The root element of iis/<parts...>."""
    return ET.parse(os.path.join(IIS, *parts)).getroot()


def _web_server(root):
    section = root.find('system.webServer')
    if section is None:
        raise LookupError('no system.webServer section')
    return section


def handler(root, module):
    """The one <handlers><add> that uses *module* (CgiModule, FastCgiModule)."""
    found = [add for add in _web_server(root).findall('handlers/add')
             if module in [name.strip() for name in add.get('modules', '').split(',')]]
    if len(found) != 1:
        raise LookupError(f'{len(found)} handlers use {module}')
    return found[0].attrib


def fastcgi_application(root):
    """The one <fastCgi><application> (attributes) and its environment variables."""
    found = _web_server(root).findall('fastCgi/application')
    if len(found) != 1:
        raise LookupError(f'{len(found)} FastCGI applications')
    environment = {variable.get('name'): variable.get('value')
                   for variable in found[0].findall('environmentVariables/environmentVariable')}
    return found[0].attrib, environment


def cgi_restrictions(root):
    """The <isapiCgiRestriction><add> entries, as attribute dicts."""
    return [add.attrib for add in _web_server(root).findall('security/isapiCgiRestriction/add')]


def header_limits(root):
    """{lower-case header name: size limit in bytes} from requestFiltering."""
    return {add.get('header').lower(): int(add.get('sizeLimit'))
            for add in _web_server(root).findall(
                'security/requestFiltering/requestLimits/headerLimits/add')}


def request_filtering(root):
    """(allowDoubleEscaping, maxAllowedContentLength), IIS's defaults filled in."""
    filtering = _web_server(root).find('security/requestFiltering')
    attributes = {} if filtering is None else filtering.attrib
    limits = None if filtering is None else filtering.find('requestLimits')
    maximum = None if limits is None else limits.get('maxAllowedContentLength')
    return (attributes.get('allowDoubleEscaping', 'false').lower() == 'true',
            int(maximum) if maximum else DEFAULT_MAX_ALLOWED_CONTENT_LENGTH)


def existing_response(root):
    errors = _web_server(root).find('httpErrors')
    return DEFAULT_EXISTING_RESPONSE if errors is None else errors.get(
        'existingResponse', DEFAULT_EXISTING_RESPONSE)


def split_command_line(text):
    """argv as a Windows C program (python.exe) receives it from *text*.

    The Microsoft C runtime's rules: the program name ends at the first
    space or tab unless quoted, and is taken literally; the other arguments
    are separated by spaces and tabs outside double quotes, 2n backslashes
    before a quote give n backslashes and a delimiting quote, 2n+1 give n
    backslashes and a literal quote, "" inside quotes is a literal quote, and
    other backslashes are literal.
    """
    args = []
    i, end = 0, len(text)
    while i < end and text[i] in ' \t':
        i += 1
    if i < end and text[i] == '"':
        close = text.find('"', i + 1)
        close = end if close < 0 else close
        args.append(text[i + 1:close])
        i = close + 1
    else:
        start = i
        while i < end and text[i] not in ' \t':
            i += 1
        args.append(text[start:i])
    while True:
        while i < end and text[i] in ' \t':
            i += 1
        if i >= end:
            return args
        arg, quoted = [], False
        while i < end and (quoted or text[i] not in ' \t'):
            char = text[i]
            if char == '\\':
                run = i
                while run < end and text[run] == '\\':
                    run += 1
                count = run - i
                if run < end and text[run] == '"':
                    arg.append('\\' * (count // 2))
                    if count % 2:
                        arg.append('"')
                        run += 1
                else:
                    arg.append('\\' * count)
                i = run
            elif char == '"':
                if quoted and i + 1 < end and text[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                arg.append(char)
                i += 1
        args.append(''.join(arg))


def _program(path):
    return path.replace('/', '\\').rsplit('\\', 1)[-1].lower()


def gateway_args(argv):
    """The gateway's own arguments in *argv*, the interpreter (and ``-m
    gateway``) or the gateway.exe console script dropped."""
    program = _program(argv[0])
    if program in ('python.exe', 'python3.exe', 'pythonw.exe', 'python'):
        if argv[1:3] != ['-m', 'gateway']:
            raise ValueError(f'{argv!r} does not run "-m gateway"')
        return argv[3:]
    if program in ('gateway.exe', 'gateway'):
        return argv[1:]
    raise ValueError(f'{argv[0]!r} is neither python.exe nor gateway.exe')


def cgi_command(script_processor):
    """argv of the CGI program IIS starts for a scriptProcessor: IIS hands the
    whole string to CreateProcess as the command line."""
    return split_command_line(script_processor)


def fastcgi_command(application):
    """argv of the FastCGI processes of a <fastCgi><application>: IIS starts
    fullPath with arguments after it (it does not quote fullPath itself)."""
    return split_command_line(f"{application['fullPath']} {application.get('arguments', '')}")


def localized(argv, python, app, directory):
    """The gateway command *argv* names, for a POSIX machine: the interpreter
    becomes *python*, a --chdir directory becomes *directory* and the
    MODULE:CALLABLE (if any) becomes *app*; every other argument is kept."""
    rest = gateway_args(argv)
    result, i = [], 0
    while i < len(rest):
        arg = rest[i]
        if arg == '--chdir' and i + 1 < len(rest):
            result += [arg, directory]
            i += 2
            continue
        if arg.startswith('--chdir='):
            arg = '--chdir=' + directory
        elif i > 0 and not arg.startswith('-'):
            arg = app
        result.append(arg)
        i += 1
    return [python, '-m', 'gateway', *result]

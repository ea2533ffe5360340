"""``gateway request`` and ``gateway status``: one FastCGI request to a
running server, printed for a person (what ``cgi-fcgi -bind -connect``
does, readable), to diagnose a socket, a mount point or permissions, and
as a health check that means "answers FastCGI".

Exit status: 0 for a 2xx answer, 1 for any other answer, 2 for a wrong
command line, 3 when no answer came (nothing listens, no such socket, no
permission, a timeout, a connection closed without an answer); each
failure is one line on stderr naming the address.
"""

import argparse
import os
import socket
import sys

__all__ = ['main']

ANSWERED_OK, ANSWERED_OTHERWISE, USAGE_ERROR, NO_ANSWER = 0, 1, 2, 3

REQUEST_EXAMPLES = """\
examples:
  gateway request unix:/run/gateway/fastcgi.sock /ping        (with --ping-path /ping)
  gateway request 127.0.0.1:9000 /app/hello?x=1 --header Accept:text/plain
  gateway request 127.0.0.1:9000 /app/upload --method POST --data @file.json \\
      --header Content-Type:application/json
  gateway request 127.0.0.1:9000 / --param SCRIPT_NAME=/app --param PATH_INFO=/
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(USAGE_ERROR, f'{self.prog}: error: {message} (see --help)\n')


def _address_argument(parser):
    parser.add_argument('address', metavar='ADDRESS',
                        help="the server's address, as its --bind: unix:PATH, HOST:PORT or "
                             '[IPV6]:PORT')


def request_parser():
    parser = _Parser(prog='gateway request', epilog=REQUEST_EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description='Send one FastCGI request and print the answer: its status, '
                                 'headers and body, and what the server sent as FCGI_STDERR (on '
                                 'stderr). Exit status 0 for a 2xx answer, 1 for another, 3 when '
                                 'none came.')
    _address_argument(parser)
    parser.add_argument('path', metavar='PATH',
                        help='the URL path, with its query if any (/app/a?b=1); sent as '
                             'PATH_INFO with SCRIPT_NAME empty, as REQUEST_URI and QUERY_STRING')
    parser.add_argument('--method', '-X', default='GET', metavar='M',
                        help='REQUEST_METHOD (default: %(default)s)')
    parser.add_argument('--header', '-H', action='append', default=[], metavar='NAME:VALUE',
                        help='a request header, sent as HTTP_NAME (Content-Type and '
                             'Content-Length as CGI sends them); repeat for several')
    parser.add_argument('--data', '-d', default=None, metavar='DATA',
                        help='the request body; @FILE reads it from FILE, @- from stdin')
    parser.add_argument('--param', '-p', action='append', default=[], metavar='NAME=VALUE',
                        help='a FastCGI parameter of your own, over the ones made from the '
                             'rest (SCRIPT_NAME=/app, REMOTE_ADDR=...); repeat for several')
    parser.add_argument('--timeout', type=float, default=10.0, metavar='S',
                        help='seconds to wait for the connection and for each read '
                             '(default: %(default)g)')
    parser.add_argument('--quiet', '-q', action='store_true',
                        help='print nothing but errors: the exit status says it all')
    return parser


def status_parser():
    parser = _Parser(prog='gateway status',
                     description="Print a running server's status page (its --status-path, "
                                 'on its address or its --status-bind).')
    _address_argument(parser)
    parser.add_argument('--json', action='store_true', help='as JSON')
    parser.add_argument('--full', action='store_true', help='with a row per worker thread')
    parser.add_argument('--path', default=os.environ.get('GATEWAY_STATUS_PATH') or '/status',
                        help='the server\'s --status-path (default: $GATEWAY_STATUS_PATH, '
                             'else /status)')
    parser.add_argument('--timeout', type=float, default=10.0, metavar='S',
                        help='seconds to wait (default: %(default)g)')
    return parser


def _params(path, method, headers, body, extra):
    from .fastcgi.client import cgi_params
    url_path, _, query = path.partition('?')
    params = cgi_params(url_path, method=method, query=query, body=body,
                        SERVER_SOFTWARE='gateway-request', REQUEST_URI=path)
    for name, value in headers:
        key = name.upper().replace('-', '_')
        params[key if key in ('CONTENT_TYPE', 'CONTENT_LENGTH') else 'HTTP_' + key] = value
    params.update(extra)
    return params


def _pairs(items, separator, what, prog):
    pairs = []
    for item in items:
        name, found, value = item.partition(separator)
        if not found or not name.strip():
            raise SystemExit(_usage(prog, f'{what} {item!r}: expected NAME{separator}VALUE'))
        pairs.append((name.strip(), value.strip() if separator == ':' else value))
    return pairs


def _usage(prog, message):
    sys.stderr.write(f'{prog}: error: {message}\n')
    return USAGE_ERROR


def _body(data):
    if data is None:
        return b''
    if data == '@-':
        return sys.stdin.buffer.read()
    if data.startswith('@'):
        with open(data[1:], 'rb') as stream:
            return stream.read()
    return data.encode('utf-8')


def _connect(address, timeout):
    from .fastcgi.listeners import parse_bind
    where = parse_bind(address)         # BindSyntaxError, a ValueError
    if where.kind == 'unix':
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where.target)
        except OSError:
            sock.close()
            raise
        return sock
    if where.kind == 'fd':
        raise ValueError('fd://N is for a server; give unix:PATH, HOST:PORT or [IPV6]:PORT')
    return socket.create_connection(where.target, timeout)


def _why_no_answer(error, timeout):
    if isinstance(error, FileNotFoundError):
        return 'no such socket (is the server running, with this --bind?)'
    if isinstance(error, PermissionError):
        return (f'permission denied: this user (uid {os.getuid()}) needs write permission on '
                f'the socket and search permission on its directories (--unix-mode, '
                f'--unix-group)') if hasattr(os, 'getuid') else 'permission denied'
    if isinstance(error, ConnectionRefusedError):
        return 'connection refused: nothing listens there'
    if isinstance(error, socket.timeout):
        return f'no answer within {timeout:g}s'
    if isinstance(error, socket.gaierror):
        return f'the host name does not resolve: {error.strerror}'
    if type(error) in (ConnectionError, ConnectionResetError, BrokenPipeError):
        return ('the server closed the connection without answering (is this address allowed '
                'by its --web-server-addrs?)')
    return error.strerror or str(error)


def exchange(prog, address, params, body, timeout):
    """Send the request; ``(response, None)`` or ``(None, exit status)``
    after a one-line error."""
    from .fastcgi.client import Client
    from .fastcgi.protocol import FCGI_REQUEST_COMPLETE
    try:
        sock = _connect(address, timeout)
    except ValueError as error:
        message = str(error).replace('bad --bind', 'bad address', 1)
        return None, _usage(prog, message)
    except OSError as error:
        sys.stderr.write(f'{prog}: cannot connect to {address}: {_why_no_answer(error, timeout)}\n')
        return None, NO_ANSWER
    try:
        with Client(sock, owned=True) as client:
            response = client.request(params, body)
    except OSError as error:
        sys.stderr.write(f'{prog}: {address}: {_why_no_answer(error, timeout)}\n')
        return None, NO_ANSWER
    if response.protocol_status != FCGI_REQUEST_COMPLETE:
        names = {1: 'CANT_MPX_CONN', 2: 'OVERLOADED', 3: 'UNKNOWN_ROLE'}
        sys.stderr.write(f'{prog}: {address} refused the request: '
                         f'{names.get(response.protocol_status, response.protocol_status)}\n')
        return None, NO_ANSWER
    return response, None


def _printable(response):
    """The answer as a person reads it: the status line first, then the
    other headers, a blank line, the body."""
    head, _, body = response.stdout.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n') if head else []
    status = next((line for line in lines if line.lower().startswith('status:')), 'Status: 200 OK')
    rest = [line for line in lines if not line.lower().startswith('status:')]
    return ('\n'.join([status, *rest]) + '\n\n').encode('latin-1') + body


def request_main(argv):
    prog = 'gateway request'
    args = request_parser().parse_args(argv)
    headers = _pairs(args.header, ':', '--header', prog)
    extra = dict(_pairs(args.param, '=', '--param', prog))
    if not args.path.startswith('/'):
        return _usage(prog, f'PATH {args.path!r} must start with /')
    try:
        body = _body(args.data)
    except OSError as error:
        return _usage(prog, f'--data {args.data}: {error.strerror}')
    params = _params(args.path, args.method, headers, body, extra)
    response, failed = exchange(prog, args.address, params, body, args.timeout)
    if failed is not None:
        return failed
    if not args.quiet:
        sys.stdout.buffer.write(_printable(response))
        sys.stdout.flush()
        if response.stderr:
            sys.stderr.write(response.stderr.decode('utf-8', 'replace'))
    return ANSWERED_OK if 200 <= response.status < 300 else ANSWERED_OTHERWISE


def status_main(argv):
    prog = 'gateway status'
    args = status_parser().parse_args(argv)
    query = '&'.join(word for word, wanted in (('json', args.json), ('full', args.full))
                     if wanted)
    params = _params(args.path + '?' * bool(query) + query, 'GET', (), b'', {})
    response, failed = exchange(prog, args.address, params, b'', args.timeout)
    if failed is not None:
        return failed
    # The application answers a path that is not --status-path, often 200.
    if response.status != 200 or not response.body.startswith(
            b'{"pool": ' if args.json else b'pool:'):
        sys.stderr.write(f'{prog}: {args.address} answered {response.status} for {args.path}, '
                         f'not with a status page: is that its --status-path?\n')
        return ANSWERED_OTHERWISE
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return ANSWERED_OK


def main(command, argv):
    """``gateway request ...`` or ``gateway status ...``; the exit status."""
    try:
        return (request_main if command == 'request' else status_main)(argv)
    except SystemExit as stop:
        return stop.code

"""The demo application: what the appliance serves until you mount your own.

    <mount>/            a short HTML page: which front served it, links
    <mount>/env...      the request's CGI and WSGI variables as JSON; never the
                        rest of the process environment (under CGI the two
                        share os.environ, with whatever secrets a container
                        or SetEnv put there)
    <mount>/echo        the request body, as sent, up to 1 MiB (else 413)
    <mount>/bytes/N     N bytes (N up to 1 MiB), streamed in blocks
    <mount>/error       raises, to show the 500 page (no traceback leaks)
    <mount>/bad-header/KIND
                        answers with a response header holding a CR or LF
                        (KIND: crlf, lf, cr, name, status): the gateway refuses
                        it, the client gets the 500 page and no injected header
    <mount>/process-env the names of the HTTP_* variables in the process
                        environment (a CGI program gets the request's headers
                        there; HTTP_PROXY must never be among them)

The front's name comes from GATEWAY_FRONT in the environment (set per
container or web-server config), else from SERVER_SOFTWARE.
"""

import json
import os

_BLOCK = 64 * 1024
# The most the demo reads or sends for one request: it is on every image by
# default, so a visitor must not be able to make it hold or send much.
_MAX_BYTES = 1 << 20
# Variables a request brings (RFC 3875 section 4.1, and those Apache, nginx
# and IIS add per request), besides its HTTP_* headers and the wsgi.* keys.
_REQUEST_VARIABLES = frozenset((
    'AUTH_TYPE', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'GATEWAY_INTERFACE', 'PATH_INFO',
    'PATH_TRANSLATED', 'QUERY_STRING', 'REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_IDENT',
    'REMOTE_PORT', 'REMOTE_USER', 'REQUEST_METHOD', 'SCRIPT_NAME', 'SERVER_NAME',
    'SERVER_PORT', 'SERVER_PROTOCOL', 'SERVER_SOFTWARE', 'SERVER_ADDR', 'REQUEST_URI',
    'REQUEST_SCHEME', 'HTTPS', 'DOCUMENT_URI', 'SCRIPT_FILENAME', 'URL', 'APPL_MD_PATH',
    'INSTANCE_META_PATH', 'GATEWAY_FRONT',
))
# Fixed attempts at response splitting, none taken from the request:
# KIND -> (status, header name, header value).
_BAD_HEADERS = {
    'crlf': ('200 OK', 'X-Demo', 'ok\r\nX-Injected: crlf'),
    'lf': ('200 OK', 'X-Demo', 'ok\nX-Injected: lf'),
    'cr': ('200 OK', 'X-Demo', 'ok\rX-Injected: cr'),
    'name': ('200 OK', 'X-Demo\r\nX-Injected: name', 'ok'),
    'status': ('200 OK\r\nX-Injected: status', 'X-Demo', 'ok'),
}


def _page(environ):
    front = environ.get('GATEWAY_FRONT') or environ.get('SERVER_SOFTWARE') or 'unknown'
    base = environ.get('SCRIPT_NAME', '')
    escape = {ord('&'): '&amp;', ord('<'): '&lt;', ord('>'): '&gt;', ord('"'): '&quot;'}
    links = ''.join(f'<li><a href="{base}{path}">{base}{path}</a> {what}</li>'
                    for path, what in (('/env', 'the request as the app sees it'),
                                       ('/echo', 'POST a body, get it back'),
                                       ('/bytes/1000', 'a streamed body of N bytes'),
                                       ('/error', 'an application error')))
    return (f'<!doctype html><meta charset="utf-8"><title>gateway demo</title>'
            f'<h1>gateway demo</h1><p>Served by <b>{front.translate(escape)}</b> through '
            f'{environ.get("GATEWAY_INTERFACE", "WSGI").translate(escape)}.</p>'
            f'<ul>{links}</ul>').encode('utf-8')


def _bytes(count):
    block = b'0123456789abcdef' * (_BLOCK // 16)
    while count > 0:
        chunk = block[:min(count, _BLOCK)]
        count -= len(chunk)
        yield chunk


def _is_request_variable(name):
    return name in _REQUEST_VARIABLES or name.startswith(('HTTP_', 'wsgi.'))


def _body_up_to_the_cap(environ):
    """The request body, or None when it is longer than _MAX_BYTES (then at
    most one byte past the cap has been read)."""
    length = environ.get('CONTENT_LENGTH', '')
    if length.isdigit() and int(length) > _MAX_BYTES:
        return None
    stream, blocks, left = environ['wsgi.input'], [], _MAX_BYTES + 1
    while left:
        block = stream.read(min(_BLOCK, left))
        if not block:
            break
        blocks.append(block)
        left -= len(block)
    return None if not left else b''.join(blocks)


def app(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path in ('', '/'):
        body = _page(environ)
        start_response('200 OK', [('Content-Type', 'text/html; charset=utf-8'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    if path == '/env' or path.startswith('/env/'):
        variables = {key: value for key, value in environ.items()
                     if isinstance(value, str) and _is_request_variable(key)}
        # latin-1 "bytes in unicode" (PEP 3333) round-trips through JSON's \u escapes.
        body = json.dumps(variables, sort_keys=True, indent=1).encode('ascii')
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    if path == '/echo':
        body = _body_up_to_the_cap(environ)
        if body is None:
            start_response('413 Content Too Large', [('Content-Type', 'text/plain')])
            return [b'the demo echoes at most %d bytes\n' % _MAX_BYTES]
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    if path.startswith('/bytes/'):
        count = path[len('/bytes/'):]
        if not count.isdigit() or int(count) > _MAX_BYTES:
            start_response('400 Bad Request', [('Content-Type', 'text/plain')])
            return [b'/bytes/N needs a whole number N up to %d\n' % _MAX_BYTES]
        count = int(count)
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', str(count))])
        return _bytes(count)
    if path.startswith('/bad-header/') and path[len('/bad-header/'):] in _BAD_HEADERS:
        status, name, value = _BAD_HEADERS[path[len('/bad-header/'):]]
        start_response(status, [('Content-Type', 'text/plain'), (name, value)])
        return [b'this response should never have been sent\n']
    if path == '/process-env':
        # Names only: the values of the server's own variables are not the
        # client's business.
        body = json.dumps(sorted(name for name in os.environ if name.startswith('HTTP_')))
        body = body.encode('ascii')
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    if path == '/error':
        raise RuntimeError('the demo application failed on purpose (/error)')
    start_response('404 Not Found', [('Content-Type', 'text/plain')])
    return [b'not found: try /, /env, /echo, /bytes/N or /error\n']


application = app

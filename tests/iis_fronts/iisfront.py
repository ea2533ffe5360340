#!/usr/bin/env python3
"""An IIS-style web server front, for testing the gateway as IIS runs it.

    python3 iisfront.py CONFIG_JSON

Accepts HTTP and hands each request to the gateway the way IIS 10 does:

  cgi       one process per request (CgiModule): request variables in the
            environment, the body on stdin, and ONE pipe for both stdout and
            stderr. IIS reads whatever the program writes on either as the
            response, which is why a Perl error message shows up as "the
            headers it did return" in Microsoft KB 150835.
  fastcgi   FastCgiModule: a pool of up to max_instances processes, each
            started with a connected socket as its standard input (IIS uses
            a named pipe), spoken to in FastCGI, one request at a time with
            FCGI_KEEP_CONN, request id 1; a process is reused until it has
            served instance_max_requests requests, then IIS closes its pipe
            and the process must exit by itself. STDERR records are handled
            as stderrMode says.

What IIS puts in the variables, and where that is documented or observed:

  SCRIPT_NAME, PATH_INFO   a script map (handler path with a file name) with
            allowPathInfo=false: SCRIPT_NAME is the URL up to the script,
            PATH_INFO the WHOLE decoded URL path (/app.py/x gives
            SCRIPT_NAME=/app.py, PATH_INFO=/app.py/x: the
            AllowPathInfoForScriptMappings metabase documentation, wfastcgi's
            comments). A wildcard handler (path="*") in an IIS application
            gives the whole path in both (PTVS issue 1029).
  PATH_TRANSLATED   the physical path of the whole URL (it is derived from
            PATH_INFO, same documentation).
  SERVER_SOFTWARE   Microsoft-IIS/10.0.
  APPL_MD_PATH, APPL_PHYSICAL_PATH, INSTANCE_ID, INSTANCE_META_PATH, URL,
  LOCAL_ADDR, REMOTE_PORT, SERVER_PORT_SECURE, AUTH_USER, LOGON_USER...,
  and, over FastCGI, REQUEST_URI, SCRIPT_FILENAME, DOCUMENT_ROOT: the server
            variables IIS sends, as listed by PHP's $_SERVER under IIS FastCGI.
  HTTP_*    one per request header, Content-Length and Content-Type included
            (HTTP_CONTENT_LENGTH appears in that same listing). A header
            spelt with underscores gives the same name as one spelt with
            dashes; IIS resolves HTTP_X_Y to the dashed header (the
            ISAPI/ASP request-header notes of the IIS team), so here the
            dashed one wins.

Before the handler runs, IIS's request filtering applies the rules of the
web.config: header size limits (404.10), double escaping, i.e. a decoded
path that still holds "%" or "+" (404.11, unless allowDoubleEscaping), and
maxAllowedContentLength (404.13). With httpErrors existingResponse other
than PassThrough, IIS replaces an error response's body with its own page.

Request paths are passed as the request's own bytes: IIS on Windows
decodes a non-UTF-8 path with the ANSI code page instead, which only a
Windows machine can show.

Only for the tests: each response says which FastCGI process served it
(X-Front-Instance) and the IIS substatus of IIS's own errors
(X-Front-Substatus); GET /_front/status reports the processes started and
their exit statuses. The configuration (JSON) is described in DEFAULTS.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_SOFTWARE = 'Microsoft-IIS/10.0'
INSTANCE_META_PATH = '/LM/W3SVC/1'

DEFAULTS = {
    'mode': 'cgi',                  # or 'fastcgi'
    'port': 8080,
    'site_root': 'C:\\inetpub\\wwwroot',
    'scripts': ['/app'],            # script maps: SCRIPT_NAME is the script
    'applications': [],             # IIS applications with a path="*" handler
    'command': [],                  # the gateway command (argv)
    'environment': {},              # added to the process environment
    'directory': '/tmp',            # the processes' working directory
    'header_limits': {},            # {lower-case name: bytes}
    'allow_double_escaping': False,
    'max_allowed_content_length': 30000000,
    'existing_response': 'Auto',
    'stderr_mode': 'ReturnStdErrIn500',
    'max_instances': 4,
    'instance_max_requests': 200,
    'timeout': 120,
}

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN = 1, 3, 4, 5
FCGI_STDOUT, FCGI_STDERR = 6, 7
FCGI_RESPONDER, FCGI_KEEP_CONN = 1, 1



class ProcessFailed(Exception):
    """The FastCGI process closed its pipe or broke the protocol."""


def process_environment(config):
    """What a CGI or FastCGI process starts with: a few of the server's own
    variables (IIS passes its worker's environment on) and the configured ones."""
    environment = {key.encode(): value.encode() for key, value in os.environ.items()
                   if key in ('PATH', 'LANG', 'LC_ALL', 'TZ', 'HOME')}
    environment.update({key.encode(): value.encode()
                        for key, value in config['environment'].items()})
    return environment


# --- the CGI response a program writes ---------------------------------------

def parse_cgi_response(output):
    """(status, reason, headers, body) from a CGI program's output, or None
    when IIS would call it misbehaving (502.2: no complete set of headers)."""
    for separator in (b'\r\n\r\n', b'\n\n'):
        head, found, body = output.partition(separator)
        if found:
            break
    else:
        return None
    status, reason, headers = 200, 'OK', []
    for line in head.replace(b'\r\n', b'\n').split(b'\n'):
        name, colon, value = line.partition(b':')
        if not colon or not name.strip() or b' ' in name.strip():
            return None
        name, value = name.strip().decode('latin-1'), value.strip().decode('latin-1')
        if name.lower() == 'status':
            code, _, text = value.partition(' ')
            if not code.isdigit():
                return None
            status, reason = int(code), text or 'Unknown'
        else:
            headers.append((name, value))
    if not headers and status == 200:
        return None
    if status == 200 and any(name.lower() == 'location' for name, _ in headers):
        status, reason = 302, 'Found'
    return status, reason, headers, body


# --- FastCGI, as IIS speaks it -------------------------------------------------

def record(kind, content=b''):
    padding = -len(content) % 8
    return struct.pack('!BBHHBx', 1, kind, 1, len(content), padding) + content + bytes(padding)


def stream_records(kind, data, size=65528):
    records = [record(kind, data[i:i + size]) for i in range(0, len(data), size)]
    return b''.join(records) + record(kind)


def name_value_pairs(params):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack('!I', n | 0x80000000)
    return b''.join(length(len(k)) + length(len(v)) + k + v for k, v in params.items())


class Instance:
    """One FastCGI process and the connected socket that is its stdin."""

    def __init__(self, serial, config, environment):
        self.serial, self.requests = serial, 0
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                config['command'], stdin=theirs.fileno(), stdout=subprocess.DEVNULL,
                env=environment, cwd=config['directory'], close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(config['timeout'])
        self.stream = self.sock.makefile('rb')

    def _read(self, size):
        data = self.stream.read(size)
        if len(data) < size:
            raise ProcessFailed('the FastCGI process closed its pipe')
        return data

    def request(self, params, body):
        """(stdout, stderr, protocolStatus) of one request."""
        self.requests += 1
        message = record(FCGI_BEGIN_REQUEST, struct.pack('!HB5x', FCGI_RESPONDER, FCGI_KEEP_CONN))
        message += stream_records(FCGI_PARAMS, name_value_pairs(params))
        message += stream_records(FCGI_STDIN, body)
        try:
            self.sock.sendall(message)
        except OSError as error:
            raise ProcessFailed(f'cannot write to the FastCGI process: {error}') from None
        stdout, stderr = [], []
        while True:
            try:
                version, kind, request_id, size, padding = struct.unpack('!BBHHBx', self._read(8))
                content = self._read(size + padding)[:size]
            except OSError as error:
                raise ProcessFailed(f'reading from the FastCGI process: {error}') from None
            if version != 1:
                raise ProcessFailed(f'FastCGI version {version}')
            if kind == FCGI_STDOUT and request_id == 1:
                stdout.append(content)
            elif kind == FCGI_STDERR and request_id == 1:
                stderr.append(content)
            elif kind == FCGI_END_REQUEST and request_id == 1:
                return b''.join(stdout), b''.join(stderr), content[4]

    def close(self, timeout=15):
        """Close the pipe, as IIS does, and wait for the process to exit."""
        self.stream.close()
        self.sock.close()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return 'killed: did not exit when its pipe was closed'


class Pool:
    """IIS's FastCGI process pool for one <fastCgi><application>."""

    def __init__(self, config, environment):
        self.config, self.environment = config, environment
        self.idle, self.running, self.started, self.exits = [], 0, 0, []
        self.lock = threading.Condition()

    def acquire(self):
        with self.lock:
            while not self.idle and self.running >= self.config['max_instances']:
                self.lock.wait()
            if self.idle:
                return self.idle.pop()
            self.running += 1
            self.started += 1
            serial = self.started
        try:
            return Instance(serial, self.config, self.environment)
        except BaseException:
            self.retire(None, None)
            raise

    def release(self, instance):
        if instance.requests < self.config['instance_max_requests']:
            with self.lock:
                self.idle.append(instance)
                self.lock.notify()
        else:
            self.retire(instance, instance.close())

    def retire(self, instance, status):
        with self.lock:
            self.running -= 1
            if instance is not None:
                self.exits.append(status)
            self.lock.notify()

    def discard(self, instance):
        instance.process.kill()
        self.retire(instance, instance.close())

    def status(self):
        with self.lock:
            return {'started': self.started, 'running': self.running, 'idle': len(self.idle),
                    'exits': list(self.exits)}

    def shutdown(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for instance in idle:
            self.retire(instance, instance.close())


# --- the web server ------------------------------------------------------------

def iis_error_page(status, substatus, text):
    page = (f'<!DOCTYPE html><html><head><title>IIS 10.0 Detailed Error - '
            f'{status}.{substatus}</title></head><body><h1>HTTP Error {status}.{substatus}</h1>'
            f'<p>{text}</p></body></html>')
    return page.encode('utf-8')


class Front(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def version_string(self):
        return SERVER_SOFTWARE

    def log_message(self, format, *args):
        sys.stderr.write('iisfront: %s %s\n' % (self.address_string(), format % args))

    def do_request(self):
        self.close_connection = True
        config = self.server.config
        target, _, query = self.path.partition('?')
        if target == '/_front/status':
            body = json.dumps(self.server.pool.status() if self.server.pool else {}).encode()
            return self.respond(200, 'OK', [('Content-Type', 'application/json')], body)
        for name, limit in config['header_limits'].items():
            value = self.headers.get(name)
            if value is not None and len(value.encode('latin-1')) > limit:
                return self.iis_error(404, 10, 'The request filtering module is configured to '
                                      'deny a request whose header is too long.')
        path = urllib.parse.unquote_to_bytes(target)
        if not config['allow_double_escaping'] and (b'%' in path or b'+' in path):
            return self.iis_error(404, 11, 'The request filtering module is configured to deny '
                                  'a request that contains a double escape sequence.')
        body = self.read_body()
        if body is None:
            return self.iis_error(400, 0, 'Bad Request')
        if len(body) > config['max_allowed_content_length']:
            return self.iis_error(404, 13, 'The request filtering module is configured to deny '
                                  'a request that exceeds the request content length.')
        mapped = self.map(path)
        if mapped is None:
            return self.iis_error(404, 0, 'The resource you are looking for has been removed, '
                                  'had its name changed, or is temporarily unavailable.')
        variables = self.variables(path, query, body, *mapped)
        if config['mode'] == 'cgi':
            self.run_cgi(variables, body)
        else:
            self.run_fastcgi(variables, body)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_request

    def read_body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            # http.sys takes the chunks apart; the handler sees a plain body.
            parts = []
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b';')[0], 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass
                    return b''.join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = self.headers.get('Content-Length', '0').strip() or '0'
        if not length.isdigit():
            return None
        return self.rfile.read(int(length))

    def map(self, path):
        """(SCRIPT_NAME, IIS application) for the handler *path* reaches, or None."""
        text = path.decode('latin-1')
        for script in self.server.config['scripts']:
            if text == script or text.startswith(script + '/'):
                return script.encode('latin-1'), '/'
        for application in self.server.config['applications']:
            if text == application or text.startswith(application + '/'):
                return path, application
        return None

    def variables(self, path, query, body, script_name, application):
        config = self.server.config
        root = config['site_root']
        host = (self.headers.get('Host') or self.server.server_address[0]).rsplit(':', 1)[0]
        local_addr, local_port = self.connection.getsockname()[:2]
        physical = root.encode('latin-1') + path.replace(b'/', b'\\')
        app_path = '' if application == '/' else application
        variables = {
            'GATEWAY_INTERFACE': 'CGI/1.1', 'SERVER_SOFTWARE': SERVER_SOFTWARE,
            'SERVER_NAME': host, 'SERVER_PORT': str(local_port), 'SERVER_PORT_SECURE': '0',
            'SERVER_PROTOCOL': self.request_version, 'REQUEST_METHOD': self.command,
            'SCRIPT_NAME': script_name, 'PATH_INFO': path, 'PATH_TRANSLATED': physical,
            'QUERY_STRING': query.encode('latin-1'), 'URL': path,
            'REMOTE_ADDR': self.client_address[0], 'REMOTE_HOST': self.client_address[0],
            'REMOTE_PORT': str(self.client_address[1]), 'REMOTE_USER': '', 'AUTH_TYPE': '',
            'AUTH_USER': '', 'AUTH_PASSWORD': '', 'LOGON_USER': '',
            'CONTENT_LENGTH': str(len(body)), 'CONTENT_TYPE': self.headers.get('Content-Type', ''),
            'HTTPS': 'off', 'INSTANCE_ID': '1', 'INSTANCE_META_PATH': INSTANCE_META_PATH,
            'INSTANCE_NAME': 'DEFAULT WEB SITE',
            'APPL_MD_PATH': INSTANCE_META_PATH + '/ROOT' + app_path,
            'APPL_PHYSICAL_PATH': root + app_path.replace('/', '\\') + '\\',
            'LOCAL_ADDR': local_addr,
        }
        if config['mode'] == 'fastcgi':
            variables.update({
                'REQUEST_URI': self.path.encode('latin-1'), 'DOCUMENT_ROOT': root,
                'SCRIPT_FILENAME': root.encode('latin-1') + script_name.replace(b'/', b'\\')})
        dashed, underscored = {}, {}
        for name, value in self.headers.items():
            if name.lower() == 'transfer-encoding':
                continue   # the body arrives de-chunked, with CONTENT_LENGTH
            key = 'HTTP_' + name.upper().replace('-', '_')
            chosen = underscored if '_' in name else dashed
            chosen[key] = chosen[key] + ', ' + value if key in chosen else value
        variables.update({**underscored, **dashed})
        return {name.encode('latin-1'): value if isinstance(value, bytes) else
                value.encode('latin-1') for name, value in variables.items()}

    def run_cgi(self, variables, body):
        config = self.server.config
        try:
            result = subprocess.run(
                config['command'], input=body, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**process_environment(config), **variables}, cwd=config['directory'],
                timeout=config['timeout'])
        except subprocess.TimeoutExpired:
            return self.iis_error(502, 1, 'CGI application timeout.')
        parsed = parse_cgi_response(result.stdout)
        if parsed is None:
            return self.iis_error(502, 2, 'The specified CGI application misbehaved by not '
                                  'returning a complete set of HTTP headers.')
        self.answer(*parsed)

    def run_fastcgi(self, variables, body):
        pool = self.server.pool
        instance = pool.acquire()
        try:
            stdout, stderr, protocol_status = instance.request(variables, body)
        except ProcessFailed as error:
            pool.discard(instance)
            return self.iis_error(500, 0, f'The FastCGI process exited unexpectedly ({error}).')
        except BaseException:
            pool.discard(instance)
            raise
        pool.release(instance)
        extra = [('X-Front-Instance', str(instance.serial))]
        if protocol_status != 0:
            return self.iis_error(500, 0, f'FastCGI protocolStatus {protocol_status}.', extra)
        mode = self.server.config['stderr_mode']
        if stderr and mode != 'IgnoreAndReturn200':
            if mode == 'TerminateProcess':
                pool.discard(instance)
            text = (stderr.decode('utf-8', 'replace') if mode == 'ReturnStdErrIn500'
                    else 'The FastCGI process wrote to its error stream.')
            return self.iis_error(500, 0, text, extra)
        parsed = parse_cgi_response(stdout)
        if parsed is None:
            return self.iis_error(502, 2, 'The FastCGI application did not return a complete '
                                  'set of HTTP headers.', extra)
        self.answer(*parsed, extra=extra)

    def answer(self, status, reason, headers, body, extra=()):
        if status >= 400 and self.server.config['existing_response'] != 'PassThrough':
            return self.iis_error(status, 0, reason, list(extra))
        self.respond(status, reason, headers + list(extra), body)

    def iis_error(self, status, substatus, text, extra=()):
        headers = [('Content-Type', 'text/html'), ('X-Front-Substatus', str(substatus)), *extra]
        self.respond(status, None, headers, iis_error_page(status, substatus, text))

    def respond(self, status, reason, headers, body):
        self.send_response(status, reason)
        length = None
        for name, value in headers:
            if name.lower() in ('connection', 'transfer-encoding', 'server', 'date'):
                continue
            if name.lower() == 'content-length':
                length = value
            self.send_header(name, value)
        if length is None:
            self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv):
    config = {**DEFAULTS, **json.loads(argv[1])}
    server = Server(('0.0.0.0', config['port']), Front)
    server.config = config
    server.pool = None
    if config['mode'] == 'fastcgi':
        environment = process_environment(config)
        # IIS names the pipe in the environment of its FastCGI processes.
        environment[b'_FCGI_X_PIPE_'] = b'\\\\.\\pipe\\IISFCGI-emulated'
        server.pool = Pool(config, environment)
    sys.stderr.write(f"iisfront: {config['mode']} on port {config['port']}: "
                     f"{' '.join(config['command'])}\n")
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)   # PID 1 in a container ignores it otherwise
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server.pool:
            server.pool.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

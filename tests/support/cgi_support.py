"""Run a CGI request in a child process, the way a web server does."""

import os
import subprocess
import sys

from support.helpers import REPO, TESTS

BASE_CGI_ENV = {
    'GATEWAY_INTERFACE': 'CGI/1.1',
    'SERVER_PROTOCOL': 'HTTP/1.1',
    'SERVER_NAME': 'localhost',
    'SERVER_PORT': '80',
    'REQUEST_METHOD': 'GET',
    'SCRIPT_NAME': '/app',
    'PATH_INFO': '/',
    'QUERY_STRING': '',
    'REMOTE_ADDR': '127.0.0.1',
}


def cgi_env(extra=None, python_path=()):
    env = dict(BASE_CGI_ENV)
    env['PATH'] = os.environ.get('PATH', '/usr/bin:/bin')
    env['PYTHONPATH'] = os.pathsep.join((REPO, TESTS) + tuple(python_path))
    if extra:
        env.update(extra)
    return env


def run_cgi_code(code, env, stdin=b'', args=(), timeout=30):
    """Run ``python -c code`` as a CGI script; return (stdout bytes, stderr str, rc)."""
    proc = subprocess.run([sys.executable, '-c', code, *args], input=stdin, env=env,
                          capture_output=True, timeout=timeout, cwd=TESTS)
    return proc.stdout, proc.stderr.decode('utf-8', 'replace'), proc.returncode


def run_gateway_cgi(env, stdin=b'', args=(), timeout=30):
    """Run ``python -m gateway cgi ARGS`` as a CGI script."""
    proc = subprocess.run([sys.executable, '-m', 'gateway', 'cgi', *args], input=stdin,
                          env=env, capture_output=True, timeout=timeout, cwd=TESTS)
    return proc.stdout, proc.stderr.decode('utf-8', 'replace'), proc.returncode


def split_cgi_response(raw):
    """Return (status, headers list, body) of a CGI response."""
    head, sep, body = raw.partition(b'\r\n\r\n')
    assert sep, f"no end of headers in {raw[:200]!r}"
    lines = head.decode('latin-1').split('\r\n')
    headers = [tuple(line.split(': ', 1)) for line in lines]
    status = dict(headers).get('Status')
    return status, headers, body

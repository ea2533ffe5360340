"""The hello-world WSGI application every FastCGI backend serves.

Deliberately trivial and free of imports, so that what the benchmark measures
is the FastCGI server, not the application. The same module is loaded by the
gateway (``bench.fcgi.hello:app``), uWSGI (``--module``) and flup.
"""

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"),
           ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]

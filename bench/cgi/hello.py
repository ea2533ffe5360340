"""The hello-world WSGI application used by every CGI benchmark endpoint.

It is deliberately trivial and imports nothing, so that what the benchmark
measures is the interpreter and the CGI handler, not the application.
"""

BODY = b"Hello, world!\n"


def app(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"),
         ("Content-Length", str(len(BODY)))],
    )
    return [BODY]

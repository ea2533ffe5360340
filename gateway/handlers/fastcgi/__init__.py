"""FastCGI: serve any WSGI application to nginx, Apache, IIS and others.

Where to look: ``protocol`` (the record format, sans-I/O), ``connection``
and ``handler`` (one web-server connection, one request), ``worker`` (a
worker's serving loop), ``arbiter`` (the process model), ``listeners`` (the
transports), ``cli`` (``gateway fastcgi``), ``compat`` (flup's API).

    from gateway.handlers.fastcgi import WSGIServer   # was: from flup.server.fcgi import ...
    WSGIServer(app, bindAddress=('127.0.0.1', 9000)).run()
"""


def __getattr__(name):
    # Lazy, so that the codec can be imported without the process model.
    if name == 'WSGIServer':
        from .compat import WSGIServer
        return WSGIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

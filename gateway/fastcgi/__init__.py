"""The FastCGI server: any WSGI application served to nginx, Apache, IIS and others.

Its layers, each importing only those below it:

    server       which way it runs (the arbiter, one process, IIS's one
                 connection), and its log
    arbiter      the process model: forks, watches and replaces workers
                 (children: its record of each; overdue: the workers that
                 overstay, --boot-timeout, --timeout, --max-requests, --max-rss)
    worker_process
                 a worker's life once forked: its signals, the application
                 loaded, the arbiter watched, its exit
    worker       a worker's serving loop (accepting: how it accepts a
                 connection)
    connection   one web-server connection: records in, requests run one at
                 a time through the FastCGI adaptor (gateway.handlers.fastcgi)
                 over a per-request channel (connection_state: where it is;
                 answers: the 408, 413 and 504 given on the server's account)
    transports   the socket, or IIS's pipe, under a connection
    protocol     the record format, sans-I/O (events: what it parses into, and
                 ProtocolError; pairs: name-value pairs)
    listeners, peers, config
                 where it listens and who may connect; its settings
    scoreboard   what each worker is doing, in memory the arbiter and the
                 workers share
    pool, preload
                 the pool's size (--max-workers, SIGTTIN/SIGTTOU, --max-rss);
                 the application imported in the arbiter (--preload)
    accesslog, slowlog, logfiles
                 the access and slow-request logs, and reopening every log
                 file on SIGUSR1

``client`` is the web server's side of the protocol (tests and tools);
``compat`` is flup's API, also importable as::

    from gateway.handlers.fastcgi import WSGIServer   # was: from flup.server.fcgi import ...
    WSGIServer(app, bindAddress=('127.0.0.1', 9000)).run()

The command line is ``gateway fastcgi`` (gateway/cli.py).
"""


def __getattr__(name):
    # Lazy, so that the codec can be imported without the process model.
    if name == 'WSGIServer':
        from .compat import WSGIServer
        return WSGIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

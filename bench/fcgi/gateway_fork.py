"""The gateway's FastCGI worker loop, forked by hand, without the arbiter.

    python bench/fcgi/gateway_fork.py HOST:PORT|unix:PATH [WORKERS]

Opens one listening socket and forks WORKERS processes (default 2), each
running ``gateway.handlers.fastcgi.worker.Worker([listener], app,
Config(workers=WORKERS)).run()`` on it. This is what the benchmark starts
when ``python -m gateway fastcgi`` is not available, and what to use for
profiling a worker:

    GATEWAY_BENCH_PROFILE=DIR   each worker runs under cProfile and writes
                                DIR/worker-PID.prof when it stops
                                (view with: python -m pstats DIR/worker-PID.prof)

SIGTERM or SIGINT stops the workers and then this process.
"""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.handlers.fastcgi.config import Config  # noqa: E402
from gateway.handlers.fastcgi.worker import Worker  # noqa: E402

from bench.fcgi.hello import app  # noqa: E402


def listen(text, backlog=1024):
    if text.startswith("unix:"):
        path = text[5:]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        host, _, port = text.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(backlog)
    return sock


def run_worker(sock, workers):
    worker = Worker([sock], app, Config(workers=workers))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: worker.stop(graceful=False))
    profile_dir = os.environ.get("GATEWAY_BENCH_PROFILE")
    if not profile_dir:
        worker.run()
        return
    import cProfile
    profiler = cProfile.Profile()
    try:
        profiler.runcall(worker.run)
    finally:
        profiler.dump_stats(os.path.join(profile_dir, "worker-%d.prof" % os.getpid()))


def main(argv):
    if not 2 <= len(argv) <= 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    workers = int(argv[2]) if len(argv) > 2 else 2
    sock = listen(argv[1])
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                run_worker(sock, workers)
            except BaseException:
                import traceback
                traceback.print_exc()
                status = 1
            finally:
                os._exit(status)
        children.append(pid)

    def forward(signum, frame):
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

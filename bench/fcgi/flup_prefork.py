"""flup 1.0.3's prefork FastCGI server with a fixed number of processes.

    python bench/fcgi/flup_prefork.py HOST:PORT|unix:PATH [PROCESSES]

``minSpare = maxSpare = maxChildren = PROCESSES`` (default 2): flup keeps
exactly that many children, each serving one connection at a time, and
the parent only supervises. SIGTERM or SIGINT stops it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from flup.server.fcgi_fork import WSGIServer  # noqa: E402

from bench.fcgi.hello import app  # noqa: E402


def parse_address(text):
    if text.startswith("unix:"):
        return text[5:]
    host, _, port = text.rpartition(":")
    return (host, int(port))


def main(argv):
    if not 2 <= len(argv) <= 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    processes = int(argv[2]) if len(argv) > 2 else 2
    WSGIServer(app, bindAddress=parse_address(argv[1]), minSpare=processes,
               maxSpare=processes, maxChildren=processes).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

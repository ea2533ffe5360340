"""A POST load from wrk, for the tests that change workers under load: wrk
runs until stop() (SIGINT: wrk then reports what it did so far) or its -d
bound, whichever comes first, and its report is read whole (the count of
requests, non-2xx answers and socket errors by kind). bench/reload_bench.py
runs the same script."""

import json
import os
import shutil
import signal
import subprocess

from support.helpers import unavailable

# The body is sent with every request; done() writes wrk's figures whole,
# as one JSON line (its own report rounds them).
POST_LUA = r'''
wrk.method = "POST"
wrk.body = string.rep("field=value&", %(repeat)d)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK-JSON {"requests": %%d, "us": %%d, "non2xx": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
end
'''


def write_post_script(path, body_repeat=40):
    """wrk's Lua script for a POST of ``body_repeat`` x 12 bytes, at *path*."""
    with open(path, 'w') as stream:
        stream.write(POST_LUA % {'repeat': body_repeat})
    return path


def parse_report(output):
    """wrk's figures from its output: requests, non2xx, socket_errors (the
    sum of connect, read, write and timeout) and each kind, seconds."""
    lines = [line for line in output.splitlines() if line.startswith('WRK-JSON ')]
    if not lines:
        raise AssertionError(f'no report from wrk:\n{output}')
    figures = json.loads(lines[-1][len('WRK-JSON '):])
    figures['seconds'] = figures.pop('us') / 1e6
    figures['socket_errors'] = sum(figures[k] for k in ('connect', 'read', 'write', 'timeout'))
    return figures


class PostLoad:
    """``wrk -t1 -cCONNECTIONS`` POSTing to http://127.0.0.1:PORT/PATH for at
    most *max_seconds*; stop() ends it and returns its figures."""

    def __init__(self, directory, port, path, connections=32, max_seconds=90):
        wrk = shutil.which('wrk')
        if not wrk:
            unavailable('wrk is not installed (scripts/test installs it)')
        script = write_post_script(os.path.join(str(directory), 'post.lua'))
        self.argv = [wrk, '-t1', f'-c{connections}', f'-d{max_seconds}s', '--timeout', '10s',
                     '-s', script, f'http://127.0.0.1:{port}{path}']
        self.max_seconds = max_seconds
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)

    def running(self):
        return self.process.poll() is None

    def stop(self):
        """End the load now; wrk's figures."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=30)
        return parse_report(output)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=10)

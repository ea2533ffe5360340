"""A bounded load through a web server on loopback: client threads sending GET
and POST requests in turn until told to stop (or a request count or a time
limit is reached), each answer checked and recorded with the replica that
gave it (a response header the front sets).

GET alone would hide losses: a web server retries an idempotent request on
another replica when one fails, never a POST whose body it has sent. Each
POST carries a body of its own, and its echo must come back unchanged.
"""

import threading
import time
from collections import Counter, namedtuple

from .webservers import http_request

# One request: when it was sent and answered (time.monotonic()), its method,
# whether it succeeded, the replica that answered (or None), how many the
# front tried before it, and for a failure, why.
Outcome = namedtuple('Outcome', 'started ended method ok replica passed_over reason')


class Load:
    """``with Load(port) as load:`` runs ``clients`` threads against
    ``port`` until the block ends, ``max_requests`` were sent or
    ``max_seconds`` passed, whichever comes first."""

    def __init__(self, port, *, clients=4, max_requests=40000, max_seconds=300,
                 replica_header='x-gateway-replica', timeout=20):
        self.port = port
        self.clients = clients
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.replica_header = replica_header
        self.timeout = timeout
        self.outcomes = []
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self._threads = []

    # -- running -------------------------------------------------------------

    def __enter__(self):
        self._deadline = time.monotonic() + self.max_seconds
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), daemon=True,
                                      name=f'load-{number}')
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        """Stop sending; wait for the requests in flight to be answered."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        assert not any(thread.is_alive() for thread in self._threads), 'a client hangs'

    def _next_number(self):
        with self._lock:
            if self._sent >= self.max_requests or time.monotonic() >= self._deadline:
                return None
            self._sent += 1
            return self._sent

    def _client(self, client):
        while not self._stop.is_set():
            number = self._next_number()
            if number is None:
                return
            if number % 2:
                method, path, body = 'GET', f'/app/env?client={client}&n={number}', None
            else:
                method, path = 'POST', '/app/echo'
                body = (f'client {client} request {number} ' * 64).encode()
            started = time.monotonic()
            replica, passed_over, reason = None, 0, None
            try:
                status, headers, answer = http_request(
                    self.port, method, path, body=body, timeout=self.timeout,
                    headers={'Content-Type': 'application/octet-stream'} if body else None)
            except OSError as error:
                reason = f'{type(error).__name__}: {error}'
            else:
                # nginx names each replica it tried, the one that answered last.
                tried = [name.strip() for name in headers.get(self.replica_header, '').split(',')]
                replica, passed_over = tried[-1] or None, len(tried) - 1
                if status != 200:
                    reason = f'status {status}: {answer[:200]!r}'
                elif body is not None and answer != body:
                    reason = f'echo of {len(body)} bytes came back as {len(answer)} other bytes'
                elif body is None and f'"client={client}&n={number}"'.encode() not in answer:
                    reason = f'the answer is not this request\'s: {answer[:200]!r}'
            outcome = Outcome(started, time.monotonic(), method, reason is None, replica,
                              passed_over, reason)
            with self._lock:
                self.outcomes.append(outcome)

    # -- reading -------------------------------------------------------------

    def snapshot(self):
        with self._lock:
            return list(self.outcomes)

    def mark(self):
        """A point in time for since(): now."""
        return time.monotonic()

    def since(self, mark):
        """The outcomes of the requests sent after ``mark``."""
        return [outcome for outcome in self.snapshot() if outcome.started >= mark]

    def failures(self):
        return [outcome for outcome in self.snapshot() if not outcome.ok]

    def replicas_since(self, mark):
        """{replica: requests answered} for the requests sent after ``mark``."""
        return Counter(outcome.replica for outcome in self.since(mark) if outcome.ok)

    def wait_for(self, condition, *, timeout, what):
        """Poll ``condition(self)`` while the load runs; its true value, or
        AssertionError when ``timeout`` s or the load's own limits pass first."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition(self)
            if result:
                return result
            if time.monotonic() > deadline or not any(t.is_alive() for t in self._threads):
                raise AssertionError(f'waited {timeout:g} s for {what}: {self.summary()}')
            time.sleep(0.2)

    def summary(self):
        """Counts for a report: requests by method, answered, failed."""
        outcomes = self.snapshot()
        by_method = Counter(outcome.method for outcome in outcomes)
        failed = [outcome for outcome in outcomes if not outcome.ok]
        return {
            'requests': len(outcomes), 'GET': by_method['GET'], 'POST': by_method['POST'],
            'failed': len(failed), 'failed POST': sum(o.method == 'POST' for o in failed),
            'replicas': len({o.replica for o in outcomes if o.ok}),
            'passed over': sum(1 for o in outcomes if o.passed_over),
            'first failures': [outcome.reason for outcome in failed[:5]],
        }

"""What every test module may need: where things are, waiting for a
condition, running a call in the background (or several at once), and
unavailable() for a dependency that is missing (a skip for a user, a failure
under CI=true)."""

import os
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')


def in_ci(environ=os.environ):
    return environ.get('CI', '').strip().lower() in ('1', 'true', 'yes', 'on')


def unavailable(reason, environ=os.environ):
    """A test's real dependency is missing: a user sees a skip with the reason;
    CI (CI=true) sees a failure, because there a skip would hide a broken set-up."""
    import pytest
    if in_ci(environ):
        pytest.fail(f'{reason} (CI=true: this must not be skipped)', pytrace=False)
    pytest.skip(reason)


def wait_until(condition, timeout=10.0, what='the condition', interval=0.02):
    """Poll *condition* until it returns something true, and return that.
    *what* (a string, or a function giving one) says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:g}s waiting for '
                                 f'{what() if callable(what) else what}')
        time.sleep(interval)


def in_background(function, *args, **kwargs):
    """Run *function* in a thread; the returned callable gives its result
    (or raises its exception) once it is done, waiting at most *timeout*."""
    outcome = {}

    def run():
        try:
            outcome['value'] = function(*args, **kwargs)
        except BaseException as error:     # handed to the caller by result()
            outcome['error'] = error
    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout=30):
        thread.join(timeout)
        assert not thread.is_alive(), 'still running'
        if 'error' in outcome:
            raise outcome['error']
        return outcome['value']
    return result


def all_at_once(count, function, *args, timeout=60):
    """Call *function(*args)* from *count* threads at once; their results,
    in the order the threads were started (an exception raised by one is
    raised here)."""
    results = [in_background(function, *args) for _ in range(count)]
    return [result(timeout) for result in results]

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)


def in_ci(environ=os.environ):
    return environ.get('CI', '').strip().lower() in ('1', 'true', 'yes', 'on')


def unavailable(reason, environ=os.environ):
    """A test's real dependency is missing: a user sees a skip with the reason;
    CI (CI=true) sees a failure, because there a skip would hide a broken set-up."""
    import pytest
    if in_ci(environ):
        pytest.fail(f'{reason} (CI=true: this must not be skipped)', pytrace=False)
    pytest.skip(reason)

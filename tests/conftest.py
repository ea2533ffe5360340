"""pytest's set-up for every test: the worktree and tests/ first on
sys.path, the Hypothesis profile, the gateway_log fixture, and the time limit
of container tests. The helpers themselves are in tests/support/ (see
tests/README.md); their names stay importable from here too."""

import logging
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)

from support.helpers import in_background, in_ci, unavailable, wait_until  # noqa: E402,F401


def _hypothesis_profiles():
    # Chosen here, not left to the installed version's defaults: CI runs the
    # same examples every time (a failure there is reproducible), and no
    # test fails for being slow on a busy machine (the time limit is
    # pytest-timeout's, per test).
    try:
        from hypothesis import settings
    except ImportError:
        return
    settings.register_profile('ci', derandomize=True, deadline=None, print_blob=True)
    settings.register_profile('dev', deadline=None)
    settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE') or ('ci' if in_ci() else 'dev'))


_hypothesis_profiles()


@pytest.fixture
def gateway_log(caplog):
    """caplog, also fed by the 'gateway' logger when an earlier test set it
    up not to propagate (configure_logging)."""
    logger = logging.getLogger('gateway')
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.propagate = False        # each record once, by this handler
    logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
        logger.propagate = propagate


def pytest_collection_modifyitems(config, items):
    # A container test may build an image first (its fixtures count toward
    # its time): minutes, not the per-test minute of the rest.
    for item in items:
        if item.get_closest_marker('container') and not item.get_closest_marker('timeout'):
            item.add_marker(pytest.mark.timeout(1800))

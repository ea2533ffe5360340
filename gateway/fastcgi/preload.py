"""--preload: the application imported once, in the arbiter, before forking.

Workers forked afterwards share its memory copy-on-write instead of each
importing it. ``gc.freeze()`` moves what the import made out of the
collector's sight, so that a collection in a worker does not write into
those objects' pages and so copy them.

SIGHUP must still bring new code: the arbiter imports the application again
before the rolling replacement of its workers. The modules the first import
added to ``sys.modules`` are the application's, except those of the
standard library and of site-packages (an installed package changes by a
restart, and some extension modules cannot be imported twice); these are
removed and imported afresh. An import that fails leaves the old modules
and application in place, and the old workers serving.

The arbiter's import obeys --boot-timeout as a worker's does: while it runs
the arbiter supervises nothing. Past the limit a timer's SIGALRM interrupts
it with where it was stuck: at start the server exits 1 saying so, on
SIGHUP the reload is abandoned. An import stuck in C code that never lets
the interpreter run a signal handler is not interrupted.
"""

import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import sysconfig
import threading
import traceback

from ..apploader import AppLoadError

__all__ = ['preload', 'reload_preloaded']

log = logging.getLogger('gateway')


def _installed_roots():
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ('stdlib', 'platstdlib', 'purelib', 'platlib') if key in paths}
    return tuple(os.path.join(os.path.realpath(root), '') for root in roots)


def _own_modules(names):
    """Of the modules *names*, those that are the application's code."""
    installed = _installed_roots()
    own = []
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, '__file__', None)
        if path and not os.path.realpath(path).startswith(installed):
            own.append(name)
    return own


class _ImportHung(BaseException):
    """Raised into the import past --boot-timeout; a BaseException, so that
    an application's ``except Exception`` around its stuck call lets it by."""


def _where(frame):
    """The stack at *frame*, from the application's code on (not the
    server's frames, nor importlib's, below it)."""
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '')
    frames = [entry for entry in traceback.extract_stack(frame)
              if not entry.filename.startswith((package, '<frozen '))]
    return ''.join(traceback.format_list(frames)).rstrip()


@contextlib.contextmanager
def _within_boot_timeout(config):
    """Past --boot-timeout, _ImportHung is raised where the import is."""
    timeout = config.boot_timeout
    if not timeout or not hasattr(signal, 'setitimer') \
            or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            return      # an operator's SIGALRM, not the timer's: ignored, as always
        raise _ImportHung(_where(frame))
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def preload(config):
    """Import *config*'s application here (raises AppLoadError); the
    workers forked from now on serve this object."""
    before = set(sys.modules)
    try:
        with _within_boot_timeout(config):
            config.preloaded = config.load_application()
    except _ImportHung as hung:
        raise AppLoadError(f'its import in the arbiter (--preload) did not finish within '
                           f'--boot-timeout {config.boot_timeout:g}s and was abandoned; where '
                           f'it was stuck:\n{hung}') from None
    config.preloaded_modules = _own_modules(set(sys.modules) - before)
    gc.freeze()
    log.info('application imported in the arbiter (--preload): %d module%s of its own',
             len(config.preloaded_modules), 's' * (len(config.preloaded_modules) != 1))


def reload_preloaded(config):
    """SIGHUP: import the application's own modules again. True when the
    fresh application is in place; False (logged) when the old one stays."""
    if not config.app:
        return True     # an application object given (flup-style): nothing to import
    saved = {name: sys.modules.pop(name) for name in config.preloaded_modules
             if name in sys.modules}
    old_app, config.preloaded = config.preloaded, None
    importlib.invalidate_caches()
    gc.unfreeze()
    try:
        preload(config)
    except BaseException as error:      # whatever the import raised
        from ..apploader import describe_load_error
        sys.modules.update(saved)
        config.preloaded = old_app
        gc.freeze()
        log.error('%s\nreload abandoned: the old workers keep serving',
                  describe_load_error(config.app, error))
        return False
    return True

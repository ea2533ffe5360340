"""Find the WSGI application named on a command line or in GATEWAY_APP: the
one place where the CGI command and the FastCGI server's workers load it,
and say why it did not load."""

import os
import sys

__all__ = ['AppLoadError', 'load_app', 'load_application', 'describe_load_error',
           'with_iis_path_info', 'with_mount_point', 'env_flag', 'writable_directory']


class AppLoadError(Exception):
    """The application could not be found or imported; the message says why."""


def env_flag(name, environ=None):
    """Whether the environment variable *name* is set to a true value."""
    value = (os.environ if environ is None else environ).get(name) or ''
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


def writable_directory(path):
    """Whether this user may write in *path*, or anyone but its owner may:
    a module written there would be imported by a process that has the
    directory on sys.path."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True     # nothing known: not to be trusted
    return bool(mode & 0o022) or os.access(path, os.W_OK)


def _is_dotted_name(text):
    return bool(text) and all(part.isidentifier() for part in text.split('.'))


def load_app(spec, directory=None, unless_writable=False):
    """Import and return the callable named by *spec*.

    *spec* is ``MODULE:NAME`` (NAME may be dotted, or ``NAME()`` to call a
    factory with no arguments) or just ``MODULE``, which means its
    ``application`` (the mod_wsgi and wfastcgi convention) or else ``app``.
    *directory* (default: the current one) goes first on sys.path, as
    gunicorn does, because web servers start CGI scripts and workers in the
    application's directory, not with its PYTHONPATH; with
    *unless_writable*, only if it is not a ``writable_directory``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise AppLoadError("no WSGI application given: pass MODULE:CALLABLE or set GATEWAY_APP")
    spec = spec.strip()
    module_name, _, attribute = spec.partition(':')
    factory = attribute.endswith('()')
    if factory:
        attribute = attribute[:-2]
    if not _is_dotted_name(module_name) or (attribute and not _is_dotted_name(attribute)):
        raise AppLoadError(f"{spec!r} is not of the form MODULE:CALLABLE (e.g. myproject.wsgi:application)")

    directory = os.getcwd() if directory is None else os.path.abspath(directory)
    left_off = ''
    if directory not in sys.path:
        if unless_writable and writable_directory(directory):
            left_off = (f" ({directory} is left off it because this user can write there: "
                        f"name it with --chdir or PYTHONPATH if the application lives there)")
        else:
            sys.path.insert(0, directory)

    try:
        __import__(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name) \
                and module_name[len(error.name):len(error.name) + 1] in ('', '.'):
            raise AppLoadError(f"cannot import {module_name!r}: no such module on sys.path "
                               f"{sys.path!r}{left_off}") from None
        raise AppLoadError(f"importing {module_name!r} failed: {error}") from error
    except Exception as error:
        raise AppLoadError(f"importing {module_name!r} failed: "
                           f"{type(error).__name__}: {error}") from error
    module = sys.modules[module_name]

    candidates = [attribute] if attribute else ['application', 'app']
    for name in candidates:
        target = module
        try:
            for part in name.split('.'):
                target = getattr(target, part)
        except AttributeError:
            continue
        if factory:
            try:
                target = target()
            except Exception as error:
                raise AppLoadError(f"calling the factory {spec!r} failed: "
                                   f"{type(error).__name__}: {error}") from error
        if not callable(target):
            raise AppLoadError(f"{module_name}:{name} is a {type(target).__name__}, not a WSGI callable")
        return target
    raise AppLoadError(f"module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                       + " or ".join(repr(name) for name in candidates))


def load_application(spec, application=None, *, unless_writable=False, iis=False,
                     script_name=None):
    """The WSGI callable: *application* if given (the flup-style API), else
    ``load_app(spec)``; with *script_name* (a mount point, as
    ``--script-name`` gives it), mounted there (``with_mount_point``); with
    *iis*, seeing the PATH_INFO IIS meant first (``with_iis_path_info``).
    AppLoadError, or whatever importing raised; ValueError for a
    *script_name* that is no URL path."""
    app = application if application is not None else load_app(
        spec, unless_writable=unless_writable)
    if script_name is not None:
        app = with_mount_point(app, script_name)
    return with_iis_path_info(app) if iis else app


def with_mount_point(app, script_name):
    """*app*, mounted at the URL path *script_name* whatever the web server
    split (``mounted_path``): SCRIPT_NAME is the mount point, PATH_INFO the
    rest; a request outside it is answered 404 and never reaches *app*. A
    FastCGI AUTHORIZER request, which carries neither variable, goes to
    *app* as it came."""
    from .handlers import mounted_path, not_mounted, script_name_prefix
    prefix = script_name_prefix(script_name)

    def application(environ, start_response):
        if environ.get('FCGI_ROLE') == 'AUTHORIZER':
            return app(environ, start_response)
        split = mounted_path(environ, prefix)
        if split is None:
            return not_mounted(environ, start_response)
        environ['SCRIPT_NAME'], environ['PATH_INFO'] = split
        return app(environ, start_response)
    application.__wrapped__ = app
    return application


def with_iis_path_info(app):
    """*app*, seeing the PATH_INFO IIS meant: IISCGIHandler's fix-up, for a
    FastCGI server that IIS runs (``--iis``)."""
    from .handlers import iis_path_info

    def application(environ, start_response):
        environ['PATH_INFO'] = iis_path_info(environ)
        return app(environ, start_response)
    application.__wrapped__ = app
    return application


def describe_load_error(spec, error):
    """One line naming the application and why it did not load, followed by
    the traceback when the failure happened inside the application's code."""
    message = f"cannot load the WSGI application {spec!r}: "
    cause = error
    if isinstance(error, AppLoadError):
        message += str(error)
        cause = error.__cause__
    elif isinstance(error, SystemExit):
        return message + f"it called sys.exit({error.code!r}) while being imported"
    elif isinstance(error, KeyboardInterrupt):
        return message + "interrupted"
    else:
        message += f"{type(error).__name__}: {error}"
    if cause is not None:
        import traceback
        message += '\n' + ''.join(traceback.format_exception(type(cause), cause,
                                                              cause.__traceback__))
    return message.rstrip()

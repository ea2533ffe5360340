"""Code that swaps `wsgiref` for `gateway` in its imports keeps working."""

import importlib
import io
import types

import pytest

MODULES = ['util', 'headers', 'handlers', 'simple_server', 'validate', 'types']
# Names wsgiref.types merely re-exports from typing and collections.abc.
TYPING_HELPERS = {'Any', 'Callable', 'Iterable', 'Iterator', 'Protocol', 'TracebackType',
                  'TypeAlias'}
# Public in some 3.11-3.13 release (is_hop_by_hop joined util.__all__ in 3.13),
# plus the undocumented names real code imports.
EXTRA = {
    'util': {'is_hop_by_hop'},
    'handlers': {'format_date_time'},
    'headers': {'tspecials'},
    'simple_server': {'ServerHandler', 'server_version', 'sys_version', 'software_version'},
    'validate': {'WSGIWarning'},
    'types': set(),
}


def public_names(module):
    return {name for name, value in vars(module).items()
            if not name.startswith('_') and not isinstance(value, types.ModuleType)}


@pytest.mark.parametrize('name', MODULES)
def test_every_wsgiref_name_exists(name):
    stdlib = importlib.import_module('wsgiref.' + name)
    ours = importlib.import_module('gateway.' + name)
    wanted = (public_names(stdlib) - TYPING_HELPERS) | EXTRA[name]
    missing = {attr for attr in wanted if not hasattr(ours, attr)}
    assert not missing


@pytest.mark.parametrize('name', MODULES)
def test_all_lists_the_same_names(name):
    stdlib = importlib.import_module('wsgiref.' + name)
    ours = importlib.import_module('gateway.' + name)
    expected = set(getattr(stdlib, '__all__', ())) | ({'is_hop_by_hop'} if name == 'util' else set())
    assert set(getattr(ours, '__all__', ())) >= expected


def test_handlers_is_a_package_with_the_wsgiref_classes():
    import gateway.handlers as handlers
    assert hasattr(handlers, '__path__')
    assert issubclass(handlers.CGIHandler, handlers.BaseCGIHandler)
    assert issubclass(handlers.BaseCGIHandler, handlers.SimpleHandler)
    assert issubclass(handlers.SimpleHandler, handlers.BaseHandler)
    assert handlers.CGIHandler.os_environ == {}
    assert handlers.format_date_time(0) == 'Thu, 01 Jan 1970 00:00:00 GMT'


class FrameworkHandlerMixin:
    """The overrides frameworks write on top of BaseCGIHandler (ReadyExec, FastCGI shims)."""

    error_status = '502 Bad Gateway'

    def __init__(self, stdin, stdout, environ):
        self.trace = []
        super().__init__(stdin, stdout, io.StringIO(), environ, multithread=False,
                         multiprocess=True)

    def add_cgi_vars(self):
        super().add_cgi_vars()
        self.environ['framework.extra'] = 'yes'

    def _write(self, data):
        self.trace.append(('write', data))
        super()._write(data)

    def error_output(self, environ, start_response):
        start_response(self.error_status, [('Content-Type', 'text/html')])
        return [b'<p>framework error page</p>']

    def log_exception(self, exc_info):
        self.trace.append(('log', exc_info[0].__name__))


def framework_app(environ, start_response):
    if environ['PATH_INFO'] == '/fail':
        raise LookupError('fail')
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [environ['framework.extra'].encode(), b'!']


@pytest.mark.parametrize('path', ['/ok', '/fail'])
def test_subclass_overrides_behave_as_on_wsgiref(path):
    import wsgiref.handlers as std
    import gateway.handlers as gw
    results = []
    for module in (std, gw):
        cls = type('FrameworkHandler', (FrameworkHandlerMixin, module.BaseCGIHandler), {})
        out = io.BytesIO()
        handler = cls(io.BytesIO(), out, {'REQUEST_METHOD': 'GET', 'PATH_INFO': path,
                                          'SERVER_PROTOCOL': 'HTTP/1.1'})
        handler.run(framework_app)
        results.append((out.getvalue(), handler.trace))
    assert results[0] == results[1]
    assert results[1][0].startswith(b'Status: 502' if path == '/fail' else b'Status: 200')

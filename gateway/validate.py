"""Middleware that checks both sides of a WSGI conversation (the
``wsgiref.validate`` API).

``validator(app)`` returns an application that passes every call through
to *app* unchanged, checking on the way what PEP 3333 asks of the server
(the environ, ``wsgi.input``, ``wsgi.errors``) and of the application (how
it calls ``start_response``, the status, the headers, what it writes, what
it returns and that the server closes it). A broken rule raises
``AssertionError`` with a message that names the rule and the value; a
doubtful practice gives a ``WSGIWarning``. Passing proves little; failing
almost certainly means a bug on one side.

The status and headers go through the same check the handlers apply before
sending (``gateway.headers``), plus the stricter rules of a validator:
header names made of letters, digits, ``-`` and ``_``, no ``Status`` field,
a Content-Type exactly when there is content. Where it parts from
``wsgiref.validate``:

* ``wsgi.input.read()`` without a size is allowed: PEP 3333 says a server
  should allow it. ``read(None)`` is not: PEP 3333 names ``read(size)`` and
  ``read()`` only, and servers whose ``read`` takes an int (mod_wsgi) fail
  on it. A negative size means the rest of the body, as for any file.
* Control characters are refused in the status line as in header values,
  DEL as well as C0; so are hop-by-hop fields and characters beyond
  ISO-8859-1, as the handlers refuse them.
* Every check is a ``raise``, not an ``assert``, so it runs under
  ``python -O`` too; a malformed status or CONTENT_LENGTH and a missing
  ``wsgi.url_scheme`` are ``AssertionError`` like the other findings.
"""

import sys
import warnings

from .headers import check_header_value, check_headers as _sendable_headers

__all__ = ['validator']

_LETTERS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')
_NAME_CHARACTERS = _LETTERS | frozenset('0123456789-_')
_USUAL_METHODS = frozenset(('GET', 'HEAD', 'POST', 'OPTIONS', 'PATCH', 'PUT', 'DELETE', 'TRACE'))
_REQUIRED_KEYS = ('REQUEST_METHOD', 'SERVER_NAME', 'SERVER_PORT', 'wsgi.version', 'wsgi.input',
                  'wsgi.errors', 'wsgi.multithread', 'wsgi.multiprocess', 'wsgi.run_once',
                  'wsgi.url_scheme')
# RFC 9110, 15.3.5 and 15.4.5: answers that never have content.
_WITHOUT_CONTENT = (204, 304)


def __getattr__(name):
    # wsgiref.validate has these patterns as module attributes; they are
    # compiled when asked for, so that importing the module leaves `re` out.
    patterns = {'header_re': r'^[a-zA-Z][a-zA-Z0-9\-_]*$',
                'bad_header_value_re': r'[\000-\037\177]'}
    if name in patterns:
        import re
        compiled = globals()[name] = re.compile(patterns[name])
        return compiled
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WSGIWarning(Warning):
    """Something PEP 3333 does not forbid but that is likely a mistake."""


def assert_(cond, *args):
    """Raise ``AssertionError(*args)`` unless *cond*, also under ``python -O``."""
    if not cond:
        raise AssertionError(*args)


def check_string_type(value, title):
    """Return *value* if it is a ``str``; *title* names it in the error."""
    assert_(type(value) is str, f"{title} must be of type str (got {value!r})")
    return value


def _as_assertion(check, *args):
    # The handlers refuse unsendable text with ValueError; a validator's
    # findings are all AssertionError.
    try:
        return check(*args)
    except ValueError as error:
        raise AssertionError(str(error)) from None


def validator(application):
    """Wrap *application* in the checks of this module (see its docstring).

    A failed check raises ``AssertionError`` out of the call that broke the
    rule; the one exception is an iterable the server never closed, found
    only when it is garbage collected, which is printed to stderr.
    """
    return _CheckedApplication(application)


class _CheckedApplication:
    """The application behind the checks: one call is one request."""

    def __init__(self, application):
        self.wrapped = application

    def __call__(self, *args, **kwargs):
        assert_(not kwargs, f"No keyword arguments allowed when calling the application"
                            f" (got {kwargs!r})")
        assert_(len(args) == 2, "The application must be called with two positional arguments"
                                f" (environ, start_response), got {len(args)}: {args!r}")
        environ = args[0]
        check_environ(environ)
        for key, checked_stream in (('wsgi.input', InputWrapper),
                                    ('wsgi.errors', ErrorWrapper)):
            environ[key] = checked_stream(environ[key])
        start_response = _CheckedStartResponse(args[1])
        result = self.wrapped(environ, start_response)
        assert_(result is not None and result is not False,
                f"The application must return an iterator, if only an empty list (got {result!r})")
        check_iterator(result)
        return IteratorWrapper(result, start_response.calls)


class _CheckedStartResponse:
    """The server's ``start_response`` behind the checks."""

    def __init__(self, start_response):
        self.start_response = start_response
        self.calls = []     # one entry per call: non-empty once it was called

    def __call__(self, *args, **kwargs):
        assert_(not kwargs, f"No keyword arguments allowed when calling start_response"
                            f" (got {kwargs!r})")
        assert_(len(args) in (2, 3), "start_response takes (status, headers[, exc_info]);"
                                     f" got {len(args)} arguments: {args!r}")
        check_status(args[0])
        check_headers(args[1])
        check_content_type(args[0], args[1])
        check_exc_info(args[2] if len(args) == 3 else None)
        self.calls.append(args[0])
        return WriteWrapper(self.start_response(*args))


def _returned_bytes(value, what):
    assert_(type(value) is bytes, f"{what} must return bytes, got {type(value).__name__}:"
                                  f" {value!r}")
    return value


def _at_most_one(args, call, what):
    assert_(len(args) <= 1, f"{call} takes at most one argument ({what}), got {len(args)}:"
                            f" {args!r}")


class InputWrapper:
    """``wsgi.input`` as the application sees it: each call checked."""

    def __init__(self, wsgi_input):
        self.input = wsgi_input

    def read(self, *args):
        _at_most_one(args, "wsgi.input.read()", "size")
        if args:
            assert_(type(args[0]) is int,
                    f"wsgi.input.read(size) takes an int, got {args[0]!r}; PEP 3333 has"
                    " read(size) and read() without an argument for the rest of the body")
        return _returned_bytes(self.input.read(*args), "wsgi.input.read()")

    def readline(self, *args):
        _at_most_one(args, "wsgi.input.readline()", "size")
        return _returned_bytes(self.input.readline(*args), "wsgi.input.readline()")

    def readlines(self, *args):
        _at_most_one(args, "wsgi.input.readlines()", "hint")
        result = self.input.readlines(*args)
        assert_(type(result) is list, f"wsgi.input.readlines() must return a list, got"
                                      f" {type(result).__name__}: {result!r}")
        for line in result:
            _returned_bytes(line, "each line of wsgi.input.readlines()")
        return result

    def __iter__(self):
        line = self.readline()
        while line:
            yield line
            line = self.readline()

    def close(self):
        assert_(False, "input.close() must not be called: wsgi.input belongs to the server")


class ErrorWrapper:
    """``wsgi.errors`` as the application sees it: text only, never closed."""

    def __init__(self, wsgi_errors):
        self.errors = wsgi_errors

    def write(self, s):
        assert_(type(s) is str, f"wsgi.errors.write() takes a str, got {type(s).__name__}:"
                                f" {s!r}")
        self.errors.write(s)

    def flush(self):
        self.errors.flush()

    def writelines(self, seq):
        for text in seq:
            self.write(text)

    def close(self):
        assert_(False, "errors.close() must not be called: wsgi.errors belongs to the server")


class WriteWrapper:
    """The ``write`` callable ``start_response`` returned, taking bytes only."""

    def __init__(self, wsgi_writer):
        self.writer = wsgi_writer

    def __call__(self, s):
        assert_(type(s) is bytes, f"The write() callable takes bytes, got {type(s).__name__}:"
                                  f" {s!r}")
        self.writer(s)


class PartialIteratorWrapper:
    """An iterable whose iterator is checked once ``iter()`` is called on it."""

    def __init__(self, wsgi_iterator):
        self.iterable = wsgi_iterator

    def __iter__(self):
        return IteratorWrapper(self.iterable, None)


class IteratorWrapper:
    """The application's iterable as the server sees it: bytes only, not
    before ``start_response``, not after ``close()``, and closed in the end.

    *check_start_response* is a list that is non-empty once
    ``start_response`` has been called, or None not to check that.
    """

    def __init__(self, wsgi_iterator, check_start_response):
        self.iterable = wsgi_iterator
        self.blocks = iter(wsgi_iterator)
        self.closed = False
        self.started = check_start_response     # None once checked

    def __iter__(self):
        return self

    def __next__(self):
        assert_(not self.closed, "The iterable was read after it was closed")
        block = next(self.blocks)
        assert_(type(block) is bytes, f"Iterator yielded non-bytestring ({block!r})")
        if self.started is not None:
            assert_(self.started, "The application returned and its body is being read,"
                                  " but it has not called start_response yet")
            self.started = None
        return block

    def close(self):
        self.closed = True
        close = getattr(self.iterable, 'close', None)
        if close is not None:
            close()

    def __del__(self):
        if not self.closed:
            message = "Iterator garbage collected without being closed"
            sys.stderr.write(message)
            raise AssertionError(message)


def check_environ(environ):
    """Check an environ as a server hands it over (PEP 3333, "environ Variables")."""
    assert_(type(environ) is dict, f"Environment is not of the right type: {type(environ)!r}"
                                   f" (environment: {environ!r})")
    for key in _REQUIRED_KEYS:
        assert_(key in environ, f"Environment missing required key: {key!r}")
    for key in ('HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH'):
        assert_(key not in environ, f"Environment should not have the key: {key}"
                                    f" (use {key[5:]} instead)")
    if 'QUERY_STRING' not in environ:
        warnings.warn("QUERY_STRING is not in the WSGI environment; the cgi module reads"
                      " sys.argv when it is missing, so applications are more likely to fail",
                      WSGIWarning)
    for key, value in environ.items():
        # Keys with a dot are extensions, of any type; the others are CGI
        # variables, native strings.
        if '.' not in key:
            assert_(type(value) is str, f"Environmental variable {key} is not a string:"
                                        f" {type(value)!r} (value: {value!r})")
    version, scheme = environ['wsgi.version'], environ['wsgi.url_scheme']
    assert_(type(version) is tuple, f"wsgi.version should be a tuple ({version!r})")
    assert_(scheme in ('http', 'https'),
            f"wsgi.url_scheme unknown: {scheme!r} (must be 'http' or 'https')")
    for key, check in (('wsgi.input', check_input), ('wsgi.errors', check_errors)):
        check(environ[key])
    if environ['REQUEST_METHOD'] not in _USUAL_METHODS:
        warnings.warn(f"Unknown REQUEST_METHOD: {environ['REQUEST_METHOD']!r}", WSGIWarning)
    script, path = environ.get('SCRIPT_NAME'), environ.get('PATH_INFO')
    for key, value in (('SCRIPT_NAME', script), ('PATH_INFO', path)):
        assert_(not value or value.startswith('/'), f"{key} doesn't start with /: {value!r}")
    length = environ.get('CONTENT_LENGTH')
    assert_(not length or (length.isdigit() and length.isascii()),
            f"Invalid CONTENT_LENGTH: {length!r} (must be empty or a non-negative decimal"
            " integer)")
    assert_(script or path is not None, "One of SCRIPT_NAME or PATH_INFO are required"
                                        " (PATH_INFO should at least be '/' if SCRIPT_NAME"
                                        " is empty)")
    assert_(script != '/', "SCRIPT_NAME cannot be '/'; it should instead be '', and PATH_INFO"
                           " should be '/'")


def _has_attributes(stream, key, names):
    for name in names:
        assert_(hasattr(stream, name), f"{key} ({stream!r}) doesn't have the attribute {name}")


def check_input(wsgi_input):
    """``wsgi.input`` has the methods of PEP 3333's input stream."""
    _has_attributes(wsgi_input, 'wsgi.input', ('read', 'readline', 'readlines', '__iter__'))


def check_errors(wsgi_errors):
    """``wsgi.errors`` has the methods of PEP 3333's error stream."""
    _has_attributes(wsgi_errors, 'wsgi.errors', ('flush', 'write', 'writelines'))


def _status_code(status):
    check_string_type(status, "Status")
    code = status.split(None, 1)[0] if status.strip() else ''
    assert_(len(code) == 3, f"Status codes must be three characters: {code!r} (status"
                            f" {status!r})")
    assert_(code.isdigit() and code.isascii(), f"Status codes must be three digits: {code!r}"
                                               f" (status {status!r})")
    return int(code)


def check_status(status):
    """A status string: a code of three digits, at least 100, then a space
    and a reason (a warning when those are missing), and only characters a
    status line may hold."""
    code = _status_code(status)
    assert_(code >= 100, f"Status code is invalid: {code!r} (must be 100 or more)")
    _as_assertion(check_header_value, status, "Status")
    if status[3:4] != ' ':
        warnings.warn(f"The status string ({status!r}) should be a three-digit integer"
                      " followed by a single space and a status explanation", WSGIWarning)


def check_headers(headers):
    """A header list the handlers would send, with names of the token
    characters a validator asks for and no ``Status`` field."""
    assert_(type(headers) is list, f"Headers ({headers!r}) must be of type list:"
                                   f" {type(headers)!r}")
    for field in headers:
        assert_(type(field) is tuple, f"Individual headers ({field!r}) must be of type tuple:"
                                      f" {type(field)!r}")
        assert_(len(field) == 2, f"Individual headers must be (name, value) pairs, got"
                                 f" {len(field)} items: {field!r}")
        name = check_string_type(field[0], "Header name")
        check_string_type(field[1], "Header value")
        # WSGI itself knows no Status field: that is CGI's way of giving
        # the status, and a CGI front end would take it for the real one.
        assert_(name.lower() != 'status', f"The Status header cannot be used; it conflicts"
                                          f" with CGI script, and HTTP status is not given"
                                          f" through headers (value: {field[1]!r}).")
        assert_(name and name[0] in _LETTERS and _NAME_CHARACTERS.issuperset(name),
                f"Bad header name: {name!r} (must be a letter followed by letters, digits,"
                " '-' or '_')")
        assert_(name[-1] not in '-_', f"Names may not end in '-' or '_': {name!r}")
    _as_assertion(_sendable_headers, headers, True)


def check_content_type(status, headers):
    """A Content-Type field exactly when the response may have content."""
    code = _status_code(status)
    has_type = any(check_string_type(name, "Header name").lower() == 'content-type'
                   for name, _ in headers)
    if code in _WITHOUT_CONTENT:
        assert_(not has_type, f"Content-Type header found in a {code} response, which must"
                              " not return content.")
    else:
        assert_(has_type, f"No Content-Type header found in headers ({headers!r})")


def check_exc_info(exc_info):
    """``exc_info`` is None or the tuple ``sys.exc_info()`` gives."""
    assert_(type(exc_info) in (tuple, type(None)),
            f"exc_info ({exc_info!r}) is not a tuple: {type(exc_info)!r}")


def check_iterator(iterator):
    """The application returned an iterable, not a string: a string works,
    one character or byte at a time, which is never what was meant (and
    bytes or a bytearray give ints, which is no body at all)."""
    assert_(not isinstance(iterator, (str, bytes, bytearray)),
            "You should not return a string as your application iterator, instead return a"
            " single-item list containing a bytestring.")

# (c) 2005 Ian Bicking and contributors; written for Paste (http://pythonpaste.org)
# Licensed under the MIT license: https://opensource.org/licenses/mit-license.php
# Also licenced under the Apache License, 2.0: https://opensource.org/licenses/apache2.0.php
# Licensed to PSF under a Contributor Agreement
"""Middleware to check for obedience to the WSGI specification (PEP 3333).

The same checks as ``wsgiref.validate``, with these differences:

* Every check raises ``AssertionError`` through :func:`assert_`, never an
  ``assert`` statement, so the checks also run under ``python -O``; and every
  message says which rule was broken and by what value.
* ``wsgi.input.read()`` with no argument is allowed, as PEP 3333 requires
  ("A server should allow read() to be called without an argument").
  ``read(None)`` is refused: PEP 3333 names ``read(size)`` and ``read()``
  only, and servers whose ``read`` takes an integer (mod_wsgi) raise
  ``TypeError`` on ``None``. A negative size is accepted: it means "the
  rest of the body" for every file-like object, as ``read()`` does.
* Control characters (C0 and DEL) are refused in the status line and in
  header values, not only C0 in header values; a malformed status or
  ``CONTENT_LENGTH`` raises ``AssertionError`` rather than ``ValueError``,
  and a missing ``wsgi.url_scheme`` raises ``AssertionError`` rather than
  ``KeyError``.

What is checked:

* Signature of the application and start_response (including that
  keyword arguments are not used).

* Environment checks:

  - Environment is a dictionary (and not a subclass).

  - That all the required keys are in the environment: REQUEST_METHOD,
    SERVER_NAME, SERVER_PORT, wsgi.version, wsgi.input, wsgi.errors,
    wsgi.multithread, wsgi.multiprocess, wsgi.run_once, wsgi.url_scheme

  - That HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH are not in the
    environment (these headers should appear as CONTENT_LENGTH and
    CONTENT_TYPE).

  - Warns if QUERY_STRING is missing, as the cgi module acts
    unpredictably in that case.

  - That CGI-style variables (that don't contain a .) have
    (non-unicode) string values

  - That wsgi.version is a tuple

  - That wsgi.url_scheme is 'http' or 'https'

  - Warns if the REQUEST_METHOD is not known.

  - That SCRIPT_NAME and PATH_INFO are empty or start with /

  - That at least one of SCRIPT_NAME or PATH_INFO are set.

  - That CONTENT_LENGTH, when not empty, is a non-negative integer.

  - That SCRIPT_NAME is not '/' (it should be '', and PATH_INFO should
    be '/').

  - That wsgi.input has the methods read, readline, readlines, and
    __iter__

  - That wsgi.errors has the methods flush, write, writelines

* The status is a string, starts with a three-digit integer >= 100, and
  holds no control characters.

* That the headers is a list (not a subclass, not another kind of
  sequence).

* That the items of the headers are tuples of two strings.

* That there is no 'status' header (that is used in CGI, but not in
  WSGI).

* That header names are tokens of letters, digits, '-' and '_' that do
  not end in '-' or '_', and that header values hold no control
  characters.

* That Content-Type is given if there is content (CGI often has a
  default content type, but WSGI does not).

* That no Content-Type is given when there is no content (204, 304).

* That the exc_info argument to start_response is a tuple or None.

* That all calls to the writer are with bytes.

* That wsgi.input is used properly:

  - .read() is called with no argument or with one integer

  - That it returns bytes

  - That readline, readlines, and __iter__ return bytes

  - That .close() is not called

* That wsgi.errors is used properly:

  - .write() and .writelines() is called with a string

  - That .close() is not called.

* The response iterator:

  - That it is not a string (it should be a list of a single string; a
    string will work, but perform horribly).

  - That .__next__() returns bytes

  - That the iterator is not iterated over until start_response has
    been called (that can signal either a server or application
    error).

  - That .close() is called (doesn't raise exception, only prints to
    sys.stderr, because we only know it isn't called when the object
    is garbage collected).
"""
__all__ = ['validator']


import sys
import warnings

# Header names: a letter, then letters, digits, '-' or '_' (the rule
# wsgiref writes as the regex ``header_re``).
_LETTERS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')
_NAME_CHARS = _LETTERS | frozenset('0123456789-_')
_KNOWN_METHODS = ('GET', 'HEAD', 'POST', 'OPTIONS', 'PATCH', 'PUT', 'DELETE', 'TRACE')


def __getattr__(name):
    # wsgiref exposes its two regexes as module attributes; build them on
    # first use so that importing this module does not import ``re``.
    if name in ('header_re', 'bad_header_value_re'):
        import re
        globals().update(
            header_re=re.compile(r'^[a-zA-Z][a-zA-Z0-9\-_]*$'),
            bad_header_value_re=re.compile(r'[\000-\037\177]'),
        )
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WSGIWarning(Warning):
    """
    Raised in response to WSGI-spec-related warnings
    """


def assert_(cond, *args):
    """Raise AssertionError(*args) unless *cond*; unlike ``assert``, not
    skipped under ``python -O``."""
    if not cond:
        raise AssertionError(*args)


def check_string_type(value, title):
    if type(value) is str:
        return value
    raise AssertionError(
        "{0} must be of type str (got {1})".format(title, repr(value)))


def _control_char(text):
    """The first control character (C0 or DEL) in *text*, or None."""
    for char in text:
        if char < ' ' or char == '\x7f':
            return char
    return None


def validator(application):

    """
    When applied between a WSGI server and a WSGI application, this
    middleware will check for WSGI compliance on a number of levels.
    This middleware does not modify the request or response in any
    way, but will raise an AssertionError if anything seems off
    (except for a failure to close the application iterator, which
    will be printed to stderr -- there's no way to raise an exception
    at that point).
    """

    def lint_app(*args, **kw):
        assert_(not kw, "No keyword arguments allowed when calling the application "
                "(got %r)" % (kw,))
        assert_(len(args) == 2,
                "The application must be called with two positional arguments "
                "(environ, start_response), got %d: %r" % (len(args), args))
        environ, start_response = args

        check_environ(environ)

        # We use this to check if the application returns without
        # calling start_response:
        start_response_started = []

        def start_response_wrapper(*args, **kw):
            assert_(not kw, "No keyword arguments allowed when calling start_response "
                    "(got %r)" % (kw,))
            assert_(len(args) == 2 or len(args) == 3, (
                "start_response takes (status, headers[, exc_info]); "
                "invalid number of arguments: %s" % (args,)))
            status = args[0]
            headers = args[1]
            if len(args) == 3:
                exc_info = args[2]
            else:
                exc_info = None

            check_status(status)
            check_headers(headers)
            check_content_type(status, headers)
            check_exc_info(exc_info)

            start_response_started.append(None)
            return WriteWrapper(start_response(*args))

        environ['wsgi.input'] = InputWrapper(environ['wsgi.input'])
        environ['wsgi.errors'] = ErrorWrapper(environ['wsgi.errors'])

        iterator = application(environ, start_response_wrapper)
        assert_(iterator is not None and iterator != False,  # noqa: E712
                "The application must return an iterator, if only an empty list "
                "(got %r)" % (iterator,))

        check_iterator(iterator)

        return IteratorWrapper(iterator, start_response_started)

    return lint_app


def _check_bytes(value, what):
    assert_(type(value) is bytes,
            "%s must return bytes, got %s: %r" % (what, type(value).__name__, value))
    return value


class InputWrapper:

    def __init__(self, wsgi_input):
        self.input = wsgi_input

    def read(self, *args):
        assert_(len(args) <= 1,
                "wsgi.input.read() takes at most one argument (size), got %d: %r"
                % (len(args), args))
        if args:
            size = args[0]
            assert_(type(size) is int,
                    "wsgi.input.read(size) takes an int, got %r; PEP 3333 defines read(size) "
                    "and read() (no argument) to read the rest of the body" % (size,))
        return _check_bytes(self.input.read(*args), "wsgi.input.read()")

    def readline(self, *args):
        assert_(len(args) <= 1,
                "wsgi.input.readline() takes at most one argument (size), got %d: %r"
                % (len(args), args))
        return _check_bytes(self.input.readline(*args), "wsgi.input.readline()")

    def readlines(self, *args):
        assert_(len(args) <= 1,
                "wsgi.input.readlines() takes at most one argument (hint), got %d: %r"
                % (len(args), args))
        lines = self.input.readlines(*args)
        assert_(type(lines) is list,
                "wsgi.input.readlines() must return a list, got %s: %r"
                % (type(lines).__name__, lines))
        for line in lines:
            _check_bytes(line, "each line of wsgi.input.readlines()")
        return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self):
        assert_(0, "input.close() must not be called: wsgi.input belongs to the server")


class ErrorWrapper:

    def __init__(self, wsgi_errors):
        self.errors = wsgi_errors

    def write(self, s):
        assert_(type(s) is str,
                "wsgi.errors.write() takes a str, got %s: %r" % (type(s).__name__, s))
        self.errors.write(s)

    def flush(self):
        self.errors.flush()

    def writelines(self, seq):
        for line in seq:
            self.write(line)

    def close(self):
        assert_(0, "errors.close() must not be called: wsgi.errors belongs to the server")


class WriteWrapper:

    def __init__(self, wsgi_writer):
        self.writer = wsgi_writer

    def __call__(self, s):
        assert_(type(s) is bytes,
                "The write() callable takes bytes, got %s: %r" % (type(s).__name__, s))
        self.writer(s)


class PartialIteratorWrapper:

    def __init__(self, wsgi_iterator):
        self.iterator = wsgi_iterator

    def __iter__(self):
        # We want to make sure __iter__ is called
        return IteratorWrapper(self.iterator, None)


class IteratorWrapper:

    def __init__(self, wsgi_iterator, check_start_response):
        self.original_iterator = wsgi_iterator
        self.iterator = iter(wsgi_iterator)
        self.closed = False
        self.check_start_response = check_start_response

    def __iter__(self):
        return self

    def __next__(self):
        assert_(not self.closed,
                "Iterator read after closed")
        v = next(self.iterator)
        if type(v) is not bytes:
            assert_(False, "Iterator yielded non-bytestring (%r)" % (v,))
        if self.check_start_response is not None:
            assert_(self.check_start_response,
                    "The application returns and we started iterating over its body, "
                    "but start_response has not yet been called")
            self.check_start_response = None
        return v

    def close(self):
        self.closed = True
        if hasattr(self.original_iterator, 'close'):
            self.original_iterator.close()

    def __del__(self):
        if not self.closed:
            sys.stderr.write(
                "Iterator garbage collected without being closed")
        assert_(self.closed,
                "Iterator garbage collected without being closed")


def check_environ(environ):
    assert_(type(environ) is dict,
            "Environment is not of the right type: %r (environment: %r)"
            % (type(environ), environ))

    for key in ['REQUEST_METHOD', 'SERVER_NAME', 'SERVER_PORT',
                'wsgi.version', 'wsgi.input', 'wsgi.errors',
                'wsgi.multithread', 'wsgi.multiprocess',
                'wsgi.run_once', 'wsgi.url_scheme']:
        assert_(key in environ,
                "Environment missing required key: %r" % (key,))

    for key in ['HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH']:
        assert_(key not in environ,
                "Environment should not have the key: %s "
                "(use %s instead)" % (key, key[5:]))

    if 'QUERY_STRING' not in environ:
        warnings.warn(
            'QUERY_STRING is not in the WSGI environment; the cgi '
            'module will use sys.argv when this variable is missing, '
            'so application errors are more likely',
            WSGIWarning)

    for key in environ.keys():
        if '.' in key:
            # Extension, we don't care about its type
            continue
        assert_(type(environ[key]) is str,
                "Environmental variable %s is not a string: %r (value: %r)"
                % (key, type(environ[key]), environ[key]))

    assert_(type(environ['wsgi.version']) is tuple,
            "wsgi.version should be a tuple (%r)" % (environ['wsgi.version'],))
    assert_(environ['wsgi.url_scheme'] in ('http', 'https'),
            "wsgi.url_scheme unknown: %r (must be 'http' or 'https')"
            % (environ['wsgi.url_scheme'],))

    check_input(environ['wsgi.input'])
    check_errors(environ['wsgi.errors'])

    if environ['REQUEST_METHOD'] not in _KNOWN_METHODS:
        warnings.warn(
            "Unknown REQUEST_METHOD: %r" % environ['REQUEST_METHOD'],
            WSGIWarning)

    assert_(not environ.get('SCRIPT_NAME')
            or environ['SCRIPT_NAME'].startswith('/'),
            "SCRIPT_NAME doesn't start with /: %r" % environ['SCRIPT_NAME'])
    assert_(not environ.get('PATH_INFO')
            or environ['PATH_INFO'].startswith('/'),
            "PATH_INFO doesn't start with /: %r" % environ['PATH_INFO'])
    length = environ.get('CONTENT_LENGTH')
    if length:
        assert_(length.isdigit() and length.isascii(),
                "Invalid CONTENT_LENGTH: %r (must be empty or a non-negative "
                "decimal integer)" % (length,))

    if not environ.get('SCRIPT_NAME'):
        assert_('PATH_INFO' in environ,
                "One of SCRIPT_NAME or PATH_INFO are required (PATH_INFO "
                "should at least be '/' if SCRIPT_NAME is empty)")
    assert_(environ.get('SCRIPT_NAME') != '/',
            "SCRIPT_NAME cannot be '/'; it should instead be '', and "
            "PATH_INFO should be '/'")


def _check_attributes(stream, key, attributes):
    for attr in attributes:
        assert_(hasattr(stream, attr),
                "%s (%r) doesn't have the attribute %s" % (key, stream, attr))


def check_input(wsgi_input):
    _check_attributes(wsgi_input, 'wsgi.input', ['read', 'readline', 'readlines', '__iter__'])


def check_errors(wsgi_errors):
    _check_attributes(wsgi_errors, 'wsgi.errors', ['flush', 'write', 'writelines'])


def _status_code(status):
    """The status code of a checked *status* string, as an int."""
    status = check_string_type(status, "Status")
    status_code = status.split(None, 1)[0] if status.strip() else ''
    assert_(len(status_code) == 3,
            "Status codes must be three characters: %r (status %r)" % (status_code, status))
    assert_(status_code.isdigit() and status_code.isascii(),
            "Status codes must be three digits: %r (status %r)" % (status_code, status))
    return int(status_code)


def check_status(status):
    status_int = _status_code(status)
    assert_(status_int >= 100, "Status code is invalid: %r (must be 100 or more)" % status_int)
    bad = _control_char(status)
    assert_(bad is None,
            "Status %r holds the control character %r; CR, LF and other control "
            "characters are not allowed in a status line" % (status, bad))
    if len(status) < 4 or status[3] != ' ':
        warnings.warn(
            "The status string (%r) should be a three-digit integer "
            "followed by a single space and a status explanation"
            % status, WSGIWarning)


def check_headers(headers):
    assert_(type(headers) is list,
            "Headers (%r) must be of type list: %r"
            % (headers, type(headers)))
    for item in headers:
        assert_(type(item) is tuple,
                "Individual headers (%r) must be of type tuple: %r"
                % (item, type(item)))
        assert_(len(item) == 2,
                "Individual headers must be (name, value) pairs, got %d items: %r"
                % (len(item), item))
        name, value = item
        name = check_string_type(name, "Header name")
        value = check_string_type(value, "Header value")
        assert_(name.lower() != 'status',
                "The Status header cannot be used; it conflicts with CGI "
                "script, and HTTP status is not given through headers "
                "(value: %r)." % value)
        assert_('\n' not in name and ':' not in name,
                "Header names may not contain ':' or '\\n': %r" % name)
        assert_(name and name[0] in _LETTERS and _NAME_CHARS.issuperset(name),
                "Bad header name: %r (must be a letter followed by letters, digits, "
                "'-' or '_')" % name)
        assert_(not name.endswith('-') and not name.endswith('_'),
                "Names may not end in '-' or '_': %r" % name)
        bad = _control_char(value)
        assert_(bad is None,
                "Bad header value: %r (bad char: %r) in header %r; control characters "
                "are not allowed in header values" % (value, bad, name))


def check_content_type(status, headers):
    code = _status_code(status)
    # RFC 9110 15.3.5 and 15.4.5: 204 and 304 responses carry no content.
    NO_MESSAGE_BODY = (204, 304)
    for name, value in headers:
        name = check_string_type(name, "Header name")
        if name.lower() == 'content-type':
            if code not in NO_MESSAGE_BODY:
                return
            assert_(0, ("Content-Type header found in a %s response, "
                        "which must not return content.") % code)
    if code not in NO_MESSAGE_BODY:
        assert_(0, "No Content-Type header found in headers (%s)" % headers)


def check_exc_info(exc_info):
    assert_(exc_info is None or type(exc_info) is tuple,
            "exc_info (%r) is not a tuple: %r" % (exc_info, type(exc_info)))
    # More exc_info checks?


def check_iterator(iterator):
    # Technically a bytestring is legal, which is why it's a really bad
    # idea, because it may cause the response to be returned
    # character-by-character
    assert_(not isinstance(iterator, (str, bytes)),
            "You should not return a string as your application iterator, "
            "instead return a single-item list containing a bytestring.")

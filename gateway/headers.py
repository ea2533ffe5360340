"""Response headers: ``Headers``, and the one check every status line and
header field passes.

``start_response()``, every ``Headers`` method that stores a field and
``gateway.validate`` go through ``check_status`` and ``check_headers`` (or
``check_header_name``/``check_header_value`` for one field). They are
``raise`` statements, so ``python -O`` keeps them. A shape the WSGI calling
convention rules out (not a ``str``, not a list of pairs, no "NNN reason"
status, a hop-by-hop field) raises ``AssertionError``, as in wsgiref; text
that would corrupt the response (a control character other than a tab in a
value, a character beyond ISO-8859-1, an empty name or one with a space or
colon) raises ``ValueError``.
"""

__all__ = ['Headers', 'HOP_BY_HOP', 'is_hop_by_hop', 'check_status', 'check_headers',
           'check_header_name', 'check_header_value']

# RFC 2616, 13.5.1: fields that describe one connection, which only the
# server that owns the connection may send.
HOP_BY_HOP = frozenset(('connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
                        'te', 'trailers', 'transfer-encoding', 'upgrade'))


def is_hop_by_hop(header_name):
    """Whether the field *header_name* (any case) is hop-by-hop."""
    return header_name.lower() in HOP_BY_HOP

def __getattr__(name):
    # wsgiref.headers.tspecials is a compiled pattern; compiling it only
    # when someone asks keeps `re` out of every CGI process.
    if name == 'tspecials':
        import re
        pattern = globals()['tspecials'] = re.compile(r'[ \(\)<>@,;:\\"/\[\]\?=]')
        return pattern
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _require_str(value, what):
    if type(value) is not str:
        raise AssertionError(f"{what} must be of type str (got {value!r})")


def _first_unsendable(text, tab_allowed):
    """The first character of *text* that cannot stand in a header line."""
    for char in text:
        if char < ' ' or char == '\x7f' or char > '\xff':
            if char == '\t' and tab_allowed:
                continue
            return char
    return None


def _unsendable(what, text, char):
    if char > '\xff':
        return ValueError(f"{what} {text!r} holds a character outside ISO-8859-1 (PEP 3333):"
                          " encode it first, e.g. as RFC 8187 or %-encoding")
    return ValueError(f"{what} {text!r} holds a control character ({char!r}): refused, as"
                      " CR and LF would split the response")


def check_header_name(name, what="Header name"):
    """Return *name* if it can be sent as a field name; raise otherwise."""
    _require_str(name, what)
    char = _first_unsendable(name, tab_allowed=False)
    if char is not None and char > '\xff':
        raise _unsendable(what, name, char)
    if char is not None or not name or ' ' in name or ':' in name:
        raise ValueError(f"{what} {name!r} is not a valid HTTP field name "
                         "(empty, or holds a control character, space or colon)")
    return name


def check_header_value(value, what="Header value"):
    """Return *value* if it can be sent as a field value; raise otherwise."""
    _require_str(value, what)
    char = _first_unsendable(value, tab_allowed=True)
    if char is not None:
        raise _unsendable(what, value, char)
    return value


def check_status(status):
    """Return *status* if it can be a status line: ``str``, three digits, a
    space, a reason, and only characters a header line may hold."""
    # The usual "200 OK" settles every check in a few C calls.
    if type(status) is str and status.isascii() and status.isprintable() \
            and len(status) > 3 and status[3] == ' ' and status[:3].isdigit():
        return status
    _require_str(status, "Status")
    if len(status) < 4:
        problem = "Status must be at least 4 characters"
    elif not (status[:3].isdigit() and status[:3].isascii()):
        problem = "Status message must begin w/3-digit code"
    elif status[3] != ' ':
        problem = "Status message must have a space after code"
    else:
        return check_header_value(status, "Status")
    raise AssertionError(problem)


def check_headers(headers, cgi=False):
    """Check a WSGI header list: a ``list`` of ``(name, value)`` tuples of
    sendable text, no hop-by-hop field, and, with *cgi* (the output goes to a
    web server that reads CGI response headers), no ``Status`` field."""
    if type(headers) is not list:
        raise AssertionError(f"Headers must be a list of (name, value) tuples (got {headers!r})")
    # An application sends the same few fields again and again: one that
    # passed is known by a set lookup (its type checked, so that no str
    # subclass passes as the str it equals).
    passed = _PASSED_CGI if cgi else _PASSED
    for field in headers:
        if type(field) is tuple and len(field) == 2 and type(field[0]) is str \
                and type(field[1]) is str and field in passed:
            continue
        if type(field) is not tuple or len(field) != 2:
            raise AssertionError(f"Headers must be a list of (name, value) tuples (got {field!r})")
        name, value = field
        # Nearly every field is printable ASCII, which settles both checks
        # with a few C calls; only the rest is looked at character by
        # character, to say exactly what is wrong.
        if not (type(name) is str and name.isascii() and name.isprintable() and name
                and ' ' not in name and ':' not in name):
            check_header_name(name)
        if not (type(value) is str and value.isascii() and value.isprintable()):
            check_header_value(value)
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            raise AssertionError(f"Hop-by-hop header, '{name}: {value}', not allowed")
        if cgi and lowered == 'status':
            # A web server reading CGI output takes this field for the
            # status line (RFC 3875, 6.3.3): the application would override
            # the status it gave start_response(), or Apache's handling of a
            # redirect.
            raise ValueError(f"Header 'Status: {value}' not allowed: the status is the first"
                             " argument of start_response()")
        if len(passed) < _PASSED_MAX:
            passed.add(field)


# The fields check_headers() has passed, for CGI output and for HTTP; bounded,
# so that values that differ every time (dates, ids) do not pile up.
_PASSED, _PASSED_CGI = set(), set()
_PASSED_MAX = 256


class Headers:
    """A list of ``(name, value)`` response fields seen as a mapping: lookups
    ignore case and give the first value (None if there is none), setting a
    field replaces all of that name with one at the end. The list given is
    the one changed. ``bytes()`` gives the header block as sent."""

    def __init__(self, headers=None):
        if headers is None:
            headers = []
        elif type(headers) is not list:
            raise TypeError(f"Headers() takes a list of (name, value) tuples, not {headers!r}")
        for field in headers:
            if type(field) is not tuple or len(field) != 2:
                raise AssertionError(
                    f"Headers must be a list of (name, value) tuples (got {field!r})")
            check_header_name(field[0])
            check_header_value(field[1])
        self._headers = headers

    @classmethod
    def _trusted(cls, headers):
        # The serving path's shortcut: a list check_headers() has just
        # passed, wrapped without checking each field again.
        wrapped = cls.__new__(cls)
        wrapped._headers = headers
        return wrapped

    def _key(self, name):
        _require_str(name, "Header names/values")
        return name.lower()

    def __len__(self):
        return len(self._headers)

    def __setitem__(self, name, value):
        check_header_name(name)
        check_header_value(value)
        del self[name]
        self._headers.append((name, value))

    def __delitem__(self, name):
        key = self._key(name)
        fields = self._headers
        for index in range(len(fields) - 1, -1, -1):
            if fields[index][0].lower() == key:
                del fields[index]

    def __contains__(self, name):
        return bool(self.get_all(name))

    def get(self, name, default=None):
        key = self._key(name)
        for field_name, value in self._headers:
            if field_name.lower() == key:
                return value
        return default

    __getitem__ = get

    def get_all(self, name):
        """Every value of the field *name*, in order; [] when there is none."""
        key = self._key(name)
        values = []
        for field_name, value in self._headers:
            if field_name.lower() == key:
                values.append(value)
        return values

    def keys(self):
        return [name for name, _ in self._headers]

    def values(self):
        return [value for _, value in self._headers]

    def items(self):
        """A copy of the underlying list."""
        return self._headers[:]

    def setdefault(self, name, value):
        """The first value of *name*; if there is none, add *value* and return it."""
        current = self.get(name)
        if current is not None:
            return current
        check_header_name(name)
        self._headers.append((name, check_header_value(value)))
        return value

    def add_header(self, _name, _value, **_params):
        """Add a field, keeping others of its name; keyword arguments are MIME
        parameters, ``_`` read as ``-``, written ``name="value"`` (``None``:
        the bare name): ``add_header('Content-Disposition', 'attachment',
        filename='a.gif')``."""
        parts = [] if _value is None else [_value]
        for key, param in _params.items():
            _require_str(key, "Header names/values")
            if param is not None:
                _require_str(param, "Header names/values")
            key = key.replace('_', '-')
            if param is None:
                parts.append(key)
            else:
                parts.append('%s="%s"' % (key, param.replace('\\', '\\\\').replace('"', '\\"')))
        check_header_name(_name)
        self._headers.append((_name, check_header_value('; '.join(parts))))

    def __repr__(self):
        return f"{type(self).__name__}({self._headers!r})"

    def __str__(self):
        """The header block: a ``Name: value`` line per field, and an empty line."""
        return ''.join([f'{name}: {value}\r\n' for name, value in self._headers]) + '\r\n'

    def __bytes__(self):
        return str(self).encode('iso-8859-1')

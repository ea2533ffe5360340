"""Manage HTTP response headers (the ``wsgiref.headers`` API).

Names and values are checked for type and for control characters on every
path that stores them, whether or not Python runs with ``-O``: a CR or LF
that reaches the wire splits the response.
"""

__all__ = ['Headers', 'check_header_name', 'check_header_value']

# Characters that force a parameter value to be quoted (RFC 2045 tspecials
# plus space). ``tspecials`` itself is a compiled regex in wsgiref; it is
# built on first use so that importing this module does not import ``re``.
_TSPECIALS = frozenset(' ()<>@,;:\\"/[]?=')


def __getattr__(name):
    if name == 'tspecials':
        import re
        value = re.compile(r'[ \(\)<>@,;:\\"/\[\]\?=]')
        globals()['tspecials'] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _has_control_char(text):
    # isprintable() is a fast C loop that is True for the common case; a
    # False answer may only mean a non-ASCII space, so look closer then.
    if text.isprintable():
        return False
    for char in text:
        if char < ' ' or char == '\x7f':
            return True
    return False


def _check_str(value, what):
    if type(value) is not str:
        raise AssertionError(f"{what} must be of type str (got {value!r})")
    return value


def check_header_name(name, what="Header name"):
    """Return *name* if it is a str free of control characters and spaces."""
    _check_str(name, what)
    if _has_control_char(name) or ' ' in name or ':' in name or not name:
        raise ValueError(f"{what} {name!r} is not a valid HTTP field name "
                         "(empty, or holds a control character, space or colon)")
    return name


def check_header_value(value, what="Header value"):
    """Return *value* if it is a str free of control characters (C0, DEL)."""
    _check_str(value, what)
    # HTAB is the one control character RFC 9110 allows inside a value.
    if _has_control_char(value.replace('\t', ' ')):
        raise ValueError(f"{what} {value!r} holds a control character "
                         "(CR, LF, NUL, ...): refused to prevent response splitting")
    return value


def _formatparam(param, value=None, quote=1):
    """Format and return a key=value pair, quoting the value if needed or if
    *quote* is true."""
    if value is not None and len(value) > 0:
        if quote or not _TSPECIALS.isdisjoint(value):
            value = value.replace('\\', '\\\\').replace('"', r'\"')
            return '%s="%s"' % (param, value)
        return '%s=%s' % (param, value)
    return param


class Headers:
    """Manage a collection of HTTP response headers"""

    def __init__(self, headers=None):
        headers = headers if headers is not None else []
        if type(headers) is not list:
            raise TypeError("Headers must be a list of name/value tuples")
        self._headers = headers
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise AssertionError(
                    f"Headers must be a list of (name, value) tuples (got {item!r})")
            check_header_name(item[0])
            check_header_value(item[1])

    def _convert_string_type(self, value):
        """Convert/check value type."""
        return _check_str(value, "Header names/values")

    def __len__(self):
        """Return the total number of headers, including duplicates."""
        return len(self._headers)

    def __setitem__(self, name, val):
        """Set the value of a header."""
        del self[name]
        self._headers.append((check_header_name(name), check_header_value(val)))

    def __delitem__(self, name):
        """Delete all occurrences of a header, if present.

        Does *not* raise an exception if the header is missing.
        """
        name = self._convert_string_type(name.lower())
        self._headers[:] = [kv for kv in self._headers if kv[0].lower() != name]

    def __getitem__(self, name):
        """Get the first header value for 'name'

        Return None if the header is missing instead of raising an exception.
        Use get_all() to get all the values matching a header field name.
        """
        return self.get(name)

    def __contains__(self, name):
        """Return true if the message contains the header."""
        return self.get(name) is not None

    def get_all(self, name):
        """Return a list of all the values for the named field, in the order
        they were added; an empty list if there are none."""
        name = self._convert_string_type(name.lower())
        return [kv[1] for kv in self._headers if kv[0].lower() == name]

    def get(self, name, default=None):
        """Get the first header value for 'name', or return 'default'"""
        name = self._convert_string_type(name.lower())
        for k, v in self._headers:
            if k.lower() == name:
                return v
        return default

    def keys(self):
        """Return a list of all the header field names, in order, with
        duplicates."""
        return [k for k, v in self._headers]

    def values(self):
        """Return a list of all header values, in order, with duplicates."""
        return [v for k, v in self._headers]

    def items(self):
        """Get all the header fields and values, in order, with duplicates."""
        return self._headers[:]

    def __repr__(self):
        return "%s(%r)" % (self.__class__.__name__, self._headers)

    def __str__(self):
        """str() returns the formatted headers, complete with end line,
        suitable for direct HTTP transmission."""
        return '\r\n'.join(["%s: %s" % kv for kv in self._headers] + ['', ''])

    def __bytes__(self):
        return str(self).encode('iso-8859-1')

    def setdefault(self, name, value):
        """Return first matching header value for 'name', or 'value'

        If there is no header named 'name', add a new header with name 'name'
        and value 'value'."""
        result = self.get(name)
        if result is None:
            self._headers.append((check_header_name(name), check_header_value(value)))
            return value
        return result

    def add_header(self, _name, _value, **_params):
        """Extended header setting.

        _name is the header field to add.  keyword arguments can be used to set
        additional parameters for the header field, with underscores converted
        to dashes.  Normally the parameter will be added as key="value" unless
        value is None, in which case only the key will be added.

        Example::

            h.add_header('content-disposition', 'attachment', filename='bud.gif')

        Unlike the corresponding 'email.message' method, this does *not*
        handle '(charset, language, value)' tuples: all values must be
        strings or None.
        """
        parts = []
        if _value is not None:
            parts.append(self._convert_string_type(_value))
        for k, v in _params.items():
            k = self._convert_string_type(k)
            if v is None:
                parts.append(k.replace('_', '-'))
            else:
                v = self._convert_string_type(v)
                parts.append(_formatparam(k.replace('_', '-'), v))
        self._headers.append((check_header_name(_name), check_header_value("; ".join(parts))))

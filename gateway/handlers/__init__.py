"""Base classes for server/gateway implementations (the ``wsgiref.handlers`` API).

The CGI handlers run one request per process; the FastCGI server in
``gateway.handlers.fastcgi`` serves many through the same BaseHandler.
"""

from ..headers import Headers
from ..util import FileWrapper, guess_scheme, is_hop_by_hop
from .base import BaseHandler, SimpleHandler, format_date_time
from .cgi import BaseCGIHandler, CGIHandler, IISCGIHandler
from .environ import read_environ

__all__ = [
    'BaseHandler', 'SimpleHandler', 'BaseCGIHandler', 'CGIHandler',
    'IISCGIHandler', 'read_environ',
]

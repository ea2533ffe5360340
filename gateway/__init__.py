"""WSGI over CGI and FastCGI: a drop-in, improved wsgiref."""

__version__ = "0.1.0"

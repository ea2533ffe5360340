"""support.fcgi_client under its old name, for webservers.py (which is
becoming support/webservers.py elsewhere, and then imports it from there)."""

from support.fcgi_client import *  # noqa: F401,F403
from support.fcgi_client import ServerProcess, server_env  # noqa: F401

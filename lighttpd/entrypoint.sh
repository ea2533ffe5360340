#!/bin/sh
# Run lighttpd in the foreground, unprivileged, as this container's main
# process: the application at /app, served by the gateway's FastCGI server,
# which lighttpd starts with its listening socket on fd 0
# (GATEWAY_FRONT=lighttpd-fastcgi; lighttpd/app-fastcgi.conf).
#
#   GATEWAY_APP, PYTHONPATH  the application, passed on to the gateway
#
# Arguments are passed to lighttpd; with -t or -tt only the configuration
# is checked.
set -eu
# The socket directory, on the /tmp tmpfs.
mkdir -p /tmp/lighttpd
exec lighttpd -D -f /etc/lighttpd/gateway/lighttpd.conf "$@"

#!/bin/sh
# Run HAProxy in the foreground, unprivileged, as this container's main
# process: the application at /app, served by the gateway's FastCGI server
# in another container (GATEWAY_FRONT=haproxy-fastcgi; haproxy/haproxy.cfg).
#
#   GATEWAY_FASTCGI  the FastCGI server's address: unix:PATH or HOST:PORT
#                    (default unix:/run/gateway/fastcgi.sock)
#
# Arguments are passed to haproxy; with -c only the configuration is checked.
set -eu

die() {
    echo "gateway-haproxy: $*" >&2
    exit 2
}

# HAProxy's name for the server: a unix socket is an absolute path.
address=${GATEWAY_FASTCGI:-unix:/run/gateway/fastcgi.sock}
case $address in
    *[!A-Za-z0-9._:/\[\]-]*) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
    unix:*) GATEWAY_FASTCGI_ADDRESS=${address#unix:} ;;
    *) GATEWAY_FASTCGI_ADDRESS=$address ;;
esac
export GATEWAY_FASTCGI_ADDRESS
exec haproxy -db -f /etc/haproxy/gateway/haproxy.cfg "$@"

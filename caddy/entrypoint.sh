#!/bin/sh
# Run Caddy in the foreground, unprivileged, as this container's main
# process: the application at /app, served by the gateway's FastCGI server
# in another container (GATEWAY_FRONT=caddy-fastcgi; caddy/Caddyfile).
#
#   GATEWAY_FASTCGI  the FastCGI server's address: unix:PATH or HOST:PORT
#                    (default unix:/run/gateway/fastcgi.sock)
#
# With -t, only the configuration is checked (caddy validate).
set -eu

die() {
    echo "gateway-caddy: $*" >&2
    exit 2
}

address=${GATEWAY_FASTCGI:-unix:/run/gateway/fastcgi.sock}
case $address in
    *[!A-Za-z0-9._:/\[\]-]*) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
    unix:*) GATEWAY_FASTCGI_ADDRESS="unix/${address#unix:}" ;;
    *) GATEWAY_FASTCGI_ADDRESS=$address ;;
esac
export GATEWAY_FASTCGI_ADDRESS
# Caddy's storage and its copy of the loaded configuration, on the tmpfs.
export XDG_DATA_HOME=/tmp/caddy XDG_CONFIG_HOME=/tmp/caddy
mkdir -p /tmp/caddy

config=/etc/caddy/gateway/Caddyfile
if [ "${1:-}" = -t ]; then
    exec caddy validate --config "$config" --adapter caddyfile
fi
exec caddy run --config "$config" --adapter caddyfile "$@"

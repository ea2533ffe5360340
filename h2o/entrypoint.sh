#!/bin/sh
# Run h2o in the foreground, unprivileged, as this container's main process:
# the application at /app, served by the gateway's FastCGI server in another
# container, run with --script-name /app (GATEWAY_FRONT=h2o-fastcgi;
# h2o/h2o.conf).
#
#   GATEWAY_FASTCGI  the FastCGI server's address: unix:PATH or HOST:PORT
#                    (default: h2o.conf's, unix:/run/gateway/fastcgi.sock)
#
# Arguments are passed to h2o; with -t only the configuration is checked.
set -eu

die() {
    echo "gateway-h2o: $*" >&2
    exit 2
}

# h2o reads no environment variables: the configuration goes to /tmp/h2o
# with the address in its fastcgi.connect line.
run=/tmp/h2o
mkdir -p "$run"
address=${GATEWAY_FASTCGI:-}
case $address in
    *[!A-Za-z0-9._:/\[\]-]*) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
    '') connect='' ;;
    unix:*) connect="{port: ${address#unix:}, type: unix}" ;;
    *:*) connect="{host: ${address%:*}, port: ${address##*:}, type: tcp}" ;;
    *) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
esac
if [ -n "$connect" ]; then
    sed "s|^\([[:space:]]*fastcgi.connect:\).*|\1 $connect|" /etc/h2o/gateway/h2o.conf > "$run/h2o.conf"
else
    cp /etc/h2o/gateway/h2o.conf "$run/h2o.conf"
fi
exec h2o -c "$run/h2o.conf" "$@"

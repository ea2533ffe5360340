#!/bin/sh
# Start fcgiwrap (CGI for nginx) on a unix socket, then run nginx in the
# foreground as this container's main process. Runs unprivileged.
set -eu

socket=${FCGIWRAP_SOCKET:-/tmp/fcgiwrap.sock}
mkdir -p "${socket%/*}"
rm -f "$socket"
fcgiwrap -s "unix:$socket" -c "${FCGIWRAP_CHILDREN:-2}" &

# nginx may take requests at once: wait (up to 5 s) for the socket to appear.
i=0
while [ ! -S "$socket" ] && [ "$i" -lt 50 ]; do
    kill -0 "$!" 2>/dev/null || { echo "gateway-nginx: fcgiwrap exited" >&2; exit 1; }
    sleep 0.1
    i=$((i + 1))
done
[ -S "$socket" ] || { echo "gateway-nginx: fcgiwrap did not create $socket" >&2; exit 1; }

exec nginx -e stderr "$@"

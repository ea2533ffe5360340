#!/bin/sh
# Run nginx in the foreground, unprivileged, as this container's main process,
# serving the application at /app one of two ways:
#
#   GATEWAY_FRONT=nginx-cgi      (default) the gateway as a CGI program, run by
#                                fcgiwrap (started here) for every request
#   GATEWAY_FRONT=nginx-fastcgi  the gateway's FastCGI server, in another
#                                container, at GATEWAY_FASTCGI
#   GATEWAY_FRONT=nginx-fastcgi-replicas
#                                replicas of that server, at every address
#                                the name in GATEWAY_FASTCGI resolves to,
#                                asked again every 2 s (replicas-site.conf)
#
#   GATEWAY_FASTCGI  the FastCGI server's address as nginx writes it:
#                    unix:PATH or HOST:PORT (default: fastcgi-site.conf's,
#                    unix:/run/gateway/fastcgi.sock; nginx-fastcgi-replicas
#                    needs a HOST:PORT)
#   GATEWAY_RESOLVER  the DNS server nginx-fastcgi-replicas asks (default
#                    127.0.0.11, Docker's on user-defined networks)
#   FCGIWRAP_CHILDREN  CGI requests served at once (default 4)
#
# Arguments are passed to nginx; with -t or -T only the configuration is
# checked.
set -eu

sites=/etc/nginx/gateway
run=/tmp/nginx
front=${GATEWAY_FRONT:-nginx-cgi}

die() {
    echo "gateway-nginx: $*" >&2
    exit 2
}

case $front in
    nginx-cgi) site=$sites/cgi-site.conf ;;
    nginx-fastcgi) site=$sites/fastcgi-site.conf ;;
    nginx-fastcgi-replicas) site=$sites/replicas-site.conf ;;
    *) die "GATEWAY_FRONT=$front: expected nginx-cgi, nginx-fastcgi or nginx-fastcgi-replicas" ;;
esac

# The site goes where nginx.conf includes it, with GATEWAY_FASTCGI as the
# address of the upstream's server.
mkdir -p "$run"
address=${GATEWAY_FASTCGI:-}
case $address in
    *[!A-Za-z0-9._:/\[\]-]*) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
esac
if [ "$front" = nginx-fastcgi-replicas ]; then
    resolver=${GATEWAY_RESOLVER:-127.0.0.11}
    case $address in
        unix:*|'') die "GATEWAY_FASTCGI=$address: nginx-fastcgi-replicas expects HOST:PORT" ;;
    esac
    case $resolver in
        ''|*[!A-Za-z0-9.:\[\]]*) die "GATEWAY_RESOLVER=$resolver: expected an address" ;;
    esac
    sed -e "s|@FASTCGI@|$address|" -e "s|@RESOLVER@|$resolver|" "$site" > "$run/site.conf"
    # The application's location, passing to the name in the variable.
    sed 's|fastcgi_pass gateway_fastcgi;|fastcgi_pass $gateway_fastcgi;|' \
        "$sites/app-fastcgi.conf" > "$run/app-fastcgi.conf"
elif [ -n "$address" ]; then
    sed "/^upstream gateway_fastcgi/,/}/ s|^\([[:space:]]*server[[:space:]]\{1,\}\)[^;[:space:]]*|\1$address|" \
        "$site" > "$run/site.conf"
else
    cp "$site" "$run/site.conf"
fi

for argument in "$@"; do
    case $argument in -t|-T) exec nginx -e stderr "$@" ;; esac
done

if [ "$front" = nginx-cgi ]; then
    socket=/tmp/fcgiwrap.sock
    rm -f "$socket"
    # -p: fcgiwrap runs the gateway and no other program.
    fcgiwrap -s "unix:$socket" -c "${FCGIWRAP_CHILDREN:-4}" -p "$GATEWAY_CGI" &
    # nginx may take requests at once: wait (up to 5 s) for the socket.
    i=0
    while [ ! -S "$socket" ] && [ "$i" -lt 50 ]; do
        kill -0 "$!" 2>/dev/null || die "fcgiwrap exited"
        sleep 0.1
        i=$((i + 1))
    done
    [ -S "$socket" ] || die "fcgiwrap did not create $socket"
fi

exec nginx -e stderr "$@"

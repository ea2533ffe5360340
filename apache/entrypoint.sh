#!/bin/sh
# Run Apache httpd in the foreground, unprivileged, as this container's main
# process, serving the application at /app one of three ways:
#
#   GATEWAY_FRONT=apache-cgi         (default) the gateway as a CGI program
#                                    (ScriptAlias, mod_cgid): cgi.conf
#   GATEWAY_FRONT=apache-proxy-fcgi  the gateway's FastCGI server, in another
#                                    container, at GATEWAY_FASTCGI
#                                    (mod_proxy_fcgi): proxy-fcgi.conf
#   GATEWAY_FRONT=apache-fcgid       the gateway's FastCGI server, started by
#                                    Apache (mod_fcgid): fcgid.conf
#
#   GATEWAY_FASTCGI  the FastCGI server's address: unix:PATH or HOST:PORT
#                    (default unix:/run/gateway/fastcgi.sock)
#
# Arguments are passed to apache2 (e.g. -t to check the configuration).
# Debian's envvars gives the run, lock and log directories; the run and lock
# directories live under /run, which may be a fresh tmpfs.
set -e
# shellcheck source=/dev/null
. /etc/apache2/envvars  # not "set -u" clean
set -u

die() {
    echo "gateway-apache: $*" >&2
    exit 2
}

# The front's configuration is included when Apache is started with -D NAME
# (see gateway.conf).
export GATEWAY_FRONT="${GATEWAY_FRONT:-apache-cgi}"
case $GATEWAY_FRONT in
    apache-cgi) front=GATEWAY_CGI ;;
    apache-proxy-fcgi) front=GATEWAY_PROXY_FCGI ;;
    apache-fcgid) front=GATEWAY_FCGID ;;
    *) die "GATEWAY_FRONT=$GATEWAY_FRONT: expected apache-cgi, apache-proxy-fcgi or apache-fcgid" ;;
esac

# mod_proxy's name for the FastCGI server.
address=${GATEWAY_FASTCGI:-unix:/run/gateway/fastcgi.sock}
case $address in
    *[!A-Za-z0-9._:/\[\]-]*) die "GATEWAY_FASTCGI=$address: expected unix:PATH or HOST:PORT" ;;
    unix:*) GATEWAY_FASTCGI_URL="$address|fcgi://localhost" ;;
    *) GATEWAY_FASTCGI_URL="fcgi://$address" ;;
esac
export GATEWAY_FASTCGI_URL
# cgi.conf passes PYTHONPATH on, fcgid.conf sets it: Apache would keep an
# unset ${PYTHONPATH} as it is written.
export PYTHONPATH="${PYTHONPATH:-}"

# mod_cgid's ScriptSock is ${APACHE_RUN_DIR}/socks/cgisock (Debian's cgid.conf).
# The lock directory is under /var/lock, a link to /run/lock, missing on a
# fresh tmpfs: create the link's target.
mkdir -p "$APACHE_RUN_DIR/socks" "$(readlink -m "$APACHE_LOCK_DIR")"
rm -f "$APACHE_PID_FILE" "$APACHE_RUN_DIR"/socks/cgisock*

exec apache2 -DFOREGROUND -D "$front" "$@"

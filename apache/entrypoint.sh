#!/bin/sh
# Run Apache httpd in the foreground, unprivileged, as this container's main
# process. Debian's envvars gives the run, lock and log directories; the run
# and lock directories live under /run, which may be a fresh tmpfs.
set -e
# shellcheck source=/dev/null
. /etc/apache2/envvars  # not "set -u" clean
set -u
# mod_cgid's ScriptSock is ${APACHE_RUN_DIR}/socks/cgisock (Debian's cgid.conf).
mkdir -p "$APACHE_RUN_DIR/socks" "$APACHE_LOCK_DIR"
rm -f "$APACHE_PID_FILE" "$APACHE_RUN_DIR"/socks/cgisock*

exec apache2 -DFOREGROUND "$@"

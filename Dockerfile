# Images of the gateway appliance, one target per role:
#
#   docker build --target app    -t gateway-app .     # FastCGI server (port 9000)
#   docker build --target nginx  -t gateway-nginx .   # nginx + fcgiwrap (port 8080)
#   docker build --target apache -t gateway-apache .  # Apache mod_cgid/proxy_fcgi/fcgid (port 8080)
#   docker build --target fronts -t gateway-fronts .  # lighttpd, HAProxy, Caddy, h2o (port 8080)
#   docker build --target base   -t gateway-base .    # python3 + the gateway package
#
# Each web-server image serves the application at /app through the front
# GATEWAY_FRONT names (nginx-cgi, nginx-fastcgi, nginx-fastcgi-replicas; apache-cgi, apache-proxy-fcgi,
# apache-fcgid; lighttpd-fastcgi, haproxy-fastcgi, caddy-fastcgi,
# h2o-fastcgi); docker-compose.yml runs three of them together. Everything runs as an
# unprivileged user, on a read-only root file system if wanted (tmpfs on /run
# and /tmp). The base image is the official debian:bookworm-slim; where no
# registry can be reached, scripts/build-base-image builds an equivalent image
# locally under the same name.
#
# Layer order keeps rebuilds cheap: the Debian packages of every image are
# installed before the gateway package is copied in, so editing the Python
# code rebuilds only the last layers.
ARG BASE_IMAGE=debian:bookworm-slim

# --- python: Debian's python3 and the users ----------------------------------
FROM ${BASE_IMAGE} AS python
ARG DEBIAN_FRONTEND=noninteractive
# GATEWAY_APP: the WSGI application served, MODULE:CALLABLE (by default the
# demo); GATEWAY_CGI: the gateway program, for web servers running it as CGI.
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_APP=gateway.demo:application \
    GATEWAY_CGI=/usr/local/bin/gateway

# The package has no dependencies: it is copied to /opt/gateway rather than
# installed with pip, so building needs no Python package index. A .pth file
# puts it on the path of every python3 process, CGI scripts included (a web
# server passes them no PYTHONPATH); the "gateway" command is the script pip
# would have generated. The web servers' user (www-data) is in the
# gateway group, so a unix socket shared through a volume mounted on
# /run/gateway can be group-owned and closed to everyone else (USER names no
# group below: with one, Docker drops supplementary groups). An empty volume
# takes the owner and mode of the directory it is mounted on: the group may
# reach the socket but not write in the directory. Every image works in
# /opt/gateway, which no run-time user can write: a process's working
# directory is on its sys.path (python3 -c, python3 -m, the health checks),
# and a module written there would be imported in place of the real one.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 gateway \
    && useradd --uid 10001 --gid gateway --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin gateway \
    && usermod --append --groups gateway www-data \
    && install -d -o gateway -g gateway -m 2750 /run/gateway \
    && echo /opt/gateway \
        > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/gateway.pth" \
    && printf '%s\n' '#!/usr/bin/python3' 'import sys' 'from gateway.cli import main' \
        'sys.exit(main())' > "$GATEWAY_CGI" \
    && chmod 0755 "$GATEWAY_CGI"

# --- package: the gateway package, byte-compiled -----------------------------
# Compiled at build time: the run-time users cannot write __pycache__ there,
# and a CGI process would otherwise pay the compile cost on every request.
FROM python AS package
COPY gateway/ /opt/gateway/gateway/
RUN python3 -m compileall -q /opt/gateway \
    && python3 -c 'import gateway; print("gateway", gateway.__version__)'

# --- base: python3 with the gateway package ----------------------------------
FROM python AS base
COPY --from=package /opt/gateway /opt/gateway
USER gateway
WORKDIR /opt/gateway
CMD ["python3", "-c", "import gateway; print(gateway.__file__)"]

# --- app: the FastCGI server --------------------------------------------------
# Listens on TCP port 9000 on every interface, which the server refuses to do
# without being told who may connect: FCGI_WEB_SERVER_ADDRS names the ranges
# Docker gives container networks by default (172.17.0.0/16 and the rest of
# 172.16.0.0/12, 192.168.0.0/16; 10.0.0.0/8 for swarm overlays; IPv6 unique
# local), and the loopback address the health check connects from. Narrow it
# to the web server's network (docker network inspect: Subnet), e.g.
# -e FCGI_WEB_SERVER_ADDRS=172.18.0.0/16, and never publish the port beyond
# the host: Docker's port proxy connects from the network's gateway, inside
# these ranges. docker-compose.yml runs the server on a unix socket instead
# (gateway fastcgi --bind unix:/run/gateway/fastcgi.sock --unix-mode 660),
# where the socket's permissions decide.
# The health check sends a FastCGI request for the ping path, which the
# server answers itself (GATEWAY_PING_PATH): healthy means "answers FastCGI".
FROM base AS app
ENV FCGI_WEB_SERVER_ADDRS=172.16.0.0/12,192.168.0.0/16,10.0.0.0/8,fd00::/8,127.0.0.1 \
    GATEWAY_PING_PATH=/ping GATEWAY_STATUS_PATH=/status
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["gateway", "request", "127.0.0.1:9000", "/ping", "--quiet", "--timeout", "2"]
# The fronts' body limit, which Apache does not apply to a chunked body it
# passes to mod_proxy_fcgi.
CMD ["python3", "-m", "gateway", "fastcgi", "--bind", "0.0.0.0:9000", "--max-body-size", "10M"]

# --- web: what both web-server images share -----------------------------------
FROM python AS web
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# --- nginx: nginx, with fcgiwrap for CGI -------------------------------------
FROM web AS nginx
ARG DEBIAN_FRONTEND=noninteractive
STOPSIGNAL SIGQUIT
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx fcgiwrap \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /var/log/nginx/* \
    && ln -s /dev/stderr /var/log/nginx/error.log \
    && ln -s /dev/stdout /var/log/nginx/access.log
COPY nginx/nginx.conf /etc/nginx/nginx.conf
COPY nginx/app-fastcgi.conf nginx/fastcgi-site.conf nginx/replicas-site.conf \
    nginx/cgi-site.conf nginx/health.conf /etc/nginx/gateway/
COPY nginx/entrypoint.sh /usr/local/bin/gateway-nginx
# The configuration tests run as root and leave the pid file, temporary
# directories and the chosen site in /tmp/nginx: remove them, the
# unprivileged nginx creates its own.
RUN chmod 0755 /usr/local/bin/gateway-nginx \
    && for front in nginx-cgi nginx-fastcgi; do \
        GATEWAY_FRONT=$front gateway-nginx -t -q || exit 1; done \
    && GATEWAY_FRONT=nginx-fastcgi-replicas GATEWAY_FASTCGI=app:9000 gateway-nginx -t -q \
    && rm -rf /tmp/nginx
COPY --from=package /opt/gateway /opt/gateway
ENV GATEWAY_FRONT=nginx-cgi
USER www-data
WORKDIR /opt/gateway
CMD ["gateway-nginx"]

# --- apache: Apache httpd with mod_cgid, mod_proxy_fcgi and mod_fcgid ---------
FROM web AS apache
ARG DEBIAN_FRONTEND=noninteractive
STOPSIGNAL SIGWINCH
RUN apt-get update \
    && apt-get install -y --no-install-recommends apache2 libapache2-mod-fcgid \
    && rm -rf /var/lib/apt/lists/* /var/log/apache2/* /var/www/html/* \
    && echo ok > /var/www/html/healthz \
    && install -d -o www-data -g www-data /run/apache2 /run/apache2/socks /run/lock/apache2 \
    && a2dismod -f autoindex status \
    && a2enmod cgid proxy_fcgi headers \
    && a2disconf other-vhosts-access-log serve-cgi-bin \
    && a2dissite 000-default \
    && : > /etc/apache2/ports.conf \
    && ln -s /dev/stderr /var/log/apache2/error.log \
    && ln -s /dev/stdout /var/log/apache2/access.log
COPY apache/gateway.conf /etc/apache2/sites-available/gateway.conf
COPY apache/cgi.conf apache/proxy-fcgi.conf apache/fcgid.conf /etc/apache2/gateway/
COPY apache/entrypoint.sh /usr/local/bin/gateway-apache
RUN chmod 0755 /usr/local/bin/gateway-apache \
    && a2ensite gateway \
    && for front in apache-cgi apache-proxy-fcgi apache-fcgid; do \
        GATEWAY_FRONT=$front gateway-apache -t || exit 1; done
COPY --from=package /opt/gateway /opt/gateway
ENV GATEWAY_FRONT=apache-cgi
USER www-data
WORKDIR /opt/gateway
CMD ["gateway-apache"]

# --- fronts: lighttpd, HAProxy, Caddy and h2o, one chosen at start ------------
# GATEWAY_FRONT names the web server and so the entrypoint that runs it:
#   lighttpd-fastcgi  lighttpd starts the gateway's FastCGI server itself
#                     (bin-path), its listening socket on fd 0
#   haproxy-fastcgi   HAProxy's fcgi-app, to the server at GATEWAY_FASTCGI
#   caddy-fastcgi     Caddy's reverse_proxy with its FastCGI transport
#   h2o-fastcgi       h2o's fastcgi.connect (the server needs --script-name /app)
# Each writes only under /tmp (a tmpfs) and runs as www-data, a member of
# the gateway group, like the nginx and Apache images.
FROM web AS fronts
ARG DEBIAN_FRONTEND=noninteractive
# Each entrypoint execs its server, which gets "docker stop"'s SIGTERM
# directly (HAProxy then stops at once; SIGUSR1 would drain connections).
RUN apt-get update \
    && apt-get install -y --no-install-recommends lighttpd lighttpd-modules-lua haproxy \
        caddy h2o \
    && rm -rf /var/lib/apt/lists/* /var/www/html/* \
    && echo ok > /var/www/html/healthz
COPY lighttpd/lighttpd.conf lighttpd/app-fastcgi.conf lighttpd/underscores.lua \
    /etc/lighttpd/gateway/
COPY haproxy/haproxy.cfg /etc/haproxy/gateway/
COPY caddy/Caddyfile caddy/app-fastcgi.caddy /etc/caddy/gateway/
COPY h2o/h2o.conf /etc/h2o/gateway/
COPY lighttpd/entrypoint.sh /usr/local/bin/gateway-lighttpd
COPY haproxy/entrypoint.sh /usr/local/bin/gateway-haproxy
COPY caddy/entrypoint.sh /usr/local/bin/gateway-caddy
COPY h2o/entrypoint.sh /usr/local/bin/gateway-h2o
# The configuration checks run as root and leave their run directories in
# /tmp: remove them, the unprivileged servers create their own.
RUN chmod 0755 /usr/local/bin/gateway-lighttpd /usr/local/bin/gateway-haproxy \
        /usr/local/bin/gateway-caddy /usr/local/bin/gateway-h2o \
    && gateway-lighttpd -tt \
    && gateway-haproxy -c -q \
    && gateway-caddy -t \
    && gateway-h2o -t \
    && rm -rf /tmp/lighttpd /tmp/caddy /tmp/h2o
COPY --from=package /opt/gateway /opt/gateway
ENV GATEWAY_FRONT=lighttpd-fastcgi
USER www-data
WORKDIR /opt/gateway
# gateway-lighttpd for lighttpd-fastcgi, and so on.
CMD ["/bin/sh", "-c", "exec \"gateway-${GATEWAY_FRONT%%-*}\""]

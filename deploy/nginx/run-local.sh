#!/usr/bin/env bash
# Runs specula.conf unprivileged on one machine, to try it or test it: nginx (Debian's) in the
# foreground on 127.0.0.1:PORT in front of replicas on 127.0.0.1:REPLICA_PORT..., with every path
# under DIR. One process (master_process off), so killing it stops all of nginx.
#   bash deploy/nginx/run-local.sh DIR PORT REPLICA_PORT [REPLICA_PORT ...]
set -euo pipefail
n="$1"
port="$2"
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
die() {
  echo "run-local.sh: $*" >&2
  exit 1
}

mkdir -p "$n/snippets" "$n/tmp"
grep -q '^    listen 8000;$' "$here/specula.conf" || die "specula.conf: no 'listen 8000;' line"
sed "s/^    listen 8000;$/    listen 127.0.0.1:$port;/" "$here/specula.conf" >"$n/specula.conf"
grep -q '^server ' "$here/specula-replicas.conf" || die "specula-replicas.conf: no server line"
{
  sed '/^server /d' "$here/specula-replicas.conf"
  for p in "$@"; do echo "server 127.0.0.1:$p max_fails=3 fail_timeout=10s;"; done
} >"$n/snippets/specula-replicas.conf"
# Debian's nginx.conf reduced to what specula.conf needs.
cat >"$n/nginx.conf" <<CONF
master_process off;
daemon off;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 1024; }
http {
  access_log $n/access.log;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  include specula.conf;
}
CONF
"$nginx_bin" -e stderr -p "$n" -c "$n/nginx.conf" -t 2>"$n/check.log" || {
  cat "$n/check.log" >&2
  die "nginx -t refused the configuration"
}
exec "$nginx_bin" -e "$n/error.log" -p "$n" -c "$n/nginx.conf"

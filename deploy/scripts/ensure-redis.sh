#!/usr/bin/env bash
# Make sure Redis answers on REDIS_URL (default redis://127.0.0.1:6379/0).
# When it does not and the URL is local: start redis-server, installing Debian's package
# first when it is missing and we are root. Otherwise say clearly what to do.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
python="${PYTHON:-.venv/bin/python}"

ping() {
  "$python" - "$url" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
PY
}

ping && { echo "redis: answering on $url"; exit 0; }

hostport=$("$python" -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$url")
read -r host port <<<"$hostport"
case "$host" in 127.*|localhost|::1) ;; *)
  echo "redis: $url does not answer, and it is not on this machine: start it there." >&2; exit 1;;
esac

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis: installing Debian's redis-server package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis: redis-server is not installed. Install it (e.g. 'sudo apt-get install redis-server'" >&2
    echo "       or 'brew install redis'), or point REDIS_URL at a running Redis." >&2
    exit 1
  fi
fi

mkdir -p var
echo "redis: starting redis-server on $host:$port"
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
  --dir "$PWD/var" --logfile "$PWD/var/redis.log"
for _ in $(seq 1 50); do ping && { echo "redis: answering on $url"; exit 0; }; sleep 0.1; done
echo "redis: started but not answering on $url; see var/redis.log" >&2
exit 1

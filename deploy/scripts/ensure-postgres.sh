#!/usr/bin/env bash
# Make sure PostgreSQL answers at TEST_DATABASE_URL (default: postgres@127.0.0.1:5432/test).
# When it does not and it is local: start the installed cluster, or (as root on Debian)
# install PostgreSQL, trust loopback connections (a development machine only), and create
# the database.
set -euo pipefail
url="${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
python="${PYTHON:-.venv/bin/python}"

probe() {
  "$python" - "$url" <<'PY' >/dev/null 2>&1
import sys, psycopg
url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://")
psycopg.connect(url, connect_timeout=2).close()
PY
}

probe && { echo "postgres: answering"; exit 0; }

start_cluster() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || return 1
  echo "postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres: installing Debian's postgresql package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "postgres: PostgreSQL is not installed and not reachable at $url." >&2
    echo "          Install it (e.g. 'sudo apt-get install postgresql') or set TEST_DATABASE_URL." >&2
    exit 1
  fi
fi
start_cluster

if [ "$(id -u)" = 0 ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "jobyard-dev-trust" "$hba"; then
    echo "postgres: trusting loopback connections for development ($hba)"
    sed -i '1i host all all 127.0.0.1/32 trust # jobyard-dev-trust\nhost all all ::1/128 trust # jobyard-dev-trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  fi
  for _ in $(seq 1 50); do su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break; sleep 0.2; done
  db=$("$python" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).path.lstrip("/") or "postgres")' "$url")
  su postgres -c "psql -qtAc \"select 1 from pg_database where datname='$db'\"" | grep -q 1 \
    || su postgres -c "createdb '$db'"
fi

for _ in $(seq 1 50); do probe && { echo "postgres: answering"; exit 0; }; sleep 0.2; done
echo "postgres: not answering at $url" >&2
exit 1

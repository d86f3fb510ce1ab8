#!/usr/bin/env bash
# `make up`: make sure Redis answers, migrate, seed the demo tenant, then run the Procfile
# (API, worker, dispatcher, webhook sender, beat, Flower) in the foreground. SQLite under var/ unless DATABASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p var
export PATH="$PWD/.venv/bin:$PATH"
export PYTHON="$PWD/.venv/bin/python"

# Local settings, generated once. Variables already in the environment win.
if [ ! -f var/jobyard.env ]; then
  secret=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
  flower_password=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(12))')
  cat > var/jobyard.env <<ENV
# Local settings written by 'make up' (delete to regenerate). The environment overrides them.
export SECRET_KEY="\${SECRET_KEY:-$secret}"
export JOBYARD_SIMULATE="\${JOBYARD_SIMULATE:-true}"
export FLOWER_USER="\${FLOWER_USER:-admin}"
export FLOWER_PASSWORD="\${FLOWER_PASSWORD:-$flower_password}"
ENV
  chmod 600 var/jobyard.env
fi
# shellcheck disable=SC1091
. var/jobyard.env
export PORT="${PORT:-5000}"
# Logs for eyes: honcho interleaves every process's lines, and a JSON object per line is
# for a log collector (the default, and what deploy/ runs). JOBYARD_LOG_FORMAT=json here
# shows what production writes.
export JOBYARD_LOG_FORMAT="${JOBYARD_LOG_FORMAT:-text}"
# On a laptop the sources and webhook receivers are local: allow private addresses (the
# KB demo's orders_db is a SQLite file under var/). Production leaves this off.
export JOBYARD_ALLOW_PRIVATE_URLS="${JOBYARD_ALLOW_PRIVATE_URLS:-true}"
# One execution-worker process per core (each holds up to JOBYARD_WORKER_CAPACITY
# executions in flight on its own event loop): Python runs one thread at a time per process, so cores need processes.
WORKER_PROCESSES="${WORKER_PROCESSES:-$(nproc 2>/dev/null || echo 2)}"

# Metrics: the worker and dispatcher processes of this machine share one multiprocess
# directory (emptied here: a new run starts its counters at zero), and the first of them
# serves the sum on 127.0.0.1:9101. gunicorn keeps its own (deploy/gunicorn.conf.py);
# Flower's metrics are its own (the Procfile unsets the variable for it).
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/metrics/workers"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

deploy/scripts/ensure-redis.sh
jobyard migrate
jobyard seed-demo >/dev/null

cat <<MSG

  jobyard is starting (Ctrl-C stops everything)
    API        http://127.0.0.1:$PORT        docs: http://127.0.0.1:$PORT/docs
               and http://127.0.0.1:${SMARTDB_PORT:-8000} (the Smart DB seed's address; its /docs are Smart DB's)
    Flower     http://127.0.0.1:${FLOWER_PORT:-5555}        user $FLOWER_USER, password in var/jobyard.env
    Metrics    http://127.0.0.1:${JOBYARD_METRICS_PORT:-9100}/metrics (API)  http://127.0.0.1:${JOBYARD_WORKER_METRICS_PORT:-9101}/metrics (workers)
    Demo       credentials in var/demo.env  ('source var/demo.env', then the README's Quickstart)
    CLI        'source .venv/bin/activate' puts jobyard on PATH (e.g. jobyard watch JOB_ID)
    Database   ${DATABASE_URL:-SQLite at var/jobyard.db}
    Workers    $WORKER_PROCESSES execution-worker processes (WORKER_PROCESSES), one per core
    Simulated AI provider: ${JOBYARD_SIMULATE}

MSG
exec honcho --procfile Procfile --app-root "$PWD" start --concurrency "worker=$WORKER_PROCESSES"

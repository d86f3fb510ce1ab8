"""Gunicorn settings for the API (the Procfile's ``web`` line and the container image).

Everything an operator may need to change comes from the environment, so the same file
serves ``make up`` on a laptop, docker compose and Kubernetes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

# Metrics in multiprocess mode: gunicorn forks its workers, and each writes its own files
# into one directory that /metrics sums. prometheus_client reads PROMETHEUS_MULTIPROC_DIR
# when first imported (in the forked workers: this file never imports it at module
# level), so it is set here, before any fork, to the API's own directory — never one
# inherited from the environment, which may be the workers' (make up). API_METRICS_DIR
# names it; by default a fresh one per gunicorn, on tmpfs when there is one.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ.get("API_METRICS_DIR") or tempfile.mkdtemp(
    prefix="jobyard-api-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
)

from shared.settings import get_settings


def _cpu_count() -> int:
    # The CPUs this process may run on (a cpuset-limited container sees fewer than the host).
    # A CFS quota (docker --cpus, Kubernetes limits) is not visible here: set WEB_CONCURRENCY.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Loopback by default: on a developer machine the API must not be reachable from the
# network. Gunicorn's own default with PORT set would be 0.0.0.0, which we do not want.
# Containers set BIND=0.0.0.0:5000 so the published port / Service can reach it.
#
# Locally the whole API also answers on 127.0.0.1:8000 (SMARTDB_PORT; empty to turn it
# off): that is the address the Smart DB seed's curl, requests and fetch examples call.
bind = [os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '5000')}"]
_smartdb_port = get_settings().smartdb_port
if not os.environ.get("BIND") and _smartdb_port and str(_smartdb_port) != os.environ.get("PORT"):
    bind.append(f"127.0.0.1:{_smartdb_port}")

# The metrics listener: the app answers /metrics here and nothing else, and /metrics
# nowhere else (api/metrics.py); its port must be JOBYARD_METRICS_PORT (9100; 0: none).
# Containers set METRICS_BIND=0.0.0.0:9100 so Prometheus can scrape the pod (the Service
# and the ingress do not route it). Without BIND (make up) it defaults to loopback; with
# BIND set and no METRICS_BIND there is none, so that gunicorns started side by side
# (tests, a second instance on a laptop) do not fight over one port.
_metrics_port = get_settings().metrics_port
if _metrics_port and (os.environ.get("METRICS_BIND") or not os.environ.get("BIND")):
    bind.append(os.environ.get("METRICS_BIND") or f"127.0.0.1:{_metrics_port}")

# Processes: one per core (at least two, so that one restarting never leaves none). A
# gevent process serves its connections concurrently on its own, so more processes than
# cores only add database pools: each keeps its own (up to 2 x JOBYARD_API_DB_POOL_SIZE
# connections), and PostgreSQL's max_connections is shared with every worker. Capped at
# 8: scale the API with more replicas instead.
workers = int(os.environ.get("WEB_CONCURRENCY") or min(max(_cpu_count(), 2), 8))

# The worker model: gevent (api/gunicorn_worker.py, gunicorn's gevent worker plus JSON
# for gunicorn's own errors). Each connection is a greenlet, and whatever would block
# (a socket read from a slow client, a wait on PostgreSQL, Redis or a lock) lets the
# process's other greenlets run: psycopg (3.1.14 and later) waits cooperatively once
# gevent has patched the standard library, redis-py and PyMySQL are pure Python on
# patched sockets. A client that sends its body slowly so holds one greenlet, not a
# thread; the app reads each body whole before any view runs, within deadlines
# (api/request_body.py: 408 beyond JOBYARD_REQUEST_BODY_TIMEOUT_SECONDS). Up to
# WORKER_CONNECTIONS connections per process at once; more wait in the listen backlog.
# Each request opens its own session; the SQLAlchemy pool (per process) makes greenlets
# queue for a connection when they are more than it holds.
worker_class = "api.gunicorn_worker.GeventWorker"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))

# A worker silent for this long is killed and replaced. Under gevent the worker's
# heartbeat runs between greenlets, so this fires when one call blocks the whole process
# (a C call that does not yield) for 30 s: a real hang, since the API does no long work
# (jobs run on Celery).
timeout = 30
# On SIGTERM, let in-flight requests finish; below the 30 s Kubernetes grace period (and
# compose's stop_grace_period) so gunicorn exits before being SIGKILLed.
graceful_timeout = 20
# Seconds an idle keep-alive connection stays open. Behind a load balancer, set it above
# the balancer's idle timeout (e.g. 65 behind a 60 s AWS ALB), or the balancer may reuse
# a connection gunicorn has just closed and answer 502. Under gevent it also bounds how
# long a request's line and headers may take to arrive (the connection is closed after
# it): so never 0, which would let a client send its headers forever.
keepalive = max(1, int(os.environ.get("GUNICORN_KEEPALIVE", "5")))

# The worker heartbeat file: on tmpfs when there is one, because an overlay or network
# filesystem can stall the heartbeat and get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Logs go to the process's streams (12-factor): access log to stdout, errors to stderr,
# for honcho, docker logs and the cluster's log collector. %(M)s is the duration in ms.
# The path without its query string (%(U)s, not the request line): a query may carry a
# stream token (GET /api/jobs/{id}/events?token=...), and logs are no place for one.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'

# JOBYARD_LOG_FORMAT=json (the default; shared/logs.py): every line one JSON object. The
# app logs each request itself, with the organisation and job ids (api/request_log.py), so
# gunicorn's access log is off; gunicorn's own lines (start, worker boots, timeouts) are
# JSON too, and the root logger is left to the app's handler (no line twice).
if get_settings().log_format == "json":
    accesslog = None
    _json_handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "formatters": {"json": {"()": "shared.logs.json_formatter"}},
        "handlers": {"error_console": _json_handler},
        "loggers": {
            "gunicorn.error": {"handlers": ["error_console"], "propagate": False},
            # A logging config turns gunicorn's access log on whatever accesslog says.
            "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }

# Request line and header limits. gunicorn parses these before the app sees the request.
# Its limits sit above the app's own (JOBYARD_MAX_URL_BYTES, JOBYARD_MAX_HEADER_BYTES,
# JOBYARD_MAX_HEADER_COUNT; api/request_limits.py), which answer 414 and 431 in the
# family's JSON envelope; beyond gunicorn's (a request line over 8190 bytes, its maximum,
# a header field over 1.5 x the app's limit or 1.5 x as many header lines) the worker
# class has the app answer the same 414 or 431 (api/gunicorn_worker.py). So a client
# meets the app's limits, in JSON, whatever the length. (limit_request_line = 0 would
# not do: gunicorn's Python parser, the one installed, then reads a request line of any
# length into memory.) The header buffer one connection may fill while gunicorn parses
# is about fields x field size: 150 x 12 KB, under 2 MB.
_limits = get_settings()
limit_request_line = 8190
limit_request_field_size = _limits.max_header_bytes * 3 // 2
limit_request_fields = min(_limits.max_header_count * 3 // 2, 32768)

# Proxies whose X-Forwarded-* headers are trusted (scheme, client address). Loopback
# only by default; set FORWARDED_ALLOW_IPS to the load balancer's addresses (or "*" when
# only the balancer can reach the pods).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def on_starting(server: Any) -> None:
    """A fresh start: no files left by an earlier gunicorn in the metrics directory
    (their counters would be added to this one's)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker died or was replaced: its live gauges go; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

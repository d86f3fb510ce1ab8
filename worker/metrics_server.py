"""The workers' metrics over HTTP: one process per host serves them.

Every ``celery worker`` process (executions workers and the dispatcher) tries to listen on
``JOBYARD_WORKER_METRICS_ADDRESS:JOBYARD_WORKER_METRICS_PORT`` (9101). The first one on a
host gets the port; the others keep trying every few seconds in a background thread, so
when the serving process exits, another takes over. With several processes on a host,
all of them write to ``PROMETHEUS_MULTIPROC_DIR`` and the serving one sums every file, the
exited processes' counters included. The queue depths, the backlog and the oldest
unclaimed execution's age are read at scrape time (:class:`shared.engine.backlog.BacklogCollector`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from prometheus_client import start_http_server

from shared import metrics
from shared.engine.backlog import BacklogCollector
from shared.settings import get_settings

log = logging.getLogger(__name__)

TAKEOVER_SECONDS = 5.0

_stop = threading.Event()
_server: Any = None


def start() -> None:
    """Serve the metrics if the port is free, else keep trying in the background."""
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    _stop.clear()
    if not _try_serve(settings.worker_metrics_address, settings.worker_metrics_port):
        thread = threading.Thread(
            target=_keep_trying,
            args=(settings.worker_metrics_address, settings.worker_metrics_port),
            name="jobyard-metrics-takeover",
            daemon=True,
        )
        thread.start()


def _try_serve(address: str, port: int) -> bool:
    global _server
    try:
        registry = metrics.registry_for_scrape(BacklogCollector())
        _server, _ = start_http_server(port, addr=address, registry=registry)
    except OSError:
        return False
    log.info("metrics: serving this host's worker metrics on %s:%d", address, port)
    return True


def _keep_trying(address: str, port: int) -> None:
    while not _stop.wait(TAKEOVER_SECONDS):
        if _try_serve(address, port):
            return


def stop() -> None:
    """Stop serving (the port is free for another process) and mark this process dead."""
    _stop.set()
    if _server is not None:
        _server.shutdown()
        _server.server_close()
    metrics.mark_process_dead(os.getpid())

"""The worker's heartbeat: its leases are good while it beats, and dispatch sizes the
broker's backlog from the capacity it registered (see shared.engine.workers)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError

from shared.db import connection_scope
from shared.engine import workers
from shared.models import utcnow
from shared.settings import get_settings

log = logging.getLogger(__name__)


class Heartbeat:
    """Registers the worker, beats every ``JOBYARD_HEARTBEAT_SECONDS``, unregisters."""

    def __init__(self, worker_id: str, capacity: int) -> None:
        self.worker_id = worker_id
        self.capacity = capacity  # executions in flight at most
        self.interval = get_settings().heartbeat_seconds
        self._stop = threading.Event()
        self._register()
        self._thread = threading.Thread(target=self._run, name="jobyard-heartbeat", daemon=True)
        self._thread.start()

    def _register(self) -> None:
        try:
            with connection_scope() as connection:
                workers.register(connection, self.worker_id, self.capacity, utcnow())
        except DBAPIError as exc:
            log.warning("heartbeat: could not register %s (%s); will retry", self.worker_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with connection_scope() as connection:
                    alive = workers.beat(connection, self.worker_id, utcnow())
                if not alive:
                    # Presumed dead (a long pause, a database outage): our leases were
                    # released and our late outcomes will not count. Start afresh.
                    log.warning(
                        "heartbeat: %s was presumed dead; registering again", self.worker_id
                    )
                    self._register()
            except Exception as exc:  # never let the thread die: a worker that stops
                # beating is presumed dead and its leases are taken back while it runs on
                log.warning("heartbeat: %s could not beat (%s)", self.worker_id, exc)

    def stop(self) -> None:
        self._stop.set()
        try:
            with connection_scope() as connection:
                workers.unregister(connection, self.worker_id)
        except DBAPIError:
            log.warning("heartbeat: could not unregister %s", self.worker_id)

"""Flower settings (``celery -A worker flower --conf=worker/flowerconfig.py``).

Tornado executes this file in Flower's process before the app is built, so it can also
fix what Flower leaves open: see :func:`_metrics_behind_auth`.
"""

from typing import Any

from shared.settings import get_settings

_settings = get_settings()

basic_auth = [f"{_settings.flower_user}:{_settings.flower_password}"]
address = "127.0.0.1"
port = _settings.flower_port  # FLOWER_PORT: this file wins over Flower's own variable
persistent = False
# The tasks page also shows each task's job (kwargs: job, organisation, job type, see
# shared/messaging/labels.py) and a group's tally (result); Flower's default hides both.
tasks_columns = "name,uuid,state,kwargs,result,received,runtime,worker"
purge_offline_workers = 300


def _metrics_behind_auth() -> None:
    """Flower's pages ask for the basic auth above, but its ``/metrics`` handler lacks
    tornado's ``@authenticated`` and answers anyone: wrap it so it asks too (a scraper
    sends the same credentials). ``/healthcheck`` stays open for liveness probes."""
    from flower.views.monitor import Metrics
    from tornado.web import authenticated

    get: Any = Metrics.get
    if not getattr(get, "jobyard_authenticated", False):
        wrapped: Any = authenticated(get)
        wrapped.jobyard_authenticated = True
        Metrics.get = wrapped


_metrics_behind_auth()

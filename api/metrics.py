"""Request metrics and the API's ``/metrics`` (see :mod:`shared.metrics`).

``/metrics`` is answered only on the metrics listener: a connection that reached
gunicorn's ``METRICS_BIND`` address (port ``JOBYARD_METRICS_PORT``, 9100), checked on the
accepted socket itself, which a client cannot forge as it can a Host header. On the
public port it is a 404, and the metrics listener answers nothing but ``/metrics``.
Why a port rather than a credential: Prometheus scrapes pods directly from inside the
cluster, the Service and the ingress never route that port, and a NetworkPolicy can
limit it to the monitoring namespace — no secret to hand to Prometheus and to rotate. The
metrics carry no tenant data (no organisation, no ids), only routes and counts.
"""

from __future__ import annotations

import time

from flask import Flask, Response, abort, g, request

from api.families import current_family
from shared import metrics
from shared.settings import get_settings

METRICS_PATH = "/metrics"


def on_metrics_listener() -> bool:
    """Whether this request came in on the metrics port (gunicorn's accepted socket)."""
    port = get_settings().metrics_port
    sock = request.environ.get("gunicorn.socket")
    if not port or sock is None:
        return False
    try:
        local = sock.getsockname()
    except OSError:
        return False
    return isinstance(local, tuple) and local[1] == port


def _family_name() -> str:
    family = current_family()
    return family.name if family is not None else "none"


def _before() -> None:
    g.metrics_started = time.perf_counter()
    metrics.current_family.set(_family_name())
    if on_metrics_listener() != (request.path == METRICS_PATH):
        abort(404)


def _after(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is None or request.path == METRICS_PATH:
        return response
    # The URL rule, not the path: ids would make a series per resource. Unmatched paths
    # (404s, scanners) share one label.
    rule = request.url_rule
    route = rule.rule if rule is not None else "<unmatched>"
    family = _family_name()
    status = response.status_code
    metrics.HTTP_REQUESTS.labels(family, request.method, route, str(status)).inc()
    metrics.HTTP_LATENCY.labels(family, request.method, route, f"{status // 100}xx").observe(
        time.perf_counter() - started
    )
    return response


def serve_metrics() -> Response:
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    """Time every request (registered first, so that it sees the ones refused early)."""
    app.before_request(_before)
    app.after_request(_after)
    app.add_url_rule(METRICS_PATH, "metrics", serve_metrics, methods=["GET"])

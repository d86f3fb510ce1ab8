"""A batch's inputs: given in the request, or fetched by the worker from a file URL.

The file must be a JSON array of objects of at most ``JOBYARD_INPUT_FILE_MAX_BYTES``
(4 MB), served within ``JOBYARD_INPUT_FILE_TIMEOUT_SECONDS`` from a public address
(:mod:`shared.netguard`). It is streamed, and the download stops as soon as it is too big
or too slow. Redirects are followed (at most 3), each to a checked address.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urljoin

import httpx

from shared.engine.job_types import PlanFailed
from shared.netguard import RefusedURL, resolve
from shared.settings import get_settings

MAX_REDIRECTS = 3


def check_inputs(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a non-empty list of objects of allowed length (ValueError naming
    ``where`` otherwise)."""
    if not isinstance(value, list):
        raise ValueError(f"{where} is not a JSON array of objects")
    if not value:
        raise ValueError(f"{where} holds no inputs")
    bad = next((i for i, v in enumerate(value) if not isinstance(v, dict)), None)
    if bad is not None:
        raise ValueError(f"{where}[{bad}] is not an object: each input is a JSON object")
    settings = get_settings()
    limit = min(settings.max_executions_per_job, settings.max_executions_per_request)
    if len(value) > limit:
        raise ValueError(
            f"{where} holds {len(value)} inputs; at most {limit} per batch "
            "(JOBYARD_MAX_EXECUTIONS_PER_JOB, JOBYARD_MAX_EXECUTIONS_PER_REQUEST)"
        )
    return value


def fetch_inputs(url: str) -> list[dict[str, Any]]:
    """The inputs in the file at ``url``; PlanFailed saying why when it cannot be had."""
    settings = get_settings()
    cap, timeout = settings.input_file_max_bytes, settings.input_file_timeout_seconds
    deadline = time.monotonic() + timeout
    try:
        body = _download(url, cap, timeout, deadline)
    except RefusedURL as exc:
        raise PlanFailed(f"inputsFileUrl refused: {exc.message}") from exc
    except httpx.TimeoutException as exc:
        raise PlanFailed(f"inputsFileUrl did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise PlanFailed(f"inputsFileUrl could not be fetched: {exc}") from exc
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise PlanFailed(f"inputsFileUrl is not JSON: {exc}") from exc
    try:
        return check_inputs(document, "the inputs file")
    except ValueError as exc:
        raise PlanFailed(str(exc)) from exc


def _download(url: str, cap: int, timeout: float, deadline: float) -> bytes:
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = resolve(url)
            port = httpx.URL(url).port
            host = f"{target.host}:{port}" if port else target.host
            with client.stream(
                "GET",
                target.url,
                headers={"Host": host, "Accept": "application/json"},
                extensions={"sni_hostname": target.host},
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise PlanFailed(f"inputsFileUrl answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise PlanFailed(_too_big(cap))
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise PlanFailed(_too_big(cap))
                    if time.monotonic() > deadline:
                        raise PlanFailed(f"inputsFileUrl did not finish within {timeout:g} s")
                return bytes(body)
    raise PlanFailed(f"inputsFileUrl redirected more than {MAX_REDIRECTS} times")


def _too_big(cap: int) -> str:
    size = f"{cap / 1024 / 1024:g} MB" if cap >= 1024 * 1024 else f"{cap:,} bytes"
    return f"inputsFileUrl is larger than {size}"

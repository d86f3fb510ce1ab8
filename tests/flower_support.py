"""A real Flower process, as the Procfile's ``flower`` line runs it, and its HTTP API.

Used by tests/e2e/test_flower.py and by tests/screenshots/flower_job.py (the README's
screenshot), so both see the same Flower.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT, free_port

FLOWER_USER = "ops"
FLOWER_PASSWORD = "flower-test-pw"


@dataclass
class Flower:
    base_url: str
    user: str
    password: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until Flower answers (its healthcheck)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthcheck", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.2)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.base_url}{path}",
            params=params,
            auth=(self.user, self.password),
            timeout=10,
        )

    def tasks(self, search: str, **params: Any) -> dict[str, dict[str, Any]]:
        """``/api/tasks`` filtered by Flower's search (its tasks page's search box)."""
        response = self.get("/api/tasks", search=search, **params)
        assert response.status_code == 200, response.text
        tasks: dict[str, dict[str, Any]] = response.json()
        return tasks

    def sees_a_worker(self) -> bool:
        """Flower has received a worker's events (its heartbeats): it captures them, so it
        will see the tasks' too."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return any(
            line.startswith("flower_worker_online{") and line.endswith(" 1.0")
            for line in response.text.splitlines()
        )


@contextmanager
def running_flower(
    log_path: Path,
    port: int | None = None,
    user: str = FLOWER_USER,
    password: str = FLOWER_PASSWORD,
    wait: bool = True,
) -> Iterator[Flower]:
    """``celery --app worker flower --conf=worker/flowerconfig.py`` on a free loopback port,
    with basic auth ``user:password``; yields once it answers (at once without ``wait``:
    the caller starts a worker meanwhile, then calls :meth:`Flower.wait_ready`)."""
    port = port or free_port()
    env = {
        **os.environ,
        "FLOWER_USER": user,
        "FLOWER_PASSWORD": password,
        "FLOWER_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # as the Procfile's line: Flower's own metrics
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "worker",
                "flower",
                "--conf=worker/flowerconfig.py",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            flower = Flower(f"http://127.0.0.1:{port}", user, password, log_path, proc)
            if wait:
                flower.wait_ready()
            yield flower
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

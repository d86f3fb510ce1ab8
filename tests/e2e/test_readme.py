"""The README, followed literally: every ``sh`` block, in order, in one bash session, as a
newcomer runs them after ``make up`` (tests/readme.py says how the README is read).

The system is what ``make up`` starts: the API as the Procfile runs it (gunicorn, on two
ports: the API's and the Smart DB seed's, and its metrics listener), a worker on every
queue with its metrics listener, beat, and the demo tenant ``jobyard seed-demo`` writes
into ``var/`` (``orders_db``, ``orders_kb``, ``var/demo.env``). Only the addresses change:
each local port the README names (8000, 9100, 9101, the callback receiver's 8765) is
swapped for a free one, so that the test can run beside a ``make up``.

Every curl answers 2xx, or the status its ``# → NNN`` line names, in the README's order;
the live-progress stream sees the job running, not only its end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.readme import curls, readme_text, session
from tests.support import ROOT, free_port, running_api, running_beat, running_worker

WROTE = re.compile(r"^@@curl (\d{3}) (\S+) (\S+)$", re.MULTILINE)
# Records every curl's answer on stderr, in the order the session runs them.
RECORD = "curl() { command curl --write-out '%{stderr}@@curl %{http_code} %{method} %{url_effective}\\n' \"$@\"; }\n"


def test_the_readmes_examples_work_in_order_as_written(tmp_path: Path) -> None:
    text = readme_text()
    expected = curls(session(text))
    ports = {port: free_port() for port in (8000, 9100, 9101, 8765)}
    api_port = free_port()
    script = session(text)
    for port, free in ports.items():
        script = script.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    # The checkout as make up leaves it: var/ with the demo, and .venv.
    checkout = tmp_path / "checkout"
    (checkout / "var").mkdir(parents=True)
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    env = {
        **os.environ,
        "PORT": str(api_port),
        "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # as make up sets it: local sources, receiver
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    seeded = subprocess.run(
        ["jobyard", "seed-demo", "--env-file", str(checkout / "var" / "demo.env")],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    metrics_dir = tmp_path / "worker-metrics"
    metrics_dir.mkdir()
    with (
        running_api(
            tmp_path,
            port=api_port,
            BIND=None,
            PORT=api_port,
            SMARTDB_PORT=ports[8000],
            JOBYARD_METRICS_PORT=ports[9100],
            JOBYARD_ALLOW_PRIVATE_URLS="true",
        ),
        running_worker(
            tmp_path,
            concurrency=8,
            JOBYARD_ALLOW_PRIVATE_URLS="true",
            JOBYARD_WORKER_METRICS_PORT=ports[9101],
            PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        ),
        running_beat(tmp_path, JOBYARD_ALLOW_PRIVATE_URLS="true"),
    ):
        shell = subprocess.Popen(
            ["bash", "-c", "set -euo pipefail\n" + RECORD + script],
            env=env,
            cwd=checkout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its background receiver goes with it
        )
        try:
            out, err = shell.communicate(timeout=900)
        finally:
            if shell.poll() is None:
                os.killpg(shell.pid, signal.SIGKILL)
                shell.wait()
    ran = WROTE.findall(err)
    report = "\n".join(
        f"{curl.line}: {curl.method} {curl.url} → "
        + (f"{answer[0]} {answer[1]} {answer[2]}" if answer else "not run")
        for curl, answer in zip(expected, ran + [None] * len(expected), strict=False)  # type: ignore[list-item]
    )
    assert shell.returncode == 0, f"the session stopped:\n{err[-3000:]}\n{report}"
    assert len(ran) == len(expected), report
    for curl, (status, method, url) in zip(expected, ran, strict=True):
        wanted = f"{curl.expected}" if curl.expected else "2xx"
        answered = f"line {curl.line}: {curl.method} {curl.url} wants {wanted}, got {status} ({method} {url})"
        assert method == curl.method, f"{answered}\n\n{report}"
        if curl.expected is None:
            assert 200 <= int(status) < 300, f"{answered}\n\n{report}"
        else:
            assert int(status) == curl.expected, f"{answered}\n\n{report}"
    # The first live-progress stream followed the job while it ran, to its end.
    stream = out[out.index("retry: 3000") :]
    assert stream.index("event: progress") < stream.index("event: end"), stream[:2000]
    assert re.search(r'"status": "processing"', stream[: stream.index("event: end")]), stream[:2000]

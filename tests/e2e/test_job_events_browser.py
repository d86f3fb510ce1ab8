"""A job's progress in a browser: headless chromium's own ``EventSource``, opened with a
stream token (it cannot send headers), on a page of another origin, against the real API
(gunicorn) while a real worker runs the job.

The page is served from a second loopback port, as a customer's app would be: the stream
answers it because a token-opened stream allows any origin. Beside it the page opens the
stream with a tampered token, which must fail without a single event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.browser import chromium_path, rendered_dom, serve_page  # noqa: F401 - the fixture
from tests.e2e.test_job_events import SLOW_JOB
from tests.e2e.test_job_events import SLOW_WORKER as STREAMED_JOB_WORKER
from tests.support import Tenant, make_tenant, running_api, running_worker

# test_job_events.py's job, its calls slowed to 250 ms (ten in flight): three seconds of
# work and many flushes, so the job still runs once chromium (slow to start on a busy
# machine) has opened the stream.
SLOW_WORKER = {**STREAMED_JOB_WORKER, "JOBYARD_SIMULATED_LATENCY_MS": 250}

# Each EventSource writes what it receives into the page; chromium's --dump-dom returns the
# page once no request is loading any more (the good stream closes after its end event,
# the bad one fails at once: EventSource does not reconnect after a 401).
PAGE = """<!DOCTYPE html>
<html><head><title>progress</title></head><body>
<pre id="good"></pre><pre id="bad"></pre>
<script>
const params = new URLSearchParams(location.search);
function follow(id, url) {
  const out = document.getElementById(id);
  const note = (line) => { out.textContent += line + "\\n"; };
  const source = new EventSource(url);
  source.addEventListener("open", () => note("open"));
  for (const name of ["progress", "end"]) {
    source.addEventListener(name, (e) => {
      note(name + " " + e.data);
      if (name === "end") source.close();
    });
  }
  source.addEventListener("error", () => {
    note("error readyState=" + source.readyState);
    if (source.readyState === EventSource.CLOSED) return;
    source.close();
  });
}
follow("good", params.get("good"));
follow("bad", params.get("bad"));
</script></body></html>"""


def events_in(dom: str, element: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, data) of each event the page wrote into ``element``."""
    start = dom.index(f'<pre id="{element}">') + len(f'<pre id="{element}">')
    lines = dom[start : dom.index("</pre>", start)].splitlines()
    found = []
    for line in lines:
        name, _, data = line.partition(" ")
        found.append((name, json.loads(data) if data.startswith("{") else {"raw": data}))
    return found


def stream_url(base_url: str, job_id: str, token: str) -> str:
    return f"{base_url}/api/jobs/{job_id}/events?{urlencode({'token': token})}"


def test_a_browsers_event_source_follows_a_running_job_with_a_stream_token(
    chromium: str, tmp_path: Path
) -> None:
    tenant: Tenant = make_tenant(n_queries=5)
    with (
        running_api(tmp_path, JOBYARD_SSE_HEARTBEAT_SECONDS=600) as base_url,
        running_worker(tmp_path, concurrency=2, **SLOW_WORKER),
        serve_page(PAGE) as page,
    ):
        created = httpx.post(
            f"{base_url}/api/jobs/trigger", headers=tenant.headers(), json=SLOW_JOB
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        issued = httpx.post(f"{base_url}/api/jobs/{job_id}/events/token", headers=tenant.headers())
        assert issued.status_code == 200, issued.text
        token = issued.json()["token"]
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        query = urlencode(
            {
                "good": stream_url(base_url, job_id, token),
                "bad": stream_url(base_url, job_id, tampered),
            }
        )
        dom = rendered_dom(chromium, f"{page}?{query}", tmp_path / "profile")
        final = httpx.get(f"{base_url}/api/jobs/{job_id}", headers=tenant.headers()).json()

    good = events_in(dom, "good")
    names = [name for name, _ in good]
    assert names[0] == "open" and names[-1] == "end" and names.count("end") == 1, dom[:3000]
    progress = [data for name, data in good if name == "progress"]
    # It followed the job while it ran: progress before the end, counters never backwards.
    assert progress and progress[0]["status"] in ("pending", "processing"), good
    done = [d["successExecutions"] + d["failedExecutions"] for d in progress]
    assert done == sorted(done) and done[0] < 120, done
    assert len(set(done)) >= 2, done
    end = good[-1][1]
    assert end["id"] == job_id and end["status"] == "completed" == final["status"]
    assert end["successExecutions"] == end["totalExecutions"] == 120
    # The tampered token: no event at all, and the browser gave up (a 401 closes it).
    assert events_in(dom, "bad") == [("error", {"raw": "readyState=2"})], dom[:3000]

// The job page's live counters: the job's progress stream (GET /api/jobs/{id}/events,
// server-sent events), opened with the stream token the page was rendered with. When the
// token has expired (a reconnect after the stream's timeout), a new one is asked of
// /ui/jobs/{id}/stream-token. Plain JS, no build step.
(function () {
  "use strict";
  const box = document.getElementById("progress");
  if (!box || !box.dataset.token) return;
  const live = document.getElementById("live");
  const fields = {
    pending: "pendingExecutions",
    retrying: "retryingExecutions",
    success: "successExecutions",
    failed: "failedExecutions",
    total: "totalExecutions",
  };
  let token = box.dataset.token;
  let source = null;
  let finished = false;

  function show(data) {
    for (const [name, key] of Object.entries(fields)) {
      const cell = document.getElementById("counter-" + name);
      if (cell && key in data) cell.textContent = String(data[key]);
    }
    const bar = document.getElementById("done-bar");
    if (bar) {
      bar.max = Math.max(1, data.totalExecutions);
      bar.value = data.successExecutions + data.failedExecutions;
    }
    const status = document.getElementById("job-status");
    if (status) {
      status.textContent = data.status;
      status.className = "status " + data.status;
    }
  }

  function open() {
    const url = box.dataset.stream + "?token=" + encodeURIComponent(token);
    source = new EventSource(url);
    source.addEventListener("open", () => { live.textContent = "live"; });
    source.addEventListener("progress", (e) => show(JSON.parse(e.data)));
    source.addEventListener("end", (e) => {
      finished = true;
      show(JSON.parse(e.data));
      source.close();
      live.innerHTML = 'finished — <a href="">reload</a> for the executions';
    });
    source.addEventListener("timeout", () => { source.close(); reconnect(); });
    source.addEventListener("error", () => {
      if (finished) return;
      source.close();
      live.textContent = "reconnecting…";
      setTimeout(reconnect, 3000);
    });
  }

  function reconnect() {
    fetch(box.dataset.tokenUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((body) => { token = body.token; open(); })
      .catch(() => { live.textContent = "not live: reload the page"; });
  }

  open();
})();

// The operator's page: queues and workers every few seconds; failed jobs and webhooks on demand (admin.js: the controls).
"use strict";

(() => {
  const { api, clear, el, errorDetail, errorSentence, OPERATIONS, when } = window.imgproc;
  const EVERY_MS = 3000;
  const status = document.getElementById("op-status");

  function cell(text, props) {
    return el("td", { ...(props || {}), text: text === null || text === undefined || text === "" ? "—" : String(text) });
  }

  function empty(tbody, columns, text) {
    clear(tbody, el("tr", {}, el("td", { colSpan: columns, className: "muted", text })));
  }

  async function queues() {
    const [stats, { workers }] = await Promise.all([api("GET", "queue-stats"), api("GET", "workers")]);
    clear(document.getElementById("queue-rows"), ...Object.entries(stats.queues).map(([name, q]) => el("tr", { dataset: { queue: name, paused: q.paused ? "yes" : "no" } },
      el("th", { scope: "row" }, name, q.paused ? el("span", { className: "badge state-paused", text: "paused" }) : null),
      cell(q.queued, { className: "num", dataset: { label: "Waiting" } }),
      cell(q.started, { className: "num", dataset: { label: "Running" } }),
      cell(q.scheduled, { className: "num", dataset: { label: "Scheduled" } }),
      cell(q.failed, { className: q.failed ? "num bad" : "num", dataset: { label: "Failed" } }),
      cell(q.workers, { className: "num", dataset: { label: "Workers" } }),
      el("td", { className: "actions", dataset: { label: "Actions" } },
        el("button", { type: "button", className: "small", text: q.paused ? "Resume" : "Pause",
          onclick: () => pause(q.paused ? "resume" : "pause", { queue: name }) })))),
      webhookRow(stats.webhooks));
    const warning = document.getElementById("webhooks-warning");
    warning.textContent = stats.webhooks.warning || "";
    warning.hidden = !stats.webhooks.warning;
    document.getElementById("queues-updated").textContent = `Updated ${new Date().toLocaleTimeString()}, every ${EVERY_MS / 1000} s.`;
    const tbody = document.getElementById("worker-rows");
    if (!workers.length) return empty(tbody, 6, "No worker is running: start one with python worker.py.");
    clear(tbody, ...workers.map((w) => el("tr", {},
      cell(w.hostname, { dataset: { label: "Host" } }),
      cell(w.pid, { className: "num", dataset: { label: "PID" } }),
      cell(w.queues.join(", "), { dataset: { label: "Queues" } }),
      el("td", { dataset: { label: "Now" } }, w.current_job_id
        ? el("span", {}, el("code", { text: w.current_job_id.slice(0, 12) }), " ",
          el("button", { type: "button", className: "small quiet", text: "Stop", title: "Stop this job at its next stage: no upload, no record",
            onclick: () => stop(w.current_job_id) }))
        : w.state),
      cell(w.jobs_done, { className: "num", dataset: { label: "Done" } }),
      cell(w.memory_bytes ? `${Math.round(w.memory_bytes / 2 ** 20)} MiB` : "not reported", { className: "num muted", dataset: { label: "Memory" } }))));
  }

  // DELETE on a started job stops it at its next stage (202); it ends "stopped", audited as job.stop.
  async function stop(jobId) {
    try {
      await api("DELETE", `job/${encodeURIComponent(jobId)}`);
      status.textContent = `Stopping job ${jobId.slice(0, 12)}: it ends at its next stage, with no result.`;
    } catch (e) {
      status.textContent = `Could not stop job ${jobId.slice(0, 12)}: ${e.message}`;
    }
    await queues().catch(() => {});
  }

  // Pause or resume a queue or a vendor (admin.js uses it for vendors): jobs wait in their lanes.
  async function pause(action, target) {
    const [kind, name] = Object.entries(target)[0];
    const said = kind === "vendor" ? document.getElementById("admin-status") : status; // beside its button
    try {
      const answer = await api("POST", action, target);
      said.textContent = action === "pause"
        ? `${kind === "queue" ? "Queue" : "Vendor"} ${name} paused: its jobs wait, nothing is lost${answer.held_back ? ` (${answer.held_back} taken back from the queue)` : ""}.`
        : `${kind === "queue" ? "Queue" : "Vendor"} ${name} resumed: its jobs start in their order.`;
    } catch (e) {
      said.textContent = `Could not ${action} ${name}: ${e.message}`;
    }
    await queues().catch(() => {});
    document.dispatchEvent(new CustomEvent("imgproc:paused"));
  }
  window.imgproc.pause = pause;

  // Webhook deliveries as one more queue: waiting (queued or for a retry) and the workers delivering them.
  function webhookRow(hooks) {
    return el("tr", {},
      el("th", { scope: "row", text: "webhooks" }),
      cell(hooks.waiting, { className: hooks.warning ? "num bad" : "num", dataset: { label: "Waiting" } }),
      cell(null, { className: "num", dataset: { label: "Running" } }),
      cell(null, { className: "num", dataset: { label: "Scheduled" } }),
      cell(null, { className: "num", dataset: { label: "Failed" } }),
      cell(hooks.workers, { className: hooks.warning ? "num bad" : "num", dataset: { label: "Workers" } }),
      el("td", { dataset: { label: "Actions" } }));
  }

  async function failed() {
    const answer = await api("GET", "failed");
    document.getElementById("failed-count").textContent = answer.total ? `(${answer.total})` : "";
    document.getElementById("retry-all").disabled = !answer.total;
    const tbody = document.getElementById("failed-rows");
    if (!answer.jobs.length) return empty(tbody, 6, "No failed jobs.");
    clear(tbody, ...answer.jobs.map((job) => el("tr", { dataset: { jobId: job.job_id } },
      cell(job.vendor, { dataset: { label: "Vendor" } }),
      cell(job.record_id, { className: "record", dataset: { label: "Record" } }),
      cell((OPERATIONS[job.type] || {}).label || job.type, { dataset: { label: "Operation" } }),
      el("td", { className: "error", dataset: { label: "Error" } },
        el("code", { text: job.error ? job.error.code : "—" }), " ", errorSentence(job.error),
        el("span", { className: "muted detail", text: job.error ? ` ${errorDetail(job.error)}` : "" })),
      cell(when(job.ended_at), { dataset: { label: "Ended" } }),
      el("td", { className: "actions", dataset: { label: "Actions" } },
        el("button", { type: "button", className: "small", text: "Retry", onclick: () => retry(job) })))));
  }

  async function retry(job) {
    try {
      await api("POST", `job/${encodeURIComponent(job.job_id)}/retry`);
      status.textContent = `Retrying ${job.vendor}'s job ${job.record_id}.`;
    } catch (e) {
      status.textContent = `Could not retry ${job.record_id}: ${e.message}`;
    }
    await refreshAll();
  }

  async function retryAll() {
    try {
      const answer = await api("POST", "failed/retry");
      status.textContent = `Retrying ${answer.retried.length} job${answer.retried.length === 1 ? "" : "s"}.`;
    } catch (e) {
      status.textContent = `Could not retry: ${e.message}`;
    }
    await refreshAll();
  }

  async function webhooks() {
    const { webhooks: messages, waiting } = await api("GET", "webhooks/failed");
    const tbody = document.getElementById("webhook-rows");
    if (!messages.length) {
      if (!waiting.waiting) return empty(tbody, 5, "Every webhook was delivered.");
      const n = `${waiting.waiting} webhook${waiting.waiting === 1 ? "" : "s"}`;
      return empty(tbody, 5, waiting.workers ? `None failed; ${n} on the way.` : `None failed yet; ${n} waiting for a worker to deliver them.`);
    }
    clear(tbody, ...messages.map((m) => el("tr", {},
      cell(m.vendor, { dataset: { label: "Vendor" } }),
      cell(m.type, { dataset: { label: "Event" } }),
      cell(m.last_status ? `HTTP ${m.last_status}` : m.last_error, { dataset: { label: "Last answer" } }),
      cell(m.url, { className: "url", dataset: { label: "URL" } }),
      el("td", { className: "actions", dataset: { label: "Actions" } },
        el("button", { type: "button", className: "small", text: "Redeliver", onclick: () => redeliver(m) })))));
  }

  async function redeliver(message) {
    try {
      await api("POST", `webhooks/${encodeURIComponent(message.id)}/redeliver`);
      status.textContent = `Redelivering ${message.type} to ${message.url}.`;
    } catch (e) {
      status.textContent = `Could not redeliver: ${e.message}`;
    }
    await webhooks().catch(() => {});
  }

  async function refreshAll() {
    await Promise.all([queues(), failed(), webhooks()].map((p) => p.catch((e) => {
      status.textContent = `Could not load everything: ${e.message}`;
    })));
  }

  let ticks = 0;
  async function tick() {
    ticks += 1;
    // Queues every tick; the longer lists every fourth.
    await (ticks % 4 === 0 ? refreshAll() : queues().catch((e) => { status.textContent = e.message; }));
    setTimeout(tick, EVERY_MS);
  }

  document.getElementById("retry-all").addEventListener("click", retryAll);
  refreshAll().then(() => setTimeout(tick, EVERY_MS));
})();

// A batch's page: counts per state and one progress bar, following the batch's event stream.
"use strict";

(() => {
  const { API, clear, el, ENDED, follow, progressBar, stateBadge } = window.imgproc;
  const section = document.getElementById("batch");
  const batchId = section.dataset.batchId;
  const bar = document.getElementById("batch-progress");
  const percent = document.getElementById("batch-percent");
  const counts = document.getElementById("counts");
  const tbody = document.getElementById("batch-rows");

  function render(batch) {
    bar.value = batch.progress;
    bar.classList.toggle("done", batch.done === batch.total);
    bar.textContent = `${batch.progress}%`;
    percent.textContent = `${batch.progress}% · ${batch.done} of ${batch.total} ended`;
    clear(counts, ...Object.entries(batch.counts)
      .filter(([state, n]) => n > 0 || ["queued", "started", "finished", "failed"].includes(state))
      .map(([state, n]) => el("div", { dataset: { state } }, el("dt", { text: state }), el("dd", { text: String(n) }))));
    clear(tbody, ...batch.jobs.map((item) => el("tr", { dataset: { jobId: item.job_id, state: item.state } },
      el("td", { className: "record", dataset: { label: "Record" }, text: item.record_id ?? "—" }),
      el("td", { dataset: { label: "State" } }, stateBadge(item.state)),
      el("td", { dataset: { label: "Progress" } }, progressBar(item.progress ?? (ENDED.has(item.state) ? 100 : 0), `Progress of ${item.record_id}`)),
      el("td", { dataset: { label: "Job" } }, el("code", { text: item.job_id })))));
  }

  follow(`${API}/batch/${encodeURIComponent(batchId)}/events`, ["batch"], render,
    (batch) => batch.jobs.every((item) => ENDED.has(item.state)));
})();

// Finding jobs and acting on many (the operator's page, and a vendor's own jobs on its page): a filter,
// its pages by cursor, and Cancel or Retry of every match after a dry run's count. Text only, never HTML.
"use strict";

(() => {
  const { api, clear, el, stateBadge, when, OPERATIONS } = window.imgproc;
  const form = document.getElementById("search-form");
  if (!form) return;
  const rows = document.getElementById("search-rows");
  const said = document.getElementById("search-status");
  const more = document.getElementById("search-more");
  const FIELDS = ["record_id", "state", "type", "batch_id", "created_after", "created_before", "vendor"];
  let cursor = null;
  let filter = {};

  function current() {
    const found = {};
    for (const name of FIELDS) {
      const field = form.elements[name];
      if (!field || !field.value.trim()) continue;
      let value = field.value.trim();
      // <input type="datetime-local"> gives local time without a zone: sent as UTC, as the page says.
      if (name.startsWith("created_")) value = `${value.length === 16 ? `${value}:00` : value}Z`;
      found[name] = value;
    }
    return found;
  }

  function query(f, after) {
    const params = new URLSearchParams({ ...f, per_page: "50" });
    if (after) params.set("cursor", after);
    return `jobs?${params}`;
  }

  async function search(event, again) {
    if (event) { event.preventDefault(); said.textContent = ""; } // a new search: the last message goes
    if (!again) { filter = current(); cursor = null; }
    if (!Object.keys(filter).length) {
      said.textContent = "Give at least one filter (a record id or prefix*, a state, a type...).";
      return;
    }
    try {
      const answer = await api("GET", query(filter, cursor));
      const operator = Boolean(form.elements.vendor);
      const found = answer.jobs.map((job) => el("tr", { dataset: { jobId: job.job_id } },
        operator ? el("td", { dataset: { label: "Vendor" }, text: job.vendor || "" }) : null,
        el("td", { className: "record", dataset: { label: "Record" }, text: job.record_id }),
        el("td", { dataset: { label: "Operation" }, text: (OPERATIONS[job.type] || {}).label || job.type }),
        el("td", { dataset: { label: "State" } }, stateBadge(job.state)),
        el("td", { dataset: { label: "Created" }, text: when(job.created_at) })));
      if (again) rows.append(...found);
      else clear(rows, ...(found.length ? found : [el("tr", {}, el("td", { colSpan: operator ? 5 : 4, className: "muted", text: "No job matches." }))]));
      cursor = answer.next_cursor;
      more.hidden = !cursor || !found.length;
      for (const button of form.querySelectorAll("[data-act]")) button.disabled = !found.length && !again;
    } catch (e) {
      said.textContent = `Could not search: ${e.message}`;
    }
  }

  // A bulk action: the dry run's count first, on the button itself; a second click within 10 s acts.
  function actButton(button) {
    const action = button.dataset.act;
    const text = button.textContent;
    let armed = null;
    button.addEventListener("click", async () => {
      const f = Object.keys(filter).length ? filter : current();
      if (!Object.keys(f).length) { said.textContent = "Search first: the action takes the jobs the filter finds."; return; }
      try {
        if (!armed) {
          const dry = await api("POST", `jobs/${action}`, { ...f, dry_run: true });
          if (!dry.count) { said.textContent = `No job to ${action}${dry.refused_count ? ` (${dry.refused_count} refused: ${dry.refused[0].reason})` : ""}.`; return; }
          button.textContent = `${action === "cancel" ? "Cancel" : "Retry"} ${dry.count} job${dry.count === 1 ? "" : "s"}? Click again`;
          button.classList.add("danger");
          armed = setTimeout(() => { armed = null; button.textContent = text; button.classList.remove("danger"); }, 10000);
          return;
        }
        clearTimeout(armed); armed = null; button.textContent = text; button.classList.remove("danger");
        const done = await api("POST", `jobs/${action}`, f);
        said.textContent = `${action === "cancel" ? "Canceled" : "Retrying"} ${done.count} job${done.count === 1 ? "" : "s"}${done.refused_count ? `; ${done.refused_count} refused` : ""}.`;
        await search(null, false); // the list again, the message kept
      } catch (e) {
        said.textContent = `Could not ${action}: ${e.message}`;
      }
    });
  }

  form.addEventListener("submit", search);
  more.addEventListener("click", () => search(null, true));
  for (const button of form.querySelectorAll("[data-act]")) actButton(button);
})();

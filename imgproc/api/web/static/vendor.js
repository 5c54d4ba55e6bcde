// The vendor's page: submit photos, then follow each job on its event stream until it ends.
"use strict";

(() => {
  const {
    api, clear, complianceReport, duration, el, ENDED, errorDetail, errorSentence, follow, OPERATIONS, progressBar,
    reviewBadge, stateBadge,
  } = window.imgproc;
  const PER_PAGE = 10;
  // Browsers open at most 6 connections to one host over HTTP/1.1: keep some for everything else.
  const MAX_STREAMS = 4;

  const form = document.getElementById("submit-form");
  const operation = document.getElementById("operation");
  const filesInput = document.getElementById("files");
  const drop = document.getElementById("drop");
  const chosen = document.getElementById("files-chosen");
  const urls = document.getElementById("urls");
  const status = document.getElementById("submit-status");
  const submitButton = document.getElementById("submit-button");
  const tbody = document.getElementById("job-rows");
  const pageInfo = document.getElementById("page-info");
  const newer = document.getElementById("newer");
  const older = document.getElementById("older");

  let files = [];
  let page = 1;
  const rows = new Map(); // job id -> {view, tr, cells}
  const originals = new Map(); // job id -> object URL of a photo uploaded from this page

  // --- options --------------------------------------------------------------------------------
  function showOptions() {
    for (const fieldset of form.querySelectorAll("fieldset.options")) {
      fieldset.hidden = fieldset.dataset.for !== operation.value;
    }
  }

  // A preset chosen: the fields it sets are greyed out (they are not sent) and the checkboxes it sets take
  // its values (data-sets), which the vendor may still change: a checkbox is always sent.
  function applyPreset(preset) {
    const fieldset = preset.closest("fieldset");
    const chosen = preset.selectedOptions[0];
    const sets = chosen && chosen.dataset.sets ? JSON.parse(chosen.dataset.sets) : {};
    for (const input of fieldset.querySelectorAll("[data-preset-sets]")) {
      if (input.dataset.kind === "bool") {
        if (input.dataset.option in sets) input.checked = sets[input.dataset.option];
        continue;
      }
      input.disabled = Boolean(preset.value);
      if (input.dataset.when) document.getElementById(input.dataset.when).disabled = Boolean(preset.value);
    }
  }

  // The options of the chosen operation's fields (drawn from its schema by the server): an empty field is
  // left to the API's default. A field out of its bounds throws, naming it.
  function options() {
    const fieldset = form.querySelector(`fieldset.options[data-for="${operation.value}"]`);
    const found = {};
    const preset = fieldset.querySelector("[data-preset]");
    // A preset decides what it sets (shape, background, format): of those only the checkboxes go with it.
    const presetChosen = preset && preset.value;
    for (const input of fieldset.querySelectorAll("[data-option]")) {
      const kind = input.dataset.kind;
      if (presetChosen && "presetSets" in input.dataset && kind !== "bool") continue;
      if (input.dataset.when && !document.getElementById(input.dataset.when).checked) continue;
      if (kind === "bool") {
        found[input.dataset.option] = input.checked;
        continue;
      }
      const value = input.value.trim();
      if (!value) continue;
      if (kind === "int" || kind === "number") found[input.dataset.option] = within(input, [Number(value)])[0];
      else if (kind === "size") found[input.dataset.option] = within(input, value.split(/\s*[x×,]\s*/i).map(Number));
      else found[input.dataset.option] = value;
    }
    return found;
  }

  function within(input, numbers) {
    const low = Number(input.min || input.dataset.min || -Infinity);
    const high = Number(input.max || input.dataset.max || Infinity);
    if (numbers.some((n) => Number.isNaN(n) || n < low || n > high)) {
      const label = form.querySelector(`label[for="${input.id}"]`).textContent;
      throw new Error(`${label}: ${numbers.length > 1 ? "each side" : "a number"} from ${low} to ${high}.`);
    }
    return numbers;
  }

  // --- files and URLs -------------------------------------------------------------------------
  function setFiles(list) {
    files = Array.from(list).filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp)$/i.test(f.name));
    chosen.textContent = files.length
      ? `${files.length} photo${files.length === 1 ? "" : "s"}: ${files.map((f) => f.name).join(", ")}`
      : "JPEG, PNG or WebP; several at once";
  }

  function urlItems() {
    const items = [];
    for (const raw of urls.value.split("\n")) {
      const line = raw.trim();
      if (!line) continue;
      const comma = line.lastIndexOf(",");
      if (comma > 0 && /^https?:\/\//i.test(line.slice(comma + 1).trim())) {
        items.push({ record_id: line.slice(0, comma).trim(), image_url: line.slice(comma + 1).trim() });
      } else {
        const name = line.split("?")[0].split("/").pop() || "photo";
        items.push({ record_id: name.replace(/\.[a-z0-9]+$/i, "") || name, image_url: line });
      }
    }
    return items;
  }

  async function submit(event) {
    event.preventDefault();
    const op = OPERATIONS[operation.value];
    let opts;
    try {
      opts = options();
    } catch (e) {
      status.textContent = e.message;
      return;
    }
    const items = urlItems();
    if (!files.length && !items.length) {
      status.textContent = "Choose or drop photos, or paste image URLs, first.";
      return;
    }
    submitButton.disabled = true;
    status.textContent = "Submitting…";
    const queued = [];
    const problems = [];
    for (const file of files) {
      const body = new FormData();
      body.append("record_id", file.name.replace(/\.[a-z0-9]+$/i, "") || file.name);
      body.append("options", JSON.stringify(opts));
      body.append("image", file, file.name);
      try {
        const answer = await api("POST", op.single, body);
        originals.set(answer.job_id, URL.createObjectURL(file));
        queued.push(answer.job_id);
      } catch (e) {
        problems.push(`${file.name}: ${e.message}`);
      }
    }
    let batch = null;
    try {
      if (items.length === 1) {
        queued.push((await api("POST", op.single, { ...items[0], options: opts })).job_id);
      } else if (items.length > 1) {
        batch = await api("POST", op.bulk, { items, options: opts });
        queued.push(...batch.job_ids);
      }
    } catch (e) {
      problems.push(`URLs: ${e.message}`);
    }
    submitButton.disabled = false;
    clear(status, `${queued.length} job${queued.length === 1 ? "" : "s"} queued.`,
      batch ? el("a", { href: `/ui/batch/${encodeURIComponent(batch.batch_id)}`, text: " Follow the batch" }) : null,
      problems.length ? el("span", { className: "problem", text: ` Not submitted: ${problems.join("; ")}` }) : null);
    if (queued.length) {
      filesInput.value = "";
      setFiles([]);
      urls.value = "";
    }
    page = 1;
    await load();
    loadLimits();
  }

  // --- the table --------------------------------------------------------------------------------
  function safeUrl(url) {
    return typeof url === "string" && /^(https?:|blob:|\/)/i.test(url) ? url : null;
  }

  function thumb(url, alt, checker) {
    const src = safeUrl(url);
    if (!src) return el("span", { className: "thumb empty", text: "—" });
    return el("a", { href: src, target: "_blank", rel: "noopener", className: "thumb-link" },
      el("img", { src, alt, className: checker ? "thumb checker" : "thumb", loading: "lazy" }));
  }

  function buildRow(view) {
    const cells = {
      record: el("td", { className: "record", dataset: { label: "Record" } }),
      op: el("td", { dataset: { label: "Operation" } }),
      state: el("td", { dataset: { label: "State" } }),
      progress: el("td", { className: "progress-cell", dataset: { label: "Progress" } }),
      time: el("td", { className: "num", dataset: { label: "Time" } }),
      images: el("td", { className: "images", dataset: { label: "Photos" } }),
      actions: el("td", { className: "actions", dataset: { label: "Actions" } }),
    };
    const tr = el("tr", { dataset: { jobId: view.job_id } }, ...Object.values(cells));
    const row = { view, tr, cells };
    rows.set(view.job_id, row);
    render(row, view);
    return tr;
  }

  function render(row, view) {
    row.view = view;
    const { cells } = row;
    const record = view.record_id === null || view.record_id === undefined ? "—" : view.record_id;
    clear(cells.record, el("div", {}, el("span", { text: record }),
      view.batch_id ? el("a", { className: "batch-link", href: `/ui/batch/${encodeURIComponent(view.batch_id)}`, text: "batch" }) : null));
    cells.op.textContent = view.type ? (OPERATIONS[view.type] || {}).label || view.type : "—";
    const result = view.result || {};
    clear(cells.state, el("div", {}, stateBadge(view.state), reviewBadge(result)));
    row.tr.dataset.state = view.state;
    const stage = view.state === "failed" ? "failed" : view.stage || view.state;
    clear(cells.progress, el("div", {}, progressBar(view.progress, `Progress of ${record}`),
      el("span", { className: "stage", text: `${view.progress || 0}% · ${stage}` })));
    cells.time.textContent = duration(view);
    const original = originals.get(view.job_id) || view.image_url;
    // An upload is kept only until its job has used it: once this page's own copy is gone (a reload,
    // another browser), say what it was rather than show an empty box.
    const images = el("div", {},
      !original && view.upload ? el("span", { className: "thumb-note", text: "uploaded file" })
        : thumb(original, `Original of ${record}`, false),
      el("span", { className: "arrow", "aria-hidden": "true", text: "→" }),
      thumb(result.url, `Result of ${record}`, true));
    clear(cells.images, images, complianceReport(result.compliance));
    if (view.error && view.state !== "finished") {
      images.append(el("p", { className: "error" },
        el("code", { text: view.error.code }), " ", errorSentence(view.error),
        errorDetail(view.error) ? el("span", { className: "muted detail", text: ` ${errorDetail(view.error)}` }) : null));
    }
    const actions = [];
    if (view.state === "finished" && safeUrl(result.url)) {
      const name = result.url.split("?")[0].split("/").pop();
      actions.push(el("a", { className: "button small", href: result.url, download: name, text: "Download" }));
    }
    if (view.state === "failed") {
      actions.push(el("button", { type: "button", className: "small", text: "Retry", onclick: () => act(row, "retry") }));
    }
    if (["queued", "scheduled", "deferred", "paused"].includes(view.state)) {
      actions.push(el("button", { type: "button", className: "small quiet", text: "Cancel", onclick: () => act(row, "cancel") }));
    }
    if (view.state === "started") { // DELETE stops it at its next stage: no upload, no record (202)
      actions.push(el("button", { type: "button", className: "small quiet", text: "Stop", onclick: () => act(row, "stop") }));
    }
    clear(cells.actions, actions.length ? el("div", {}, ...actions) : null);
  }

  async function act(row, what) {
    const id = row.view.job_id;
    try {
      const view = what === "retry"
        ? await api("POST", `job/${encodeURIComponent(id)}/retry`)
        : await api("DELETE", `job/${encodeURIComponent(id)}`);
      render(row, { ...row.view, ...view });
      if (!ENDED.has(view.state)) live.want(view);
    } catch (e) {
      const name = { retry: "Retry", cancel: "Cancel", stop: "Stop" }[what];
      status.textContent = `${name} of ${row.view.record_id}: ${e.message}`;
    }
  }

  async function load() {
    let answer;
    try {
      answer = await api("GET", `jobs?page=${page}&per_page=${PER_PAGE}`);
    } catch (e) {
      clear(tbody, el("tr", {}, el("td", { colSpan: 7, className: "problem", text: `Could not load your jobs: ${e.message}` })));
      return;
    }
    live.reset();
    rows.clear();
    if (!answer.jobs.length) {
      clear(tbody, el("tr", {}, el("td", { colSpan: 7, className: "muted", text: "No jobs yet: submit a photo." })));
    } else {
      clear(tbody, ...answer.jobs.map((view) => buildRow(view)));
    }
    pageInfo.textContent = `Page ${answer.page} of ${answer.pages} · ${answer.total} job${answer.total === 1 ? "" : "s"}`;
    newer.disabled = answer.page <= 1;
    older.disabled = answer.page >= answer.pages;
    for (const view of answer.jobs) if (!ENDED.has(view.state)) live.want(view);
  }

  // --- live: a job's own stream, or one stream for the jobs of a batch -------------------------
  const live = {
    open: new Map(), // stream key -> EventSource
    waiting: [], // [key, view]
    want(view) {
      const key = view.batch_id ? `b:${view.batch_id}` : `j:${view.job_id}`;
      if (this.open.has(key) || this.waiting.some(([k]) => k === key)) return;
      this.waiting.push([key, view]);
      this.next();
    },
    next() {
      while (this.open.size < MAX_STREAMS && this.waiting.length) {
        const [key, view] = this.waiting.shift();
        this.open.set(key, key.startsWith("b:") ? this.batch(key, view.batch_id) : this.job(key, view.job_id));
      }
    },
    done(key) {
      const source = this.open.get(key);
      if (source) source.close();
      this.open.delete(key);
      this.next();
    },
    job(key, id) {
      return follow(`${window.imgproc.API}/job/${encodeURIComponent(id)}/events`, ["state", "progress"], (view) => {
        const row = rows.get(id);
        if (row) render(row, { ...row.view, ...view });
      }, (view) => {
        const ended = ENDED.has(view.state);
        if (ended) setTimeout(() => this.done(key), 0);
        return ended;
      }, () => this.done(key));
    },
    batch(key, batchId) {
      return follow(`${window.imgproc.API}/batch/${encodeURIComponent(batchId)}/events`, ["batch"], (batch) => {
        for (const item of batch.jobs) {
          const row = rows.get(item.job_id);
          if (!row || ENDED.has(row.view.state)) continue;
          if (ENDED.has(item.state)) {
            api("GET", `job/${encodeURIComponent(item.job_id)}`).then((view) => render(row, { ...row.view, ...view }), () => {});
          } else {
            render(row, { ...row.view, state: item.state, progress: item.progress, stage: item.stage });
          }
        }
      }, (batch) => {
        const ended = batch.jobs.every((item) => ENDED.has(item.state));
        if (ended) setTimeout(() => this.done(key), 0);
        return ended;
      }, () => this.done(key));
    },
    reset() {
      for (const source of this.open.values()) source.close();
      this.open.clear();
      this.waiting = [];
    },
  };

  // --- rate limits ------------------------------------------------------------------------------
  const LIMIT_NAMES = { global: "Requests", image: "Single photos", bulk: "Bulk requests", "bg-removal": "Background removals" };

  async function loadLimits() {
    const list = document.getElementById("limits");
    try {
      const { limits } = await api("GET", "limits");
      const known = Object.keys(LIMIT_NAMES).filter((scope) => scope in limits);
      clear(list, ...known.map((scope) => [scope, limits[scope]]).map(([scope, l]) => {
        const low = l.remaining <= Math.max(1, l.amount / 10);
        const reset = l.remaining < l.amount && l.reset_in > 0 ? ` · full again in ${window.imgproc.seconds(l.reset_in)}` : "";
        return el("li", { className: low ? "low" : "" },
          el("span", { className: "limit-name", text: LIMIT_NAMES[scope] || scope }),
          el("span", { className: "limit-value", text: `${l.remaining} of ${l.amount} left` }),
          el("span", { className: "muted", text: ` per ${l.limit.split(" per ")[1] || l.limit}${reset}` }));
      }));
    } catch (e) {
      clear(list, el("li", { className: "problem", text: `Could not read the limits: ${e.message}` }));
    }
  }

  // --- wiring -------------------------------------------------------------------------------------
  operation.addEventListener("change", showOptions);
  for (const preset of form.querySelectorAll("select[data-preset]")) {
    preset.addEventListener("change", () => applyPreset(preset));
    applyPreset(preset); // a preset the browser kept across a reload
  }
  filesInput.addEventListener("change", () => setFiles(filesInput.files));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); setFiles(e.dataTransfer.files); });
  form.addEventListener("submit", submit);
  document.getElementById("refresh").addEventListener("click", () => { load(); loadLimits(); });
  newer.addEventListener("click", () => { page = Math.max(1, page - 1); load(); });
  older.addEventListener("click", () => { page += 1; load(); });
  showOptions();
  load();
  loadLimits();
})();

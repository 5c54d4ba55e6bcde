// imgproc's page: what every page's script shares. Data from vendors only ever reaches the page as
// text (textContent, attributes set one by one); no HTML is ever built from strings.
"use strict";

const API = "/api/image-queue";

const ERROR_SENTENCES = {
  fetch_failed: "The photo could not be downloaded from its URL (the host did not answer, or answered with an error).",
  fetch_forbidden: "The photo's URL points somewhere imgproc may not fetch from (a private address, or a host not allowed).",
  image_too_large: "The photo is too large (its file or its pixels are over the limit).",
  unsupported_image: "The file is not a photo imgproc can read (JPEG, PNG or WebP).",
  no_face_found: "No face was found in the photo, so there was nothing to crop to.",
  invalid_options: "An option was not accepted for this operation.",
  storage_failed: "The result could not be saved to storage; retrying usually helps.",
  database_failed: "The result could not be written to the records database; retrying usually helps.",
  timeout: "The job took too long and was stopped.",
  worker_lost: "The worker running the job stopped before it finished.",
  internal: "Something went wrong inside imgproc.",
};

// Job type -> {label, single, bulk}: the server's table of job types, given in the page (base.html).
const OPERATIONS = JSON.parse((document.getElementById("job-types") || {}).textContent || "{}");

const ENDED = new Set(["finished", "failed", "canceled", "stopped", "expired"]);

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the API answered ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
  }
}

// A call to the JSON API with the session cookie; the CSRF token on anything that changes state.
async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken();
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// el("td", {className: "x", dataset: {label: "Record"}}, "text", child): an element, its text safe.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node, ...children) {
  node.replaceChildren(...children.filter((c) => c));
}

function errorSentence(error) {
  if (!error) return "";
  return ERROR_SENTENCES[error.code] || "The job failed.";
}

// The job's own message, unless the sentence for its code already says it (no_face_found's
// "no face was found in the photo" under "No face was found in the photo, ..."): the error once.
function errorDetail(error) {
  if (!error || !error.message) return "";
  const words = (text) => ` ${text.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim()} `;
  return words(errorSentence(error)).includes(words(error.message)) ? "" : error.message;
}

function stateBadge(state) {
  return el("span", { className: `badge state-${state}`, text: state });
}

// A result whose mask the worker doubts (review: true, below its threshold): for a person to look at.
function reviewBadge(result) {
  if (!result || result.review !== true) return null;
  const score = typeof result.confidence === "number" ? ` · ${result.confidence.toFixed(2)}` : "";
  return el("span", {
    className: "badge review",
    title: "The cut-out may be wrong (its confidence is under the threshold): look at it before using it",
    text: `Review${score}`,
  });
}

// A preset's compliance report, an ID photo's or a marketplace's (the same shape): whether the result
// meets the rules, the checks that failed, and every check with its value and limits on opening.
function complianceReport(report) {
  if (!report || !Array.isArray(report.checks)) return null;
  const failed = report.checks.filter((c) => !c.pass).map((c) => c.name);
  const verdict = report.compliant ? "compliant" : `not compliant: ${failed.join(", ")}`;
  const limits = (c) => {
    const has = (v) => v !== undefined && v !== null;
    if (has(c.min) && has(c.max)) return c.min === c.max ? ` (must be ${c.min})` : ` (${c.min} to ${c.max})`;
    if (has(c.min)) return ` (at least ${c.min})`;
    return has(c.max) ? ` (at most ${c.max})` : "";
  };
  return el("details", { className: `compliance ${report.compliant ? "ok" : "bad"}` },
    el("summary", { text: `${report.preset}: ${verdict}` }),
    el("ul", {}, ...report.checks.map((c) => el("li", { className: c.pass ? "pass" : "fail" },
      el("span", { className: "mark", "aria-label": c.pass ? "passed" : "failed", text: c.pass ? "✓" : "✗" }),
      ` ${c.name}: ${Array.isArray(c.value) ? c.value.join(", ") : c.value}${limits(c)}`,
      c.reason && !c.pass ? el("span", { className: "muted", text: ` (${c.reason})` }) : null))));
}

function progressBar(value, label) {
  const bar = el("progress", { max: 100, value: value || 0, "aria-label": label || "Progress" });
  bar.textContent = `${value || 0}%`;
  return bar;
}

function duration(view) {
  if (view.result && typeof view.result.duration_ms === "number") return seconds(view.result.duration_ms / 1000);
  if (view.started_at && view.ended_at) return seconds((Date.parse(view.ended_at) - Date.parse(view.started_at)) / 1000);
  return "—";
}

function seconds(s) {
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

// Follows one event stream (EventSource sends the session cookie); closed once `ended(data)` says so.
// `gone` runs when the browser gives up on it (a 404: the job expired), so its slot is freed.
function follow(path, kinds, onData, ended, gone) {
  const source = new EventSource(path);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED && gone) gone();
  });
  const handle = (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    onData(data);
    if (ended(data)) source.close();
  };
  for (const kind of kinds) source.addEventListener(kind, handle);
  return source;
}

window.imgproc = {
  API, ApiError, ENDED, OPERATIONS, api, clear, complianceReport, duration, el, errorDetail, errorSentence, follow,
  progressBar, reviewBadge, stateBadge, when, seconds,
};

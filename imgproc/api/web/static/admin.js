// The operator's page, the controls: vendors (add, plan, disable, rotate a key), plans, usage over 30 days drawn as an SVG
// chart (no library, no CDN), and the audit log. Everything a vendor wrote reaches the page as text.
"use strict";

(() => {
  const { api, clear, el, when } = window.imgproc;
  const SVG = "http://www.w3.org/2000/svg";
  const DAYS = 30;
  // Distinct on white and for the common colour-blindnesses (Okabe and Ito's palette).
  const COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];
  const status = document.getElementById("admin-status");

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function say(text) { status.textContent = text; }

  // --- vendors -------------------------------------------------------------------------------
  let planNames = [];

  async function vendors() {
    const [{ vendors: list }, { plans }, pauses] = await Promise.all([api("GET", "vendors"), api("GET", "plans"), api("GET", "pauses")]);
    planNames = plans.map((p) => p.name);
    const pausedVendors = new Set(pauses.vendors.map((p) => p.vendor));
    const tbody = document.getElementById("vendor-rows");
    clear(tbody, ...list.map((v) => el("tr", { dataset: { vendor: v.name, disabled: v.disabled ? "yes" : "no" } },
      el("th", { scope: "row", text: v.name }),
      el("td", { dataset: { label: "Role" }, text: v.operator ? "operator" : "vendor" }),
      el("td", { dataset: { label: "Plan" } }, planPicker(v)),
      el("td", { dataset: { label: "State" } }, el("span", { className: v.disabled ? "badge state-failed" : "badge state-finished", text: v.disabled ? "disabled" : "active" }),
        pausedVendors.has(v.name) ? el("span", { className: "badge state-paused", text: "paused" }) : null),
      el("td", { className: "actions", dataset: { label: "Actions" } },
        el("button", { type: "button", className: "small", text: pausedVendors.has(v.name) ? "Resume" : "Pause",
          onclick: () => window.imgproc.pause(pausedVendors.has(v.name) ? "resume" : "pause", { vendor: v.name }) }),
        v.disabled
          ? el("button", { type: "button", className: "small", text: "Enable", onclick: () => setVendor(v.name, { disabled: false }, "enabled") })
          : confirming("Disable", `Refuse ${v.name}'s keys?`, () => setVendor(v.name, { disabled: true }, "disabled")),
        confirming("Rotate key", `Replace ${v.name}'s key?`, () => rotate(v.name))))));
  }

  function planPicker(v) {
    const select = el("select", { "aria-label": `Plan of ${v.name}` },
      el("option", { value: "", text: "default" }), ...planNames.map((name) => el("option", { value: name, text: name })));
    select.value = v.plan || "";
    select.addEventListener("change", () => setVendor(v.name, { plan: select.value || null }, `on plan ${select.value || "default"}`));
    return select;
  }

  async function setVendor(name, change, done) {
    try {
      await api("PUT", `vendors/${encodeURIComponent(name)}`, change);
      say(`${name} is ${done} (every process follows within 5 seconds).`);
    } catch (e) {
      say(`Could not change ${name}: ${e.message}`);
    }
    await Promise.all([vendors(), plansCard(), audit()]).catch(() => {});
  }

  // --- plans -------------------------------------------------------------------------------------
  const LIMIT_NAMES = ["all", "image", "bg_removal", "bulk"];
  const NUMBERS = ["weight", "max_running", "max_items"];

  async function plansCard() {
    const { plans, default: base } = await api("GET", "plans");
    const row = (name, p, isDefault) => el("tr", { dataset: { plan: name } },
      el("th", { scope: "row", text: isDefault ? "default (environment)" : name }),
      ...LIMIT_NAMES.map((l) => el("td", { dataset: { label: l }, className: p.limits[l] ? "" : "muted", text: p.limits[l] || "default" })),
      ...NUMBERS.map((n) => el("td", { className: p[n] === null ? "num muted" : "num", dataset: { label: n }, text: p[n] === null ? "default" : String(p[n]) })),
      el("td", { className: "num", dataset: { label: "Vendors" }, text: isDefault ? "" : String((p.vendors || []).length) }),
      el("td", { className: "actions", dataset: { label: "Actions" } }, isDefault ? null : el("div", {},
        el("button", { type: "button", className: "small", text: "Edit", onclick: () => editPlan(name, p) }),
        confirming("Delete", `Delete ${name}?`, () => deletePlan(name)))));
    clear(document.getElementById("plan-rows"), row("", base, true), ...plans.map((p) => row(p.name, p, false)));
  }

  function editPlan(name, p) {
    const form = document.getElementById("plan-form");
    form.elements.name.value = name;
    for (const l of LIMIT_NAMES) form.elements[`limit_${l}`].value = p.limits[l] || "";
    for (const n of NUMBERS) form.elements[n].value = p[n] === null ? "" : p[n];
    form.elements.name.focus();
  }

  async function savePlan(event) {
    event.preventDefault();
    const form = event.target;
    const name = form.elements.name.value.trim();
    const limits = {};
    for (const l of LIMIT_NAMES) limits[l] = form.elements[`limit_${l}`].value.trim() || null;
    const body = { limits };
    for (const n of NUMBERS) body[n] = form.elements[n].value === "" ? null : Number(form.elements[n].value);
    const exists = planNames.includes(name);
    try {
      if (exists) await api("PUT", `plans/${encodeURIComponent(name)}`, body);
      else await api("POST", "plans", { name, ...body, limits: Object.fromEntries(Object.entries(limits).filter(([, v]) => v)) });
      say(`Plan ${name} ${exists ? "changed" : "created"} (every process follows within 5 seconds).`);
      form.reset();
    } catch (e) {
      say(`Could not save plan ${name}: ${e.message}`);
    }
    await Promise.all([plansCard(), vendors(), audit()]).catch(() => {});
  }

  async function deletePlan(name) {
    try {
      await api("DELETE", `plans/${encodeURIComponent(name)}`);
      say(`Plan ${name} deleted.`);
    } catch (e) {
      say(`Could not delete plan ${name}: ${e.message}`);
    }
    await Promise.all([plansCard(), vendors(), audit()]).catch(() => {});
  }

  // A button that asks once more on the page itself (no dialog): the second click within 5 s acts.
  function confirming(text, question, act) {
    const button = el("button", { type: "button", className: "small", text });
    let armed = null;
    button.addEventListener("click", () => {
      if (armed) { clearTimeout(armed); armed = null; button.textContent = text; button.classList.remove("danger"); return act(); }
      button.textContent = `${question} Click again`;
      button.classList.add("danger");
      armed = setTimeout(() => { armed = null; button.textContent = text; button.classList.remove("danger"); }, 5000);
    });
    return button;
  }

  function showKey(name, key) {
    const box = document.getElementById("vendor-key");
    clear(box, `The API key of ${name}, shown only once: `, el("code", { text: key }));
    box.hidden = false;
  }

  async function addVendor(event) {
    event.preventDefault();
    const form = event.target;
    const name = form.elements.name.value.trim();
    try {
      const added = await api("POST", "vendors", { name, operator: form.elements.operator.checked });
      showKey(added.name, added.api_key);
      form.reset();
      say(`Vendor ${added.name} added.`);
    } catch (e) {
      say(`Could not add ${name}: ${e.message}`);
    }
    await Promise.all([vendors(), audit()]).catch(() => {});
  }

  async function rotate(name) {
    try {
      const rotated = await api("POST", `vendors/${encodeURIComponent(name)}/rotate`);
      showKey(name, rotated.api_key);
      say(`${name}'s key was replaced: the old one stops working within 5 seconds.`);
    } catch (e) {
      say(`Could not rotate ${name}'s key: ${e.message}`);
    }
    await audit().catch(() => {});
  }

  // --- usage over 30 days ----------------------------------------------------------------------
  async function usage() {
    const { days } = await api("GET", `usage?days=${DAYS}`);
    const ordered = [...days].reverse(); // oldest first, left to right
    const vendorsSeen = [...new Set(ordered.flatMap((d) => Object.keys(d.vendors)))].sort();
    drawChart(ordered, vendorsSeen);
    const rows = [];
    for (const day of days) {
      for (const [vendor, u] of Object.entries(day.vendors)) {
        rows.push(el("tr", {}, el("td", { dataset: { label: "Day" }, text: day.day }), el("td", { dataset: { label: "Vendor" }, text: vendor }),
          el("td", { className: "num", dataset: { label: "Jobs" }, text: String(u.jobs) }),
          el("td", { className: "num", dataset: { label: "Megapixels" }, text: u.megapixels.toFixed(1) }),
          el("td", { className: u.limited ? "num bad" : "num", dataset: { label: "Limits hit" }, text: String(u.limited) })));
      }
    }
    const tbody = document.getElementById("usage-rows");
    if (!rows.length) return clear(tbody, el("tr", {}, el("td", { colSpan: 5, className: "muted", text: `No jobs in the last ${DAYS} days.` })));
    clear(tbody, ...rows);
  }

  // Stacked bars: a bar a day, a colour a vendor (the eight busiest; the rest as "others"), jobs per day.
  function drawChart(days, vendorNames) {
    const box = document.getElementById("usage-chart");
    const total = (v) => days.reduce((sum, d) => sum + ((d.vendors[v] || {}).jobs || 0), 0);
    const busiest = [...vendorNames].sort((a, b) => total(b) - total(a));
    const shown = busiest.slice(0, COLOURS.length - 1);
    const series = busiest.length > shown.length ? [...shown, "others"] : shown;
    const jobsOf = (day, name) => name === "others"
      ? Object.entries(day.vendors).filter(([v]) => !shown.includes(v)).reduce((s, [, u]) => s + u.jobs, 0)
      : (day.vendors[name] || {}).jobs || 0;
    const peak = Math.max(1, ...days.map((d) => series.reduce((s, name) => s + jobsOf(d, name), 0)));
    // Drawn at the box's own width, so that a unit is a pixel and the text keeps its size.
    const width = Math.max(320, box.clientWidth || 720), height = 200, left = 44, bottom = 24, top = 8;
    const step = (width - left) / days.length, bar = Math.max(2, step * 0.7);
    const y = (v) => top + (height - top - bottom) * (1 - v / peak);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
      "aria-label": `Jobs per day and vendor over the last ${days.length} days; at most ${peak} in a day` });
    for (const tick of [...new Set([0, Math.round(peak / 2), peak])]) {
      chart.append(svg("line", { x1: left, x2: width, y1: y(tick), y2: y(tick), class: "grid-line" }),
        svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "axis" }, String(tick)));
    }
    days.forEach((day, i) => {
      let base = 0;
      const x = left + i * step + (step - bar) / 2;
      series.forEach((name, s) => {
        const jobs = jobsOf(day, name);
        if (!jobs) return;
        chart.append(svg("rect", { x, y: y(base + jobs), width: bar, height: y(base) - y(base + jobs), fill: COLOURS[s],
          "data-vendor": name, "data-day": day.day }, svg("title", {}, `${day.day}: ${name}, ${jobs} job${jobs === 1 ? "" : "s"}`)));
        base += jobs;
      });
      const last = days.length - 1;
      if (i === last || (i % 7 === 0 && last - i >= 4)) {
        chart.append(svg("text", { x: x + bar / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, day.day.slice(5)));
      }
    });
    const legend = el("ul", { className: "legend" }, ...series.map((name, s) => {
      const swatch = el("span", { className: "swatch" });
      swatch.style.backgroundColor = COLOURS[s]; // CSSOM, which the page's CSP allows (no inline style)
      return el("li", {}, swatch, name);
    }));
    clear(box, chart, series.length ? legend : el("p", { className: "muted", text: `No jobs in the last ${DAYS} days.` }));
  }

  // --- audit log -----------------------------------------------------------------------------------
  async function audit() {
    const { entries } = await api("GET", "audit?limit=50");
    const tbody = document.getElementById("audit-rows");
    if (!entries.length) return clear(tbody, el("tr", {}, el("td", { colSpan: 5, className: "muted", text: "No operator action yet." })));
    clear(tbody, ...entries.map((e) => el("tr", {},
      el("td", { dataset: { label: "When" }, text: when(e.at) }),
      el("td", { dataset: { label: "Who" }, text: e.source && e.source !== "cli" ? `${e.who} (${e.source})` : e.who }),
      el("td", { dataset: { label: "Action" } }, el("code", { text: e.action })),
      el("td", { dataset: { label: "Target" }, text: e.target }),
      el("td", { className: "muted", dataset: { label: "Details" }, text: Object.keys(e.details).length ? JSON.stringify(e.details) : "" }))));
  }

  document.getElementById("vendor-add").addEventListener("submit", addVendor);
  document.addEventListener("imgproc:paused", () => Promise.all([vendors(), audit()]).catch(() => {}));
  document.getElementById("plan-form").addEventListener("submit", savePlan);
  for (const load of [vendors, plansCard, usage, audit]) load().catch((e) => say(`Could not load everything: ${e.message}`));
  // The audit log and usage change as operators act elsewhere: every 15 s.
  setInterval(() => { audit().catch(() => {}); usage().catch(() => {}); }, 15000);
})();

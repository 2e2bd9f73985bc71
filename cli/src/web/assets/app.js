// The Airlock web console: a single page over the console's JSON API, with live updates from
// its event stream. Every value shown is set as text (never parsed as HTML).
"use strict";

const view = document.getElementById("view");
const state = { audit: [], approvals: [], route: null, timer: null };

// ---- helpers --------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch("/api/" + path, init);
  } catch (e) {
    return { status: 0, data: { ok: false, message: "the console cannot be reached: " + e.message } };
  }
  let data;
  try {
    data = await response.json();
  } catch (e) {
    data = { ok: false, message: "HTTP " + response.status };
  }
  return { status: response.status, data };
}

function result(node, data) {
  node.textContent = data.message || (data.ok ? "done" : "failed");
  node.className = "result " + (data.ok ? "ok" : "error");
}

function every(ms, fn) {
  clearInterval(state.timer);
  state.timer = setInterval(fn, ms);
}

// ---- routing --------------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/plugins";
  const [, name, arg] = hash.match(/^#\/([a-z]+)(?:\/(.*))?$/) || [];
  clearInterval(state.timer);
  state.route = { name: name || "plugins", arg: arg ? decodeURIComponent(arg) : null };
  for (const link of document.querySelectorAll("nav a")) {
    const active = link.dataset.view === state.route.name
      || (state.route.name === "plugin" && link.dataset.view === "plugins");
    link.classList.toggle("active", active);
  }
  const render = { plugins, plugin, audit, pending }[state.route.name] || plugins;
  render(state.route.arg);
}

// ---- plugins --------------------------------------------------------------------------------

async function plugins() {
  const table = el("table", { "data-plugins": "" },
    el("thead", {}, el("tr", {},
      ["Plugin", "State", "Generation", "Isolation", "Signature", "Calls", "Faults"]
        .map((h) => el("th", { text: h })))),
    el("tbody"));
  view.replaceChildren(el("h2", { text: "Plugins" }), table);
  const fill = async () => {
    const { data } = await api("plugins");
    if (!table.isConnected) return;
    table.tBodies[0].replaceChildren(...(data.plugins || []).map((p) => el("tr", { "data-plugin": p.id },
      el("td", {}, el("a", { href: "#/plugin/" + encodeURIComponent(p.id), text: p.id }),
        el("div", { class: "muted", text: p.version })),
      el("td", { "data-field": "state", class: "state state-" + p.state, text: p.state }),
      el("td", { "data-field": "generation", class: "num", text: p.generation }),
      el("td", { "data-field": "isolation", text: p.isolation }),
      el("td", { "data-field": "signature", text: p.signature }),
      el("td", { "data-field": "calls", class: "num", text: p.counters.calls }),
      el("td", { "data-field": "faults", class: "num", text: p.counters.faults }))));
  };
  await fill();
  every(2000, fill);
}

// ---- one plugin -----------------------------------------------------------------------------

async function plugin(id) {
  const { status, data } = await api("plugins/" + encodeURIComponent(id));
  if (status !== 200) {
    view.replaceChildren(el("h2", { text: id }), el("p", { class: "result error", text: data.message }));
    return;
  }
  const facts = el("dl", { class: "facts" });
  const grants = el("ul", { "data-grants": "" });
  const charts = el("div", { class: "charts" });
  const outcome = el("p", { class: "result", "data-action-result": "" });
  const capability = el("input", { name: "capability", placeholder: "capability, e.g. kv or events.publish" });
  const act = async (verb, body) => {
    outcome.textContent = verb + "…";
    outcome.className = "result";
    const answer = await api("plugins/" + encodeURIComponent(id) + "/" + verb, body || {});
    result(outcome, answer.data);
    refresh();
  };
  const refresh = async () => {
    const { status, data } = await api("plugins/" + encodeURIComponent(id));
    if (status === 200 && facts.isConnected) show(data);
  };
  const show = (p) => {
    facts.replaceChildren(...[
      ["State", el("span", { "data-field": "state", class: "state state-" + p.state, text: p.state })],
      ["Generation", el("span", { "data-field": "generation", text: p.generation })],
      ["Isolation", el("span", { "data-field": "isolation", text: p.isolation })],
      ["Signature", el("span", { "data-field": "signature", text: p.signature })],
      ["Health", p.health],
      ["Actions", p.actions.join(", ") || "—"],
      ["Calls", el("span", { "data-field": "calls", text: p.counters.calls })],
      ["Faults", el("span", { "data-field": "faults", text: p.counters.faults })],
      ["Denials", p.counters.denials],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
    grants.replaceChildren(...(p.grants.length ? p.grants.map((g) => el("li", { text: g }))
      : [el("li", { class: "muted", text: "no grants" })]));
  };
  const draw = async () => {
    const { data } = await api("plugins/" + encodeURIComponent(id) + "/series");
    if (!charts.isConnected) return;
    const points = data.points || [];
    charts.replaceChildren(
      chart("calls", "Calls per second", points, (p) => p.calls, ""),
      chart("latency", "Mean latency", points, (p) => p.latency_ms, " ms"),
      chart("faults", "Faults per second", points, (p) => p.faults, ""));
  };
  show(data);
  view.replaceChildren(el("section", { "data-plugin-detail": id },
    el("h2", {}, el("a", { href: "#/plugins", text: "Plugins" }), " / ", id),
    el("p", { class: "muted", text: data.description }),
    el("div", { class: "card" }, facts),
    el("h3", { text: "Last ten minutes" }), charts,
    el("h3", { text: "Operate" }),
    el("div", { class: "card" },
      el("div", { class: "row" },
        el("button", { "data-action": "disable", class: "danger", onclick: () => act("disable") }, "Disable"),
        el("button", { "data-action": "enable", onclick: () => act("enable") }, "Enable"),
        el("button", { "data-action": "reload", onclick: () => act("reload") }, "Reload")),
      el("div", { class: "row" }, capability,
        el("button", { "data-action": "revoke", class: "danger",
          onclick: () => act("revoke", { capability: capability.value }) }, "Revoke")),
      outcome),
    el("h3", { text: "Grants" }), el("div", { class: "card" }, grants),
    el("h3", { text: "Config" }), configForm(id, data)));
  await draw();
  every(2000, () => { draw(); refresh(); });
}

function chart(kind, title, points, value, unit) {
  const [w, h, pad] = [300, 90, 12];
  const now = Date.now() / 1000;
  const start = now - 600;
  const values = points.map(value).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...values);
  const top = values.length ? Math.max(...values) : 0;
  const x = (t) => ((t - start) / 600) * w;
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  const line = points.filter((p) => value(p) !== null && value(p) !== undefined)
    .map((p) => x(p.t).toFixed(1) + "," + y(value(p)).toFixed(1)).join(" ");
  const last = values.length ? values[values.length - 1] : null;
  const fmt = (v) => (v === null ? "—" : (Math.round(v * 100) / 100) + unit);
  return el("div", { class: "chart" },
    el("h4", { text: title + " · now " + fmt(last) + " · peak " + fmt(top) }),
    svg("svg", { "data-chart": kind, viewBox: `0 0 ${w} ${h}`, role: "img",
      "aria-label": title },
      svg("line", { class: "axis", x1: 0, y1: h - pad, x2: w, y2: h - pad }),
      svg("polyline", { class: "line " + kind, points: line }),
      svg("text", { x: 2, y: 10, text: fmt(top) }),
      svg("text", { x: 2, y: h - 2, text: "10 min ago" }),
      svg("text", { x: w - 20, y: h - 2, text: "now" })));
}

// ---- the config form, from the plugin's config_schema ----------------------------------------

function configForm(id, p) {
  const message = el("p", { class: "result", "data-config-message": "" });
  const schema = p.config_schema || {};
  const props = schema.properties || {};
  const current = (p.config && typeof p.config === "object" && !Array.isArray(p.config)) ? p.config : {};
  const fields = [];
  for (const [name, prop] of Object.entries(props)) {
    const has = Object.prototype.hasOwnProperty.call(current, name);
    const now = has ? current[name] : prop.default;
    const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
    let input, read;
    const reference = now !== null && typeof now === "object";
    if (Array.isArray(prop.enum) && !reference) {
      input = el("select", { name }, prop.enum.map((v, i) =>
        el("option", { value: i, selected: JSON.stringify(v) === JSON.stringify(now) }, String(v))));
      read = () => prop.enum[Number(input.value)];
    } else if (type === "boolean" && !reference) {
      input = el("input", { name, type: "checkbox", checked: now === true });
      read = () => input.checked;
    } else if ((type === "integer" || type === "number") && !reference) {
      input = el("input", { name, type: "number", step: type === "integer" ? "1" : "any",
        value: now === undefined ? "" : now });
      read = () => (input.value.trim() === "" ? undefined : Number(input.value));
    } else if (type === "string" && !reference) {
      input = el("input", { name, type: "text", value: now === undefined ? "" : now });
      // Left empty, a property the config did not have stays unset.
      read = () => (input.value === "" && !has ? undefined : input.value);
    } else {
      input = el("textarea", { name }, now === undefined ? "" : JSON.stringify(now, null, 2));
      read = () => {
        const text = input.value.trim();
        if (text === "") return undefined;
        try { return JSON.parse(text); } catch (e) { throw new Error(name + " is not JSON: " + e.message); }
      };
    }
    // A property the config did not have is sent only once the operator edits its field: a
    // choice or a checkbox shows a value even when unset, and must not write it unasked.
    let touched = false;
    for (const kind of ["input", "change"]) input.addEventListener(kind, () => { touched = true; });
    fields.push({ name, read, has, touched: () => touched });
    fields[fields.length - 1].label = el("label", {}, el("span", {}, name, (schema.required || []).includes(name) ? " *" : ""),
      input, prop.description ? el("small", { text: prop.description }) : null);
  }
  const submit = async (event) => {
    event.preventDefault();
    const config = Object.assign({}, current);
    try {
      for (const field of fields) {
        if (!field.has && !field.touched()) continue;
        const v = field.read();
        if (v === undefined) delete config[field.name]; else config[field.name] = v;
      }
    } catch (e) {
      result(message, { ok: false, message: e.message });
      return;
    }
    message.textContent = "checking…";
    message.className = "result";
    const base = "plugins/" + encodeURIComponent(id) + "/config";
    const check = await api(base + "/check", { config });
    if (!check.data.ok) { result(message, check.data); return; }
    const applied = await api(base, { config });
    result(message, applied.data);
  };
  if (!fields.length) {
    return el("div", { class: "card" }, el("p", { class: "muted",
      text: p.config_schema ? "The config schema has no properties to edit." : "This plugin declares no config schema." }));
  }
  return el("div", { class: "card" },
    el("form", { "data-config-form": "", novalidate: true, onsubmit: submit },
      fields.map((f) => f.label),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary" }, "Check and apply"))),
    message);
}

// ---- audit ----------------------------------------------------------------------------------

async function audit() {
  const filter = el("input", { "data-audit-filter": "", type: "search",
    placeholder: "filter by plugin, outcome or detail" });
  const table = el("table", { "data-audit": "" },
    el("thead", {}, el("tr", {}, ["#", "Time", "Plugin", "Outcome", "Capability", "Caller", "Detail"]
      .map((h) => el("th", { text: h })))),
    el("tbody"));
  view.replaceChildren(el("h2", { text: "Audit log" }), filter, table);
  filter.addEventListener("input", () => drawAudit());
  const { data } = await api("audit?limit=500");
  const known = new Set(state.audit.map((r) => r.seq));
  for (const r of (data.records || []).slice().reverse()) if (!known.has(r.seq)) addRecord(r);
  drawAudit();
}

function caller(c) {
  if (!c) return "";
  if (c.plugin) return "plugin " + c.plugin.id;
  if (c.host) return c.host.principal ? "host as " + c.host.principal.id : "host";
  return JSON.stringify(c);
}

function addRecord(r) {
  state.audit.unshift(r);
  state.audit.sort((a, b) => b.seq - a.seq);
  if (state.audit.length > 1000) state.audit.length = 1000;
}

function drawAudit() {
  const table = view.querySelector("table[data-audit]");
  if (!table) return;
  const q = view.querySelector("input[data-audit-filter]").value.trim().toLowerCase();
  const shown = state.audit.filter((r) => !q
    || [r.plugin, r.outcome, r.detail, r.capability].some((t) => (t || "").toLowerCase().includes(q)));
  table.tBodies[0].replaceChildren(...shown.slice(0, 500).map((r) => el("tr", { "data-outcome": r.outcome, "data-seq": r.seq },
    el("td", { class: "num", text: r.seq }),
    el("td", { text: r.time.replace("T", " ").replace("Z", "") }),
    el("td", { text: r.plugin }),
    el("td", { text: r.outcome }),
    el("td", {}, el("code", { text: r.capability })),
    el("td", { text: caller(r.caller) }),
    el("td", { class: "detail", text: r.detail }))));
}

// ---- approvals ------------------------------------------------------------------------------

async function pending() {
  const outcome = el("p", { class: "result", "data-decision-result": "" });
  const table = el("table", { "data-approvals": "" },
    el("thead", {}, el("tr", {}, ["#", "Call", "Caller", "Input", ""].map((h) => el("th", { text: h })))),
    el("tbody"));
  view.replaceChildren(el("h2", { text: "Calls waiting for approval" }), outcome, table);
  const decide = async (id, verb) => {
    outcome.textContent = verb + "…";
    outcome.className = "result";
    const { data } = await api("approvals/" + id + "/" + verb, {});
    result(outcome, data);
    await refreshApprovals();
  };
  state.drawApprovals = () => {
    if (!table.isConnected) return;
    const rows = state.approvals.map((a) => el("tr", { "data-approval": a.id },
      el("td", { class: "num", text: a.id }),
      el("td", {}, el("code", { text: a.plugin + "." + a.name })),
      el("td", { text: caller(a.caller) }),
      el("td", {}, el("code", { text: a.input })),
      el("td", {}, el("div", { class: "row" },
        el("button", { "data-decision": "approve", class: "primary", onclick: () => decide(a.id, "approve") }, "Approve"),
        el("button", { "data-decision": "refuse", class: "danger", onclick: () => decide(a.id, "refuse") }, "Refuse")))));
    table.tBodies[0].replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No call waits for approval." }))]));
  };
  await refreshApprovals();
}

async function refreshApprovals() {
  const { data } = await api("approvals");
  if (data.approvals) setApprovals(data.approvals);
}

function setApprovals(list) {
  state.approvals = list;
  document.getElementById("pending-count").textContent = list.length ? String(list.length) : "";
  if (state.route && state.route.name === "pending" && state.drawApprovals) state.drawApprovals();
}

// ---- live -----------------------------------------------------------------------------------

function live() {
  const badge = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.onopen = () => { badge.textContent = "live"; badge.classList.add("on"); };
  events.onerror = () => { badge.textContent = "reconnecting…"; badge.classList.remove("on"); };
  events.addEventListener("audit", (e) => {
    const record = JSON.parse(e.data);
    if (state.audit.some((r) => r.seq === record.seq)) return;
    addRecord(record);
    if (state.route && state.route.name === "audit") drawAudit();
  });
  events.addEventListener("approvals", (e) => setApprovals(JSON.parse(e.data)));
  events.addEventListener("plugins", () => {
    if (state.route && state.route.name === "plugins") plugins();
  });
}

window.addEventListener("hashchange", route);
route();
live();
refreshApprovals();

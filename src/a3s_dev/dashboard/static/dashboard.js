// a3s dashboard: keeps the server-rendered page live. Shipped with the package; no build step,
// no network but this proxy. Every text shown goes through textContent (never innerHTML),
// except the page fragments the server rendered and escaped itself.

let token = document.querySelector('meta[name="a3s-token"]').content; // a new proxy makes a new one
const live = document.getElementById("live");
const MAX_LINES = 5000; // lines the log view keeps; older ones are dropped
const MAX_PAUSED = 20000; // lines held while paused

// ------------------------------------------------------------------ the table and the graph

function rowOf(project, service) {
  for (const row of document.querySelectorAll("tr.service")) {
    if (row.dataset.project === project && row.dataset.service === service) return row;
  }
  return null;
}

function nodeOf(project, service) {
  const section = [...document.querySelectorAll("section.project")].find((s) => s.dataset.project === project);
  if (!section) return null;
  return [...section.querySelectorAll("g.node")].find((g) => g.dataset.service === service) || null;
}

const ACTIVE = new Set(["starting", "running", "unhealthy", "stopping"]);

function actionsFor(state) {
  // The server's table (board.ACTIONS), carried by the page: one list of what each state allows.
  const table = JSON.parse(document.getElementById("projects").dataset.actions || "{}");
  return table[state] || [];
}

function setActions(row, project, service, state) {
  const cell = row.querySelector("td.actions");
  const wanted = actionsFor(state);
  const shown = cell ? [...cell.querySelectorAll("button[data-act]")].map((b) => b.dataset.act) : wanted;
  if (!cell || shown.join() === wanted.join()) return; // a button being clicked is never replaced for nothing
  cell.replaceChildren(...wanted.map((act) => {
    const button = document.createElement("button");
    button.type = "button";
    Object.assign(button.dataset, { act, project, service });
    button.textContent = act;
    return button;
  }));
}

function formatDuration(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  if (h) return `${h}h${m}m${s}s`;
  return m ? `${m}m${s}s` : `${s}s`;
}

function setText(row, cls, value) {
  const cell = row.querySelector(`td.${cls}`);
  if (cell) cell.textContent = value === null || value === undefined ? "" : String(value);
}

function applyState(project, service, status) {
  const row = rowOf(project, service);
  if (row) {
    const badge = row.querySelector("td.state span");
    badge.className = `state state-${status.state}`;
    badge.textContent = status.state;
    const active = ACTIVE.has(status.state);
    setText(row, "probe", active ? status.probe : status.reason);
    setText(row, "pid", active ? status.pid : "");
    setText(row, "port", status.port);
    setText(row, "cpu", active && status.cpu !== null && status.cpu !== undefined ? `${status.cpu.toFixed(1)}%` : "");
    setText(row, "mem", active && status.rss !== null && status.rss !== undefined ? `${Math.round(status.rss / 1048576)} MB` : "");
    setText(row, "restarts", status.restarts);
    row.dataset.started = active && status.started_at ? String(status.started_at) : "";
    setActions(row, project, service, status.state);
    tickRow(row);
  }
  const node = nodeOf(project, service);
  if (node) node.setAttribute("class", `node state-${status.state}`);
  updateTitle();
}

function tickRow(row) {
  const started = parseFloat(row.dataset.started);
  setText(row, "uptime", started ? formatDuration(Math.max(0, Date.now() / 1000 - started)) : "");
}

function updateTitle() {
  const failed = document.querySelectorAll("td.state .state-failed").length;
  document.title = failed ? `✖ ${failed} failed · a3s` : "a3s";
}

setInterval(() => document.querySelectorAll("tr.service").forEach(tickRow), 1000);

async function refresh() {
  // The server renders (and escapes) the projects; take its fresh copy of that part.
  const response = await fetch("/", { cache: "no-store" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const main = fresh.getElementById("projects");
  if (main) document.getElementById("projects").replaceChildren(...main.childNodes);
  const meta = fresh.querySelector('meta[name="a3s-token"]');
  if (meta) token = meta.content;
  updateTitle();
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.add("on");
  });
  events.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.classList.remove("on");
  });
  // sent first on every (re)connection, and when a project comes or goes
  events.addEventListener("projects", () => refresh());
  events.addEventListener("state", (e) => {
    const data = JSON.parse(e.data);
    applyState(data.project, data.service, data.status);
  });
  events.addEventListener("reload", () => {
    events.close();
    refresh().finally(connect);
  });
}

// ------------------------------------------------------------------ actions

async function act(url, button) {
  button.disabled = true;
  try {
    const response = await fetch(url, { method: "POST", headers: { "X-A3S-Token": token } });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      button.title = body.error || `HTTP ${response.status}`;
    }
  } finally {
    button.disabled = false;
  }
}

const enc = encodeURIComponent;

document.addEventListener("click", (e) => {
  const button = e.target.closest("button");
  if (!button) return;
  const { project, service } = button.dataset;
  if (button.dataset.act) act(`/api/${enc(project)}/${enc(service)}/${button.dataset.act}`, button);
  else if (button.classList.contains("stop-project")) {
    if (confirm(`Stop every service of ${project}?`)) act(`/api/${enc(project)}/stop`, button);
  }
  else if (button.classList.contains("logs")) openLog(project, service);
  else if (button.classList.contains("logs-all")) openLog(project, null);
});

// ------------------------------------------------------------------ ANSI colors

const PALETTE = ["#000", "#c00", "#0a0", "#c60", "#25d", "#a3a", "#0aa", "#ccc",
  "#666", "#f44", "#4d4", "#ee4", "#69f", "#f6f", "#4ee", "#fff"];

function color256(n) {
  if (n < 16) return PALETTE[n];
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  n -= 16;
  const c = (x) => (x ? 55 + x * 40 : 0);
  return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
}

// One line of text with SGR escapes -> a fragment of spans (textContent only).
function renderAnsi(text) {
  const out = document.createDocumentFragment();
  const style = { fg: null, bg: null, b: false, d: false, i: false, u: false };
  const re = /\x1b\[([0-9;]*)([A-Za-z])/g;
  let last = 0, m;
  const push = (chunk) => {
    if (!chunk) return;
    if (!style.fg && !style.bg && !style.b && !style.d && !style.i && !style.u) {
      out.append(chunk);
      return;
    }
    const span = document.createElement("span");
    span.textContent = chunk;
    if (style.fg) span.style.color = style.fg;
    if (style.bg) span.style.backgroundColor = style.bg;
    span.className = ["b", "d", "i", "u"].filter((k) => style[k]).map((k) => `ansi-${k}`).join(" ");
    out.append(span);
  };
  while ((m = re.exec(text))) {
    push(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] !== "m") continue; // cursor moves and the like: dropped
    const codes = m[1] === "" ? [0] : m[1].split(";").map(Number);
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) Object.assign(style, { fg: null, bg: null, b: false, d: false, i: false, u: false });
      else if (c === 1) style.b = true;
      else if (c === 2) style.d = true;
      else if (c === 3) style.i = true;
      else if (c === 4) style.u = true;
      else if (c === 22) style.b = style.d = false;
      else if (c === 23) style.i = false;
      else if (c === 24) style.u = false;
      else if (c >= 30 && c <= 37) style.fg = PALETTE[c - 30];
      else if (c >= 90 && c <= 97) style.fg = PALETTE[c - 82];
      else if (c >= 40 && c <= 47) style.bg = PALETTE[c - 40];
      else if (c >= 100 && c <= 107) style.bg = PALETTE[c - 92];
      else if (c === 39) style.fg = null;
      else if (c === 49) style.bg = null;
      else if ((c === 38 || c === 48) && codes[k + 1] === 5) {
        style[c === 38 ? "fg" : "bg"] = color256(codes[k + 2] || 0); k += 2;
      } else if ((c === 38 || c === 48) && codes[k + 1] === 2) {
        style[c === 38 ? "fg" : "bg"] = `rgb(${codes[k + 2] || 0},${codes[k + 3] || 0},${codes[k + 4] || 0})`; k += 4;
      }
    }
  }
  push(text.slice(last).replace(/\x1b[^\x1b]*$/, ""));
  return out;
}

// ------------------------------------------------------------------ the log view

const panel = document.getElementById("logs");
const logBox = document.getElementById("log");
const filterBox = document.getElementById("log-filter");
const pauseButton = document.getElementById("log-pause");
const countBox = document.getElementById("log-count");
let stream = null;
let pending = []; // lines received, not yet drawn
let paused = false;
let drawScheduled = false;
let merged = false;
let generation = 0;
let colors = {}; // service -> SGR color of the open project, as in the terminal

function plain(text) {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
}

function clock(at) {
  // HH:MM:SS, local time, as the terminal shows it
  const d = new Date(at * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

function sgrColor(code) {
  const n = parseInt(code, 10);
  if (n >= 30 && n <= 37) return PALETTE[n - 30];
  if (n >= 90 && n <= 97) return PALETTE[n - 90 + 8];
  return null;
}

function lineElement(item) {
  const div = document.createElement("div");
  div.className = "line";
  div.dataset.text = plain(item.text).toLowerCase();
  // time and name are not selectable: a copy holds the lines as the service wrote them
  const at = document.createElement("span");
  at.className = "at";
  at.textContent = item.at ? clock(item.at) : "";
  at.setAttribute("aria-hidden", "true");
  div.append(at);
  if (merged) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = `${item.service} `;
    who.setAttribute("aria-hidden", "true");
    const color = sgrColor(colors[item.service]);
    if (color) who.style.color = color;
    div.append(who);
  }
  div.append(renderAnsi(item.text));
  if (!item.text) div.append(document.createElement("br")); // an empty line is copied too
  if (!matches(div)) div.classList.add("hide");
  return div;
}

function matches(div) {
  const needle = filterBox.value.trim().toLowerCase();
  return !needle || div.dataset.text.includes(needle);
}

function schedule() {
  if (!drawScheduled && !paused) {
    drawScheduled = true;
    requestAnimationFrame(draw);
  }
}

function draw() {
  // Lines arrive in batches; they are drawn once per frame, at most MAX_LINES of them, so a
  // service printing 10,000 lines a second does not freeze the page.
  drawScheduled = false;
  if (paused || !pending.length) return;
  const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
  const batch = pending.length > MAX_LINES ? pending.slice(-MAX_LINES) : pending;
  pending = [];
  const fragment = document.createDocumentFragment();
  for (const item of batch) fragment.append(lineElement(item));
  logBox.append(fragment);
  const extra = logBox.childElementCount - MAX_LINES;
  for (let k = 0; k < extra; k++) logBox.firstElementChild.remove();
  if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  countBox.textContent = `${logBox.childElementCount} lines`;
}

function receive(items) {
  pending.push(...items);
  if (pending.length > MAX_PAUSED) pending = pending.slice(-MAX_PAUSED);
  if (paused) countBox.textContent = `paused · ${pending.length} new`;
  schedule();
}

async function openLog(project, service) {
  const mine = ++generation;
  if (stream) stream.close();
  merged = service === null;
  const section = [...document.querySelectorAll("section.project")].find((s) => s.dataset.project === project);
  colors = section ? JSON.parse(section.dataset.colors || "{}") : {};
  const base = service === null ? `/api/${enc(project)}/logs` : `/api/${enc(project)}/${enc(service)}/logs`;
  const probes = document.getElementById("log-probes").checked ? "&probes=1" : "";
  panel.hidden = false;
  document.getElementById("log-title").textContent = service === null ? `${project} (all)` : `${project} / ${service}`;
  logBox.replaceChildren();
  pending = [];
  const response = await fetch(`${base}?n=1000${probes}`, { cache: "no-store", headers: { "X-A3S-Token": token } });
  if (mine !== generation) return;
  if (response.ok) receive(await response.json());
  stream = new EventSource(`${base}?follow=1${probes}`);
  current = [project, service];
  stream.addEventListener("lines", (e) => receive(JSON.parse(e.data)));
  logBox.scrollTop = logBox.scrollHeight;
}

filterBox.addEventListener("input", () => {
  for (const div of logBox.children) div.classList.toggle("hide", !matches(div));
});
pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.textContent = paused ? "follow" : "pause";
  if (!paused) schedule();
});
document.getElementById("log-clear").addEventListener("click", () => {
  logBox.replaceChildren();
  countBox.textContent = "";
});
let current = null; // [project, service] of the open log
document.getElementById("log-probes").addEventListener("change", () => {
  if (current) openLog(...current); // a3s's own probe requests: hidden unless asked for
});
// The panel's top edge resizes it; the height is kept for the next visit.
const resizer = document.getElementById("log-resize");
const savedHeight = localStorage.getItem("a3s-log-height");
if (savedHeight) panel.style.setProperty("--log-height", savedHeight);
resizer.addEventListener("pointerdown", (down) => {
  resizer.setPointerCapture(down.pointerId);
  const move = (e) => {
    const height = `${Math.max(80, window.innerHeight - e.clientY)}px`;
    panel.style.setProperty("--log-height", height);
    localStorage.setItem("a3s-log-height", height);
  };
  resizer.addEventListener("pointermove", move);
  resizer.addEventListener("pointerup", () => resizer.removeEventListener("pointermove", move), { once: true });
});
document.getElementById("log-close").addEventListener("click", () => {
  generation++;
  if (stream) stream.close();
  stream = null;
  panel.hidden = true;
});

updateTitle();
connect();

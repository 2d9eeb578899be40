// The agentledger web view: plain modern JavaScript, no build step, no dependencies.
// It talks to the /v1 API only, with the token the user typed (kept in sessionStorage).
"use strict";

const TOKEN_KEY = "agentledger.token";
const FIRST_PAGE = 200; // events fetched (and drawn) before anything else: first paint
const PAGE = 1000; // events per later read (the server's page limit)
const CHUNK = 200; // events drawn at a time as the timeline scrolls
const FIRST_DRAW = 40; // events drawn first: more than a screen, quick to draw
const REFRESH_MS = 5000; // the session header is read again this often (and on new events)

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  controller: new AbortController(), // aborted when the page is left or the token rejected
  lifecycle: null,
};

// -- small helpers ---------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// replaceChildren without the absent parts (null, undefined, false).
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 45) return "just now";
  const units = [["min", 60, 60], ["h", 3600, 24], ["d", 86400, 30], ["mo", 2592000, 12]];
  for (const [name, size, limit] of units) {
    const n = Math.round(seconds / size);
    if (n < limit) return `${Math.max(1, n)} ${name} ago`;
  }
  return `${Math.round(seconds / 31536000)} y ago`;
}

// One formatter each (building one per call is slow with thousands of events).
const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const localTime = (iso) => DATE_TIME.format(new Date(iso));
const clock = (iso) => TIME.format(new Date(iso));

function utc(iso) {
  return new Date(iso).toISOString().replace(".000Z", "Z") + " (UTC)";
}

function timeEl(iso, { relative = false } = {}) {
  if (!iso) return el("span", { class: "muted", text: "—" });
  const text = relative ? ago(iso) : localTime(iso);
  return el("time", { datetime: iso, title: utc(iso), dataset: relative ? { ago: iso } : {} }, text);
}

const pretty = (value) => JSON.stringify(value, null, 2);

// Formatted JSON; collapsed behind an expander unless `open` (and short, or `always`).
function jsonBlock(value, label = "data", { open = false, always = false } = {}) {
  const text = pretty(value);
  const lines = text.split("\n").length;
  const pre = el("pre", { class: "json" }, text);
  if (!always && (!open || text.length > 600 || lines > 12)) {
    const size = lines > 1 ? `${lines} lines` : `${text.length} characters`;
    return el("details", { class: "json-box" }, el("summary", {}, `${label} (${size})`), pre);
  }
  return el("div", { class: "json-box" }, el("span", { class: "label" }, label), pre);
}

function short(value, limit = 120) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

const cssType = (type) => String(type).toLowerCase().replace(/[^a-z0-9_]/g, "-");

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

class Unauthorized extends Error {}

function authHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  return headers;
}

async function api(path, { method = "GET", body, signal = app.controller.signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "Unreachable", detail: "the server cannot be reached" });
  }
  if (response.status === 401) {
    askForToken("The server did not accept your token (it may have been revoked).");
    throw new Unauthorized();
  }
  if (!response.ok) {
    let problem;
    try { problem = await response.json(); } catch { problem = { detail: response.statusText }; }
    throw new ApiError(response.status, problem);
  }
  if (!app.token) $("#who").textContent = "local (no token needed)";
  return response.status === 204 ? null : response.json();
}

const sessionPath = (id) => `/v1/sessions/${encodeURIComponent(id)}`;

async function lifecycle() {
  if (!app.lifecycle) app.lifecycle = (await api("/v1/store")).lifecycle;
  return app.lifecycle;
}

// -- signing in ------------------------------------------------------------------------------

function askForToken(message = "") {
  app.controller.abort();
  app.controller = new AbortController();
  app.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("#main").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#token").value = "";
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) return;
  const response = await fetch("/v1/sessions?limit=1", {
    headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
  }).catch(() => null);
  if (!response || response.status === 401) {
    $("#login-error").textContent = response ? "That token is not accepted." : "The server cannot be reached.";
    return;
  }
  app.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login").hidden = true;
  show();
}

function signedIn() {
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = !app.token;
}

function show() {
  signedIn();
  const path = location.pathname;
  if (path.startsWith("/sessions/")) sessionPage(decodeURIComponent(path.slice("/sessions/".length)));
  else sessionsPage();
}

function problemCard(title, text, extra) {
  return el("section", { class: "card problem", role: "alert" },
    el("h1", {}, title), el("p", {}, text), extra, el("p", {}, el("a", { href: "/" }, "← All sessions")));
}

// -- the sessions page -----------------------------------------------------------------------

const FILTERS = ["q", "app", "user", "agent", "status", "phase", "active_only"];

async function sessionsPage() {
  document.title = "Sessions · agentledger";
  const params = new URLSearchParams(location.search);
  const main = $("#main");
  const statusSelect = el("select", { name: "status", id: "f-status" },
    ["", "active", "suspended", "terminated"].map((s) => el("option", { value: s }, s || "any")));
  const phaseSelect = el("select", { name: "phase", id: "f-phase" }, el("option", { value: "" }, "any"));
  const form = el("form", { class: "filters", id: "filters", role: "search" },
    el("label", {}, "Search", el("input", { name: "q", id: "f-q", type: "search", placeholder: "id or title" })),
    el("label", {}, "App", el("input", { name: "app", id: "f-app" })),
    el("label", {}, "User", el("input", { name: "user", id: "f-user" })),
    el("label", {}, "Agent", el("input", { name: "agent", id: "f-agent" })),
    el("label", {}, "Status", statusSelect),
    el("label", {}, "Phase", phaseSelect),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "active_only", id: "f-active" }), "Active only"));
  const body = el("tbody", { id: "session-rows" });
  const table = el("table", { class: "sessions", id: "sessions" },
    el("thead", {}, el("tr", {}, ["Session", "Status", "Phase", "Errors", "Agent", "App / user", "Last activity"]
      .map((h) => el("th", { scope: "col" }, h)))), body);
  const more = el("button", { id: "more", type: "button", class: "secondary", hidden: true }, "Load more");
  const note = el("p", { id: "list-note", class: "muted" });
  main.replaceChildren(el("h1", {}, "Sessions"), form, el("div", { class: "table-wrap" }, table), note, more);

  for (const name of FILTERS) {
    const input = form.elements[name];
    if (!input || !params.has(name)) continue;
    if (input.type === "checkbox") input.checked = params.get(name) === "true";
    else input.value = params.get(name);
  }
  lifecycle().then((lc) => {
    for (const phase of lc.phases) phaseSelect.append(el("option", { value: phase }, phase));
    if (params.has("phase")) phaseSelect.value = params.get("phase");
  }).catch(() => {});

  let cursor = null;
  let generation = 0;
  const shown = new Set();

  function rowFor(s, { byId = false } = {}) {
    const link = el("a", { href: `/sessions/${encodeURIComponent(s.id)}`, class: "title" }, s.title || "(untitled)");
    return el("tr", { dataset: { id: s.id, title: (s.title || "").toLowerCase() }, class: byId ? "by-id" : "" },
      el("td", { class: "session-cell" }, link, el("div", { class: "id mono" }, s.id), byId ? el("span", { class: "muted" }, " found by id") : null),
      el("td", { "data-label": "Status" }, el("span", { class: `badge status-${cssType(s.status)}` }, s.status)),
      el("td", { "data-label": "Phase" }, el("span", { class: "phase" }, s.phase)),
      el("td", { class: s.error_count ? "errors has-errors" : "errors", "data-label": "Errors" }, String(s.error_count)),
      el("td", { "data-label": "Agent" }, s.agent_name || "—"),
      el("td", { "data-label": "App / user" }, el("span", {}, s.app_name), " / ", el("span", {}, s.user_id)),
      el("td", { "data-label": "Last activity" }, timeEl(s.updated_at, { relative: true })));
  }

  function applySearch() {
    const q = form.elements.q.value.trim().toLowerCase();
    let visible = 0;
    for (const row of body.rows) {
      if (!row.dataset.id) continue;
      const match = !q || row.dataset.id.toLowerCase().includes(q) || row.dataset.title.includes(q);
      row.hidden = !match;
      if (match) visible += 1;
    }
    note.textContent = visible ? "" : (q ? "No loaded session matches the search." : "No sessions.");
    return visible;
  }

  async function load(reset) {
    const mine = reset ? ++generation : generation;
    if (reset) { cursor = null; shown.clear(); body.replaceChildren(); }
    const query = new URLSearchParams({ limit: "50" });
    for (const name of ["app", "user", "agent", "status", "phase"]) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    if (form.elements.active_only.checked) query.set("active_only", "true");
    if (cursor) query.set("cursor", cursor);
    more.disabled = true;
    table.setAttribute("aria-busy", "true");
    try {
      const page = await api(`/v1/sessions?${query}`);
      if (mine !== generation) return;
      for (const s of page.sessions) {
        if (shown.has(s.id)) continue;
        shown.add(s.id);
        body.append(rowFor(s));
      }
      for (const id of page.corrupted || []) {
        body.append(el("tr", { class: "corrupted", dataset: { id, title: "" } },
          el("td", { colspan: 7 }, el("a", { href: `/sessions/${encodeURIComponent(id)}` }, id),
            " — this session cannot be read (corrupted)")));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const visible = applySearch();
      const q = form.elements.q.value.trim();
      if (reset && q && !shown.has(q)) await findById(q, mine, visible);
    } catch (error) {
      if (error instanceof Unauthorized || error.name === "AbortError") return;
      note.textContent = `Could not list sessions: ${error.message}`;
    } finally {
      more.disabled = false;
      if (mine === generation) table.setAttribute("aria-busy", "false");
    }
  }

  async function findById(id, mine) {
    try {
      const s = await api(sessionPath(id));
      if (mine !== generation || shown.has(s.id)) return;
      shown.add(s.id);
      body.prepend(rowFor(s, { byId: true }));
      applySearch();
    } catch { /* not a session id this token may open: the search stays a text filter */ }
  }

  function remember() {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      const input = form.elements[name];
      if (input.type === "checkbox" ? input.checked : input.value.trim()) {
        query.set(name, input.type === "checkbox" ? "true" : input.value.trim());
      }
    }
    history.replaceState(null, "", query.size ? `/?${query}` : "/");
  }

  let typing;
  form.addEventListener("input", (event) => {
    remember();
    clearTimeout(typing);
    if (event.target.name === "q") {
      applySearch();
      typing = setTimeout(() => { const q = form.elements.q.value.trim(); if (q && !shown.has(q)) findById(q, generation); }, 300);
    } else if (event.target.type === "text" || event.target.type === "search") {
      table.setAttribute("aria-busy", "true");
      typing = setTimeout(() => load(true), 300);
    } else {
      load(true);
    }
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  await load(true);
}

// -- state at an event: the projection, computed here from the events ------------------------

function pointer(path) {
  return path.slice(1).split("/").map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function parentOf(doc, parts) {
  let node = doc;
  for (const part of parts.slice(0, -1)) {
    if (node === null || typeof node !== "object" || !(part in node)) throw new Error(`no ${part}`);
    node = node[Array.isArray(node) ? Number(part) : part];
  }
  if (node === null || typeof node !== "object") throw new Error("not a container");
  return [node, parts[parts.length - 1]];
}

function indexIn(list, part, { end = false } = {}) {
  if (end && part === "-") return list.length;
  if (!/^(0|[1-9][0-9]*)$/.test(part)) throw new Error(`bad index ${part}`);
  const index = Number(part);
  if (index > list.length || (!end && index >= list.length)) throw new Error(`index ${part} out of range`);
  return index;
}

function getAt(doc, parts) {
  const [parent, last] = parentOf(doc, parts);
  if (Array.isArray(parent)) return parent[indexIn(parent, last)];
  if (!(last in parent)) throw new Error(`no ${last}`);
  return parent[last];
}

function addAt(doc, parts, value) {
  const [parent, last] = parentOf(doc, parts);
  if (Array.isArray(parent)) parent.splice(indexIn(parent, last, { end: true }), 0, value);
  else parent[last] = value;
}

function removeAt(doc, parts) {
  const [parent, last] = parentOf(doc, parts);
  if (Array.isArray(parent)) return parent.splice(indexIn(parent, last), 1)[0];
  if (!(last in parent)) throw new Error(`no ${last}`);
  const value = parent[last];
  delete parent[last];
  return value;
}

function same(a, b) {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

function applyOp(doc, op) {
  const parts = pointer(op.path);
  switch (op.op) {
    case "add": addAt(doc, parts, structuredClone(op.value)); break;
    case "remove": removeAt(doc, parts); break;
    case "replace": getAt(doc, parts); removeAt(doc, parts); addAt(doc, parts, structuredClone(op.value)); break;
    case "move": { const value = removeAt(doc, pointer(op.from)); addAt(doc, parts, value); break; }
    case "copy": addAt(doc, parts, structuredClone(getAt(doc, pointer(op.from)))); break;
    case "test": if (!same(getAt(doc, parts), op.value)) throw new Error("test failed"); break;
    case "increment": {
      const [parent, last] = parentOf(doc, parts);
      const key = Array.isArray(parent) ? indexIn(parent, last) : last;
      const current = key in parent ? parent[key] : 0;
      if (typeof current !== "number") throw new Error("not a number");
      parent[key] = current + op.value;
      break;
    }
    case "setdefault": {
      const [parent, last] = parentOf(doc, parts);
      if (Array.isArray(parent)) indexIn(parent, last);
      else if (!(last in parent)) parent[last] = structuredClone(op.value);
      break;
    }
    default: throw new Error(`unknown op ${op.op}`);
  }
}

const isTemp = (key) => key.startsWith("temp:");
const isShared = (key) => key.startsWith("app:") || key.startsWith("user:");

// Apply one event's state_delta, state_remove, then state_ops to `state` (changed in place),
// as the store does: temp: keys are dropped; app:/user: keys are kept, prefixed, as this
// session's events changed them. In event format 1 (written before null was a value) a null
// in state_delta deletes its key; from format 2 on it is stored as null and only state_remove
// deletes. Returns the operations that did not fit (shared keys changed elsewhere).
function applyEvent(state, event) {
  const oldFormat = (event.format ?? 2) === 1;
  for (const [key, value] of Object.entries(event.state_delta || {})) {
    if (isTemp(key)) continue;
    if (value === null && oldFormat) delete state[key];
    else state[key] = value;
  }
  for (const key of event.state_remove || []) {
    if (!isTemp(key)) delete state[key];
  }
  const misfits = [];
  for (const op of event.state_ops || []) {
    const key = pointer(op.path)[0];
    if (isTemp(key)) continue;
    for (const path of [op.path, op.from]) {
      if (!path) continue;
      const touched = pointer(path)[0];
      if (touched in state) state[touched] = structuredClone(state[touched]);
    }
    try {
      applyOp(state, op);
    } catch (error) {
      misfits.push(`${op.op} ${op.path}: ${error.message}`);
    }
  }
  return misfits;
}

// The state after the first `count` of `events` (a ledger in seq order, maybe truncated), as
// project() folds them: a `rewound` event brings the session's own keys back to what they were
// after its `to_seq` (app:/user: keys are shared and stay). Returns {state, why, misfits}:
// `state` is null when the ledger cannot tell it, and `why` then says why: {erased: seq} (an
// erased payload's change is gone) or {truncated: seq} (the history before seq was dropped).
// `each(index, state, why)`, when given, sees the state after every event (do not keep it).
function replay(events, count = events.length, each = null) {
  const targets = new Set();
  for (let i = 0; i < count; i += 1) {
    const e = events[i];
    if (e.type === "rewound" && !e.erased && e.data) targets.add(e.data.to_seq);
  }
  const start = events.length ? events[0].seq : 1;
  const saved = new Map(); // seq -> {state, why} after it, for the rewinds to come
  let state = start === 1 ? {} : null;
  let why = state ? null : { truncated: start };
  const misfits = [];
  for (let i = 0; i < count; i += 1) {
    const e = events[i];
    if (e.erased) {
      state = null;
      why = { erased: e.seq };
    } else if (e.type === "rewound") {
      const back = saved.get(e.data && e.data.to_seq);
      if (!back) {
        state = null; // back before the ledger's first event
        why = { truncated: start };
      } else if (back.state === null || state === null) {
        why = back.state === null ? back.why : why;
        state = null;
      } else {
        const restored = structuredClone(back.state);
        for (const key of Object.keys(restored)) if (isShared(key)) delete restored[key];
        for (const [key, value] of Object.entries(state)) if (isShared(key)) restored[key] = value;
        state = restored;
      }
    } else if (state !== null) {
      misfits.push(...applyEvent(state, e));
    }
    if (targets.has(e.seq)) saved.set(e.seq, { state: state && structuredClone(state), why });
    if (each) each(i, state, why);
  }
  return { state, why, misfits };
}

// The state after each event (null where the ledger cannot tell it): what the tests compare
// with the library's own projection.
function statesOf(events) {
  const states = [];
  replay(events, events.length, (i, state) => states.push(state && structuredClone(state)));
  return states;
}

// seq -> the seq of the `rewound` event that undid it, for the events a rewind took back
// (as effective_ranges reads the ledger: a later rewind into an undone stretch brings the
// events up to its target back).
function undoneBy(events) {
  const undone = new Map();
  if (!events.length) return undone;
  const rewinds = new Map();
  for (const e of events) if (e.type === "rewound" && !e.erased && e.data) rewinds.set(e.seq, e.data.to_seq);
  const markers = [...rewinds.keys()].sort((a, b) => a - b);
  let upto = events[events.length - 1].seq;
  while (markers.length) {
    while (markers.length && markers[markers.length - 1] > upto) markers.pop();
    if (!markers.length) break;
    const marker = markers.pop();
    const target = rewinds.get(marker);
    for (let seq = target + 1; seq < marker; seq += 1) undone.set(seq, marker);
    upto = target;
  }
  return undone;
}

// -- the session page ------------------------------------------------------------------------

async function sessionPage(id) {
  document.title = `${id} · agentledger`;
  const main = $("#main");
  const signal = app.controller.signal;
  let session;
  // The first events are read at once, beside the session: the timeline's first paint.
  const firstPage = api(`${sessionPath(id)}/events?after=0&limit=${FIRST_PAGE}`);
  firstPage.catch(() => {});
  try {
    session = await api(sessionPath(id));
  } catch (error) {
    if (error instanceof Unauthorized || error.name === "AbortError") return;
    if (error.status === 404) {
      main.replaceChildren(problemCard("Session not found",
        `No session “${id}” — it does not exist, or it is not yours.`));
    } else if (error.problem && error.problem.error === "CorruptedSessionError") {
      main.replaceChildren(problemCard("This session cannot be read",
        `Session “${id}” is damaged: ${error.message}`));
    } else {
      main.replaceChildren(problemCard("This session cannot be shown", error.message));
    }
    main.querySelector(".problem").id = "session-problem";
    return;
  }

  // Everything the page knows, in seq order.
  const events = [];
  const indexOf = new Map(); // seq -> index in events
  const callOf = new Map(); // `${invocation}|${call_id}` -> tool_call seq
  const resultOf = new Map(); // tool_call seq -> tool_result seq
  let lastSeq = 0;
  let first = 0; // the timeline shows events[first..drawn): a window, drawn a chunk at a time
  let drawn = 0;
  let lastTurn = null; // {id, body, count} of the turn the last drawn event belongs to
  let selected = null;
  let wantSeq = null;
  let ended = false;
  const erasedBy = new Map(); // erased seq -> {by: the events_erased seq, reason}
  let undone = new Map(); // seq -> the rewound event that undid it

  const head = el("section", { class: "card head", id: "session-head" });
  const phases = el("ol", { class: "phases", id: "phases", "aria-label": "Phase history" });
  const timeline = el("div", { class: "timeline", id: "timeline", role: "list", "aria-label": "Events" });
  const sentinel = el("div", { class: "sentinel", "aria-hidden": "true" });
  const loading = el("p", { class: "muted", id: "timeline-note" }, "Loading events…");
  const truncated = el("p", { class: "muted truncated", id: "truncated-note", hidden: true });
  const live = el("span", { class: "live", id: "live", role: "status" }, "connecting");
  const chatInput = el("input", { id: "chat-input", name: "message", placeholder: "Message the agent…", autocomplete: "off", required: true });
  const chatNote = el("p", { class: "muted", id: "chat-note", role: "status" });
  const chat = el("form", { class: "chat card", id: "chat" },
    el("label", { for: "chat-input", class: "visually-hidden" }, "Message"),
    chatInput, el("button", { type: "submit", id: "chat-send" }, "Send"), chatNote);
  const inspector = el("aside", { class: "card inspector", id: "inspector", "aria-live": "polite" },
    el("h2", {}, "State"), el("p", { class: "muted" }, "Click an event (or press j / k) to see the state as of it."));
  const currentBox = el("div", { id: "current-state" });
  main.replaceChildren(
    el("p", { class: "crumbs" }, el("a", { href: "/" }, "← Sessions")),
    head, phases,
    el("div", { class: "split" },
      el("div", { class: "timeline-col" }, el("div", { class: "timeline-bar" }, el("h2", {}, "Timeline"), live,
        el("button", { type: "button", class: "link", id: "to-latest", onclick: () => { if (events.length) select(lastSeq, { scroll: true }); } }, "latest ↓")), truncated, timeline, sentinel, loading, chat),
      el("div", { class: "side" }, inspector, el("section", { class: "card" }, el("h2", {}, "Current state"), currentBox))));

  // -- header ----------------------------------------------------------------------------

  async function refreshHead() {
    try {
      const [fresh, decision] = await Promise.all([
        api(sessionPath(id)), api(`${sessionPath(id)}/resume-decision`).catch(() => null),
      ]);
      session = fresh;
      drawHead(decision);
    } catch (error) {
      if (error instanceof Unauthorized || error.name === "AbortError") return;
      if (error.status === 404) {
        ended = true;
        main.replaceChildren(problemCard("Session not found", `Session “${id}” is gone (deleted, or no longer yours).`));
      }
    }
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshHead, 250);
  }

  function fact(name, value, attrs = {}) {
    return el("div", { class: "fact" }, el("dt", {}, name), el("dd", attrs, value));
  }

  function drawHead(decision) {
    const s = session;
    const actions = el("div", { class: "actions", id: "actions" });
    const can = {
      suspend: s.status === "active",
      resume: s.status === "suspended",
      terminate: s.status !== "terminated",
      finalize: s.status !== "terminated",
    };
    for (const [action, allowed] of Object.entries(can)) {
      if (allowed) actions.append(el("button", { type: "button", class: action === "terminate" ? "danger" : "secondary", id: `action-${action}`, onclick: () => lifecycleAction(action) }, action[0].toUpperCase() + action.slice(1)));
    }
    const resume = decision
      ? el("span", { class: decision.resume ? "ok-text" : "muted", title: decision.detail || "" },
        decision.resume ? "may resume" : "will not resume", ` (${decision.reason})`)
      : "—";
    fill(head,
      el("div", { class: "head-title" }, el("h1", {}, s.title || "(untitled)"), el("span", { class: "id mono" }, s.id)),
      s.forked_from ? el("p", { class: "forked", id: "forked-from" }, "forked from ",
        el("a", { href: `/sessions/${encodeURIComponent(s.forked_from.session_id)}#seq-${s.forked_from.seq}`, class: "mono" }, s.forked_from.session_id),
        ` at #${s.forked_from.seq}`) : null,
      el("dl", { class: "facts" },
        fact("Status", el("span", { class: `badge status-${cssType(s.status)}`, id: "session-status" }, s.status)),
        fact("Phase", s.phase, { id: "session-phase" }),
        fact("Outcome", s.outcome || "—", { id: "session-outcome" }),
        fact("Version", String(s.version), { id: "session-version" }),
        fact("Errors", String(s.error_count), { class: s.error_count ? "has-errors" : "" }),
        fact("Resume", resume, { id: "resume-decision" }),
        fact("Agent", s.agent_name || "—"),
        fact("App / user", `${s.app_name} / ${s.user_id}`),
        fact("Created", timeEl(s.created_at)),
        fact("Last activity", timeEl(s.updated_at, { relative: true }))),
      s.summary ? el("p", { class: "summary" }, s.summary) : null,
      s.last_error ? el("p", { class: "error-text" }, `Last error: ${s.last_error}`) : null,
      actions);
    chat.hidden = s.status === "terminated";
    drawPhases();
    currentBox.replaceChildren(jsonBlock(s.state, "state", { always: true }));
  }

  function drawPhases() {
    const steps = [{ phase: session.phase_history.length ? session.phase_history[0].from_phase : session.phase, at: session.created_at }];
    for (const t of session.phase_history) steps.push({ phase: t.to_phase, at: t.timestamp });
    phases.replaceChildren(...steps.map((step, i) => {
      const next = steps[i + 1];
      const until = next ? next.at : null;
      const span = until ? ` until ${clock(until)}` : " (now)";
      return el("li", { class: `phase-step phase-${cssType(step.phase)}${next ? "" : " current"}`, title: `${step.phase} from ${utc(step.at)}${span}` },
        el("strong", {}, step.phase), el("span", { class: "muted" }, clock(step.at)));
    }));
  }

  async function lifecycleAction(action) {
    const extra = [];
    let outcome = null;
    let summary = null;
    if (action === "finalize") {
      const lc = await lifecycle().catch(() => ({ final_phases: ["completed", "failed", "abandoned"] }));
      outcome = el("select", { id: "finalize-outcome" }, lc.final_phases.map((p) => el("option", { value: p }, p)));
      summary = el("textarea", { id: "finalize-summary", rows: 3 });
      extra.push(el("label", {}, "Outcome", outcome), el("label", {}, "Summary", summary));
    }
    const text = {
      suspend: "Pause this session. It can be resumed later.",
      resume: "Resume this session.",
      terminate: "End this session without an outcome. This cannot be undone.",
      finalize: "End this session with an outcome. This cannot be undone.",
    }[action];
    if (!(await confirmDialog(`${action[0].toUpperCase() + action.slice(1)} session?`, text, extra))) return;
    const body = action === "finalize" ? { outcome: outcome.value, summary: summary.value || null } : {};
    try {
      session = await api(`${sessionPath(id)}/${action}`, { method: "POST", body });
      await refreshHead();
    } catch (error) {
      if (error instanceof Unauthorized || error.name === "AbortError") return;
      banner(`Could not ${action}: ${error.message}`);
    }
  }

  function banner(text) {
    const note = el("p", { class: "card error-text banner", role: "alert" }, text,
      el("button", { type: "button", class: "link", onclick: () => note.remove() }, "dismiss"));
    head.after(note);
  }

  // -- timeline ----------------------------------------------------------------------------

  function ingest(event) {
    if (event.seq <= lastSeq) return false; // seen already (a resumed stream never repeats, but be safe)
    if (!events.length && event.seq > 1) {
      truncated.hidden = false;
      truncated.textContent = `The history before seq ${event.seq} was truncated (dropped for good); the state before it cannot be recomputed here.`;
    }
    lastSeq = event.seq;
    indexOf.set(event.seq, events.length);
    events.push(event);
    if (event.type === "events_erased" && !event.erased && Array.isArray(event.data.seqs)) {
      for (const seq of event.data.seqs) {
        if (!erasedBy.has(seq)) erasedBy.set(seq, { by: event.seq, reason: event.data.reason });
        const index = indexOf.get(seq);
        // An erasure seen live: this page's copy still holds the payload; it is gone now.
        if (index !== undefined && !events[index].erased) {
          events[index] = { ...events[index], erased: true, data: {}, state_delta: {}, state_remove: [], state_ops: [] };
        }
        redraw(seq);
      }
      // The state as of the selected event may have been known only thanks to those payloads.
      if (selected !== null && document.getElementById(`seq-${selected}`)) select(selected);
    }
    if (event.type === "rewound") {
      const before = undone;
      undone = undoneBy(events);
      for (const seq of new Set([...before.keys(), ...undone.keys()])) {
        if (before.get(seq) !== undone.get(seq)) redraw(seq);
      }
    }
    if (event.type === "tool_call" && event.data.call_id) {
      callOf.set(`${event.invocation_id}|${event.data.call_id}`, event.seq);
    } else if (event.type === "tool_result" && event.data.call_id) {
      const call = callOf.get(`${event.invocation_id}|${event.data.call_id}`);
      if (call !== undefined) {
        resultOf.set(call, event.seq);
        const callNode = document.getElementById(`seq-${call}`);
        if (callNode) fillPair(callNode, call);
      }
    }
    if (event.type === "session_finalized" || (event.type === "status_changed" && event.data.to === "terminated")) ended = true;
    return true;
  }

  function fillPair(node, callSeq) {
    const slot = node.querySelector(".pair");
    const resultSeq = resultOf.get(callSeq);
    if (!slot || resultSeq === undefined) return;
    const result = events[indexOf.get(resultSeq)];
    node.classList.add("paired");
    node.dataset.resultSeq = String(resultSeq);
    slot.replaceChildren(
      el("a", { href: `#seq-${resultSeq}`, class: "pair-link", onclick: (e) => { e.preventDefault(); select(resultSeq, { scroll: true }); } }, `→ result #${resultSeq}`),
      " ", el("span", { class: "pair-result" }, short(result.data.result ?? result.data, 160)));
  }

  function summaryOf(event) {
    const d = event.data || {};
    switch (event.type) {
      case "user_message": case "agent_message": case "final_output":
        return el("p", { class: "text" }, d.text ?? "");
      case "tool_call":
        return el("div", {}, el("p", { class: "call mono" }, `${d.name ?? "tool"}(${short(d.arguments ?? {}, 200)})`),
          el("p", { class: "pair muted" }, "waiting for its result…"));
      case "tool_result": {
        const call = callOf.get(`${event.invocation_id}|${d.call_id}`);
        return el("p", { class: "mono" },
          call !== undefined ? el("a", { href: `#seq-${call}`, class: "pair-link", onclick: (e) => { e.preventDefault(); select(call, { scroll: true }); } }, `← call #${call}`) : "result",
          ` ${d.name ?? ""}: ${short(d.result ?? d.error ?? "", 200)}`);
      }
      case "error":
        return el("p", { class: "error-text" }, d.message ?? "error");
      case "phase_changed":
        return el("p", {}, `phase → ${d.to}`);
      case "status_changed":
        return el("p", {}, `status → ${d.to}`, d.reason ? ` (${d.reason})` : "");
      case "session_created":
        return el("p", {}, `created in ${d.app_name} for ${d.user_id}`, d.title ? ` — ${d.title}` : "");
      case "session_finalized":
        return el("p", {}, `finalized: ${d.outcome ?? "—"}`, d.summary ? ` — ${d.summary}` : "");
      case "rewound":
        return el("p", {}, "rewound to ", seqLink(d.to_seq), d.to_seq + 1 < event.seq
          ? ` (undoes #${d.to_seq + 1}–#${event.seq - 1}; they stay in the ledger)` : "");
      case "session_forked":
        return el("p", {}, "forked from ",
          el("a", { href: `/sessions/${encodeURIComponent(d.source_id)}#seq-${d.source_seq}`, class: "mono" }, d.source_id),
          ` at #${d.source_seq}`);
      case "events_erased":
        return el("p", {}, "erased ", (d.seqs || []).flatMap((seq, i) => [i ? ", " : null, seqLink(seq)]),
          `: ${d.reason ?? ""}`);
      default:
        return null;
    }
  }

  function eventNode(event) {
    const type = cssType(event.type);
    const summary = event.erased ? erasedNote(event) : summaryOf(event);
    const error = event.type === "error" || (event.type === "tool_result" && event.data && event.data.error);
    const by = undone.get(event.seq);
    const cause = event.data && event.data.caused_by;
    const causeSeq = cause && typeof cause === "object" ? cause.seq : cause;
    const oldNulls = event.format === 1 && Object.values(event.state_delta || {}).some((v) => v === null);
    const node = el("article", {
      class: `event type-${type}${error ? " is-error" : ""}${event.erased ? " erased" : ""}${by ? " undone" : ""}`,
      id: `seq-${event.seq}`, tabindex: "0", role: "listitem",
      dataset: { seq: String(event.seq), type: event.type },
    },
    el("header", { class: "event-head" },
      el("a", { class: "seq mono", href: `#seq-${event.seq}` }, `#${event.seq}`),
      el("span", { class: "type" }, event.type),
      el("span", { class: "author muted" }, event.author),
      event.key ? el("span", { class: "event-key mono", title: "idempotency key" }, `key ${event.key}`) : null,
      Number.isInteger(causeSeq) ? el("span", { class: "caused-by" }, "caused by ", seqLink(causeSeq)) : null,
      by ? el("span", { class: "undone-by" }, "undone by rewind at ", seqLink(by)) : null,
      timeEl(event.timestamp)),
    summary,
    Object.keys(event.data || {}).length ? jsonBlock(event.data, "data", { open: !summary }) : null,
    Object.keys(event.state_delta || {}).length
      ? jsonBlock(event.state_delta, oldFormat(oldNulls), { open: true }) : null,
    (event.state_remove || []).length ? jsonBlock(event.state_remove, "state_remove", { open: true }) : null,
    (event.state_ops || []).length ? jsonBlock(event.state_ops, "state_ops", { open: true }) : null);
    if (event.type === "tool_call") fillPair(node, event.seq);
    if (selected === event.seq) node.classList.add("selected");
    return node;
  }

  function oldFormat(oldNulls) {
    return oldNulls ? "state_delta (an older event: null deletes the key)" : "state_delta";
  }

  function seqLink(seq, text = `#${seq}`) {
    return el("a", { href: `#seq-${seq}`, class: "seq-link", onclick: (e) => { e.preventDefault(); select(seq, { scroll: true }); } }, text);
  }

  function erasedNote(event) {
    const erasure = erasedBy.get(event.seq);
    return el("p", { class: "erased-note" }, "(payload erased)",
      erasure ? [` — ${erasure.reason ?? "no reason given"} (`, seqLink(erasure.by, `erased at #${erasure.by}`), ")"] : null);
  }

  // Draw an event again where it is drawn (it was erased or undone since).
  function redraw(seq) {
    const old = document.getElementById(`seq-${seq}`);
    const index = indexOf.get(seq);
    if (!old || index === undefined) return;
    const node = eventNode(events[index]);
    old.replaceWith(node);
    if (selected === seq) select(seq);
  }

  function draw(event) {
    const node = eventNode(event);
    if (event.invocation_id && lastTurn && lastTurn.id === event.invocation_id) {
      lastTurn.body.append(node);
      lastTurn.count += 1;
      lastTurn.counter.textContent = `${lastTurn.count} events`;
    } else if (event.invocation_id) {
      const counter = el("span", { class: "muted" }, "1 event");
      const body = el("div", { class: "turn-body" }, node);
      timeline.append(el("section", { class: "turn", dataset: { invocation: event.invocation_id } },
        el("header", { class: "turn-head" }, el("strong", {}, "Turn"), el("span", { class: "mono muted", title: event.invocation_id }, event.invocation_id.slice(-8)), counter),
        body));
      lastTurn = { id: event.invocation_id, body, count: 1, counter };
    } else {
      timeline.append(node);
      lastTurn = null;
    }
    drawn += 1;
  }

  function describe() {
    if (first === 0 && drawn === events.length) { loading.textContent = ""; return; }
    loading.textContent = `Showing #${events[first].seq}–#${events[drawn - 1].seq} of ${events.length} events${drawn < events.length ? "; scroll for more" : ""}.`;
  }

  function drawMore(count = CHUNK) {
    const stop = Math.min(events.length, drawn + count);
    while (drawn < stop) draw(events[drawn]);
    describe();
  }

  // Start the window again at `index` (a far jump: nothing before it is drawn).
  function drawFrom(index) {
    timeline.replaceChildren();
    lastTurn = null;
    first = drawn = index;
    if (first > 0) {
      timeline.append(el("button", { type: "button", class: "secondary earlier", id: "earlier",
        onclick: () => {
          const at = first;
          drawFrom(Math.max(0, first - CHUNK));
          if (drawn <= at) drawMore(at + 20 - drawn);
          document.getElementById(`seq-${events[at].seq}`).scrollIntoView({ block: "start" });
        } },
      `Show earlier events (${first})`));
    }
    drawMore();
  }

  function ensureDrawn(seq) {
    const index = indexOf.get(seq);
    if (index === undefined) return false;
    if (index < first || index >= drawn + 2 * CHUNK) drawFrom(Math.max(0, index - 50));
    else if (index >= drawn) drawMore(index + 1 - drawn + 20);
    return true;
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && drawn < events.length) drawMore();
  }, { rootMargin: "800px" }).observe(sentinel);

  // -- state as of an event ------------------------------------------------------------

  // Why the state as of an event cannot be shown, in words (the `why` replay() gives).
  function unknownNote(seq, why) {
    const text = [`The state as of #${seq} cannot be recomputed from the ledger: `];
    if (why.erased !== undefined) {
      const erasure = erasedBy.get(why.erased);
      text.push(`the payload of `, seqLink(why.erased), " was erased",
        erasure ? [` (${erasure.reason ?? "no reason given"}, at `, seqLink(erasure.by), ")"] : null,
        ", so the change it made is gone.");
    } else {
      text.push(`the history before seq ${why.truncated} was truncated.`);
    }
    text.push(" The session's current state (below) is still correct.");
    return el("p", { class: "unknown-state", id: "state-unknown" }, text);
  }

  function diffList(before, after) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    const rows = [];
    for (const key of keys) {
      const had = key in before;
      const has = key in after;
      if (had && has && same(before[key], after[key])) continue;
      const kind = !had ? "added" : !has ? "removed" : "changed";
      rows.push(el("li", { class: `diff-${kind}` }, el("span", { class: "mono key" }, key), ` ${kind}: `,
        had ? el("del", { class: "mono" }, short(JSON.stringify(before[key]), 200)) : null,
        had && has ? " → " : null,
        has ? el("ins", { class: "mono" }, short(JSON.stringify(after[key]), 200)) : null));
    }
    return rows;
  }

  function select(seq, { scroll = false } = {}) {
    if (!ensureDrawn(seq)) return;
    const index = indexOf.get(seq);
    const event = events[index];
    for (const node of timeline.querySelectorAll(".event.selected")) node.classList.remove("selected");
    const node = document.getElementById(`seq-${seq}`);
    node.classList.add("selected");
    selected = seq;
    if (scroll) { node.scrollIntoView({ block: "center" }); node.focus({ preventScroll: true }); }
    history.replaceState(null, "", `#seq-${seq}`);
    let before = index === 0 && event.seq === 1 ? {} : null;
    const { state: after, why, misfits: notes } = replay(events, index + 1, (i, state) => {
      if (i === index - 1) before = state && structuredClone(state);
    });
    const by = undone.get(seq);
    let change;
    if (after === null) change = el("p", { class: "muted", id: "state-diff" }, "Unknown: the state as of it cannot be recomputed.");
    else if (before === null) change = el("p", { class: "muted", id: "state-diff" }, "Unknown: the state before it cannot be recomputed.");
    else {
      const changes = diffList(before, after);
      change = changes.length ? el("ul", { class: "diff", id: "state-diff" }, changes) : el("p", { class: "muted", id: "state-diff" }, "No state change.");
    }
    fill(inspector,
      el("h2", {}, `State as of #${seq}`),
      el("p", { class: "muted" }, `${event.type} · ${localTime(event.timestamp)}`),
      by && after !== null ? el("p", { class: "muted small", id: "state-undone" }, "This event was undone by the rewind at ", seqLink(by), "; the state shown is the state as it was when it happened.") : null,
      after === null ? unknownNote(seq, why) : el("div", { id: "state-at" }, jsonBlock(after, "state", { always: true })),
      el("h3", {}, `Change made by #${seq}`),
      change,
      (after && Object.keys(after).some(isShared)) || notes.length
        ? el("p", { class: "muted small" }, "app: and user: keys are shared with other sessions; they are shown as this session's events changed them.")
        : null,
      notes.length ? el("p", { class: "muted small" }, `Not applied here: ${notes.slice(0, 3).join("; ")}`) : null);
  }

  timeline.addEventListener("click", (event) => {
    if (event.target.closest("a, summary, button")) return;
    const node = event.target.closest(".event");
    if (node) select(Number(node.dataset.seq));
  });
  timeline.addEventListener("keydown", (event) => {
    const node = event.target.closest(".event");
    if (node && event.key === "Enter") select(Number(node.dataset.seq));
  });
  document.addEventListener("keydown", (event) => {
    if ((event.target instanceof Element && event.target.closest("input, textarea, select, dialog")) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key !== "j" && event.key !== "k") return;
    if (!events.length) return;
    event.preventDefault();
    let index = selected === null ? (event.key === "j" ? 0 : events.length - 1) : indexOf.get(selected) + (event.key === "j" ? 1 : -1);
    index = Math.max(0, Math.min(events.length - 1, index));
    select(events[index].seq, { scroll: true });
  }, { signal });

  // -- chat ----------------------------------------------------------------------------

  chat.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = chatInput.value.trim();
    if (!message) return;
    const button = $("#chat-send");
    button.disabled = true;
    chatNote.textContent = "The agent is answering…";
    try {
      const turn = await api(`${sessionPath(id)}/turns`, { method: "POST", body: { message } });
      for (const stored of turn.events) onNew(stored, { refresh: false });
      chatInput.value = "";
      chatNote.textContent = turn.answer ? "" : "The turn ended without an answer.";
      refreshSoon();
    } catch (error) {
      if (error instanceof Unauthorized || error.name === "AbortError") return;
      chatNote.textContent = `Not sent: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  // -- loading and the live stream ------------------------------------------------------

  function onNew(event, { refresh = true } = {}) {
    const atEnd = drawn === events.length;
    if (!ingest(event)) return;
    if (atEnd) {
      const follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
      draw(event);
      if (follow) document.getElementById(`seq-${event.seq}`).scrollIntoView({ block: "end" });
    } else {
      describe();
    }
    if (wantSeq !== null && wantSeq <= lastSeq) { const seq = wantSeq; wantSeq = null; select(seq, { scroll: true }); }
    if (refresh) refreshSoon();
  }

  function setLive(text, kind) {
    live.textContent = text;
    live.className = `live ${kind || ""}`;
  }

  async function follow() {
    let delay = 500;
    while (!signal.aborted) {
      let ok = false;
      try {
        const response = await fetch(`${sessionPath(id)}/events/stream?after=${lastSeq}`, {
          headers: authHeaders({ Accept: "text/event-stream", "Last-Event-ID": String(lastSeq) }), signal,
        });
        if (response.status === 401) { askForToken("The server did not accept your token (it may have been revoked)."); return; }
        if (response.status === 404) { setLive("gone", "bad"); refreshHead(); return; }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        setLive("live", "ok");
        ok = true;
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replaceAll("\r\n", "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
            if (data) onNew(JSON.parse(data));
          }
        }
      } catch (error) {
        if (signal.aborted) return;
      }
      if (ended) { setLive("ended", "muted"); refreshSoon(); return; }
      setLive("reconnecting…", "bad");
      await sleep(ok ? 200 : delay);
      if (!ok) delay = Math.min(delay * 2, 2000);
    }
  }

  function wantFromHash() {
    const match = /^#seq-(\d+)$/.exec(location.hash);
    return match ? Number(match[1]) : null;
  }
  window.addEventListener("hashchange", () => { const seq = wantFromHash(); if (seq !== null && seq !== selected) select(seq, { scroll: true }); }, { signal });

  drawHead(null);
  refreshHead();
  const every = setInterval(() => { if (!ended) refreshHead(); }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(every));
  wantSeq = wantFromHash();
  try {
    let limit = FIRST_PAGE;
    for (;;) {
      const page = await (lastSeq === 0 ? firstPage : api(`${sessionPath(id)}/events?after=${lastSeq}&limit=${limit}`));
      for (const event of page.events) ingest(event);
      if (drawn === 0) {
        drawMore(FIRST_DRAW);
        performance.mark("agentledger:first-events");
        requestAnimationFrame(() => setTimeout(() => performance.mark("agentledger:first-paint")));
      }
      if (wantSeq !== null && wantSeq <= lastSeq) { const seq = wantSeq; wantSeq = null; select(seq, { scroll: true }); }
      if (page.events.length < limit) break;
      limit = PAGE;
    }
    describe();
    document.body.dataset.loaded = "true";
    performance.mark("agentledger:all-events");
  } catch (error) {
    if (error instanceof Unauthorized || error.name === "AbortError") return;
    loading.textContent = "";
    timeline.append(el("p", { class: "card error-text", id: "timeline-problem", role: "alert" },
      `The events of this session cannot be read: ${error.message}`));
    return;
  }
  if (wantSeq !== null) { loading.textContent = `Event #${wantSeq} is not in this session (yet).`; }
  if (ended) setLive("ended", "muted");
  else follow();
}

// -- the confirmation dialog -----------------------------------------------------------------

function confirmDialog(title, text, extra = []) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-extra").replaceChildren(...extra);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// -- start -----------------------------------------------------------------------------------

async function boot() {
  $("#login-form").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", () => askForToken());
  setInterval(() => {
    for (const node of document.querySelectorAll("time[data-ago]")) node.textContent = ago(node.dataset.ago);
  }, 30000);
  // Without a token, try anyway: a server without tokens answers (the local user); one
  // with tokens answers 401, and api() asks for a token.
  show();
}

boot();

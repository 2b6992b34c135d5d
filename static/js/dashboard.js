// The studio dashboard (and its kiosk screens). The server put the state (transfers.dashboard) in
// #dashboard-state; this module renders it, then keeps it live from the dashboard websocket: job.progress
// (figures and speed), job.state (a job's row once a change is committed) and job.watch (a watcher's
// news). It reconnects by itself, backing off, and fetches the whole state again after each (re)connect,
// so nothing said while it was away is missed. A kiosk authenticates with its link's token, sent as the
// socket's first message.
const $ = (id) => document.getElementById(id);
const root = $("dashboard");
const kiosk = root.dataset.kiosk === "1";
// A kiosk link is /kiosk/#<token>: the fragment never reaches a server, so the token is in no log.
const token = kiosk ? decodeURIComponent(window.location.hash.slice(1)) : "";
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15000;
const FAILURES_SHOWN = 10;

let jobs = new Map(); // id -> {id, url, kind, direction, team, account, manifest, live}
let failures = []; // ids, newest first
let budgets = []; // the shared budgets the viewer may see: {label, scope, account, line, rate}
let speeds = new Map(); // id -> bytes/s from the last progress message of a running job
let sentAtLoad = new Map(); // id -> bytes_sent when the state was fetched
let sentNow = new Map();
let todayBase = 0;
let socket = null;
let delay = RECONNECT_MIN_MS;
let stopped = false; // signed out, or the kiosk link revoked: reconnecting cannot help
let drawQueued = false;
let refetchTimer = null;

function size(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });

function load(state) {
  jobs = new Map();
  for (const row of [...state.active, ...state.failures]) jobs.set(row.id, row);
  failures = state.failures.map((row) => row.id);
  budgets = state.budgets || [];
  for (const id of [...speeds.keys()]) if (!jobs.get(id)?.live.running) speeds.delete(id);
  todayBase = state.bytes_today;
  sentAtLoad = new Map([...jobs.values()].map((row) => [row.id, row.live.bytes_sent]));
  sentNow = new Map(sentAtLoad);
  draw();
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text; // textContent: names and errors are user data
  if (className) td.className = className;
  return td;
}

function jobCell(row) {
  const td = cell("", "num");
  if (row.url) {
    const link = document.createElement("a");
    link.href = row.url;
    link.textContent = String(row.id);
    td.append(link);
  } else {
    td.textContent = String(row.id);
  }
  return td;
}

const what = (row) => `${row.kind}${row.manifest ? ` of ${row.manifest}` : ""} (${row.account})`;

function statusCell(live) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = `status status-${live.status}`;
  span.textContent = live.label;
  td.append(span);
  return td;
}

function barCell(live) {
  const td = document.createElement("td");
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", String(live.percent));
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${live.percent}%`;
  const label = document.createElement("span");
  label.className = "pct";
  label.textContent = `${live.percent}% · ${size(live.bytes_done)} of ${size(live.bytes_total)}`;
  bar.append(fill, label);
  td.append(bar);
  return td;
}

function jobRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.job = String(row.id);
  const speed = row.live.running && speeds.has(row.id) ? `${size(speeds.get(row.id))}/s` : "—";
  tr.append(jobCell(row), cell(row.team), cell(what(row)), statusCell(row.live), barCell(row.live), cell(speed, "num"));
  return tr;
}

function fill(id, rows) {
  $(id).replaceChildren(...rows);
  $(`${id}-none`).hidden = rows.length > 0;
}

function watcherRow(row) {
  const watch = row.live.watch;
  const tasks = watch.tasks.map((t) => `${t.task_id}: ${t.status}, ${t.outputs_seen}${t.frames_expected ? ` of ${t.frames_expected}` : ""}${t.ended ? " (ended)" : ""}`);
  const tr = document.createElement("tr");
  tr.dataset.job = String(row.id);
  const next = watch.next_poll_at && row.live.running ? clock(watch.next_poll_at) : "—";
  tr.append(jobCell(row), cell(row.team), cell(tasks.join("; ") || "—"), cell(next), cell(watch.error || ""));
  return tr;
}

function failureRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.job = String(row.id);
  tr.append(jobCell(row), cell(row.team), cell(what(row)), statusCell(row.live), cell(row.live.error || `${row.live.files_failed} files failed`));
  return tr;
}

function covers(budget, row) {
  if (budget.scope === "studio") return true;
  if (budget.account !== row.account) return false;
  return budget.scope === "account" || budget.line === row.line;
}

function budgetRow(budget, running) {
  const users = running.filter((row) => covers(budget, row) && speeds.has(row.id));
  const use = users.reduce((sum, row) => sum + speeds.get(row.id), 0);
  const by = users.map((row) => `job ${row.id} (${row.account}) ${size(speeds.get(row.id))}/s`).join(", ");
  const tr = document.createElement("tr");
  tr.append(cell(budget.label), cell(`${size(budget.rate)}/s`, "num"), cell(`${size(use)}/s`, "num"), cell(by || "—"));
  return tr;
}

function draw() {
  drawQueued = false;
  const active = [...jobs.values()].filter((row) => !row.live.terminal).sort((a, b) => b.id - a.id);
  fill("dash-uploads", active.filter((row) => row.direction === "upload").map(jobRow));
  fill("dash-downloads", active.filter((row) => row.direction === "download").map(jobRow));
  fill("dash-watchers", active.filter((row) => row.live.watch).map(watcherRow));
  fill("dash-failures", failures.map((id) => jobs.get(id)).filter(Boolean).map(failureRow));
  let total = 0;
  for (const [id, speed] of speeds) if (jobs.get(id)?.live.running) total += speed;
  $("dash-speed").textContent = `${size(total)}/s`;
  const running = active.filter((row) => row.live.running);
  fill("dash-budgets", budgets.map((budget) => budgetRow(budget, running)));
  const up = running.filter((row) => row.direction === "upload").length;
  $("dash-counts").textContent = `${up} uploading, ${running.length - up} downloading, ${active.length - running.length} queued or paused`;
  let today = todayBase;
  for (const [id, sent] of sentNow) today += Math.max(0, sent - (sentAtLoad.get(id) ?? 0));
  $("dash-today").textContent = size(today);
}

function redraw() {
  // Many messages a second on a busy farm: draw once per frame at most.
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(draw);
}

function refetchSoon() {
  // A job this page has not heard of (started since it loaded): ask for the whole state, once for a burst.
  if (refetchTimer) return;
  refetchTimer = setTimeout(() => { refetchTimer = null; refetch(); }, 300);
}

async function refetch() {
  try {
    const headers = { Accept: "application/json", ...(kiosk ? { "X-Kiosk-Token": token } : {}) };
    const response = await fetch(root.dataset.state, { credentials: "same-origin", headers });
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      stop(kiosk ? "this kiosk link is not valid or was revoked" : "signed out");
      return;
    }
    if (!response.ok) return;
    const state = await response.json();
    if (state.title) {
      $("dash-title").textContent = state.title;
      document.title = `${state.title} · rvweb`;
    }
    load(state);
  } catch (error) {
    // the server is away: the socket's reconnect will fetch again
  }
}

function newer(row, figures) {
  return (figures.figures_at ?? -Infinity) >= (row.live.figures_at ?? -Infinity);
}

function onProgress(message) {
  const row = jobs.get(message.job);
  if (!row) { refetchSoon(); return; }
  if (!newer(row, message)) return;
  for (const key of ["percent", "files_total", "files_done", "files_skipped", "files_failed", "files_not_sent",
    "bytes_total", "bytes_done", "bytes_sent", "figures_at"]) row.live[key] = message[key];
  if (row.live.running) speeds.set(row.id, message.speed);
  sentNow.set(row.id, message.bytes_sent);
  redraw();
}

function onState(message) {
  const row = jobs.get(message.job);
  if (!row || !message.live) { refetchSoon(); return; }
  const figures = newer(row, message.live) ? {} : Object.fromEntries(
    ["percent", "files_done", "files_failed", "files_not_sent", "bytes_done", "bytes_sent", "figures_at"].map((k) => [k, row.live[k]]));
  row.live = { ...message.live, ...figures };
  if (!row.live.running) speeds.delete(row.id);
  sentNow.set(row.id, row.live.bytes_sent);
  if (["failed", "completed_with_errors"].includes(row.live.status) && !failures.includes(row.id)) {
    failures = [row.id, ...failures].slice(0, FAILURES_SHOWN);
  }
  if (!row.live.terminal) failures = failures.filter((id) => id !== row.id); // retried
  redraw();
}

function onWatch(message) {
  const row = jobs.get(message.job);
  if (!row) { refetchSoon(); return; }
  row.live.watch = message.watch;
  redraw();
}

function stop(why) {
  stopped = true;
  if (socket) socket.close();
  const live = $("dash-live");
  if (kiosk) {
    live.textContent = why;
  } else {
    live.innerHTML = 'signed out: <a href="/login/?next=' + encodeURIComponent(window.location.pathname) + '">log in again</a>';
  }
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${window.location.host}${root.dataset.ws}`);
  socket = ws;
  ws.addEventListener("open", () => {
    if (kiosk) ws.send(JSON.stringify({ token }));
    else ready();
  });
  ws.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "kiosk.ready") ready();
    // The server's hub sends a batch every tenth of a second at most: the states in order, then each
    // job's latest progress.
    for (const message of frame.type === "dashboard.batch" ? frame.messages : []) {
      if (message.type === "job.progress") onProgress(message);
      else if (message.type === "job.state") onState(message);
      else if (message.type === "job.watch") onWatch(message);
    }
  });
  ws.addEventListener("close", (event) => {
    if (socket === ws) socket = null;
    if (stopped) return;
    if (event.code === 4401 || event.code === 4403) {
      stop(kiosk ? "this kiosk link is not valid or was revoked" : "signed out");
      return;
    }
    $("dash-live").textContent = "connection lost; reconnecting…";
    const wait = delay * (0.75 + Math.random() / 2); // jitter: a wall of screens does not come back at once
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    setTimeout(() => { if (!stopped && !socket) connect(); }, wait);
  });
}

function ready() {
  // Subscribed: whatever happened before now is in a fresh copy of the state.
  delay = RECONNECT_MIN_MS;
  $("dash-live").textContent = "live";
  root.dataset.connected = String(Number(root.dataset.connected || 0) + 1); // how many times (tests read it)
  refetch();
}

load(JSON.parse($("dashboard-state").textContent));
if (kiosk && !token) stop("this kiosk link is not valid or was revoked");
else connect();

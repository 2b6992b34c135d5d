// Live job page: the server rendered the database state; this streams deltas over a websocket and
// falls back to polling the REST API while the socket is down, until the job reaches a terminal state.
const TERMINAL = new Set(["completed", "completed_with_errors", "failed", "cancelled"]);
const LABELS = {
  queued: "Queued", running: "Running", completed: "Completed",
  completed_with_errors: "Completed with errors", failed: "Failed", cancelled: "Cancelled", paused: "Paused",
};
const POLL_MS = 2000;

const root = document.getElementById("job");
const $ = (id) => document.getElementById(id);
let finished = root.dataset.terminal === "true";
let socket = null;
let pollTimer = null;

function size(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "—";
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function showStatus(status) {
  const el = $("job-status");
  el.textContent = LABELS[status] || status;
  el.className = `status status-${status}`;
}

function showProgress(p) {
  const total = p.bytes_total, done = p.bytes_done;
  const files = p.files_done + p.files_failed;
  let percent = total > 0 ? Math.floor((done * 100) / total) : (p.files_total ? Math.floor((files * 100) / p.files_total) : 0);
  if (TERMINAL.has(p.status)) percent = total > 0 ? Math.min(100, percent) : 100;
  percent = Math.max(0, Math.min(100, percent));
  $("job-bar").setAttribute("aria-valuenow", String(percent));
  $("job-bar").querySelector(".fill").style.width = `${percent}%`;
  $("job-percent").textContent = `${percent}%`;
  $("job-bytes").textContent = `${size(done)} of ${size(total)}`;
  $("job-files").textContent = `${p.files_done} of ${p.files_total} done`
    + (p.files_skipped ? ` (${p.files_skipped} unchanged, skipped)` : "")
    + (p.files_failed ? `, ${p.files_failed} failed` : "");
  $("job-hint").hidden = p.status !== "queued";
  if (p.active !== undefined) showActive(TERMINAL.has(p.status) ? [] : p.active);
  if (TERMINAL.has(p.status) && p.average_speed != null) $("job-speed").textContent = `${size(p.average_speed)}/s average`;
  else if (p.speed !== undefined && !TERMINAL.has(p.status)) $("job-speed").textContent = `${size(p.speed)}/s`;
  if (p.eta !== undefined) $("job-eta").textContent = TERMINAL.has(p.status) ? "—" : duration(p.eta);
  if (p.status) showStatus(p.status);
}

function showActive(files) {
  const list = $("job-active");
  list.replaceChildren(...files.map((f) => {
    const row = document.createElement("li");
    const percent = f.size ? Math.floor((f.done * 100) / f.size) : 0;
    row.textContent = `${f.name} — ${percent}% of ${size(f.size)}`; // textContent: names are user data
    return row;
  }));
  list.hidden = files.length === 0;
}

async function refreshParts(...ids) {
  // Partial reload: the server renders these parts (buttons, failures) for the job's new state.
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ids) {
    const fresh = page.getElementById(id);
    if (fresh && $(id)) $(id).replaceWith(fresh);
  }
}

const refreshActions = () => refreshParts("job-actions", "job-speed-form");

async function fetchJob() {
  try {
    const response = await fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      signedOut();
      return null;
    }
    if (!response.ok) return null;
    const job = await response.json();
    showProgress(job);
    if (job.is_terminal) await finish(job.status);
    return job;
  } catch (error) {
    return null; // network trouble: the next round may get through
  }
}

function signedOut() {
  // The session ended (or the job is no longer ours to see): polling cannot help.
  finished = true;
  clearTimeout(pollTimer);
  $("job-live").innerHTML = 'signed out: <a href="/login/?next=' + encodeURIComponent(window.location.pathname) + '">log in again</a>';
}

async function pollWhileDown() {
  await fetchJob();
  if (!finished && !live) pollTimer = setTimeout(pollWhileDown, POLL_MS);
}

async function finish(status) {
  if (finished) return;
  finished = true;
  clearTimeout(pollTimer);
  showStatus(status);
  $("job-live").textContent = "";
  if (socket) socket.close();
  // The last progress message may have been coalesced away: the API has the final counters.
  await fetchJob();
  await refreshParts("job-failures", "job-actions", "job-speed-form");
}

const RECONNECT_MAX_MS = 30000;
let reconnectDelay = 2000;
let live = false; // the socket is open: no polling needed

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${window.location.host}${root.dataset.ws}`);
  socket.addEventListener("open", () => {
    live = true;
    reconnectDelay = 2000;
    clearTimeout(pollTimer);
    $("job-live").textContent = "live";
    fetchJob(); // catch up on anything that happened while we were not subscribed
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "job.progress") showProgress(message);
    if (message.type === "job.state") {
      showStatus(message.status);
      refreshActions();
      if (TERMINAL.has(message.status)) finish(message.status);
    }
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    live = false;
    if (finished) return;
    if (event.code === 4401 || event.code === 4403) {
      signedOut();
      return;
    }
    $("job-live").textContent = "connection lost; polling";
    clearTimeout(pollTimer);
    pollWhileDown();
    // Try the socket again, backing off, while polling keeps the page current.
    setTimeout(() => { if (!finished && !socket) connect(); }, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  });
}

if (!finished) connect();

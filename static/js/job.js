// Live job page. The server put the job's state (TransferJob.as_live) in #job-state; this module renders
// it, then its updates: job.state messages (the row once a change is committed), job.progress messages
// (live figures from the worker), and the REST API while the socket is down. It decides nothing itself:
// the label, the allowed actions and the running/terminal/settled flags all come with the state.
import { addSpeed } from "./job_chart.js";
import { reloadFiles } from "./job_files.js";

const POLL_MS = 2000;

const $ = (id) => document.getElementById(id);
const root = $("job");
const canControl = JSON.parse($("job-can-control").textContent);
let state = JSON.parse($("job-state").textContent);
let shownAt = -Infinity; // when the figures on the page were measured: older ones are not shown
let stateEpoch = 0; // bumped by every state message: an API answer requested before one is stale
let done = false; // settled: the figures are final, nothing more to listen for
const settledAtLoad = state.settled; // the server rendered the final page already: nothing to refresh
let socket = null;
let pollTimer = null;
let live = false; // the socket is open: no polling needed

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

const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });

function showFigures(f) {
  // The newest measurement wins: a state message read from the database may be a second older than
  // the last live progress message, and must not move the bar back.
  const at = f.figures_at ?? -Infinity;
  if (at < shownAt) return;
  shownAt = at;
  $("job-bar").setAttribute("aria-valuenow", String(f.percent));
  $("job-bar").querySelector(".fill").style.width = `${f.percent}%`;
  $("job-percent").textContent = `${f.percent}%`;
  $("job-bytes").textContent = `${size(f.bytes_done)} of ${size(f.bytes_total)}`;
  $("job-files").textContent = `${f.files_done} of ${f.files_total} done`
    + (f.files_skipped ? ` (${f.files_skipped} unchanged, skipped)` : "")
    + (f.files_failed ? `, ${f.files_failed} failed` : "")
    + (state.terminal && f.files_not_sent ? `, ${f.files_not_sent} not sent` : "");
}

// A download watcher still running: the farm may render more frames, so the totals are not final.
const watching = () => Boolean(state.watch) && !state.terminal;

function showState(s) {
  state = s;
  const status = $("job-status");
  status.textContent = s.label;
  status.className = `status status-${s.status}`;
  $("job-hint").hidden = !s.waiting;
  $("job-preparing").hidden = !s.preparing;
  $("job-prepared").textContent = String(s.items_prepared);
  $("job-error").hidden = !s.error;
  $("job-error").textContent = s.error;
  for (const form of $("job-actions").querySelectorAll("form[data-action]")) {
    form.hidden = !(canControl && s.actions.includes(form.dataset.action));
  }
  $("job-speed-form").hidden = !canControl || s.terminal;
  $("job-speed-figure").hidden = !(s.running || s.terminal);
  $("job-eta-figure").hidden = !s.running;
  if (!s.running) showActive([]);
  if (s.terminal) {
    $("job-speed").textContent = s.average_speed != null ? `${size(s.average_speed)}/s average`
      : (s.files_skipped ? `— (nothing to send: ${s.files_skipped} unchanged)` : "—");
  } else if (!s.running) {
    $("job-speed").textContent = "—";
  }
  $("job-ran").textContent = !s.started_at ? "not yet"
    : clock(s.started_at) + (s.finished_at ? ` – ${clock(s.finished_at)} (${s.duration.toFixed(1)} s)` : "");
  showFigures(s);
  showWatch(s.watch);
  if (s.settled) settle();
}

function showWatch(watch) {
  // A download watcher's news: each render task's farm status and frames, and the next listing.
  const panel = $("job-watch");
  state.watch = watch; // job.watch messages come between job.state ones
  panel.hidden = !watch;
  $("job-files-more").hidden = !watching();
  if (!watch) return;
  // Only while running: a paused or stopped watcher lists nothing (a resumed one lists at once).
  $("watch-next").textContent = watch.next_poll_at && state.running ? clock(watch.next_poll_at) : "—";
  $("watch-tasks").replaceChildren(...watch.tasks.map((t) => {
    const row = document.createElement("tr");
    const cells = [t.task_id, t.status, t.outputs_seen + (t.frames_expected ? ` of ${t.frames_expected}` : ""), t.settling, t.ended ? "yes" : "no"];
    for (const [index, value] of cells.entries()) {
      const cell = document.createElement("td");
      cell.textContent = String(value); // textContent: statuses come from the farm
      if (index !== 1 && index !== 4) cell.className = "num";
      row.append(cell);
    }
    return row;
  }));
}

function showProgress(p) {
  if (done) return;
  showFigures(p);
  if (!state.running) return; // a message sent before a pause or a stop: no speed claimed for it
  $("job-speed").textContent = `${size(p.speed)}/s`;
  addSpeed(p);
  $("job-eta").textContent = watching() ? "—" : duration(p.eta); // the frames still to render are not counted
  showActive(p.active);
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

async function fetchJob() {
  const epoch = stateEpoch;
  try {
    const response = await fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      signedOut();
      return;
    }
    if (!response.ok) return;
    const job = await response.json();
    if (epoch === stateEpoch && !done) showState(job.live);
  } catch (error) {
    // network trouble: the next round may get through
  }
}

function signedOut() {
  // The session ended (or the job is no longer ours to see): polling cannot help.
  done = true;
  clearTimeout(pollTimer);
  $("job-live").innerHTML = 'signed out: <a href="/login/?next=' + encodeURIComponent(window.location.pathname) + '">log in again</a>';
}

async function poll() {
  await fetchJob();
  // While the socket is down; and while a terminal job's run is still stopping, in case its last
  // message is lost (publishing is best effort).
  if (!done && (!live || state.terminal)) pollTimer = setTimeout(poll, POLL_MS);
}

function settle() {
  if (done) return;
  done = true;
  clearTimeout(pollTimer);
  $("job-live").textContent = "";
  if (socket) socket.close();
  if (!settledAtLoad) reloadFiles(); // the files' final states
}

function showMessages(page) {
  // The flash messages of the answer ("Pausing: …"), in place of the ones shown so far.
  for (const old of document.querySelectorAll("main > p.message")) old.remove();
  const main = document.querySelector("main");
  for (const message of page.querySelectorAll("main > p.message")) main.prepend(document.adoptNode(message));
}

async function submitInPlace(event) {
  // The controls post as plain forms (they work without this script), but here without a reload: a
  // reload would show the database's figures, up to a second older than the live ones on the page.
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
  event.preventDefault();
  const epoch = stateEpoch;
  let response;
  try {
    response = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
  } catch (error) {
    form.submit();
    return;
  }
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("job-state");
  if (!response.ok || !fresh) {
    window.location.assign(response.url); // signed out, or something only a full page can say
    return;
  }
  showMessages(page);
  if (epoch === stateEpoch && !done) showState(JSON.parse(fresh.textContent));
}

root.addEventListener("submit", submitInPlace);

const RECONNECT_MAX_MS = 30000;
let reconnectDelay = 2000;

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${window.location.host}${root.dataset.ws}`);
  socket.addEventListener("open", () => {
    live = true;
    reconnectDelay = 2000;
    clearTimeout(pollTimer);
    $("job-live").textContent = "live";
    poll(); // catch up on anything that happened while we were not subscribed
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "job.progress") showProgress(message);
    if (message.type === "job.watch" && !done) showWatch(message.watch);
    if (message.type === "job.state" && message.live) {
      stateEpoch += 1;
      showState(message.live);
      if (message.live.terminal && !done) { clearTimeout(pollTimer); pollTimer = setTimeout(poll, POLL_MS); }
    }
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    live = false;
    if (done) return;
    if (event.code === 4401 || event.code === 4403) {
      signedOut();
      return;
    }
    $("job-live").textContent = "connection lost; polling";
    clearTimeout(pollTimer);
    poll();
    // Try the socket again, backing off, while polling keeps the page current.
    setTimeout(() => { if (!done && !socket) connect(); }, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  });
}

showState(state);
if (!done) connect();

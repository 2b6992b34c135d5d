// The job page's per-file table: pages of the job's files as JSON (GET /jobs/<id>/items: state,
// after, q), 100 at a time by item number, appended with "More". The server keeps it fast at any
// size (keyset paging on an index); this only renders.
const form = document.getElementById("file-filter");
const body = document.getElementById("file-rows");
const more = document.getElementById("file-more");
const note = document.getElementById("file-note");
let next = null;
let asked = 0; // the latest request: an older answer arriving late is dropped

function size(bytes) {
  if (bytes == null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function row(item) {
  const tr = document.createElement("tr");
  tr.dataset.state = item.state;
  const cells = [
    [item.number, "num"], [item.local, "path"], [item.server, "path"], [size(item.size), "num"],
    [item.state, ""], [item.attempts, "num"], [item.error, ""],
  ];
  for (const [value, style] of cells) {
    const td = document.createElement("td");
    td.textContent = String(value ?? ""); // textContent: paths and reasons are user data
    if (style) td.className = style;
    tr.append(td);
  }
  return tr;
}

async function load(append) {
  const ticket = ++asked;
  const params = new URLSearchParams(new FormData(form));
  if (append && next != null) params.set("after", String(next));
  note.textContent = "loading…";
  try {
    const response = await fetch(`${form.dataset.url}?${params}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const page = await response.json();
    if (ticket !== asked) return;
    if (!response.ok) { note.textContent = page.error || `error ${response.status}`; return; }
    const rows = page.items.map(row);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    if (!append && rows.length === 0) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td colspan="7" class="hint">No files here.</td>';
      body.replaceChildren(tr);
    }
    next = page.next;
    more.hidden = next == null;
    note.textContent = "";
  } catch (error) {
    if (ticket === asked) note.textContent = "could not load the files; try again";
  }
}

export function reloadFiles() {
  load(false);
}

form.addEventListener("submit", (event) => { event.preventDefault(); load(false); });
form.querySelector("select[name=state]").addEventListener("change", () => load(false));
more.addEventListener("click", () => load(true));
load(false);

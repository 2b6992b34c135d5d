// The server-side folder picker: lists one folder at a time through the API (beneath the allowed
// roots only; the server refuses anything else), keeps the ticked files and folders, and adds them
// to a new manifest or to this one (a worker walks the folders). Then it opens the manifest's page.
const root = document.getElementById("picker");
const chosen = new Set();
let current = null;

function csrf() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function say(text) {
  document.getElementById("picker-error").textContent = text;
}

function showChosen() {
  document.getElementById("picker-chosen").textContent = chosen.size ? [...chosen].join(", ") : "nothing";
}

function row(path, label, isFolder) {
  const item = document.createElement("li");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = chosen.has(path);
  box.setAttribute("aria-label", `choose ${label}`);
  box.addEventListener("change", () => {
    if (box.checked) chosen.add(path);
    else chosen.delete(path);
    showChosen();
  });
  item.append(box, " ");
  if (isFolder) {
    const open = document.createElement("a");
    open.href = "#";
    open.textContent = label + "/";
    open.addEventListener("click", (event) => {
      event.preventDefault();
      list(path);
    });
    item.append(open);
  } else {
    item.append(label);
  }
  return item;
}

async function list(path) {
  say("");
  const url = new URL(root.dataset.folders, window.location.href);
  if (path) url.searchParams.set("path", path);
  let body;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    body = await response.json();
    if (!response.ok) {
      say(body.error?.message || `HTTP ${response.status}`);
      return;
    }
  } catch (error) {
    say("Cannot reach the server.");
    return;
  }
  const items = document.getElementById("picker-list");
  items.replaceChildren();
  current = body.path;
  document.getElementById("picker-path").textContent = body.path || "allowed roots";
  const up = document.getElementById("picker-up");
  up.disabled = !body.path;
  up.onclick = () => list(body.parent || "");
  if (!body.path) {
    for (const folder of body.roots) items.append(row(folder, folder, true));
    return;
  }
  for (const name of body.folders) items.append(row(`${body.path}/${name}`, name, true));
  for (const file of body.files) items.append(row(`${body.path}/${file.name}`, `${file.name} (${file.size} B)`, false));
  for (const name of body.others) {
    const item = document.createElement("li");
    item.className = "hint";
    item.textContent = `${name} (a symlink or special file: not followed)`;
    items.append(item);
  }
  if (body.more) {
    const item = document.createElement("li");
    item.className = "hint";
    item.textContent = `and ${body.more} more: choose the folder itself to add them all`;
    items.append(item);
  }
}

document.getElementById("picker-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!chosen.size) {
    say("Choose at least one file or folder.");
    return;
  }
  const payload = { paths: [...chosen] };
  const name = document.getElementById("picker-name");
  if (name) {
    payload.name = name.value;
    payload.account = Number(document.getElementById("picker-account").value);
  }
  const response = await fetch(root.dataset.append, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    say(body.error?.message || `HTTP ${response.status}`);
    return;
  }
  window.location.assign(body.manifest_url);
});

document.getElementById("picker-go").addEventListener("submit", (event) => {
  event.preventDefault();
  const path = document.getElementById("picker-go-path").value.trim();
  if (path) list(path);
});

if (root) list(current || "");

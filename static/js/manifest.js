// Manifest page while a worker imports it, or appends to, splits or dry-runs it: poll the REST API
// every second, show the progress, and reload once the work has ended (the page then renders the
// entries, the parts or the result).
const POLL_MS = 1000;
const importing = document.getElementById("manifest-import");
const works = document.getElementById("manifest-works");

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

async function pollImport() {
  try {
    const manifest = await getJson(importing.dataset.api);
    document.getElementById("import-stored").textContent = manifest.entries_stored.toLocaleString();
    document.getElementById("import-live").textContent = "";
    if (manifest.state !== "importing") {
      window.location.reload();
      return;
    }
  } catch (error) {
    document.getElementById("import-live").textContent = " (cannot reach the server; retrying)";
  }
  window.setTimeout(pollImport, POLL_MS);
}

async function pollWorks() {
  const active = new Set(works.dataset.active.split(" ").filter(Boolean).map(Number));
  try {
    const listed = await getJson(works.dataset.api);
    for (const work of listed) {
      if (!active.has(work.id)) continue;
      if (work.state !== "queued" && work.state !== "running") {
        window.location.reload();
        return;
      }
      const done = document.getElementById(`work-${work.id}-done`);
      if (done) done.textContent = work.done.toLocaleString();
      const state = document.getElementById(`work-${work.id}-state`);
      if (state) state.textContent = work.state_label;
    }
  } catch (error) {
    for (const id of active) {
      const live = document.getElementById(`work-${id}-live`);
      if (live) live.textContent = " (cannot reach the server; retrying)";
    }
  }
  window.setTimeout(pollWorks, POLL_MS);
}

if (importing) window.setTimeout(pollImport, POLL_MS);
if (works && works.dataset.active.trim()) window.setTimeout(pollWorks, POLL_MS);

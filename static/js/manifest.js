// Manifest page while a worker imports it: poll the REST API every second, show how many entries are
// stored, and reload once the import has ended (the page then renders the entries or the problems).
const POLL_MS = 1000;
const root = document.getElementById("manifest-import");

async function poll() {
  try {
    const response = await fetch(root.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.ok) {
      const manifest = await response.json();
      document.getElementById("import-stored").textContent = manifest.entries_stored.toLocaleString();
      document.getElementById("import-live").textContent = "";
      if (manifest.state !== "importing") {
        window.location.reload();
        return;
      }
    }
  } catch (error) {
    document.getElementById("import-live").textContent = " (cannot reach the server; retrying)";
  }
  window.setTimeout(poll, POLL_MS);
}

if (root) window.setTimeout(poll, POLL_MS);

// The transfers list, live: every ~2 s the table's rows are fetched again (same filters and page,
// `rows=1`: the server renders only the rows) and swapped in, so status, progress and speed stay
// current without a reload. Paused while the tab is hidden.
const POLL_MS = 2000;
const table = document.getElementById("job-table");
const rows = document.getElementById("job-rows");
const note = document.getElementById("job-list-live");

function rowsUrl() {
  const params = new URLSearchParams(table.dataset.rows.replace(/^\?/, ""));
  params.set("rows", "1");
  return `${window.location.pathname}?${params}`;
}

async function refresh() {
  if (document.hidden) return;
  try {
    const response = await fetch(rowsUrl(), { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected || response.status === 401 || response.status === 403) {
      note.textContent = "signed out: reload to log in again";
      return "stop";
    }
    if (!response.ok) return;
    const body = new DOMParser().parseFromString(`<table><tbody>${await response.text()}</tbody></table>`, "text/html");
    rows.replaceChildren(...body.querySelectorAll("tbody > tr"));
    note.textContent = "live";
  } catch (error) {
    note.textContent = "connection lost; retrying";
  }
}

async function loop() {
  if ((await refresh()) === "stop") return;
  setTimeout(loop, POLL_MS);
}

setTimeout(loop, POLL_MS);

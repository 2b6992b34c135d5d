// Farm tasks page: while a task on the page is still rendering, follow the account's tasks through the
// REST API (GET /api/farm/<id>/tasks/) every two seconds, updating each row's status and frames. The
// server decides every label and whether a task has ended; this module only copies them onto the page.
const POLL_MS = 2000;

const table = document.getElementById("farm-tasks");

function rows() {
  return new Map([...table.querySelectorAll("tr[data-task]")].map((row) => [Number(row.dataset.task), row]));
}

function show(row, task) {
  const status = row.querySelector(".status");
  status.textContent = task.status_label;
  status.className = `status status-${task.outcome}`;
  status.title = `code ${task.status}`;
  row.querySelector(".frames").textContent = `${task.frames_done}/${task.frames_expected}`;
  row.dataset.terminal = task.terminal ? "1" : "0";
}

async function poll() {
  let answer;
  try {
    const response = await fetch(table.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(String(response.status));
    answer = await response.json();
  } catch {
    setTimeout(poll, POLL_MS * 2); // the server is away: try again a little later
    return;
  }
  const shown = rows();
  if (answer.tasks.some((task) => !shown.has(task.task_id))) {
    window.location.reload(); // a new task (another lead's render): the server renders the table again
    return;
  }
  for (const task of answer.tasks) show(shown.get(task.task_id), task);
  if ([...shown.values()].some((row) => row.dataset.terminal !== "1")) setTimeout(poll, POLL_MS);
}

if (table && [...rows().values()].some((row) => row.dataset.terminal !== "1")) setTimeout(poll, POLL_MS);

"""The SDK's Raysync transfer-task API (reference/sdk-spec.md §5.3) over rvweb's own jobs.

`start_transfer`, `get_task_status` and `get_task_list_status` keep the SDK's names, parameters, return
codes and raw answer shapes (`{"code", "message", "task-list": [{"task-id", "task-type", "task-state"}]}`),
but rvweb runs no Raysync service: a transfer task IS a TransferJob, its id the task id, made through
transfers.jobs.job_create (which checks, records, audits and enqueues it) and seen through
transfers.selectors only. So, unlike the SDK (§8):

* #4: nothing is killed or restarted to start or to look: another user's transfers are never stopped,
  and never shown (another team's task answers exactly as a missing one: code 404, an empty list).
* #5: a start always makes a new job; it never restarts an older failed one (retrying is explicit:
  services.job_retry, `POST /api/jobs/<id>/retry/`).
* #6: `wait=True` waits as long as the job runs (or `max_timeout` seconds, if given); at the bound it
  answers the job's current code and says that the transfer goes on; it never fails a running transfer.

Codes (RESPONSE, the SDK's table, plus rvweb's 400 and 404):

    code  name           start_transfer answers it when                 a task's state for it
    0     successful     started (wait=False), or completed (wait=True)   completed
    100   ready          wait=True timed out while the job was queued     queued
    101   start          wait=True timed out while the job was running    running
    102   stopped        wait=True met a pause or a cancel                paused, cancelled
    400   (rvweb)        invalid arguments: a type, a path outside the allowed roots, a missing task_id,
                         an option rvweb cannot honour (proxy_ip, trans_storage "input")
    404   (rvweb)        no such farm account / transfer task that you may see (the same for both)
    405   no-permission  your role in the account's team does not allow it (a viewer; an upload of a
                         local path imports a manifest, which needs the lead role)
    500   failed         wait=True: the job failed or completed with errors   failed, completed_with_errors
    201 auth-failed, 202 proxy-closed, 205 ip-locked, 209 account-locked, 300 idle, 301 stop-by-server:
    states of the Raysync service, which rvweb has not; never answered.

User errors are answers, never exceptions; only a bug or a database outage raises.
"""

from transfers.transfer_tasks.start import (
    MAX_LIST_BYTES,
    MAX_PATH_FILES,
    STARTS,
    StartArgs,
    TransferTaskResult,
    start_transfer,
    start_transfer_from,
)
from transfers.transfer_tasks.status import (
    INVALID,
    MAX_TASKS,
    NO_PERMISSION,
    NOT_FOUND,
    RESPONSE,
    STATES,
    TASK_GROUPS,
    TASK_TYPES,
    TaskEntry,
    TaskListAnswer,
    TaskState,
    get_task_list_status,
    get_task_status,
    task_entry,
)

__all__ = [
    "INVALID", "MAX_LIST_BYTES", "MAX_PATH_FILES", "MAX_TASKS", "NOT_FOUND", "NO_PERMISSION", "RESPONSE", "STARTS", "STATES",
    "TASK_GROUPS", "TASK_TYPES", "StartArgs", "TaskEntry", "TaskListAnswer", "TaskState", "TransferTaskResult",
    "get_task_list_status", "get_task_status", "start_transfer", "start_transfer_from", "task_entry",
]  # fmt: skip

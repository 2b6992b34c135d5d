"""Render task status codes (the SDK's table, reference/sdk-spec.md §6.1), and what each one means for us.

The SDK converts a code through a fixed table and crashes on any code missing from it (15, 50, 100,
null: §8 #8). Here every code is answered: a code this table does not know is logged and treated as
"not finished" (the task may still be rendering), never as an error that stops a download loop.

A parent ("shell") task's own status is ignored, as the SDK does (§4.2, §6.3): a tree of tasks has
ended when every leaf has; `tree_ended` says so, and refuses a tree without any leaf (the SDK loops
forever on one, §4.3).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What a status code means for whoever waits on the task."""

    ACTIVE = "active"  # waiting, preprocessing, rendering, analysing...: frames may still come
    FINISHED = "finished"  # every frame rendered
    FINISHED_WITH_FAILURES = "finished_with_failures"  # ended; some frames failed
    FAILED = "failed"
    STOPPED = "stopped"  # stopped by the user, the farm (credit, timeout) or abandoned
    TEST_DONE = "test_done"  # the priority (test) frames are done; waits for full-speed rendering
    UNKNOWN = "unknown"  # a code this table does not know: treated as not finished


@dataclass(frozen=True)
class TaskStatus:
    code: int | None
    label: str  # for people (the SDK's English label where it has one)
    name: str  # the farm documentation's name
    outcome: Outcome

    @property
    def known(self) -> bool:
        return self.outcome is not Outcome.UNKNOWN

    def terminal(self, *, is_test_stop: bool = False) -> bool:
        """No more frames will come: the SDK's terminal set {10, 20, 23, 25, 30, 35, 45}, plus 15 (a user's
        stop, which the SDK does not know), plus 40 when the caller stops after the test frames."""
        if self.outcome is Outcome.TEST_DONE:
            return is_test_stop
        return self.outcome not in (Outcome.ACTIVE, Outcome.UNKNOWN)

    @property
    def finished(self) -> bool:
        """Rendered to the end (perhaps with failed frames)."""
        return self.outcome in (Outcome.FINISHED, Outcome.FINISHED_WITH_FAILURES)

    @property
    def failed(self) -> bool:
        """Ended without rendering every frame: failed, or finished with failed frames."""
        return self.outcome in (Outcome.FAILED, Outcome.FINISHED_WITH_FAILURES)


_A, _F, _FF, _X, _S, _T = (
    Outcome.ACTIVE,
    Outcome.FINISHED,
    Outcome.FINISHED_WITH_FAILURES,
    Outcome.FAILED,
    Outcome.STOPPED,
    Outcome.TEST_DONE,
)
_TABLE: tuple[tuple[int, str, str, Outcome], ...] = (
    (0, "Waiting", "WAITING", _A),
    (5, "Rendering", "RENDERING", _A),
    (8, "Preprocessing", "PRE_RENDERING", _A),
    (10, "Stop", "STOP", _S),
    (15, "User stop", "USER_STOP", _S),
    (20, "Arrearage stop (out of credit)", "ARREARAGE_STOP", _S),
    (23, "Timeout stop", "TIME_OUT_STOP", _S),
    (25, "Done", "FINISHED", _F),
    (30, "Done (with failed frames)", "FINISHED_HAS_FAILED", _FF),
    (35, "Abort", "ABANDON", _S),
    (40, "Test done, waiting for full-speed render", "FINISHED_TEST", _T),
    (45, "Failed", "FAILED", _X),
    (50, "Analysing", "ANALYSE", _A),
    (100, "Updating", "UPDATING", _A),
)
STATUSES: dict[int, TaskStatus] = {code: TaskStatus(code, label, name, outcome) for code, label, name, outcome in _TABLE}

WAITING, RENDERING, DONE, DONE_WITH_FAILURES, FAILED = 0, 5, 25, 30, 45
TERMINAL_CODES = frozenset(code for code, status in STATUSES.items() if status.terminal())


def status_of(code: object) -> TaskStatus:
    """The meaning of a status code; an unknown one (or none, or not a number) is logged and is UNKNOWN."""
    if isinstance(code, int) and not isinstance(code, bool) and code in STATUSES:
        return STATUSES[code]
    logger.warning("unknown task status code %r: treated as not finished", code)
    shown = code if isinstance(code, int) and not isinstance(code, bool) else None
    return TaskStatus(shown, f"Unknown status ({code!r})", "UNKNOWN", Outcome.UNKNOWN)


def is_terminal(code: object, *, is_test_stop: bool = False) -> bool:
    return status_of(code).terminal(is_test_stop=is_test_stop)


def is_finished(code: object) -> bool:
    return status_of(code).finished


def is_failed(code: object) -> bool:
    return status_of(code).failed


def is_unknown(code: object) -> bool:
    return not status_of(code).known


class NoLeafTasks(ValueError):
    """A task tree without any leaf task: there is nothing whose end could be waited for."""


def tree_ended(leaf_codes: Iterable[object], *, is_test_stop: bool = False) -> bool:
    """Whether every leaf of a task tree has ended (the SDK's is_task_end, without its endless None)."""
    codes = list(leaf_codes)
    if not codes:
        raise NoLeafTasks("the task has no leaf tasks (no status to wait for)")
    return all(is_terminal(code, is_test_stop=is_test_stop) for code in codes)

"""One run of the transmitter binary: argv (no shell), "y" on stdin, stdout and stderr merged and read
line by line, stopped on request, its exit code turned into success / retry / fatal.

Exit codes (the binary's help): 0 success, 1 "should retry", -1 (255 as an exit status) fatal. The SDK
assumed 9/10/11 and retried everything else forever without a pause (bugs #1, #2); here anything but
0 and 1 is fatal and says its code, and the caller decides when to run again.

A closed or unreachable line makes the binary try for a while (the real one: "send connect request"
twice, the Aspera engine's "Failed to open TCP connection", about 12 s) and exit 1; that result says
"line unreachable, will retry" with the host and port, so a user can tell a dead line from a bad file.

The process gets its own session: stopping it signals the whole group (the binary starts `ascp`
children), SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transfers.engine.transmitter.command import STDIN, TransmitSpec
from transfers.engine.transmitter.output import ConnectionFailed, ManifestError, OutputEvent, TaskSummary, decode, parse_line

Status = Literal["success", "retry", "fatal", "stopped"]
UNREACHABLE = "line unreachable, will retry"
_TAIL_LINES = 20
_TICK = 0.1  # how often a quiet process is checked for a stop request
_MAX_LINE = 8192  # bytes of one output line kept (a path is never longer): the rest of a longer one is dropped
_MAX_DETAIL = 500  # characters of its output quoted in a result's message (copied into each failed item)


@dataclass(frozen=True)
class ProcessResult:
    status: Status
    exit_code: int | None  # None when it was stopped before it exited on its own
    message: str
    tail: tuple[str, ...]  # its last lines of output, for the job's log
    elapsed: float

    @property
    def retryable(self) -> bool:
        return self.status == "retry"


SILENT = "silent"


def run_transmitter(
    spec: TransmitSpec,
    *,
    log_dir: Path,
    stop: threading.Event,
    should_stop: Callable[[], bool] | None = None,
    on_event: Callable[[OutputEvent], None] | None = None,
    known: Collection[str] = (),
    secrets: Mapping[str, str] | None = None,
    grace: float = 5.0,
    timeout: float | None = None,
) -> ProcessResult:
    """Run `spec` to its end (or until `stop` is set / `should_stop()` is true / `timeout` passes).

    `on_event` gets each parsed output line, in this thread. `known` are the paths the run names (so
    a path holding ")" is matched exactly). The transmitter runs in `log_dir` (it looks for a log.ini
    in its working folder) and logs there through RAYVISION_LOG.
    """
    started = heard = time.monotonic()
    known = known if isinstance(known, frozenset | set) else frozenset(known)  # looked up for every line
    process = subprocess.Popen(
        spec.argv(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=spec.env(log_dir, secrets),
        cwd=log_dir,
        start_new_session=True,
        close_fds=True,
    )
    lines: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(target=_read, args=(process, lines), name="rvweb-transmitter-out", daemon=True)
    reader.start()
    _answer(process)
    known = known if isinstance(known, (set, frozenset)) else frozenset(known)  # looked up for each line
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    unreachable = False
    notes: list[str] = []
    stopped_by = ""
    while True:
        try:
            raw = lines.get(timeout=_TICK)
        except queue.Empty:
            raw = b""
        if raw is None:
            break
        if raw:
            heard = time.monotonic()
            text = decode(raw)
            if text.strip():
                tail.append(text)
            event = parse_line(text, known)
            if isinstance(event, ConnectionFailed):
                unreachable = True
            elif isinstance(event, ManifestError) or (isinstance(event, TaskSummary) and event.outcome != "success"):
                notes.append(event.text)
            if on_event is not None:
                on_event(event)
        if not stopped_by:
            if stop.is_set() or (should_stop is not None and should_stop()):
                stopped_by = "stopped"
            elif timeout is not None and time.monotonic() - started > timeout:
                stopped_by = f"timed out after {timeout:.0f}s"
            elif spec.silence is not None and time.monotonic() - heard > spec.silence:
                stopped_by = SILENT
            if stopped_by:
                _end(process, grace)
    code = process.wait()
    reader.join(timeout=grace)
    elapsed = time.monotonic() - started
    if stopped_by == "stopped":
        return ProcessResult("stopped", None, "stopped", tuple(tail), elapsed)
    if stopped_by == SILENT:  # hung (a line that stopped answering mid-file): stopped, and worth another try
        return ProcessResult(
            "retry", None, f"transmitter printed nothing for {spec.silence:.0f}s: stopped, will retry", tuple(tail), elapsed
        )
    if stopped_by:
        return ProcessResult("fatal", None, f"transmitter {stopped_by}", tuple(tail), elapsed)
    return _result(code, spec, unreachable, notes, tuple(tail), elapsed)


def _result(
    code: int, spec: TransmitSpec, unreachable: bool, notes: list[str], tail: tuple[str, ...], elapsed: float
) -> ProcessResult:
    where = f"{spec.host}:{spec.port}"
    if code == 0:
        return ProcessResult("success", code, "", tail, elapsed)
    if unreachable:
        return ProcessResult("retry", code, f"{UNREACHABLE} ({spec.engine} line {where})", tail, elapsed)
    detail = f": {notes[-1]}" if notes else (f": {tail[-1]}" if tail else "")
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    if code == 1:
        return ProcessResult("retry", code, f"transmitter asked for a retry (exit 1){detail}", tail, elapsed)
    if code in (255, -1):
        return ProcessResult("fatal", code, f"transmitter fatal error (exit {code}){detail}", tail, elapsed)
    if code < 0:
        return ProcessResult("fatal", code, f"transmitter killed by signal {-code}{detail}", tail, elapsed)
    return ProcessResult("fatal", code, f"transmitter failed with unexpected exit code {code}{detail}", tail, elapsed)


def _read(process: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
    assert process.stdout is not None
    stdout = process.stdout
    try:
        while raw := stdout.readline(_MAX_LINE):
            if len(raw) == _MAX_LINE and not raw.endswith(b"\n"):  # an endless line: keep its start only
                while (rest := stdout.readline(_MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
            lines.put(raw)
    finally:
        process.stdout.close()
        lines.put(None)


def _answer(process: subprocess.Popen[bytes]) -> None:
    """The SDK's `echo y|`: one "y" and end of input (a binary that never asks just ignores it)."""
    assert process.stdin is not None
    with contextlib.suppress(OSError):  # BrokenPipeError: it exited before reading
        process.stdin.write(STDIN)
        process.stdin.close()


def _end(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after `grace` seconds."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)

"""What the SFTP and S3 benchmarks (16-20) share: a run_transfer that must send every file, and a fault
proxy in a process of its own (so it does not compete with the engine for this process's GIL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

from transfers.engine.endpoints.base import Destination, Source
from transfers.engine.events import Event, FileFinished
from transfers.engine.runner import Move, RunSummary, TransferOptions, run_transfer


def transfer(source: Source, destination: Destination, moves: list[Move], options: TransferOptions) -> RunSummary:
    """One run; raises unless every file arrived (a benchmark of a failed run would mean nothing)."""
    errors: list[str] = []

    def report(event: Event) -> None:
        if isinstance(event, FileFinished) and not event.ok:
            errors.append(f"{event.item_id}: {event.error}")

    summary = run_transfer(source, destination, moves, report=report, options=options)
    if summary.files_ok != len(moves) or errors:
        raise RuntimeError(f"the engine did not send every file: {summary} {errors[:3]}")
    return summary


class ProxyProcess:
    """`python -m tests.servers.faultproxy` in a child process, forwarding to 127.0.0.1:`port`."""

    def __init__(self, port: int, *, latency_ms: float = 0, rate: int | None = None) -> None:
        argv = [sys.executable, "-m", "tests.servers.faultproxy", "--target", f"127.0.0.1:{port}"]
        argv += ["--latency-ms", str(latency_ms)] + (["--rate", str(rate)] if rate else [])
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "faultproxy listening on ..."
        self.port = int(self.process.stdout.readline())

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.process.terminate()
        self.process.wait(30)

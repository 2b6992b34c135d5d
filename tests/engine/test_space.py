"""A destination too small for the run (issue 6 item 7): what fits is sent, what does not is left unsent
(FileNotSent: neither done nor failed) and the run stops with "destination full: needs X, has Y on
<label>"; a disk filled by someone else mid-file keeps the partial, and the next run resumes it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.disks import limited_disk
from transfers.engine.events import BytesSent, Event, FileFinished, FileNotSent
from transfers.engine.runner import FileTask, RunSummary, TransferOptions, run_upload
from transfers.engine.send import SendOptions
from transfers.engine.space import SpaceBudget, human_bytes
from transfers.engine.storage import PARTIAL_SUFFIX, LocalStorage

MIB = 1 << 20
LABEL = 'input storage of farm account "farm"'


@pytest.fixture(params=["tmpfs", "emulated"])
def disk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 20 MiB destination: a real tmpfs where mounting works (as root), and always the emulated one."""
    with limited_disk(tmp_path / "disk", 20 * MIB, monkeypatch, emulated=request.param == "emulated"):
        yield tmp_path / "disk"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    folder = tmp_path / "local"
    folder.mkdir()
    return folder


def _file(local: Path, name: str, size: int) -> Path:
    path = local / name
    path.write_bytes(os.urandom(size))
    return path


def _run(local: Path, storage: LocalStorage, tasks: list[FileTask], events: list[Event], **options: object) -> RunSummary:
    return run_upload(
        tasks,
        storage=storage,
        allowed_roots=[local],
        report=events.append,
        options=TransferOptions(**{"pool_size": 4, **options}),  # type: ignore[arg-type]
    )


def test_files_that_fit_are_sent_and_the_one_that_does_not_is_left_unsent(disk: Path, local: Path) -> None:
    big = [FileTask(n, str(_file(local, f"big{n}.bin", 6 * MIB)), f"/D/big{n}.bin") for n in range(1, 5)]
    small = [FileTask(n, str(_file(local, f"small{n}.bin", 100_000)), f"/D/small{n}.bin") for n in range(5, 8)]
    events: list[Event] = []

    summary = _run(local, LocalStorage(disk, label=LABEL), big + small, events)

    finished = [e for e in events if isinstance(e, FileFinished)]
    not_sent = [e for e in events if isinstance(e, FileNotSent)]
    assert (summary.files_ok, summary.files_failed, summary.files_not_sent, summary.bytes_not_sent) == (6, 0, 1, 6 * MIB)
    assert all(e.ok for e in finished) and len(not_sent) == 1 and not_sent[0].item_id not in {e.item_id for e in finished}
    assert summary.stopped
    assert re.fullmatch(
        r'destination full: needs 6\.3 MB, has \d+(\.\d)? (kB|MB) on input storage of farm account "farm"', summary.stop_reason
    )
    assert not [p for p in disk.rglob(f"*{PARTIAL_SUFFIX}*")], "a file that does not fit is never started"


def test_a_file_left_unsent_goes_on_the_next_run_once_there_is_room(disk: Path, local: Path) -> None:
    tasks = [FileTask(n, str(_file(local, f"big{n}.bin", 8 * MIB)), f"/D/big{n}.bin") for n in range(1, 4)]
    events: list[Event] = []
    storage = LocalStorage(disk, label=LABEL)
    first = _run(local, storage, tasks, events)
    (unsent,) = [e.item_id for e in events if isinstance(e, FileNotSent)]
    done = [e.item_id for e in events if isinstance(e, FileFinished)]
    (disk / "D" / f"big{done[0]}.bin").unlink()  # the farm took it away
    again: list[Event] = []

    second = _run(local, storage, [t for t in tasks if t.item_id == unsent], again)

    assert (first.files_ok, first.files_not_sent, second.files_ok, second.stopped, second.stop_reason) == (2, 1, 1, False, "")
    assert (disk / "D" / f"big{unsent}.bin").read_bytes() == Path(tasks[unsent - 1].local).read_bytes()


def test_a_disk_filled_by_someone_else_mid_file_keeps_the_partial_and_the_next_run_resumes_it(disk: Path, local: Path) -> None:
    source = _file(local, "shot.bin", 8 * MIB)
    filler = disk / "someone-else.bin"
    storage = LocalStorage(disk, label=LABEL)
    events: list[Event] = []

    def fill_the_disk(event: Event) -> None:
        events.append(event)
        if isinstance(event, BytesSent) and not filler.exists():
            filler.write_bytes(b"\0" * (storage.free_space() - 64 * 1024))

    first = run_upload(
        [FileTask(1, str(source), "/D/shot.bin")],
        storage=storage,
        allowed_roots=[local],
        report=fill_the_disk,
        options=TransferOptions(pool_size=1, attempts=3, send=SendOptions(chunk=256 * 1024, kernel_copy=False)),
    )

    kept = storage.partial_size("D/shot.bin")
    assert [type(e).__name__ for e in events if isinstance(e, (FileFinished, FileNotSent))] == ["FileNotSent"]
    assert (first.stopped, first.files_failed, first.files_not_sent) == (True, 0, 1)
    assert first.stop_reason.startswith("destination full: needs ") and first.stop_reason.endswith(f" on {LABEL}")
    assert 0 < kept < 8 * MIB
    filler.unlink()
    again: list[Event] = []

    second = _run(local, storage, [FileTask(1, str(source), "/D/shot.bin")], again)

    assert (second.files_ok, second.stopped) == (1, False)
    assert [e.count for e in again if isinstance(e, BytesSent) and e.resumed] == [kept]
    assert (disk / "D" / "shot.bin").read_bytes() == source.read_bytes()


def test_a_partial_file_kept_from_before_counts_toward_what_a_file_still_needs(disk: Path, local: Path) -> None:
    source = _file(local, "shot.bin", 8 * MIB)
    storage = LocalStorage(disk, label=LABEL)
    with storage.open_partial("D/shot.bin", 0) as handle:
        handle.write(source.read_bytes()[: 7 * MIB])
    (disk / "someone-else.bin").write_bytes(b"\0" * (storage.free_space() - 2 * MIB))  # 2 MiB left: 1 MiB is needed
    events: list[Event] = []

    summary = _run(local, storage, [FileTask(1, str(source), "/D/shot.bin")], events)

    assert (summary.files_ok, summary.files_not_sent, summary.stopped) == (1, 0, False)
    assert [e.count for e in events if isinstance(e, BytesSent) and e.resumed] == [7 * MIB]


# the budget itself


class _Disk:
    def __init__(self, free: int) -> None:
        self.free = free

    def free_space(self) -> int:
        return self.free


def test_budget_refuses_a_file_that_does_not_fit_with_nothing_in_flight() -> None:
    budget = SpaceBudget(_Disk(10 * MIB), margin=0)  # type: ignore[arg-type]

    assert (budget.reserve(1, 11 * MIB), budget.reserve(2, 10 * MIB)) == (False, True)


def test_budget_makes_a_file_wait_for_the_files_in_flight_before_it_says_no_room() -> None:
    budget = SpaceBudget(_Disk(10 * MIB), margin=0)  # type: ignore[arg-type]
    budget.reserve(1, 6 * MIB)
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(budget.reserve(2, 6 * MIB)))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and answer == []  # 6 MiB are promised to file 1

    budget.release(1)
    waiting.join(5)

    assert answer == [True]


def test_budget_stops_waiting_when_the_run_stops() -> None:
    budget, stop = SpaceBudget(_Disk(10 * MIB), margin=0), threading.Event()  # type: ignore[arg-type]
    budget.reserve(1, 6 * MIB)
    stop.set()

    assert budget.reserve(2, 6 * MIB, stop) is False


def test_budget_lowers_a_reservation_as_the_file_writes() -> None:
    disk = _Disk(10 * MIB)
    budget = SpaceBudget(disk, margin=0)  # type: ignore[arg-type]
    budget.reserve(1, 6 * MIB)
    disk.free -= 4 * MIB  # what file 1 wrote is gone from the free space...
    budget.wrote(1, 4 * MIB)  # ...and from its reservation: counted once

    assert budget.reserve(2, 4 * MIB)


def test_budget_lets_files_go_when_the_destination_cannot_tell() -> None:
    class Unknown:
        def free_space(self) -> int:
            raise NotImplementedError

    assert SpaceBudget(Unknown()).reserve(1, 1 << 40)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 bytes"), (999, "999 bytes"), (123_400_000, "123.4 MB"), (45_600_000, "45.6 MB"), (2 * 10**12, "2.0 TB")],
)
def test_human_bytes_in_decimal_units(count: int, text: str) -> None:
    assert human_bytes(count) == text

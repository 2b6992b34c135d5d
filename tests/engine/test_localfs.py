"""LocalTree: local files opened under an allowed root with no symlink followed below it (issue 6 item 1),
and a run whose folder is swapped for a symlink to somewhere else between the plan and the send.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from transfers.engine.events import Event, FileFinished, FileStarted
from transfers.engine.localfs import LocalTree, NotAFile
from transfers.engine.paths import PathRefused
from transfers.engine.runner import FileTask, TransferOptions, run_upload
from transfers.engine.storage import LocalStorage

SECRET = b"root:secret-hash:19000::::::\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/a/b/c.bin, and beside the root a folder `outside` holding the same names with a secret."""
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    (tmp_path / "root" / "a" / "b" / "c.bin").write_bytes(b"inside")
    (tmp_path / "outside" / "a" / "b").mkdir(parents=True)
    for path in (
        tmp_path / "outside" / "c.bin",
        tmp_path / "outside" / "b" / "c.bin",
        tmp_path / "outside" / "a" / "b" / "c.bin",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SECRET)
    return tmp_path / "root"


def _read(tree: LocalTree, path: Path | str) -> bytes:
    fd, _ = tree.open_file(str(path))
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def test_open_file_reads_a_file_below_the_root(root: Path) -> None:
    with LocalTree([root]) as tree:
        assert _read(tree, root / "a" / "b" / "c.bin") == b"inside"


@pytest.mark.parametrize(
    ("swapped", "target"),
    [("a", "outside"), ("a/b", "outside/b"), ("a/b/c.bin", "outside/c.bin")],
    ids=["first folder", "second folder", "the file itself"],
)
def test_open_file_refuses_a_symlink_at_any_component(root: Path, swapped: str, target: str) -> None:
    victim = root / swapped
    victim.rename(victim.with_name(victim.name + ".old"))
    victim.symlink_to(root.parent / target)

    with LocalTree([root]) as tree, pytest.raises(PathRefused, match=f"goes through a symlink at '{victim.name}'"):
        tree.open_file(str(root / "a" / "b" / "c.bin"))


def test_open_file_refuses_a_symlink_below_the_root_even_when_it_points_inside(root: Path) -> None:
    (root / "link").symlink_to(root / "a")

    with LocalTree([root]) as tree, pytest.raises(PathRefused, match="symlink"):
        tree.open_file(str(root / "link" / "b" / "c.bin"))


def test_open_file_follows_a_root_that_is_itself_a_symlink(root: Path) -> None:
    alias = root.parent / "alias"
    alias.symlink_to(root)

    with LocalTree([alias]) as tree:
        assert _read(tree, alias / "a" / "b" / "c.bin") == b"inside"
        assert _read(tree, root / "a" / "b" / "c.bin") == b"inside"  # its real spelling is the same root


@pytest.mark.parametrize("path", ["outside/c.bin", "root/../outside/c.bin", "rootx/c.bin"])
def test_open_file_refuses_paths_outside_the_root(root: Path, path: str) -> None:
    with LocalTree([root]) as tree, pytest.raises(PathRefused):
        tree.open_file(f"{root.parent}/{path}")


def test_open_file_refuses_a_fifo_without_hanging(root: Path) -> None:
    os.mkfifo(root / "a" / "pipe")
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            LocalTree([root]).open_file(str(root / "a" / "pipe"))
        except BaseException as exc:
            outcome.append(exc)

    opener = threading.Thread(target=attempt, daemon=True)
    opener.start()
    opener.join(5)

    assert not opener.is_alive(), "opening a FIFO hung"
    assert isinstance(outcome[0], NotAFile) and "not a regular file" in str(outcome[0])


def test_open_file_refuses_a_folder(root: Path) -> None:
    with LocalTree([root]) as tree, pytest.raises(NotAFile, match="a folder, not a file"):
        tree.open_file(str(root / "a" / "b"))


def test_open_file_says_a_missing_file_is_missing(root: Path) -> None:
    with LocalTree([root]) as tree, pytest.raises(FileNotFoundError):
        tree.open_file(str(root / "a" / "nothing.bin"))


@pytest.mark.parametrize("path", ["c.bin", "a/b/c.bin"], ids=["at the root", "in a subfolder"])
def test_open_file_refuses_a_file_on_another_device_than_its_root(root: Path, path: str) -> None:
    (root / "c.bin").write_bytes(b"top")
    tree = LocalTree([root])
    # Simulated: the root claims another device, so everything below looks like another filesystem.
    tree._roots = [(spelling, fd, device + 1) for spelling, fd, device in tree._roots]

    with tree, pytest.raises(PathRefused, match="another filesystem"):
        tree.open_file(str(root / path))


def test_a_folder_evicted_while_in_use_is_closed_only_when_its_user_is_done(root: Path) -> None:
    (root / "x").mkdir()
    tree = LocalTree([root], cached_folders=1)
    with tree.folder(str(root / "a" / "b")) as held:
        with tree.folder(str(root / "x")):  # evicts a/b from the cache while it is held
            pass
        assert os.fstat(held).st_ino == (root / "a" / "b").stat().st_ino  # still open, still that folder
    with pytest.raises(OSError):
        os.fstat(held)  # closed once released
    tree.close()


def test_a_cached_folder_keeps_pointing_at_the_checked_folder_after_its_path_is_swapped(root: Path) -> None:
    (root / "a" / "b" / "d.bin").write_bytes(b"inside too")
    with LocalTree([root]) as tree:
        assert _read(tree, root / "a" / "b" / "c.bin") == b"inside"
        (root / "a").rename(root / "a.old")
        (root / "a").symlink_to(root.parent / "outside" / "a")

        assert _read(tree, root / "a" / "b" / "d.bin") == b"inside too"  # the folder checked before, not the link


def test_folder_create_makes_missing_folders_0755_whatever_the_umask(root: Path) -> None:
    old = os.umask(0o077)
    try:
        with LocalTree([root]) as tree, tree.folder(str(root / "new" / "deeper"), create=True) as fd:
            assert os.fstat(fd).st_ino == (root / "new" / "deeper").stat().st_ino
    finally:
        os.umask(old)

    assert [oct((root / p).stat().st_mode & 0o777) for p in ("new", "new/deeper")] == ["0o755", "0o755"]


def test_open_file_for_writing_never_writes_through_a_symlink(root: Path) -> None:
    (root / "a" / "out.bin").symlink_to(root.parent / "outside" / "c.bin")

    with LocalTree([root]) as tree, pytest.raises(PathRefused, match="symlink"):
        tree.open_file(str(root / "a" / "out.bin"), os.O_WRONLY | os.O_CREAT)
    assert (root.parent / "outside" / "c.bin").read_bytes() == SECRET


def test_close_releases_every_descriptor(root: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    tree = LocalTree([root], cached_folders=2)
    for folder in ("a", "a/b", "a/b", "."):  # three folders in a cache of two: one is evicted and closed
        with tree.folder(str(root / folder)):
            pass
    _read(tree, root / "a" / "b" / "c.bin")

    tree.close()

    assert len(os.listdir("/proc/self/fd")) == before


# a run: the plan saw a real folder, the send finds a symlink


def test_a_folder_swapped_for_a_symlink_after_the_plan_fails_the_file_and_nothing_outside_lands(
    root: Path, tmp_path: Path
) -> None:
    (root / "x").mkdir()
    (root / "x" / "c.bin").write_bytes(b"inside, sent first")
    (root / "a" / "b" / "d.bin").write_bytes(b"inside, planned")
    storage = LocalStorage(tmp_path / "storage")
    tasks = [
        FileTask(1, str(root / "x" / "c.bin"), "/D/c.bin"),
        FileTask(2, str(root / "a" / "b" / "d.bin"), "/D/d.bin"),
    ]
    (root.parent / "outside" / "a" / "b" / "c.bin").write_bytes(SECRET)
    events: list[Event] = []

    def report(event: Event) -> None:
        events.append(event)
        if isinstance(event, FileStarted) and event.item_id == 2 and not (root / "a.old").exists():
            # planned already (as a real folder); about to be opened
            (root / "a").rename(root / "a.old")
            (root / "a").symlink_to(root.parent / "outside" / "a")

    summary = run_upload(tasks, storage=storage, allowed_roots=[root], report=report, options=TransferOptions(pool_size=1))

    finished = {e.item_id: e for e in events if isinstance(e, FileFinished)}
    assert (finished[1].ok, finished[2].ok, finished[2].error_code) == (True, False, "bad_path")
    assert "goes through a symlink at 'a'" in finished[2].error
    assert (summary.files_ok, summary.files_failed) == (1, 1)
    stored = [p for p in storage.root.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [b"inside, sent first"]
    assert not any(SECRET in p.read_bytes() for p in storage.root.rglob("*") if p.is_file())


def test_files_land_0644_in_folders_0755_whatever_the_source_mode_and_the_umask(root: Path, tmp_path: Path) -> None:
    source = root / "a" / "b" / "c.bin"
    source.chmod(0o600)
    storage = LocalStorage(tmp_path / "storage")
    old = os.umask(0o027)
    try:
        run_upload([FileTask(1, str(source), "/D/e/c.bin")], storage=storage, allowed_roots=[root], report=lambda e: None)
    finally:
        os.umask(old)

    modes = [oct((storage.root / path).stat().st_mode & 0o777) for path in ("D", "D/e", "D/e/c.bin")]
    assert modes == ["0o755", "0o755", "0o644"]


def test_a_partial_file_kept_with_another_mode_lands_0644(root: Path, tmp_path: Path) -> None:
    source = root / "a" / "b" / "c.bin"
    storage = LocalStorage(tmp_path / "storage")
    (storage.root / "D").mkdir()
    partial = storage.root / "D" / ".c.bin.rvpart"
    partial.write_bytes(b"ins")  # the first bytes, left by an earlier attempt
    partial.chmod(0o600)

    run_upload([FileTask(1, str(source), "/D/c.bin")], storage=storage, allowed_roots=[root], report=lambda e: None)

    assert oct((storage.root / "D" / "c.bin").stat().st_mode & 0o777) == "0o644"


def test_a_run_sends_through_a_symlink_that_pointed_inside_the_root_when_it_planned(root: Path, tmp_path: Path) -> None:
    # The plan resolves symlinks once (they must end inside a root); the open then walks the real path.
    (root / "latest").symlink_to(root / "a")
    storage = LocalStorage(tmp_path / "storage")
    events: list[Event] = []

    summary = run_upload(
        [FileTask(1, str(root / "latest" / "b" / "c.bin"), "/D/c.bin")],
        storage=storage,
        allowed_roots=[root],
        report=events.append,
    )

    assert (summary.files_ok, (storage.root / "D" / "c.bin").read_bytes()) == (1, b"inside")


def test_a_run_refuses_a_symlink_inside_the_root_that_points_outside(root: Path, tmp_path: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    events: list[Event] = []

    run_upload(
        [FileTask(1, str(root / "escape" / "c.bin"), "/D/c.bin")],
        storage=LocalStorage(tmp_path / "storage"),
        allowed_roots=[root],
        report=events.append,
    )

    (finished,) = [e for e in events if isinstance(e, FileFinished)]
    assert (finished.ok, finished.error_code) == (False, "bad_path")
    assert not (tmp_path / "storage" / "D" / "c.bin").exists()


def test_a_run_fails_a_file_whose_folder_is_a_file_as_missing_without_retrying(root: Path, tmp_path: Path) -> None:
    events: list[Event] = []

    run_upload(
        [FileTask(1, str(root / "a" / "b" / "c.bin" / "d.bin"), "/D/d.bin")],
        storage=LocalStorage(tmp_path / "storage"),
        allowed_roots=[root],
        report=events.append,
        options=TransferOptions(attempts=3, backoff_base=0.001, backoff_cap=0.01),
    )

    (finished,) = [e for e in events if isinstance(e, FileFinished)]
    assert (finished.ok, finished.error_code, finished.attempts) == (False, "missing_source", 1)


def test_the_prefetch_hint_skips_what_it_may_not_open_and_leaves_no_descriptor(root: Path, tmp_path: Path) -> None:
    from transfers.engine.endpoints.files import LocalFiles

    (root / "x").mkdir()
    (root / "x" / "ok.bin").write_bytes(b"inside")
    (root / "x" / "link.bin").symlink_to(root.parent / "outside" / "a" / "b" / "c.bin")
    os.mkfifo(root / "x" / "pipe")
    source = LocalFiles([root])
    before = len(os.listdir("/proc/self/fd"))
    paths = ["ok.bin", "link.bin", "pipe", "missing.bin", "."]

    source.prefetch([str(root / "x" / name) for name in paths] + ["/etc/passwd"])  # raises nothing, hangs on nothing

    assert len(os.listdir("/proc/self/fd")) == before
    source.close()

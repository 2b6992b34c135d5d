"""The SFTP transport against a real OpenSSH sshd (tests.servers.sshd): run_transfer both ways, host
keys (pinned, first use, a mismatch), logins that fail, a closed port, a connection killed mid-file
(resumed at its offset), modes, and paths or server-side links that lead out of the root.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import xxhash

from tests.engine.test_remote_endpoint import _studio as studio_files
from tests.engine.test_remote_endpoint import _up
from tests.engine.test_runner import QUICK_RETRIES, Recorder
from tests.servers.sshd import Sshd
from transfers.engine import hashing
from transfers.engine.endpoints import LocalFiles, LocalFolder, SftpFolder, VerifyFailed, open_endpoint, sftp_files
from transfers.engine.endpoints.sftp import ConnectFailed, ProbeFailed, probe
from transfers.engine.events import BytesSent, FileRetrying
from transfers.engine.paths import PathRefused
from transfers.engine.runner import Move, TransferOptions, run_transfer
from transfers.engine.send import SendOptions

KIB = 1 << 10
SMALL = SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB, remote_chunk=16 * KIB)
RANGED = SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB, remote_chunk=16 * KIB, range_size=64 * KIB, range_threshold=128 * KIB)
OTHER_KEY = asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def remote(sshd: Sshd, sftp_root: Path) -> Iterator[SftpFolder]:
    endpoint = SftpFolder(**sshd.endpoint_settings(root=str(sftp_root), label="the farm"))
    yield endpoint
    endpoint.close()


def _checksum(data: bytes) -> str:
    return hashing.plain(xxhash.xxh3_128(data).hexdigest())


def _other_key_line() -> str:
    return " ".join(OTHER_KEY.export_public_key().decode().split()[:2])


_studio = partial(studio_files, folder="7/shots")


# both directions


def test_an_upload_lands_byte_identical_with_files_0644_and_folders_0755(
    tmp_path: Path, remote: SftpFolder, sftp_root: Path
) -> None:
    contents = {n: os.urandom(1 + n * 7919) for n in range(1, 6)}

    summary = _up(tmp_path, remote, _studio(tmp_path, contents), send=SMALL)

    assert (summary.files_ok, summary.files_failed) == (5, 0)
    assert {n: (sftp_root / "7" / "shots" / f"s{n}.exr").read_bytes() for n in contents} == contents
    modes = {oct(os.stat(sftp_root / "7").st_mode & 0o777), oct(os.stat(sftp_root / "7" / "shots").st_mode & 0o777)}
    assert modes == {"0o755"}
    assert {oct(os.stat(sftp_root / "7" / "shots" / f"s{n}.exr").st_mode & 0o777) for n in contents} == {"0o644"}
    assert sorted(p.name for p in (sftp_root / "7" / "shots").iterdir()) == [f"s{n}.exr" for n in contents]  # no partials left


def test_a_large_upload_goes_in_ranges_over_several_connections(tmp_path: Path, remote: SftpFolder, sftp_root: Path) -> None:
    data = os.urandom(512 * KIB + 123)
    report = Recorder()

    summary = _up(tmp_path, remote, _studio(tmp_path, {1: data}), report, send=RANGED)

    assert summary.files_ok == 1 and report.finished()[1].checksum.startswith(f"xxh3-128/r{64 * KIB}:")
    assert (sftp_root / "7" / "shots" / "s1.exr").read_bytes() == data
    assert remote.session.connected() > 1


def test_a_download_lands_verified_in_the_local_folder(tmp_path: Path, remote: SftpFolder, sftp_root: Path) -> None:
    frames = {n: os.urandom(1000 + n) for n in range(1, 4)} | {4: os.urandom(300 * KIB)}
    (sftp_root / "12").mkdir()
    for n, data in frames.items():
        (sftp_root / "12" / f"f{n}.exr").write_bytes(data)
    (tmp_path / "home").mkdir()
    local = LocalFolder(tmp_path / "home" / "dl", allowed_roots=[tmp_path / "home"], where="the local folder")

    summary = run_transfer(
        remote,
        local,
        [Move(n, f"12/f{n}.exr", f"12_scene/f{n}.exr") for n in frames],
        report=Recorder(),
        options=TransferOptions(send=RANGED),
    )

    assert (summary.files_ok, summary.files_failed) == (4, 0)
    assert {n: (tmp_path / "home" / "dl" / "12_scene" / f"f{n}.exr").read_bytes() for n in frames} == frames


def test_a_download_of_a_missing_remote_file_says_so(tmp_path: Path, remote: SftpFolder) -> None:
    local = LocalFolder(tmp_path / "dl")
    report = Recorder()

    run_transfer(remote, local, [Move(1, "12/none.exr", "none.exr")], report=report)

    assert report.finished()[1].error == "file not found on the SFTP server: 12/none.exr"


def test_nothing_is_at_the_final_name_while_a_file_is_being_written(tmp_path: Path, remote: SftpFolder, sftp_root: Path) -> None:
    seen: list[tuple[bool, bool]] = []
    final, partial = sftp_root / "7" / "shots" / "s1.exr", sftp_root / "7" / "shots" / ".s1.exr.rvpart"

    def look(event: Any) -> None:
        if isinstance(event, BytesSent):
            seen.append((final.exists(), partial.exists()))

    _up(tmp_path, remote, _studio(tmp_path, {1: os.urandom(100 * KIB)}), Recorder(then=look), send=SMALL)

    assert len(seen) == 7 and set(seen) == {(False, True)}
    assert (final.exists(), partial.exists()) == (True, False)


# a dropped connection


def test_a_connection_killed_mid_file_resumes_at_its_offset_with_the_prefix_verified(
    tmp_path: Path, sshd: Sshd, remote: SftpFolder, sftp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sftp_files, "RECONNECTS", 0)  # the attempt fails (as when the server stays away a while)
    data = os.urandom(256 * KIB)
    killed = threading.Event()

    def kill_after_three_chunks(event: Any) -> None:
        if isinstance(event, BytesSent) and not killed.is_set() and len(report.of(BytesSent)) == 3:
            killed.set()
            assert sshd.kill_sessions() > 0

    report = Recorder(then=kill_after_three_chunks)

    summary = _up(tmp_path, remote, _studio(tmp_path, {1: data}), report, pool_size=1, send=SMALL, **QUICK_RETRIES)

    assert [e.error_code for e in report.of(FileRetrying)] == ["write_error"]
    assert [e.count for e in report.of(BytesSent) if e.resumed] == [48 * KIB]  # verified, not sent again
    assert (summary.files_ok, summary.bytes_sent) == (1, len(data) - 48 * KIB)
    assert (sftp_root / "7" / "shots" / "s1.exr").read_bytes() == data


def test_a_write_on_a_dropped_connection_is_repeated_on_a_new_one(sshd: Sshd, remote: SftpFolder, sftp_root: Path) -> None:
    handle = remote.open_partial("D/a.exr", 0)
    handle.write_at(b"abc", 0)
    assert sshd.kill_sessions() > 0

    handle.write_at(b"def", 3)
    buffer = memoryview(bytearray(6))
    assert (handle.read_at(buffer, 0), bytes(buffer)) == (6, b"abcdef")
    handle.close()

    assert (sftp_root / "D" / ".a.exr.rvpart").read_bytes() == b"abcdef"


def test_an_operation_on_a_dropped_connection_is_a_connection_error_and_the_next_one_reconnects(
    sshd: Sshd, remote: SftpFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sftp_files, "RECONNECTS", 0)
    handle = remote.open_partial("D/a.exr", 0)
    handle.write_at(b"abc", 0)
    sshd.kill_sessions()

    with pytest.raises(ConnectionError):
        handle.write_at(b"def", 3)
    handle.close()

    assert remote.partial_size("D/a.exr") == 3  # connected again, with the same pin


def test_a_server_that_stops_answering_mid_session_times_out_and_the_next_call_reconnects(sshd: Sshd, sftp_root: Path) -> None:
    with SftpFolder(**sshd.endpoint_settings(root=str(sftp_root), op_timeout=1)) as endpoint:
        endpoint.has("a.exr")  # connected
        for pid in sshd.sessions():
            os.kill(pid, signal.SIGSTOP)  # alive, silent

        with pytest.raises(TimeoutError, match=rf"127.0.0.1:{sshd.port} did not answer within 1 s"):
            endpoint.has("a.exr")
        sshd.kill_sessions()

        assert endpoint.has("a.exr") is False


def test_a_write_after_the_stamp_makes_finalize_read_the_partial_again(remote: SftpFolder) -> None:
    data = b"frame data"
    with remote.open_partial("D/a.exr", 0) as handle:
        handle.write_at(data, 0)
        verified = handle.stamp()
        handle.write_at(b"X", 0)  # after the writer's check

        with pytest.raises(VerifyFailed, match="checksum at the destination"):
            remote.finalize("D/a.exr", size=len(data), checksum=_checksum(data), handle=handle, verified=verified)

    assert (remote.stat("D/a.exr"), remote.partial_size("D/a.exr")) == (None, 0)


def test_an_unchanged_stamp_commits_without_reading_the_partial_back(remote: SftpFolder, sftp_root: Path) -> None:
    data = b"frame data"
    with remote.open_partial("D/a.exr", 0) as handle:
        handle.write_at(data, 0)
        verified = handle.stamp()
        handle.handles.read_at = None  # type: ignore[method-assign,assignment]  # finalize must not read it back

        remote.finalize("D/a.exr", size=len(data), checksum=_checksum(data), handle=handle, verified=verified)

    assert (sftp_root / "D" / "a.exr").read_bytes() == data


# host keys


def test_first_use_accepts_the_host_key_and_shows_it_for_pinning(sshd: Sshd, sftp_root: Path) -> None:
    with SftpFolder(**sshd.endpoint_settings(root=str(sftp_root), host_key="")) as endpoint:
        assert (endpoint.seen_host_key, endpoint.fingerprint) == (None, None)  # nothing connects before use

        endpoint.free_space()

        assert (endpoint.seen_host_key, endpoint.fingerprint) == (sshd.host_key, sshd.fingerprint)


def test_a_pinned_host_key_that_differs_is_refused_before_any_login(sshd: Sshd, sftp_root: Path) -> None:
    pinned = asyncssh.import_public_key(_other_key_line()).get_fingerprint("sha256")
    # a wrong login key too: the host key is what is reported, since no login was tried
    settings = sshd.endpoint_settings(
        root=str(sftp_root), host_key=_other_key_line(), private_key=OTHER_KEY.export_private_key().decode()
    )

    with SftpFolder(**settings) as endpoint, pytest.raises(ConnectFailed) as caught:
        endpoint.has("a.exr")

    assert str(caught.value) == f"host key of 127.0.0.1:{sshd.port} is {sshd.fingerprint}, not the pinned {pinned}"
    assert caught.value.code == "host_key"


def test_a_pinned_host_key_that_matches_connects(sshd: Sshd, sftp_root: Path) -> None:
    with SftpFolder(**sshd.endpoint_settings(root=str(sftp_root))) as endpoint:
        assert endpoint.has("a.exr") is False
        assert endpoint.fingerprint == sshd.fingerprint


def test_probe_gives_the_fingerprint_the_key_line_and_the_free_space(sshd: Sshd, sftp_root: Path) -> None:
    result = probe(sshd.host, sshd.port, sshd.username, private_key=sshd.private_key, root=str(sftp_root))

    assert (result.fingerprint, result.host_key_line, result.root) == (sshd.fingerprint, sshd.host_key, str(sftp_root))
    assert result.free_bytes is not None and result.free_bytes > 0
    assert list(sftp_root.iterdir()) == []  # its write test left nothing


def test_probe_names_a_host_key_mismatch_and_gives_the_key_seen(sshd: Sshd) -> None:
    with pytest.raises(ProbeFailed) as caught:
        probe(sshd.host, sshd.port, sshd.username, private_key=sshd.private_key, host_key=_other_key_line())

    assert (caught.value.code, caught.value.fingerprint, caught.value.host_key_line) == (
        "host_key",
        sshd.fingerprint,
        sshd.host_key,
    )


# logins and ports that fail, with their reason


def test_a_key_the_server_does_not_know_is_refused_with_a_clear_message(sshd: Sshd, sftp_root: Path) -> None:
    settings = sshd.endpoint_settings(root=str(sftp_root), private_key=OTHER_KEY.export_private_key().decode())

    with SftpFolder(**settings) as endpoint, pytest.raises(ConnectFailed) as caught:
        endpoint.stat("a.exr")

    assert str(caught.value) == f"authentication failed for user {sshd.username!r} at 127.0.0.1:{sshd.port} (the key was refused)"


def test_a_refused_password_is_named_without_the_password(sshd: Sshd, sftp_root: Path) -> None:
    settings = sshd.endpoint_settings(root=str(sftp_root), private_key=None, password="hunter2-secret")
    endpoint = SftpFolder(**settings)

    with pytest.raises(ProbeFailed, match=r"authentication failed .* \(the password was refused\)") as caught:
        probe(sshd.host, sshd.port, sshd.username, password="hunter2-secret", host_key=sshd.host_key)
    with pytest.raises(ConnectFailed) as again:
        endpoint.has("a.exr")
    endpoint.close()

    assert caught.value.code == "auth"
    texts = (str(caught.value), str(again.value), repr(endpoint), repr(vars(endpoint)), repr(vars(endpoint.session)))
    assert all("hunter2" not in text for text in texts)


def test_a_closed_port_is_named_as_refused(sshd: Sshd, sftp_root: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused

        with pytest.raises(ProbeFailed) as caught:
            probe("127.0.0.1", port, sshd.username, private_key=sshd.private_key)
        with (
            SftpFolder(**sshd.endpoint_settings(root=str(sftp_root), port=port)) as endpoint,
            pytest.raises(ConnectFailed) as again,
        ):
            endpoint.has("a.exr")

    assert (caught.value.code, str(caught.value)) == (
        "refused",
        f"cannot connect to 127.0.0.1:{port}: connection refused (no SSH server on that port?)",
    )
    assert isinstance(again.value, OSError) and again.value.code == "refused"


def test_a_server_that_never_answers_times_out(sshd: Sshd) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]

        with pytest.raises(ProbeFailed) as caught:
            probe("127.0.0.1", port, sshd.username, private_key=sshd.private_key, timeout=1)

    assert (caught.value.code, str(caught.value)) == ("timeout", f"cannot connect to 127.0.0.1:{port}: no answer within 1 s")


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda root: root / "missing", "root_missing", "the root folder {root} does not exist on 127.0.0.1:{port}"),
        (lambda root: _file(root / "a-file"), "root_not_folder", "the root {root} on 127.0.0.1:{port} is not a folder"),
    ],
)
def test_probe_names_a_root_that_is_missing_or_not_a_folder(
    sshd: Sshd, sftp_root: Path, make: Any, code: str, message: str
) -> None:
    root = make(sftp_root)

    with pytest.raises(ProbeFailed) as caught:
        probe(sshd.host, sshd.port, sshd.username, private_key=sshd.private_key, host_key=sshd.host_key, root=str(root))

    assert (caught.value.code, str(caught.value)) == (code, message.format(root=root, port=sshd.port))


def _file(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_settings_that_cannot_work_are_refused_before_connecting(sshd: Sshd) -> None:
    with pytest.raises(ValueError, match="must be an absolute path"):
        SftpFolder(**sshd.endpoint_settings(root="relative/folder"))
    with pytest.raises(ValueError, match="needs a password or a private key"):
        SftpFolder(**sshd.endpoint_settings(root="/x", private_key=None))
    with pytest.raises(ValueError, match="not an unencrypted OpenSSH or PEM private key"):
        SftpFolder(**sshd.endpoint_settings(root="/x", private_key="not a key"))
    with pytest.raises(ValueError, match="not an OpenSSH public-key line"):
        SftpFolder(**sshd.endpoint_settings(root="/x", host_key="ssh-ed25519 garbage"))


def test_the_endpoint_s_repr_holds_no_secret(sshd: Sshd) -> None:
    endpoint = open_endpoint("sftp", **sshd.endpoint_settings(root="/srv/farm"))

    assert repr(endpoint) == f"<SftpFolder {sshd.username}@127.0.0.1:{sshd.port}/srv/farm>"
    assert "PRIVATE" not in repr(vars(endpoint))


# paths and links


def test_an_upload_to_a_path_that_escapes_the_root_fails_that_file_only(
    tmp_path: Path, remote: SftpFolder, sftp_root: Path
) -> None:
    tasks = _studio(tmp_path, {1: b"one", 2: b"two"})
    tasks[0] = Move(1, tasks[0].source, "../../escaped.exr")
    report = Recorder()

    _up(tmp_path, remote, tasks, report)

    assert (report.finished()[1].error_code, report.finished()[2].ok) == ("bad_path", True)
    assert not (sftp_root.parent / "escaped.exr").exists() and not (sftp_root.parent.parent / "escaped.exr").exists()


def test_a_server_side_link_out_of_the_root_is_never_followed(tmp_path: Path, remote: SftpFolder, sftp_root: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.exr").write_bytes(b"secret")
    (outside / "deep" / "more.exr").write_bytes(b"more")
    (sftp_root / "D").mkdir()
    (sftp_root / "D" / "real.exr").write_bytes(b"real")
    (sftp_root / "D" / "secret.exr").symlink_to(outside / "secret.exr")
    (sftp_root / "linked").symlink_to(outside, target_is_directory=True)

    assert [f.path for f in remote.list()] == ["D/real.exr"]
    assert (remote.names("D"), remote.stat("D/secret.exr"), remote.has("D/secret.exr")) == ({"real.exr"}, None, False)
    with pytest.raises(PathRefused):
        remote.open_source("D/secret.exr")
    with pytest.raises(PathRefused):
        remote.stat("linked/secret.exr")
    with pytest.raises(PathRefused):
        remote.open_partial("linked/new.exr", 0)
    assert sorted(p.name for p in outside.iterdir()) == ["deep", "secret.exr"]


def test_a_pin_of_another_key_type_is_said_as_a_host_key_mismatch(sshd, tmp_path):
    """An ssh-rsa pin against an ed25519-only server: the server drops the key exchange; that is the pin's
    problem (a host key mismatch, never retried), not an unreachable server."""
    import subprocess

    from transfers.engine.endpoints.sftp import ProbeFailed, probe

    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "rsa")], check=True)
    rsa = " ".join((tmp_path / "rsa.pub").read_text().split()[:2])
    with pytest.raises(ProbeFailed) as failed:
        probe(sshd.host, sshd.port, sshd.username, private_key=sshd.private_key, host_key=rsa)
    assert failed.value.code == "host_key", failed.value
    assert sshd.fingerprint in str(failed.value)


def test_a_host_key_changed_mid_run_stops_the_run_instead_of_retrying_every_file(tmp_path, monkeypatch):
    """The server is replaced, after the first file, by one with another host key on the same port (a
    man in the middle): every file would meet it, so the run stops at once, saying why; nothing retried."""
    from tests.engine.test_runner import QUICK_RETRIES, Recorder
    from tests.servers import sshd as sshd_module
    from tests.servers.sshd import Sshd
    from transfers.engine.endpoints import SftpFolder
    from transfers.engine.events import FileFinished, FileRetrying
    from transfers.engine.runner import Move, TransferOptions, run_transfer

    first = Sshd.start(tmp_path / "first")
    remote_root = tmp_path / "remote"
    remote_root.mkdir()
    studio = tmp_path / "studio"
    studio.mkdir()
    tasks = []
    for n in range(1, 11):
        (studio / f"s{n}.exr").write_bytes(bytes([n]) * 1000)
        tasks.append(Move(n, str(studio / f"s{n}.exr"), f"shots/s{n}.exr"))
    remote = SftpFolder(**first.endpoint_settings(root=str(remote_root)))  # pinned to the first server's key
    mitm: Sshd | None = None

    def swap(event: object) -> None:
        nonlocal mitm
        if mitm is None and getattr(event, "ok", False):
            first.stop()
            monkeypatch.setattr(sshd_module, "_free_port", lambda: first.port)
            mitm = Sshd.start(tmp_path / "mitm")
            (mitm.folder / "authorized_keys").write_text((first.folder / "authorized_keys").read_text())
            remote.session.drop_all()

    report = Recorder(then=swap)
    try:
        options = TransferOptions(pool_size=1, attempts=3, **QUICK_RETRIES)
        summary = run_transfer(LocalFiles([studio]), remote, tasks, report=report, options=options)
    finally:
        remote.close()
        first.stop()
        if mitm is not None:
            mitm.stop()
    assert not [e for e in report.events if isinstance(e, FileRetrying)], "a refused host key is never retried"
    assert summary.stopped and "host key" in summary.stop_reason, summary
    failed = [e for e in report.events if isinstance(e, FileFinished) and not e.ok]
    assert failed and failed[0].error_code == "refused"
    assert (remote_root / "shots" / "s1.exr").read_bytes() == bytes([1]) * 1000, "the file done before stays done"


def test_a_file_goes_in_the_chunks_the_sftp_endpoint_prefers_unless_the_options_force_one(
    tmp_path: Path, remote: SftpFolder
) -> None:
    data = os.urandom(sftp_files.PREFERRED_CHUNK + 5 * KIB)
    preferred, forced = Recorder(), Recorder()

    _up(tmp_path, remote, _studio(tmp_path, {1: data}), preferred)
    _up(tmp_path, remote, _studio(tmp_path, {2: data}), forced, send=SendOptions(remote_chunk=1 << 20))

    assert [e.count for e in preferred.of(BytesSent)] == [sftp_files.PREFERRED_CHUNK, 5 * KIB]
    assert len(forced.of(BytesSent)) == 9

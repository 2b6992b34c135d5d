"""The transmitter's output lines as typed events."""

from __future__ import annotations

from transfers.engine.transmitter.output import (
    Connecting,
    ConnectionFailed,
    FileBegin,
    FileDone,
    FileFail,
    FileInterrupt,
    FileProgress,
    ManifestError,
    Other,
    TaskSummary,
    parse_line,
)


def test_file_begin() -> None:
    assert parse_line("upload file begin (/d/a b.txt)") == FileBegin("upload", "/d/a b.txt")


def test_file_done() -> None:
    assert parse_line(b"download file done (/out/x.exr)\n") == FileDone("download", "/out/x.exr")


def test_file_interrupt() -> None:
    assert parse_line("upload file interrupt (/d/a)") == FileInterrupt("upload", "/d/a")


def test_file_progress_with_speed_and_percentage() -> None:
    event = parse_line("upload file progress (/d/a.txt) total: 10, speed: 512 KB/S, progress: 40%")
    assert event == FileProgress("upload", "/d/a.txt", speed_kbps=512.0, percent=40.0)


def test_file_fail_keeps_the_reason() -> None:
    assert parse_line("upload file fail (/d/a.txt) path not exist") == FileFail("upload", "/d/a.txt", "path not exist")


def test_a_known_path_holding_a_parenthesis_is_matched_exactly() -> None:
    event = parse_line("upload file fail (/d/shot (1).txt) no space", known=["/d/shot (1).txt"])
    assert event == FileFail("upload", "/d/shot (1).txt", "no space")


def test_connection_lines() -> None:
    assert parse_line("send connect request to transmit server") == Connecting()
    assert isinstance(parse_line("transmit server connection exception"), ConnectionFailed)


def test_aspera_tcp_failure_is_a_connection_failure() -> None:
    """What the real binary prints for a closed port."""
    assert isinstance(parse_line("ascp: Failed to open TCP connection for SSH, exiting."), ConnectionFailed)


def test_summaries() -> None:
    assert parse_line("upload task failure: has recoverable error, need retry").outcome == "retry"  # type: ignore[union-attr]
    assert parse_line("upload task failure: at least one file is failure").outcome == "file_failed"  # type: ignore[union-attr]
    assert parse_line("upload task success: all files are success") == TaskSummary(
        "success", "upload task success: all files are success"
    )


def test_manifest_errors() -> None:
    assert parse_line("get path (/d/missing) info failed") == ManifestError("/d/missing", "get path (/d/missing) info failed")
    assert isinstance(parse_line("load local-path-pairs (/w/upload.json) failed while parse json"), ManifestError)


def test_gbk_output_is_decoded() -> None:
    assert parse_line("upload file done (/d/渲染.exr)".encode("gbk")) == FileDone("upload", "/d/渲染.exr")


def test_undecodable_bytes_are_replaced() -> None:
    assert isinstance(parse_line(b"\xff\xfe\xfd junk"), Other)


def test_the_longest_known_path_wins_among_thousands_with_parentheses_in_names():
    known = {f"/shots/take ({n})/frame.exr" for n in range(5000)} | {"/shots/take (7)", "/shots/take (7)/frame.exr) x"}

    event = parse_line("upload file done (/shots/take (7)/frame.exr) x)", known)

    assert event == FileDone("upload", "/shots/take (7)/frame.exr) x")

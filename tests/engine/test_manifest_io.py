"""Manifests on disk (issue 3 item 1): upload.json written and read back whole, strict errors that say
where, upload lists, and a 500,000-entry upload.json read within 300 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfers.engine.manifest import (
    EntryProblem,
    ManifestEntry,
    ManifestInvalid,
    load_upload_json,
    read_upload_json,
    read_upload_list,
    write_upload_json,
)
from transfers.engine.paths import PathRefused, clean_server_path

ROOT = Path(__file__).resolve().parents[2]


def _write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _load_problems(path: Path) -> list[EntryProblem]:
    with pytest.raises(ManifestInvalid) as refused:
        load_upload_json(path)
    return refused.value.problems


def _load_message(path: Path) -> str:
    with pytest.raises(ManifestInvalid) as refused:
        load_upload_json(path)
    return str(refused.value)


# round trips

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_extra_keys = st.dictionaries(st.text(max_size=10).filter(lambda key: key != "asset"), _json_values, max_size=4)
_path_text = st.text(min_size=1, max_size=30).filter(lambda text: text.strip() and "\x00" not in text)


def _cleans(server: str) -> bool:
    try:
        clean_server_path(server)
    except PathRefused:
        return False
    return True


_entries = st.lists(
    st.builds(ManifestEntry, local=_path_text, server=_path_text.filter(_cleans)),
    min_size=1,
    max_size=20,
    unique_by=lambda entry: clean_server_path(entry.server),
)


@settings(max_examples=60, deadline=None)
@given(entries=_entries, extra=_extra_keys)
def test_write_then_load_upload_json_keeps_every_entry_in_order(entries: list[ManifestEntry], extra: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.json"
        write_upload_json(path, entries, {key: msgspec.Raw(json.dumps(value).encode()) for key, value in extra.items()})

        document = load_upload_json(path)

    assert document.entries == entries


@settings(max_examples=60, deadline=None)
@given(entries=_entries, extra=_extra_keys)
def test_write_then_load_upload_json_keeps_the_other_top_level_keys(entries: list[ManifestEntry], extra: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.json"
        write_upload_json(path, entries, {key: msgspec.Raw(json.dumps(value).encode()) for key, value in extra.items()})

        document = load_upload_json(path)

    assert {key: json.loads(bytes(raw)) for key, raw in document.extra.items()} == extra


def test_load_upload_json_keeps_other_keys_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(b'{"scene": {"fps": 24.000, "name": "a\\u00e9"}, "asset": [{"local": "/s/a", "server": "/D/a"}]}')

    document = load_upload_json(path)

    assert {key: bytes(raw) for key, raw in document.extra.items()} == {"scene": b'{"fps": 24.000, "name": "a\\u00e9"}'}


def test_write_upload_json_output_is_read_by_a_plain_json_reader(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    write_upload_json(path, [ManifestEntry("D:/é/a.exr", "/D/é/a.exr")], {"version": msgspec.Raw(b"2")})

    assert json.loads(path.read_text(encoding="utf-8")) == {
        "version": 2,
        "asset": [{"local": "D:/é/a.exr", "server": "/D/é/a.exr"}],
    }


def test_write_upload_json_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "upload.json"

    write_upload_json(path, [ManifestEntry("/s/a", "/D/a")])

    assert load_upload_json(path).entries == [ManifestEntry("/s/a", "/D/a")]


def test_write_upload_json_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    write_upload_json(tmp_path / "upload.json", [ManifestEntry("/s/a", "/D/a")])

    assert [p.name for p in tmp_path.iterdir()] == ["upload.json"]


def test_read_upload_json_ignores_unknown_keys_inside_an_entry() -> None:
    data = b'{"asset": [{"local": "/s/a", "server": "/D/a", "size": 3}]}'

    assert read_upload_json(data).entries == [ManifestEntry("/s/a", "/D/a")]


# errors name the entry (or line) and the reason


def test_load_upload_json_names_the_line_of_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    data = b'{"asset": [\n{"local": "/s/a", "server": "/D/a"},\n{"local": "/s/\xe9", "server": "/D/b"}]}'
    path.write_bytes(data)

    assert _load_message(path) == f"not UTF-8 text (bad byte at offset {data.index(0xE9)}) on line 3"


def test_load_upload_json_says_where_truncated_json_stops(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(b'{"asset": [\n  {"local": "/s/a", "server": "/D/a"},\n  {"local": "/s/b", "ser')

    message = _load_message(path)

    assert message.startswith("not valid JSON:")
    assert "line 3" in message


def test_load_upload_json_refuses_an_empty_file_by_name(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(b"")

    assert _load_message(path) == f"{path} is empty"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"local": 7, "server": "/D/b"}, "local must be a string"),
        ({"local": "/s/b", "server": None}, "server must be a string"),
        ({"local": "/s/b"}, "server must be a string"),
        ("/s/b", "expected an object with 'local' and 'server'"),
        ({"local": "", "server": "/D/b"}, "local path is empty"),
        ({"local": "  ", "server": "/D/b"}, "local path is empty"),
        ({"local": "/s/b", "server": ""}, "server path is empty"),
        ({"local": "/s/\x00b", "server": "/D/b"}, "local path contains a NUL byte"),
        ({"local": "/s/b", "server": "/D/\x00b"}, "server path contains a NUL byte"),
        ({"local": "/s/b", "server": "/D/../../b"}, "server path '/D/../../b' contains '..'"),
        ({"local": "/s/b", "server": "/D/a"}, "server path '/D/a' repeats entry 1"),
        ({"local": "/s/b", "server": "D\\a"}, "server path 'D\\\\a' repeats entry 1"),
    ],
)
def test_load_upload_json_names_the_entry_and_the_reason(tmp_path: Path, entry: Any, reason: str) -> None:
    good = {"local": "/s/a", "server": "/D/a"}
    path = _write_json(tmp_path / "upload.json", {"asset": [good, {"local": "/s/c", "server": "/D/c"}, entry]})

    assert _load_message(path) == f"entry 3: {reason}"


def test_load_upload_json_reports_every_bad_entry_with_its_number(tmp_path: Path) -> None:
    assets = [{"local": f"/s/{n}", "server": f"/D/{n}"} for n in range(1, 8)]
    assets[1]["local"] = ""
    assets[4]["server"] = "/D/1"
    assets[6]["local"] = "/s/\x00"
    path = _write_json(tmp_path / "upload.json", {"asset": assets})

    assert _load_problems(path) == [
        EntryProblem(2, "local path is empty"),
        EntryProblem(5, "server path '/D/1' repeats entry 1"),
        EntryProblem(7, "local path contains a NUL byte"),
    ]


def test_load_upload_json_counts_entries_from_one(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "upload.json", {"asset": [{"local": "", "server": "/D/a"}]})

    assert [p.number for p in _load_problems(path)] == [1]


def test_load_upload_json_stops_listing_problems_at_a_thousand(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "upload.json", {"asset": [{"local": "", "server": f"/D/{n}"} for n in range(5000)]})

    problems = _load_problems(path)

    assert len(problems) == 1000
    assert str(ManifestInvalid(problems)).endswith("; and 980 more")


# upload lists


def test_read_upload_list_gives_each_path_with_its_line_number() -> None:
    assert read_upload_list(b"/s/a.exr\n/s/folder\nD:\\x\\b.exr\n") == [(1, "/s/a.exr"), (2, "/s/folder"), (3, "D:\\x\\b.exr")]


def test_read_upload_list_skips_blank_lines_but_keeps_counting_them() -> None:
    assert read_upload_list(b"\n/s/a\n   \n\t\n/s/b") == [(2, "/s/a"), (5, "/s/b")]


def test_read_upload_list_accepts_windows_line_ends() -> None:
    assert read_upload_list(b"D:\\a.exr\r\nD:\\b.exr\r\n") == [(1, "D:\\a.exr"), (2, "D:\\b.exr")]


def test_read_upload_list_trims_spaces_around_a_path() -> None:
    assert read_upload_list(b"  /s/a b.exr  \n") == [(1, "/s/a b.exr")]


def test_read_upload_list_reads_txt_and_json_files_alike(tmp_path: Path) -> None:
    content = b"/s/a.exr\n\n/s/folder\n"
    (tmp_path / "list.txt").write_bytes(content)
    (tmp_path / "list.json").write_bytes(content)

    assert read_upload_list((tmp_path / "list.json").read_bytes()) == read_upload_list((tmp_path / "list.txt").read_bytes())


def test_read_upload_list_does_not_parse_a_json_named_list_as_json() -> None:
    assert read_upload_list(b'["/s/a"]\n') == [(1, '["/s/a"]')]


def test_read_upload_list_drops_a_utf8_byte_order_mark() -> None:
    # Windows Notepad and PowerShell 5 start UTF-8 files with one; it is not part of the first path.
    assert read_upload_list("\ufeffD:\\a.exr\nD:\\b.exr\n".encode()) == [(1, "D:\\a.exr"), (2, "D:\\b.exr")]


def test_read_upload_list_names_each_line_that_is_not_utf8() -> None:
    with pytest.raises(ManifestInvalid) as refused:
        read_upload_list(b"/s/a\n/s/\xff\n/s/b\nab\xfe\n")

    assert str(refused.value) == "line 2: not UTF-8 text (bad byte at column 4); line 4: not UTF-8 text (bad byte at column 3)"


def test_read_upload_list_names_a_line_with_a_nul_byte() -> None:
    with pytest.raises(ManifestInvalid) as refused:
        read_upload_list(b"/s/a\n\n/s/\x00b\n")

    assert refused.value.problems == [EntryProblem(3, "path contains a NUL byte", "line")]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"  \r\n\t\n"])
def test_read_upload_list_refuses_a_list_without_paths(data: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="the upload list names no files"):
        read_upload_list(data)


# a 500,000-entry upload.json

_MEASURE = """
import resource, sys
from transfers.engine.manifest import load_upload_json
document = load_upload_json(sys.argv[1])
print(len(document.entries), document.entries[-1].server, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
# Linux carries a process's peak RSS across exec into the child's ru_maxrss: a launcher that starts
# fresh keeps pytest's own memory out of the measured figure.
_LAUNCH = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _write_analyzer_manifest(path: Path, count: int) -> None:
    """An upload.json shaped like the analyzers' (indented), with the benchmark's path lengths."""
    with open(path, "wb") as handle:
        handle.write(b'{\n  "asset": [\n')
        for start in range(0, count, 10_000):
            rows = []
            for index in range(start, min(count, start + 10_000)):
                local = f"D:/projects/film/seq{index // 20000:03d}/sh{index // 500:04d}/textures/tex_{index:06d}.exr"
                rows.append(f'    {{\n      "local": "{local}",\n      "server": "/{local.replace(":", "")}"\n    }}')
            handle.write((",\n" if start else "").encode() + ",\n".join(rows).encode())
        handle.write(b'\n  ],\n  "version": 1\n}\n')


def test_load_upload_json_reads_500000_entries_within_300_mb(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    _write_analyzer_manifest(path, 500_000)

    child = subprocess.run(
        [sys.executable, "-c", _LAUNCH, sys.executable, "-c", _MEASURE, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == 0, child.stderr
    count, last, peak_kib = child.stdout.split()
    assert (int(count), last) == (500_000, "/D/projects/film/seq024/sh0999/textures/tex_499999.exr")
    assert int(peak_kib) <= 300 * 1024, f"peak memory {int(peak_kib) / 1024:.0f} MB"

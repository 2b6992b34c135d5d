"""The streamed upload.json reader: the same refusals as the whole-document reader, in bounded memory."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

from transfers.engine.manifest import EntryProblem, ManifestEntry, ManifestInvalid
from transfers.engine.manifest_stream import read_upload_json_stream


def _read(data: bytes) -> list[tuple[int, ManifestEntry | EntryProblem]]:
    return list(read_upload_json_stream(io.BytesIO(data)))


def _refusal(data: bytes) -> str:
    with pytest.raises(ManifestInvalid) as refused:
        _read(data)
    return str(refused.value)


def test_entries_come_in_file_order_with_their_numbers_and_other_keys_are_ignored():
    data = b'{"version": {"asset": 1}, "asset": [{"local": "/a", "server": "/A", "x": [1]}, {"server": "/B", "local": "/b"}]}'

    assert _read(data) == [(1, ManifestEntry("/a", "/A")), (2, ManifestEntry("/b", "/B"))]


def test_a_byte_order_mark_is_skipped():
    assert _read(b'\xef\xbb\xbf{"asset": [{"local": "/a", "server": "/A"}]}') == [(1, ManifestEntry("/a", "/A"))]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"7", "expected an object with 'local' and 'server'"),
        (b"[1, 2]", "expected an object with 'local' and 'server'"),
        (b'{"local": "/a"}', "server must be a string"),
        (b'{"local": 1, "server": {"a": ["b"]}}', "local and server must be a string"),
    ],
)
def test_a_malformed_entry_is_named_with_its_number(item: bytes, reason: str):
    data = b'{"asset": [{"local": "/a", "server": "/A"}, ' + item + b"]}"

    assert _read(data)[1] == (2, EntryProblem(2, reason))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"local,server\n", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"asset": [{"local": "/a", "server": "/A"}', "not valid JSON"),
        (b'{"asset": [{"local": "/a\xff", "server": "/A"}]}', "not UTF-8 text"),
        (b"[1, 2]", 'expected an object with an "asset" list'),
        (b'{"asset": {"local": "/a"}}', 'expected an object with an "asset" list'),
        (b'{"asset": 5}', 'expected an object with an "asset" list'),
        (b'{"other": []}', 'expected an object with an "asset" list'),
        (b'{"asset": []}', "the manifest lists no files"),
    ],
)
def test_a_malformed_file_is_refused_as_a_whole(data: bytes, reason: str):
    assert _refusal(data).startswith(reason)


@pytest.mark.parametrize(
    "data",
    [
        b'{"asset": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b'{"asset": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"asset": {"a": ' + b'{"a": ' * 1200 + b"[]" + b"}" * 1200 + b"}}",
        b'{"x": ' + b"[" * 300 + b"]" * 300 + b', "asset": [{"local": "/a", "server": "/A"}]}',
    ],
)
def test_deep_nesting_is_refused_saying_so(data: bytes):
    assert _refusal(data) == "not a valid upload.json: its values are nested too deeply"


def test_other_keys_may_nest_a_little():
    data = b'{"x": ' + b"[" * 20 + b"]" * 20 + b', "asset": [{"local": "/a", "server": "/A"}]}'

    assert _read(data) == [(1, ManifestEntry("/a", "/A"))]


@pytest.mark.parametrize("padding", [0, 65_536 - 40, 65_536 - 2000])  # the digits may straddle two reads
def test_a_number_too_long_to_read_is_refused_not_a_crash(padding: int):
    # Python refuses integers of more than 4,300 digits, and yajl's C backend can crash the process
    # on that error when more of the file follows: such a number never reaches the parser.
    data = b'{"x": "' + b"p" * padding + b'", "asset": [{"local": ' + b"7" * 20_000 + b', "server": "/b"}]}' + b" " * 100_000

    for _ in range(3):
        assert _refusal(data) == "not valid JSON: a number too long to read"


def test_memory_stays_flat_however_many_entries(tmp_path: Path):
    path = tmp_path / "upload.json"
    count = 200_000
    entries = [{"local": f"/mnt/assets/shot/{n:07d}.exr", "server": f"/D/shot/{n:07d}.exr"} for n in range(count)]
    path.write_text(json.dumps({"asset": entries}))
    del entries

    tracemalloc.start()
    try:
        with open(path, "rb") as handle:
            seen = sum(1 for _ in read_upload_json_stream(handle))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert seen == count
    assert peak < 2 << 20  # a 17 MB file; the whole-document reader needs ~90 MB for it

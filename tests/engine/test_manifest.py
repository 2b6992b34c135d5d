"""upload.json parsing and path checks: every problem names its entry (1-based) and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from transfers.engine.manifest import EntryProblem, ManifestEntry, ManifestInvalid, check_entries, parse_upload_json


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


def _problems(data: bytes) -> list[EntryProblem]:
    with pytest.raises(ManifestInvalid) as refused:
        parse_upload_json(data)
    return refused.value.problems


# parse_upload_json


def test_parse_upload_json_returns_the_entries_in_file_order() -> None:
    data = _json({"asset": [{"local": "/s/z.exr", "server": "/D/z.exr"}, {"local": "/s/a.exr", "server": "/D/a.exr"}]})

    assert parse_upload_json(data) == [ManifestEntry("/s/z.exr", "/D/z.exr"), ManifestEntry("/s/a.exr", "/D/a.exr")]


def test_parse_upload_json_tolerates_other_top_level_keys() -> None:
    data = _json({"version": 2, "scene": {"name": "x"}, "asset": [{"local": "/s/a.exr", "server": "/D/a.exr"}]})

    assert parse_upload_json(data) == [ManifestEntry("/s/a.exr", "/D/a.exr")]


def test_parse_upload_json_refuses_text_that_is_not_utf8() -> None:
    data = b'{"asset": [{"local": "/s/\xff.exr", "server": "a"}]}'

    problems = _problems(data)

    assert [p.number for p in problems] == [0]
    assert problems[0].reason.startswith(f"not UTF-8 text (bad byte at offset {data.index(0xFF)})")


def test_parse_upload_json_refuses_truncated_json() -> None:
    problems = _problems(b'{"asset": [{"local": "/s/a.exr", "server"')

    assert [p.number for p in problems] == [0]
    assert problems[0].reason.startswith("not valid JSON:")
    assert "line 1" in problems[0].reason


@pytest.mark.parametrize("document", [[{"local": "/s/a", "server": "a"}], "asset", 42, None])
def test_parse_upload_json_refuses_a_top_level_that_is_not_an_object(document: Any) -> None:
    assert _problems(_json(document)) == [EntryProblem(0, 'expected an object with an "asset" list')]


@pytest.mark.parametrize("asset", [{"local": "/s/a", "server": "a"}, "/s/a", None])
def test_parse_upload_json_refuses_an_asset_that_is_not_a_list(asset: Any) -> None:
    assert _problems(_json({"asset": asset})) == [EntryProblem(0, 'expected an object with an "asset" list')]


def test_parse_upload_json_refuses_a_missing_asset_key() -> None:
    assert _problems(_json({"assets": []})) == [EntryProblem(0, 'expected an object with an "asset" list')]


def test_parse_upload_json_refuses_an_empty_asset_list() -> None:
    assert _problems(_json({"asset": []})) == [EntryProblem(0, "the manifest lists no files")]


def test_parse_upload_json_names_an_entry_that_is_not_an_object() -> None:
    data = _json({"asset": [{"local": "/s/a", "server": "a"}, ["/s/b", "b"]]})

    assert _problems(data) == [EntryProblem(2, "expected an object with 'local' and 'server'")]


def test_parse_upload_json_names_an_entry_whose_local_is_not_a_string() -> None:
    data = _json({"asset": [{"local": 7, "server": "a"}]})

    assert _problems(data) == [EntryProblem(1, "local must be a string")]


def test_parse_upload_json_names_an_entry_whose_server_is_missing() -> None:
    data = _json({"asset": [{"local": "/s/a", "server": "a"}, {"local": "/s/b"}]})

    assert _problems(data) == [EntryProblem(2, "server must be a string")]


def test_parse_upload_json_names_both_keys_when_neither_is_a_string() -> None:
    data = _json({"asset": [{"local": None, "server": ["a"]}]})

    assert _problems(data) == [EntryProblem(1, "local and server must be a string")]


def test_parse_upload_json_reports_every_bad_entry_not_only_the_first() -> None:
    good = {"local": "/s/a", "server": "a"}
    data = _json({"asset": [good, 3, good, {"local": "/s/d"}]})

    assert [p.number for p in _problems(data)] == [2, 4]


def test_manifest_invalid_message_reads_entry_number_then_reason() -> None:
    refused = ManifestInvalid([EntryProblem(2, "server path '../x' contains '..'"), EntryProblem(0, "not valid JSON")])

    assert str(refused) == "entry 2: server path '../x' contains '..'; not valid JSON"


def test_manifest_invalid_message_shows_twenty_problems_then_counts_the_rest() -> None:
    refused = ManifestInvalid([EntryProblem(n, "bad") for n in range(1, 26)])

    assert str(refused).endswith("entry 20: bad; and 5 more")
    assert "entry 21" not in str(refused)


# check_entries


def test_check_entries_finds_nothing_wrong_with_good_entries(tmp_path: Path) -> None:
    entries = [ManifestEntry(str(tmp_path / "a.exr"), "/D/a.exr"), ManifestEntry(str(tmp_path / "b.exr"), "D\\b.exr")]

    assert check_entries(entries, allowed_roots=[tmp_path]) == []


def test_check_entries_names_the_first_entry_of_a_repeated_server_path(tmp_path: Path) -> None:
    entries = [
        ManifestEntry(str(tmp_path / "a.exr"), "/D/a.exr"),
        ManifestEntry(str(tmp_path / "b.exr"), "/D/b.exr"),
        ManifestEntry(str(tmp_path / "c.exr"), "/D/a.exr"),
    ]

    assert check_entries(entries, allowed_roots=[tmp_path]) == [EntryProblem(3, "server path '/D/a.exr' repeats entry 1")]


def test_check_entries_compares_server_paths_after_cleaning(tmp_path: Path) -> None:
    entries = [ManifestEntry(str(tmp_path / "a.exr"), "/D/a.exr"), ManifestEntry(str(tmp_path / "b.exr"), "D\\\\a.exr")]

    assert [p.number for p in check_entries(entries, allowed_roots=[tmp_path])] == [2]


def test_check_entries_names_an_entry_whose_server_path_contains_dotdot(tmp_path: Path) -> None:
    entries = [ManifestEntry(str(tmp_path / "a.exr"), "/D/a.exr"), ManifestEntry(str(tmp_path / "b.exr"), "/D/../../etc/b")]

    assert check_entries(entries, allowed_roots=[tmp_path]) == [EntryProblem(2, "server path '/D/../../etc/b' contains '..'")]


def test_check_entries_names_an_entry_whose_local_path_is_outside_the_allowed_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    entries = [ManifestEntry(str(allowed / "a.exr"), "a.exr"), ManifestEntry(str(tmp_path / "b.exr"), "b.exr")]

    problems = check_entries(entries, allowed_roots=[allowed])

    assert [p.number for p in problems] == [2]
    assert "outside the allowed roots" in problems[0].reason


def test_check_entries_names_an_entry_whose_local_path_is_relative(tmp_path: Path) -> None:
    entries = [ManifestEntry("shots/a.exr", "a.exr")]

    assert check_entries(entries, allowed_roots=[tmp_path]) == [EntryProblem(1, "local path 'shots/a.exr' is not absolute")]

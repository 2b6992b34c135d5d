"""The SDK's manifest functions with its names and meaning, without its bugs (sdk-spec §3.4, §3.5, §8 #7, #9).

The documented examples (the SDK's README) are reproduced with local paths: `cutting_upload(upload.json,
max_resources_number=800)` returns the chunk paths, excluding the original; `append_to_upload` takes a
list mixing files and folders, or a single string (a folder given that way is walked too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from transfers.engine.manifest import ManifestEntry, ManifestInvalid, load_upload_json
from transfers.engine.paths import local_to_server
from transfers.engine.sdk import append_to_upload, cutting_upload


def _entries(count: int) -> list[dict[str, str]]:
    return [{"local": f"D:/proj/f{n:05d}.exr", "server": f"/D/proj/f{n:05d}.exr"} for n in range(count)]


def _manifest(path: Path, count: int, **extra: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**extra, "asset": _entries(count)}), encoding="utf-8")
    return path


def _assets(path: str | Path) -> list[dict[str, str]]:
    assets: list[dict[str, str]] = json.loads(Path(path).read_text(encoding="utf-8"))["asset"]
    return assets


def _tree(root: Path, names: list[str]) -> list[Path]:
    files = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        files.append(path)
    return files


# cutting_upload


def test_cutting_upload_documented_example_returns_the_chunk_paths_without_the_original(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "1586250829" / "upload.json", 1700)

    upload_pool = cutting_upload(str(upload), max_resources_number=800)

    assert upload_pool == [str(tmp_path / "1586250829" / f"upload_{n}.json") for n in (1, 2, 3)]


def test_cutting_upload_chunks_hold_at_most_the_size_in_file_order(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 1700)

    chunks = cutting_upload(upload, 800)

    assert [len(_assets(path)) for path in chunks] == [800, 800, 100]
    assert [entry for path in chunks for entry in _assets(path)] == _entries(1700)


def test_cutting_upload_writes_no_empty_trailing_chunk_when_the_count_is_a_multiple(tmp_path: Path) -> None:
    # The SDK writes 800, 800 and an empty third chunk here.
    upload = _manifest(tmp_path / "upload.json", 1600)

    chunks = cutting_upload(upload, 800)

    assert [len(_assets(path)) for path in chunks] == [800, 800]
    assert not (tmp_path / "upload_3.json").exists()


def test_cutting_upload_keeps_the_other_top_level_keys_in_every_chunk(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 5, version=2, scene={"name": "shot", "fps": 24})

    chunks = cutting_upload(upload, 2)

    for path in chunks:
        document = json.loads(Path(path).read_text())
        assert (document["version"], document["scene"]) == (2, {"name": "shot", "fps": 24})


def test_cutting_upload_leaves_the_original_unchanged(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 5, version=2)
    before = upload.read_bytes()

    cutting_upload(upload, 2)

    assert upload.read_bytes() == before


def test_cutting_upload_chunks_are_valid_manifests(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 5)

    chunks = cutting_upload(upload, 2)

    assert [len(load_upload_json(path).entries) for path in chunks] == [2, 2, 1]


def _visible(folder: Path) -> list[str]:
    """File names without the hidden record of which chunk came from which upload.json."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_cutting_upload_refuses_to_overwrite_the_file_it_cuts(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload_1.json", 5)

    with pytest.raises(ValueError, match="overwrite it"):
        cutting_upload(upload, 2)
    assert len(json.loads(upload.read_text())["asset"]) == 5


def test_cutting_upload_keeps_the_chunks_of_another_manifest_cut_into_the_same_folder(tmp_path: Path) -> None:
    first, second = _manifest(tmp_path / "a" / "upload.json", 6), _manifest(tmp_path / "b" / "upload.json", 4)
    target = tmp_path / "chunks"
    cutting_upload(first, 2, after_cutting_position=str(target))

    with pytest.raises(FileExistsError, match="holds a chunk of"):
        cutting_upload(second, 2, after_cutting_position=str(target))
    assert len(json.loads((target / "upload_3.json").read_text())["asset"]) == 2


def test_cutting_upload_creates_the_target_folder(tmp_path: Path) -> None:
    # The SDK silently writes next to the original when the target folder does not exist.
    upload = _manifest(tmp_path / "upload.json", 5)
    target = tmp_path / "cut" / "here"

    chunks = cutting_upload(upload, 2, after_cutting_position=str(target))

    assert chunks == [str(target / f"upload_{n}.json") for n in (1, 2, 3)]
    assert _visible(target) == ["upload_1.json", "upload_2.json", "upload_3.json"]


def test_cutting_upload_removes_stale_chunks_of_an_earlier_larger_cut(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 10)
    cutting_upload(upload, 2)

    chunks = cutting_upload(upload, 4)

    assert len(chunks) == 3
    assert _visible(tmp_path) == ["upload.json", "upload_1.json", "upload_2.json", "upload_3.json"]


def test_cutting_upload_overwrites_chunks_of_an_earlier_cut(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 10)
    cutting_upload(upload, 2)

    chunks = cutting_upload(upload, 4)

    assert [len(_assets(path)) for path in chunks] == [4, 4, 2]


def test_cutting_upload_keeps_files_that_are_not_its_chunks(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload.json", 4)
    for name in ("upload_notes.json", "upload_1.txt", "task.json"):
        (tmp_path / name).write_text("{}")

    cutting_upload(upload, 2)

    assert {"upload_notes.json", "upload_1.txt", "task.json"} <= {p.name for p in tmp_path.iterdir()}


def test_cutting_upload_never_removes_the_manifest_it_cuts(tmp_path: Path) -> None:
    upload = _manifest(tmp_path / "upload_9.json", 4)

    cutting_upload(upload, 2)

    assert upload.exists()


@pytest.mark.parametrize("size", [None, 5, 6, 10_000])
def test_cutting_upload_returns_the_original_when_no_cut_is_needed(tmp_path: Path, size: int | None) -> None:
    upload = _manifest(tmp_path / "upload.json", 5)

    assert cutting_upload(str(upload), size) == [str(upload)]
    assert [p.name for p in tmp_path.iterdir()] == ["upload.json"]


def test_cutting_upload_returns_absolute_paths_for_a_relative_manifest_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(tmp_path / "upload.json", 3)
    monkeypatch.chdir(tmp_path)

    assert cutting_upload("upload.json", 2) == [str(tmp_path / "upload_1.json"), str(tmp_path / "upload_2.json")]


@pytest.mark.parametrize("size", [0, -1, -800, 1.5, "800"])
def test_cutting_upload_refuses_a_size_that_is_not_a_whole_number_above_zero(tmp_path: Path, size: Any) -> None:
    # The SDK raises ValueError for 0 and silently returns [] for a negative size.
    upload = _manifest(tmp_path / "upload.json", 5)

    with pytest.raises(ValueError, match="max_resources_number must be a whole number of at least 1"):
        cutting_upload(upload, size)
    assert [p.name for p in tmp_path.iterdir()] == ["upload.json"]


def test_cutting_upload_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"upload\.json not found"):
        cutting_upload(tmp_path / "upload.json", 800)


def test_cutting_upload_refuses_a_malformed_manifest_and_writes_no_chunk(tmp_path: Path) -> None:
    upload = tmp_path / "upload.json"
    upload.write_bytes(b'{"asset": [{"local": "/s/a", "server": "/D/a"}, {"local": "/s/b"')

    with pytest.raises(ManifestInvalid, match="not valid JSON"):
        cutting_upload(upload, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["upload.json"]


# append_to_upload


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """An existing upload.json with one entry and another top-level key."""
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"version": 2, "asset": [{"local": "D:/old/a.exr", "server": "/D/old/a.exr"}]}))
    return path


def test_append_to_upload_documented_example_walks_the_folders_of_a_list(tmp_path: Path, upload: Path) -> None:
    src = tmp_path / "src"
    static_ass, *fang = _tree(src, ["ass_test/static_ass.ass", "fang/a.ass", "fang/sub/b.ass"])
    (houdini,) = _tree(src, ["houdini/CG file/F/c.bgeo"])

    append_to_upload([str(static_ass), str(src / "fang"), str(src / "houdini" / "CG file" / "F")], upload)

    added = [ManifestEntry(str(p), local_to_server(str(p))) for p in [static_ass, *fang, houdini]]
    assert load_upload_json(upload).entries == [ManifestEntry("D:/old/a.exr", "/D/old/a.exr"), *added]


def test_append_to_upload_documented_example_walks_a_single_string_folder(tmp_path: Path, upload: Path) -> None:
    # The SDK adds the folder itself as one entry here, contradicting its README.
    files = _tree(tmp_path / "houdini_file", ["a.hip", "cache/b.bgeo", "cache/deep/c.bgeo"])

    append_to_upload(str(tmp_path / "houdini_file"), upload)

    assert [e.local for e in load_upload_json(upload).entries[1:]] == [str(p) for p in files]


def test_append_to_upload_adds_a_single_string_file(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["scene.ma"])

    append_to_upload(str(file), upload)

    assert load_upload_json(upload).entries[1:] == [ManifestEntry(str(file), str(file))]


def test_append_to_upload_maps_each_local_path_by_the_server_rule(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["x/y.ma"])

    append_to_upload([str(file)], upload)

    assert load_upload_json(upload).entries[-1].server == local_to_server(str(file)) == str(file)


def test_append_to_upload_returns_how_many_entries_it_added(tmp_path: Path, upload: Path) -> None:
    _tree(tmp_path / "d", ["a", "b", "c/d"])

    assert append_to_upload(str(tmp_path / "d"), upload) == 3


def test_append_to_upload_does_not_add_a_file_twice(tmp_path: Path, upload: Path) -> None:
    files = _tree(tmp_path / "d", ["a", "b"])
    append_to_upload(str(tmp_path / "d"), upload)
    before = upload.read_bytes()

    added = append_to_upload([str(files[0]), str(tmp_path / "d")], upload)

    assert added == 0
    assert upload.read_bytes() == before


def test_append_to_upload_dedupes_a_file_given_both_alone_and_in_its_folder(tmp_path: Path, upload: Path) -> None:
    files = _tree(tmp_path / "d", ["a", "b"])

    append_to_upload([str(files[0]), str(tmp_path / "d")], upload)

    assert [e.local for e in load_upload_json(upload).entries[1:]] == [str(files[0]), str(files[1])]


def test_append_to_upload_dedupes_differently_spelled_local_paths(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["d/a"])
    append_to_upload(str(file), upload)

    assert append_to_upload(str(tmp_path) + "//d/./a", upload) == 0


def test_append_to_upload_adds_only_the_new_files_of_a_folder(tmp_path: Path, upload: Path) -> None:
    _tree(tmp_path / "d", ["a"])
    append_to_upload(str(tmp_path / "d"), upload)
    (new,) = _tree(tmp_path / "d", ["b"])

    append_to_upload(str(tmp_path / "d"), upload)

    assert [e.local for e in load_upload_json(upload).entries[2:]] == [str(new)]


def test_append_to_upload_never_writes_a_server_path_that_repeats_after_cleaning(tmp_path: Path) -> None:
    # An existing entry spelled without the leading slash names the same server file.
    (file,) = _tree(tmp_path, ["a.exr"])
    upload = tmp_path / "upload.json"
    upload.write_text(json.dumps({"asset": [{"local": "/elsewhere/a.exr", "server": str(file).lstrip("/")}]}))

    append_to_upload(str(file), upload)

    assert len(load_upload_json(upload).entries) == 1


def test_append_to_upload_keeps_the_existing_entries_and_other_keys(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["b.exr"])

    append_to_upload(str(file), upload)

    document = json.loads(upload.read_text())
    assert document["version"] == 2
    assert document["asset"][0] == {"local": "D:/old/a.exr", "server": "/D/old/a.exr"}


def test_append_to_upload_accepts_an_upload_json_with_an_empty_asset_list(tmp_path: Path) -> None:
    upload = tmp_path / "upload.json"
    upload.write_text('{"asset": []}')
    (file,) = _tree(tmp_path, ["a.exr"])

    append_to_upload(str(file), upload)

    assert load_upload_json(upload).entries == [ManifestEntry(str(file), str(file))]


def test_append_to_upload_writes_non_ascii_paths_that_read_back(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["場景/é.ma"])

    append_to_upload(str(file), upload)

    assert load_upload_json(upload).entries[-1] == ManifestEntry(str(file), str(file))


@pytest.mark.parametrize(
    "content",
    [
        b'{"asset": [{"local": "D:/a", "server": "/D/a"}',
        b'{"asset": [{"local": "D:/\xff", "server": "/D/a"}]}',
        b'{"asset": {"local": "D:/a", "server": "/D/a"}}',
        b'{"asset": [{"local": 1, "server": "/D/a"}]}',
        b'{"asset": [{"local": "D:/a", "server": "/D/a"}, {"local": "D:/b", "server": "/D/a"}]}',
        b"[]",
        b"",
    ],
    ids=["truncated", "not-utf8", "asset-not-a-list", "wrong-type", "duplicate-server", "not-an-object", "empty-file"],
)
def test_append_to_upload_refuses_a_malformed_upload_json_and_leaves_it_unchanged(tmp_path: Path, content: bytes) -> None:
    # The SDK silently replaces it with {"asset": []}, losing every entry.
    upload = tmp_path / "upload.json"
    upload.write_bytes(content)
    (file,) = _tree(tmp_path, ["a.exr"])

    with pytest.raises(ManifestInvalid):
        append_to_upload(str(file), upload)
    assert upload.read_bytes() == content


def test_append_to_upload_refuses_a_missing_upload_json(tmp_path: Path) -> None:
    (file,) = _tree(tmp_path, ["a.exr"])

    with pytest.raises(FileNotFoundError, match=r"upload\.json not found"):
        append_to_upload(str(file), tmp_path / "upload.json")
    assert not (tmp_path / "upload.json").exists()


def test_append_to_upload_refuses_a_missing_path_and_adds_nothing(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path, ["a.exr"])
    before = upload.read_bytes()

    with pytest.raises(FileNotFoundError, match="path to append does not exist"):
        append_to_upload([str(file), str(tmp_path / "missing.exr")], upload)
    assert upload.read_bytes() == before


@pytest.mark.parametrize("files_paths", [42, None, b"/a", [1], ["/a", None], {"/a": 1}])
def test_append_to_upload_refuses_a_value_that_is_not_a_path_or_a_list_of_paths(upload: Path, files_paths: Any) -> None:
    # The SDK builds an error object here and never raises it.
    before = upload.read_bytes()

    with pytest.raises(TypeError, match="files_paths must be a path or a list of paths"):
        append_to_upload(files_paths, upload)
    assert upload.read_bytes() == before


def test_append_to_upload_accepts_a_tuple_of_paths(tmp_path: Path, upload: Path) -> None:
    files = _tree(tmp_path, ["a", "b"])

    assert append_to_upload(tuple(str(p) for p in files), upload) == 2


def test_append_to_upload_leaves_no_temporary_file_next_to_the_manifest(tmp_path: Path, upload: Path) -> None:
    (file,) = _tree(tmp_path / "src", ["a"])

    append_to_upload(str(file), upload)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "upload.json"]


def test_append_to_upload_walks_folders_in_a_stable_sorted_order(tmp_path: Path, upload: Path) -> None:
    names = ["b/2", "a/1", "c", "a/0", "B"]
    _tree(tmp_path / "d", names)

    append_to_upload(str(tmp_path / "d"), upload)

    walked = [os.path.relpath(e.local, tmp_path / "d") for e in load_upload_json(upload).entries[1:]]
    assert walked == ["B", "c", "a/0", "a/1", "b/2"]

"""rvweb_client's local functions (cutting_upload, append_to_upload, convert_path) and its argument checks,
without a server: the SDK's bugs (sdk-spec §3.4, §3.5, §8 #3, #7, #9, #10, #16) as tests we do not repeat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rvweb_client import RayvisionAPI, RayvisionDownload, RayvisionError, RayvisionUpload, append_to_upload, cutting_upload
from rvweb_client.utils import convert_path


def _manifest(path: Path, count: int, **extra: Any) -> Path:
    assets = [{"local": f"D:/shots/f{n}.exr", "server": f"/D/shots/f{n}.exr"} for n in range(count)]
    path.write_text(json.dumps({**extra, "asset": assets}), encoding="utf-8")
    return path


def _assets(path: str | Path) -> list[dict[str, str]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["asset"]


# --- cutting_upload --------------------------------------------------------------------------------


def test_cutting_an_exact_multiple_writes_no_empty_trailing_chunk(tmp_path):
    chunks = cutting_upload(_manifest(tmp_path / "upload.json", 1600), max_resources_number=800)

    assert [Path(c).name for c in chunks] == ["upload_1.json", "upload_2.json"]  # the SDK writes a third, empty one
    assert [len(_assets(c)) for c in chunks] == [800, 800]


def test_cutting_keeps_every_entry_in_order_and_the_other_keys(tmp_path):
    source = _manifest(tmp_path / "upload.json", 7, scene="shot_010", version=3)

    chunks = cutting_upload(source, max_resources_number=3)

    assert [len(_assets(c)) for c in chunks] == [3, 3, 1]
    assert [a for c in chunks for a in _assets(c)] == _assets(source)
    documents = [json.loads(Path(c).read_text()) for c in chunks]
    assert {(document["scene"], document["version"]) for document in documents} == {("shot_010", 3)}


def test_no_cut_needed_returns_the_original_as_the_sdk_does(tmp_path):
    source = _manifest(tmp_path / "upload.json", 5)

    assert cutting_upload(source) == [str(source)]
    assert cutting_upload(source, max_resources_number=5) == [str(source)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload.json"]


def test_a_target_folder_that_does_not_exist_is_created_not_ignored(tmp_path):
    target = tmp_path / "parts" / "deeper"

    chunks = cutting_upload(_manifest(tmp_path / "upload.json", 4), max_resources_number=2, after_cutting_position=target)

    assert [Path(c).parent for c in chunks] == [target, target]  # the SDK writes next to the original instead


def test_a_second_smaller_cut_removes_the_stale_chunks_of_the_first(tmp_path):
    source = _manifest(tmp_path / "upload.json", 6)
    target = tmp_path / "parts"
    cutting_upload(source, max_resources_number=2, after_cutting_position=target)

    chunks = cutting_upload(source, max_resources_number=3, after_cutting_position=target)

    left = sorted(p.name for p in target.glob("upload_*.json"))
    assert left == ["upload_1.json", "upload_2.json"] == [Path(c).name for c in chunks]


def test_cutting_never_overwrites_the_chunks_of_another_manifest(tmp_path):
    target = tmp_path / "parts"
    cutting_upload(_manifest(tmp_path / "a.json", 4), max_resources_number=2, after_cutting_position=target)

    with pytest.raises(FileExistsError, match="holds a chunk of"):
        cutting_upload(_manifest(tmp_path / "b.json", 4), max_resources_number=2, after_cutting_position=target)


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "800"])
def test_a_chunk_size_below_one_or_not_whole_is_refused(tmp_path, size):
    # The SDK raises ValueError on 0 and silently returns [] on a negative size.
    with pytest.raises(ValueError, match="max_resources_number"):
        cutting_upload(_manifest(tmp_path / "upload.json", 3), max_resources_number=size)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "is empty"),
        ('{"asset": {}}', '"asset" list'),
        ('{"asset": [{"local": 1}]}', "entry 1"),
    ],
)
def test_a_malformed_manifest_is_refused_by_name_and_left_alone(tmp_path, content, message):
    source = tmp_path / "upload.json"
    source.write_text(content)

    with pytest.raises(RayvisionError, match=message):
        cutting_upload(source, max_resources_number=1)
    assert source.read_text() == content


def test_cutting_a_missing_manifest_says_so(tmp_path):
    with pytest.raises(RayvisionError, match=r"upload\.json not found"):
        cutting_upload(tmp_path / "nope.json", max_resources_number=1)


# --- append_to_upload ------------------------------------------------------------------------------


def _tree(root: Path) -> list[Path]:
    files = [root / "a.ma", root / "tex" / "b.png", root / "tex" / "sub" / "c.png"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return files


def test_a_single_folder_string_is_walked(tmp_path):
    # The SDK adds the folder itself as one entry when it is given as a string, contrary to its README.
    files = _tree(tmp_path / "scene")
    upload = _manifest(tmp_path / "upload.json", 0)

    added = append_to_upload(str(tmp_path / "scene"), upload)

    assert added == 3
    assert [a["local"] for a in _assets(upload)] == [p.as_posix() for p in files]
    assert [a["server"] for a in _assets(upload)] == [p.as_posix() for p in files]  # POSIX paths keep their first character


def test_appending_twice_adds_nothing_new_and_keeps_the_other_keys(tmp_path):
    _tree(tmp_path / "scene")
    upload = _manifest(tmp_path / "upload.json", 2, scene="shot")
    append_to_upload([str(tmp_path / "scene"), str(tmp_path / "scene" / "a.ma")], upload)

    assert append_to_upload([str(tmp_path / "scene")], upload) == 0
    document = json.loads(upload.read_text())
    assert (document["scene"], len(document["asset"])) == ("shot", 5)


def test_a_malformed_upload_json_is_refused_never_emptied(tmp_path):
    # The SDK silently replaces it with {"asset": []}, losing every entry.
    _tree(tmp_path / "scene")
    upload = tmp_path / "upload.json"
    upload.write_text('{"asset": [{"local": "D:/a", "server": "/D/a"}],')

    with pytest.raises(RayvisionError, match="not valid JSON"):
        append_to_upload(str(tmp_path / "scene"), upload)
    assert upload.read_text() == '{"asset": [{"local": "D:/a", "server": "/D/a"}],'


def test_a_missing_path_refuses_the_whole_append(tmp_path):
    _tree(tmp_path / "scene")
    upload = _manifest(tmp_path / "upload.json", 1)
    before = upload.read_text()

    with pytest.raises(RayvisionError, match="does not exist"):
        append_to_upload([str(tmp_path / "scene"), str(tmp_path / "gone.ma")], upload)
    assert upload.read_text() == before


def test_a_missing_upload_json_and_a_wrong_type_are_clear_errors(tmp_path):
    with pytest.raises(RayvisionError, match=r"upload\.json not found"):
        append_to_upload(str(tmp_path), tmp_path / "nope.json")
    with pytest.raises(TypeError, match="files_paths"):  # the SDK builds an error and never raises it
        append_to_upload(42, _manifest(tmp_path / "upload.json", 0))  # type: ignore[arg-type]


def test_non_ascii_paths_are_written_as_text(tmp_path):
    folder = tmp_path / "场景"
    folder.mkdir()
    (folder / "渲染.ma").write_bytes(b"x")
    upload = _manifest(tmp_path / "upload.json", 0)

    append_to_upload(str(folder), upload)

    assert "场景/渲染.ma" in upload.read_text(encoding="utf-8")  # the SDK escapes them as \uXXXX


@pytest.mark.parametrize(
    ("local", "server"),
    [
        ("D:\\a\\b.ma", "/D/a/b.ma"),
        ("d:/a//b.ma", "/D/a/b.ma"),
        ("\\\\srv\\share\\f.ma", "/srv/share/f.ma"),
        ("/mnt/x/f.ma", "/mnt/x/f.ma"),  # the SDK gives mnt/x/f.ma
    ],
)
def test_convert_path_follows_the_sdk_rule_done_right(local, server):
    assert convert_path(local) == server


@pytest.mark.parametrize("local", ["rel/x.ma", "D:x.ma", "/a/../b"])
def test_convert_path_refuses_what_it_cannot_map(local):
    with pytest.raises(ValueError, match=r"absolute|drive|'\.\.'"):
        convert_path(local)


# --- argument checks that need no server ------------------------------------------------------------


def test_the_connection_needs_rvweb_s_address_and_a_credential(monkeypatch):
    monkeypatch.delenv("RVWEB_URL", raising=False)
    monkeypatch.delenv("RVWEB_TOKEN", raising=False)
    with pytest.raises(RayvisionError, match="rvweb's address"):
        RayvisionAPI(access_id="x", access_key="y", domain="task.foxrenderfarm.com", platform="2")
    with pytest.raises(RayvisionError, match="token"):
        RayvisionAPI(url="http://127.0.0.1:9", access_id="x", access_key="y")


def test_an_unreachable_rvweb_is_a_clear_error():
    api = RayvisionAPI(url="http://127.0.0.1:9", token="t", account=1, timeout=2)

    with pytest.raises(RayvisionError, match=r"cannot reach rvweb at http://127\.0\.0\.1:9"):
        RayvisionUpload(api).upload_config("5165465", ["/tmp/task.json"])


def test_thread_pool_upload_needs_no_is_db_and_refuses_unknown_options():
    # The SDK raises KeyError when is_db is not passed (its README example does not pass it).
    upload = RayvisionUpload(RayvisionAPI(url="http://127.0.0.1:9", token="t", account=1))

    with pytest.raises(TypeError, match="unexpected options: colour"):
        upload.thread_pool_upload(["/tmp/upload_1.json"], pool_size=2, colour="red")
    with pytest.raises(ValueError, match="upload_pool"):
        upload.thread_pool_upload("/tmp/upload_1.json")


def test_download_keeps_the_callers_task_list_and_checks_the_format():
    download = RayvisionDownload(RayvisionAPI(url="http://127.0.0.1:9", token="t", account=1))
    tasks = [18164087, "18164088"]

    options = download._options(tasks, None, "false", sleep_time=10)

    assert (options["task_id_list"], tasks) == ([18164087, 18164088], [18164087, "18164088"])
    with pytest.raises(ValueError, match="download_filename_format"):
        download._options(tasks, None, "maybe")

"""Path rules of the engine: server paths stay inside their storage root, local paths inside the allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from transfers.engine.paths import PathRefused, clean_server_path, local_source, server_target

# Pieces that exercise every rule of clean_server_path; joined at random they make hostile paths.
_PIECES = ["a", "bc", "D", "é", ".", "..", "...", "/", "\\", " ", "\t", "\x00", ":"]
server_paths = st.one_of(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join), st.text(max_size=40))


def _clean_or_none(server: str) -> str | None:
    try:
        return clean_server_path(server)
    except PathRefused:
        return None


# clean_server_path


def test_clean_server_path_drops_a_leading_slash() -> None:
    assert clean_server_path("/D/shots/a.exr") == "D/shots/a.exr"


def test_clean_server_path_turns_backslashes_into_slashes() -> None:
    assert clean_server_path("D\\shots\\a.exr") == "D/shots/a.exr"


def test_clean_server_path_collapses_repeated_separators() -> None:
    assert clean_server_path("D//shots\\\\/a.exr") == "D/shots/a.exr"


def test_clean_server_path_drops_dot_components() -> None:
    assert clean_server_path("./D/./shots/./a.exr") == "D/shots/a.exr"


def test_clean_server_path_keeps_names_made_of_dots_other_than_dotdot() -> None:
    assert clean_server_path("D/.../.hidden") == "D/.../.hidden"


@pytest.mark.parametrize("server", ["..", "../etc/passwd", "D/../../etc", "D\\..\\x", "/D/a/.."])
def test_clean_server_path_refuses_a_dotdot_component(server: str) -> None:
    with pytest.raises(PathRefused, match=r"contains '\.\.'"):
        clean_server_path(server)


def test_clean_server_path_refuses_a_nul_byte() -> None:
    with pytest.raises(PathRefused, match="NUL byte"):
        clean_server_path("D/a\x00.exr")


@pytest.mark.parametrize("server", ["", "   "])
def test_clean_server_path_refuses_an_empty_path(server: str) -> None:
    with pytest.raises(PathRefused, match="server path is empty"):
        clean_server_path(server)


@pytest.mark.parametrize("server", ["/", "//", "./", "/./.", "\\"])
def test_clean_server_path_refuses_a_path_that_names_no_file(server: str) -> None:
    with pytest.raises(PathRefused, match="names no file"):
        clean_server_path(server)


@pytest.mark.parametrize(
    ("server", "name"),
    [
        ("/D/.a.bin.rvpart", ".a.bin.rvpart"),
        ("D/.a.bin.rvpart.ranges", ".a.bin.rvpart.ranges"),
        ("D/.a.bin.rvpart.ranges.tmp", ".a.bin.rvpart.ranges.tmp"),
        ("D\\x.rvpart\\a.bin", "x.rvpart"),
        ("b.rvpartial", "b.rvpartial"),
        (".rvpart", ".rvpart"),
    ],
)
def test_clean_server_path_refuses_names_reserved_for_partial_files(server: str, name: str) -> None:
    with pytest.raises(PathRefused, match=f"uses the reserved name '{name}'"):
        clean_server_path(server)


@given(server_paths, st.sampled_from(["", "/"]), st.sampled_from(["", "x", "/y"]))
def test_clean_server_path_never_returns_a_reserved_name(server: str, before: str, after: str) -> None:
    assert ".rvpart" not in (_clean_or_none(f"{server}{before}.rvpart{after}") or "")


@pytest.mark.parametrize("server", ["/ ", "D/ /a.exr", "D/\t", "\\ \\", "D\\ \\a.exr"])
def test_clean_server_path_refuses_a_blank_folder_or_file_name(server: str) -> None:
    with pytest.raises(PathRefused):
        clean_server_path(server)


@given(server_paths)
def test_clean_server_path_never_returns_a_dotdot_component(server: str) -> None:
    cleaned = _clean_or_none(server)
    assert cleaned is None or ".." not in cleaned.split("/")


@given(server_paths)
def test_clean_server_path_never_returns_an_absolute_path(server: str) -> None:
    cleaned = _clean_or_none(server)
    assert cleaned is None or not cleaned.startswith("/")


@given(server_paths)
@example("/ ")  # cleans to " ", which clean_server_path itself refuses as empty
def test_clean_server_path_is_idempotent(server: str) -> None:
    cleaned = _clean_or_none(server)
    if cleaned is not None:
        assert _clean_or_none(cleaned) == cleaned


# server_target


def test_server_target_places_the_file_under_the_root(tmp_path: Path) -> None:
    assert server_target(tmp_path, "/D/shots/a.exr") == tmp_path / "D" / "shots" / "a.exr"


def test_server_target_refuses_a_folder_symlink_inside_the_root_pointing_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "D").symlink_to(outside, target_is_directory=True)

    with pytest.raises(PathRefused, match="escapes the storage root"):
        server_target(root, "D/a.exr")


def test_server_target_refuses_a_file_symlink_inside_the_root_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "victim.txt").write_text("keep me")
    (root / "a.exr").symlink_to(tmp_path / "victim.txt")

    with pytest.raises(PathRefused, match="escapes the storage root"):
        server_target(root, "a.exr")


def test_server_target_refuses_a_symlink_loop_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "D").symlink_to(tmp_path / "D")

    with pytest.raises(PathRefused, match="escapes the storage root"):
        server_target(tmp_path, "D/a.exr")


# local_source


def test_local_source_returns_the_real_path_of_a_file_under_an_allowed_root(tmp_path: Path) -> None:
    source = tmp_path / "a.exr"
    source.write_bytes(b"x")

    assert local_source(str(source), [tmp_path]) == source


def test_local_source_refuses_a_relative_path(tmp_path: Path) -> None:
    with pytest.raises(PathRefused, match="is not absolute"):
        local_source("shots/a.exr", [tmp_path])


def test_local_source_refuses_a_path_outside_the_allowed_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()

    with pytest.raises(PathRefused, match="outside the allowed roots"):
        local_source(str(tmp_path / "elsewhere" / "a.exr"), [allowed])


def test_local_source_refuses_dotdot_that_climbs_out_of_an_allowed_root(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()

    with pytest.raises(PathRefused, match="outside the allowed roots"):
        local_source(f"{allowed}/../secret.txt", [allowed])


def test_local_source_refuses_a_symlink_inside_an_allowed_root_pointing_outside(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (allowed / "innocent.exr").symlink_to(tmp_path / "secret.txt")

    with pytest.raises(PathRefused, match="outside the allowed roots"):
        local_source(str(allowed / "innocent.exr"), [allowed])


def test_local_source_refuses_every_path_when_no_root_is_configured(tmp_path: Path) -> None:
    with pytest.raises(PathRefused, match=r"\(none configured\)"):
        local_source(str(tmp_path / "a.exr"), [])


def test_local_source_refuses_a_symlink_loop_as_a_bad_path(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink(loop, loop)

    with pytest.raises(PathRefused):
        local_source(str(loop), [tmp_path])

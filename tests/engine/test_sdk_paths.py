"""The SDK's local-to-server path rule done right (issue 3 item 2), and per-account path mapping.

The SDK's convert_path (sdk-spec §3.2, §8 #16) keeps the drive letter's case, removes every colon,
drops the first character of a POSIX path and guesses at relative ones. Ours upper-cases the drive
letter, keeps POSIX paths as they are and refuses relative paths.
"""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from transfers.engine.paths import PathMap, PathRefused, clean_server_path, local_to_server, normalize_local

# local_to_server: drive letters


@pytest.mark.parametrize(
    ("local", "server"),
    [
        ("D:\\houdini\\CG file\\local\\a.project", "/D/houdini/CG file/local/a.project"),
        ("D:/houdini/CG file/local/a.project", "/D/houdini/CG file/local/a.project"),
        ("C:\\a.ma", "/C/a.ma"),
    ],
)
def test_local_to_server_turns_a_drive_path_into_slash_drive_letter(local: str, server: str) -> None:
    assert local_to_server(local) == server


def test_local_to_server_upper_cases_the_drive_letter() -> None:
    assert local_to_server("d:\\shots\\a.exr") == "/D/shots/a.exr"


def test_local_to_server_gives_the_same_server_path_for_both_cases_of_a_drive_letter() -> None:
    assert local_to_server("d:/x/y.ma") == local_to_server("D:\\x\\y.ma")


def test_local_to_server_keeps_the_case_of_the_rest_of_the_path() -> None:
    assert local_to_server("d:\\Shots\\A.EXR") == "/D/Shots/A.EXR"


def test_local_to_server_keeps_colons_after_the_drive() -> None:
    # The SDK removes every colon, so `D:\a:b` and `D:\ab` collide there.
    assert local_to_server("D:\\a:b\\c.exr") == "/D/a:b/c.exr"


@pytest.mark.parametrize("local", ["D:", "D:\\", "D:/"])
def test_local_to_server_maps_a_bare_drive_to_its_letter(local: str) -> None:
    assert local_to_server(local) == "/D"


@pytest.mark.parametrize("local", ["D:foo", "D:foo\\bar.exr", "c:a.ma"])
def test_local_to_server_refuses_a_drive_relative_path(local: str) -> None:
    with pytest.raises(PathRefused, match="relative to a drive's current folder"):
        local_to_server(local)


# local_to_server: UNC


@pytest.mark.parametrize("local", ["\\\\host\\share\\x\\a.exr", "//host/share/x/a.exr", "\\\\host/share\\x//a.exr"])
def test_local_to_server_maps_a_unc_path_under_its_host(local: str) -> None:
    assert local_to_server(local) == "/host/share/x/a.exr"


@pytest.mark.parametrize("local", ["\\\\", "//", "\\\\\\\\", "///"])
def test_local_to_server_refuses_a_unc_path_without_a_host(local: str) -> None:
    with pytest.raises(PathRefused, match="names no host"):
        local_to_server(local)


@pytest.mark.parametrize("local", ["\\\\..\\etc\\passwd", "//../etc/passwd", "//..", "\\\\..\\"])
def test_local_to_server_refuses_a_unc_host_made_of_dots(local: str) -> None:
    # `\\..\etc` would become `/../etc`: a server path that climbs out of the storage root.
    with pytest.raises(PathRefused):
        local_to_server(local)


# local_to_server: POSIX


def test_local_to_server_keeps_a_posix_path_as_it_is() -> None:
    # The SDK gives `mnt/x/a.exr` here: it drops the first character.
    assert local_to_server("/mnt/x/a.exr") == "/mnt/x/a.exr"


def test_local_to_server_keeps_a_posix_path_whose_first_folder_is_one_letter() -> None:
    assert local_to_server("/D/shots/a.exr") == "/D/shots/a.exr"


# local_to_server: separators


@pytest.mark.parametrize(
    ("local", "server"),
    [
        ("D:\\a/b\\c.exr", "/D/a/b/c.exr"),
        ("D:\\\\a\\\\\\b//c.exr", "/D/a/b/c.exr"),
        ("/mnt//x///a.exr", "/mnt/x/a.exr"),
        ("/mnt/x/a/", "/mnt/x/a"),
        ("/mnt/./x/./a.exr", "/mnt/x/a.exr"),
        ("/mnt\\x\\a.exr", "/mnt/x/a.exr"),
    ],
)
def test_local_to_server_collapses_mixed_and_repeated_separators(local: str, server: str) -> None:
    assert local_to_server(local) == server


# local_to_server: refusals


@pytest.mark.parametrize("local", ["rel/x.exr", "x.exr", "./x.exr", "shots\\a.exr", "~/a.exr"])
def test_local_to_server_refuses_a_relative_path(local: str) -> None:
    # The SDK turns `rel/x` into `el/x`.
    with pytest.raises(PathRefused, match="is not absolute"):
        local_to_server(local)


@pytest.mark.parametrize("local", ["", "   "])
def test_local_to_server_refuses_an_empty_path(local: str) -> None:
    with pytest.raises(PathRefused, match="local path is empty"):
        local_to_server(local)


def test_local_to_server_refuses_a_one_character_path_instead_of_crashing() -> None:
    # The SDK raises IndexError here.
    with pytest.raises(PathRefused):
        local_to_server("a")


def test_local_to_server_refuses_a_nul_byte() -> None:
    with pytest.raises(PathRefused, match="NUL byte"):
        local_to_server("D:\\a\x00.exr")


@pytest.mark.parametrize("local", ["D:\\a\\..\\..\\b", "/mnt/../etc/passwd", "\\\\host\\share\\..\\x"])
def test_local_to_server_refuses_a_dotdot_component(local: str) -> None:
    with pytest.raises(PathRefused, match=r"contains '\.\.'"):
        local_to_server(local)


# local_to_server: properties

_NAMES = ["a", "B", "shot 01", "é", "x.exr", ".", "..", "...", ":", "c:", "D", " "]
_SEPARATORS = ["/", "\\", "//", "\\\\", "/\\"]
_ROOTS = ["C:", "c:", "z:", "/", "//", "\\\\", "\\\\srv", "//srv", "", "."]


@st.composite
def local_paths(draw: st.DrawFn) -> str:
    """Paths in every spelling the SDK meets: drive, UNC, POSIX, relative, with hostile components."""
    root = draw(st.sampled_from(_ROOTS))
    names = draw(st.lists(st.one_of(st.sampled_from(_NAMES), st.text(max_size=6)), max_size=6))
    path = root
    for name in names:
        path += draw(st.sampled_from(_SEPARATORS)) + name
    return path


def _server_or_none(local: str) -> str | None:
    try:
        return local_to_server(local)
    except PathRefused:
        return None


@given(local_paths())
@example("/")
@example("D:")
def test_local_to_server_result_always_starts_with_a_slash(local: str) -> None:
    server = _server_or_none(local)
    assert server is None or server.startswith("/")


@given(local_paths())
@example("\\\\..\\etc\\passwd")
def test_local_to_server_result_never_has_a_dotdot_component(local: str) -> None:
    server = _server_or_none(local)
    assert server is None or ".." not in server.split("/")


@given(local_paths())
@example("//srv//share")
def test_local_to_server_result_never_has_an_empty_component(local: str) -> None:
    server = _server_or_none(local)
    assert server is None or "//" not in server


@given(local_paths())
@example("//./x")
def test_local_to_server_is_idempotent_on_its_own_output(local: str) -> None:
    server = _server_or_none(local)
    if server is not None:
        assert local_to_server(server) == server


@given(st.lists(st.text(alphabet="ab. -é:", min_size=1, max_size=5), max_size=6))
def test_local_to_server_keeps_a_posix_path_as_its_normal_form(names: list[str]) -> None:
    local = "/" + "/".join(names)
    server = _server_or_none(local)
    if ".." in names:
        assert server is None
    else:
        assert server == posixpath.normpath(local)


@given(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.lists(st.sampled_from(["a", "b c", "é"]), max_size=4),
)
def test_local_to_server_puts_the_upper_case_drive_letter_first(letter: str, names: list[str]) -> None:
    server = local_to_server(letter + ":\\" + "\\".join(names))

    assert server.split("/")[1] == letter.upper()


@given(local_paths())
def test_local_to_server_result_is_a_valid_server_path_unless_it_names_a_bare_root(local: str) -> None:
    server = _server_or_none(local)
    if server is not None and server != "/" and all(part.strip() for part in server.split("/")[1:]):
        assert clean_server_path(server) == server.lstrip("/")


# normalize_local


@pytest.mark.parametrize(
    ("local", "canonical"),
    [
        ("d:\\a\\b", "D:/a/b"),
        ("D:/a//b/", "D:/a/b"),
        ("\\\\host\\share\\x", "//host/share/x"),
        ("/mnt//x/./a", "/mnt/x/a"),
    ],
)
def test_normalize_local_gives_one_spelling_per_path(local: str, canonical: str) -> None:
    assert normalize_local(local) == canonical


# PathMap


def test_path_map_maps_a_drive_onto_a_worker_folder() -> None:
    rules = PathMap({"D:/": "/mnt/studio/D/"})

    assert rules.apply("D:\\shots\\a.exr") == "/mnt/studio/D/shots/a.exr"


def test_path_map_matches_a_rule_whatever_the_case_of_the_drive_letter() -> None:
    assert PathMap({"d:\\": "/mnt/d"}).apply("D:/a.exr") == "/mnt/d/a.exr"


def test_path_map_lets_the_longest_prefix_win() -> None:
    rules = PathMap({"D:/": "/mnt/d", "D:/proj/fast": "/ssd/fast", "D:/proj": "/mnt/proj"})

    assert rules.apply("D:\\proj\\fast\\a.exr") == "/ssd/fast/a.exr"


def test_path_map_longest_prefix_wins_whatever_the_order_of_the_rules() -> None:
    forward = PathMap({"D:/proj": "/mnt/proj", "D:/": "/mnt/d"})
    backward = PathMap({"D:/": "/mnt/d", "D:/proj": "/mnt/proj"})

    assert forward.apply("D:/proj/a.exr") == backward.apply("D:/proj/a.exr") == "/mnt/proj/a.exr"


def test_path_map_falls_back_to_a_shorter_rule_outside_the_longer_one() -> None:
    rules = PathMap({"D:/": "/mnt/d", "D:/proj": "/mnt/proj"})

    assert rules.apply("D:/other/a.exr") == "/mnt/d/other/a.exr"


def test_path_map_matches_whole_components_only() -> None:
    rules = PathMap({"D:/proj": "/mnt/proj"})

    assert rules.apply("D:/project/a.exr") == "D:/project/a.exr"


def test_path_map_maps_the_rule_folder_itself() -> None:
    assert PathMap({"D:/proj/": "/mnt/proj/"}).apply("D:\\proj") == "/mnt/proj"


def test_path_map_maps_a_unc_share() -> None:
    rules = PathMap({"\\\\nas\\projects": "/mnt/nas"})

    assert rules.apply("//nas/projects/x/a.exr") == "/mnt/nas/x/a.exr"


def test_path_map_leaves_an_unmatched_path_in_canonical_form() -> None:
    assert PathMap({"D:/": "/mnt/d"}).apply("E:\\x\\a.exr") == "E:/x/a.exr"


def test_path_map_without_rules_leaves_a_posix_path_as_it_is() -> None:
    assert PathMap().apply("/mnt/x/a.exr") == "/mnt/x/a.exr"


def test_path_map_does_not_let_a_posix_root_rule_capture_a_unc_path() -> None:
    # A rule for `/` is for POSIX paths; `//nas/x` is another machine's share, not `/` + `/nas/x`.
    rules = PathMap({"/": "/mnt/mac"})

    assert rules.apply("//nas/share/a.exr") == "//nas/share/a.exr"


@pytest.mark.parametrize("target", ["", "mnt/d", "D:/x", "/mnt/\x00"])
def test_path_map_refuses_a_target_that_is_not_an_absolute_posix_path(target: str) -> None:
    with pytest.raises(PathRefused, match="must be an absolute POSIX path"):
        PathMap({"D:/": target})


def test_path_map_refuses_a_relative_rule_source() -> None:
    with pytest.raises(PathRefused):
        PathMap({"proj": "/mnt/proj"})


@given(st.lists(st.sampled_from(["a", "b", "proj", "project", "é x"]), min_size=1, max_size=5))
def test_path_map_result_stays_under_the_matching_rule_target(names: list[str]) -> None:
    rules = PathMap({"D:/": "/mnt/d", "D:/proj": "/mnt/proj"})

    mapped = rules.apply("D:\\" + "\\".join(names))

    target, rest = ("/mnt/proj", names[1:]) if names[0] == "proj" else ("/mnt/d", names)
    assert mapped == "/".join([target, *rest])

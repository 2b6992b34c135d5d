"""Malformed manifests through every import path (issue 6 item 9): a clear refusal, never a traceback.

Hypothesis makes the inputs: values nested past any recursion limit, wrong types at every level,
random bytes, numbers too long to read, NUL bytes, lone surrogates, text that is not UTF-8, byte-order
marks, and server paths using the storage's reserved names. Each path may accept an input or refuse
it with its own refusal (ManifestInvalid, CommandError); any other exception fails the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transfers import services
from transfers.engine.manifest import ManifestInvalid, read_upload_json, read_upload_list
from transfers.engine.sdk import append_to_upload, cutting_upload
from transfers.models import FarmAccount, Manifest

pytestmark = pytest.mark.django_db

BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DEEP = 5000  # Python's recursion limit is 1,000; msgspec's is lower


# what hypothesis feeds in


def _nested(depth: int, kind: str, inner: str = "1") -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + inner + closing * depth


_ODD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["\x00", "/a\x00b", "\ud800", "/x/\udfff.exr", "\ufeff/a", "", " ", "..", "/D/../../etc/x"]
)
_RESERVED = st.sampled_from(
    ["/D/.a.bin.rvpart", "/D/.a.bin.rvpart.ranges", "/D/.a.bin.rvpart.ranges.tmp", "D/x.rvpart/a.bin", "/D/a.bin"]
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _ODD_TEXT | _RESERVED
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass: lone surrogates become bytes that are not UTF-8, as a broken editor writes them
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """Close to an upload.json, broken in one or more places."""
    entry = st.fixed_dictionaries({"local": _VALUES | _ODD_TEXT, "server": _VALUES | _RESERVED}) | _VALUES
    document: Any = draw(
        st.fixed_dictionaries({"asset": st.lists(entry, max_size=4) | _VALUES}, optional={"extra": _VALUES}) | _VALUES
    )
    data = _encode(document, draw(st.booleans()))
    if draw(st.booleans()):  # a value nested too deep, spliced in at some place of the document
        depth, kind = draw(st.integers(900, DEEP)), draw(st.sampled_from(["list", "dict"]))
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + _nested(depth, kind).encode() + data[cut:]
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]))
    return prefix + data


_HUGE_NUMBER = st.integers(4000, 20000).map(lambda digits: b'{"asset": [{"local": ' + b"7" * digits + b', "server": "/a"}]}')
_DEEP_MANIFESTS = st.tuples(st.integers(1000, DEEP), st.sampled_from(["list", "dict"])).map(
    lambda shape: ('{"asset": ' + _nested(shape[0], shape[1], "[]") + "}").encode()
)
MANIFESTS = _documents() | _DEEP_MANIFESTS | _HUGE_NUMBER | st.binary(max_size=200)
_ROOT = str(django_settings.ALLOWED_LOCAL_ROOTS[0])
_UNDER_THE_ROOT = st.sampled_from(["", "x" * 300, "a/" + "y" * 256, "\x00", "..", "t/../..", "\udcff"]).map(
    lambda name: f"{_ROOT}/{name}"
)
UPLOAD_LISTS = MANIFESTS | st.lists(_ODD_TEXT | _RESERVED | _UNDER_THE_ROOT, max_size=5).map(
    lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")
)


@pytest.fixture
def account(make_account: Callable[..., FarmAccount]) -> FarmAccount:
    return make_account(name="farm")


# the engine readers


@BOUNDED
@given(data=MANIFESTS)
def test_read_upload_json_accepts_or_refuses_with_manifest_invalid(data: bytes) -> None:
    try:
        document = read_upload_json(data)
    except ManifestInvalid as exc:
        assert str(exc)
    else:
        assert document.entries


@BOUNDED
@given(data=UPLOAD_LISTS)
def test_read_upload_list_accepts_or_refuses_with_manifest_invalid(data: bytes) -> None:
    try:
        lines = read_upload_list(data)
    except ManifestInvalid as exc:
        assert str(exc)
    else:
        assert lines


def test_read_upload_json_refuses_deep_nesting_saying_so() -> None:
    with pytest.raises(ManifestInvalid, match="nested too deeply"):
        read_upload_json(('{"asset": ' + _nested(1500, "list", "[]") + "}").encode())


@BOUNDED
@given(data=MANIFESTS)
def test_cutting_upload_cuts_or_refuses_with_a_value_error(data: bytes, tmp_path: Path) -> None:
    source = tmp_path / "upload.json"
    source.write_bytes(data)
    try:
        cutting_upload(source, 1, tmp_path / "cut")
    except (ManifestInvalid, ValueError) as exc:
        assert str(exc)


@BOUNDED
@given(data=MANIFESTS)
def test_append_to_upload_appends_or_refuses_with_a_value_error(data: bytes, tmp_path: Path, allowed_dir: Path) -> None:
    target = tmp_path / "upload.json"
    target.write_bytes(data)
    (allowed_dir / "new.exr").write_bytes(b"n")
    try:
        append_to_upload([str(allowed_dir / "new.exr")], target)
    except (ManifestInvalid, ValueError) as exc:
        assert str(exc)
        assert target.read_bytes() == data  # a refused manifest is never rewritten


# the service, both transmit types


@BOUNDED
@given(data=MANIFESTS)
def test_manifest_import_of_an_upload_json_stores_it_or_refuses_with_manifest_invalid(data: bytes, account: FarmAccount) -> None:
    try:
        manifest = services.manifest_import(name="m", account=account, data=data, user=None)
    except ManifestInvalid as exc:
        assert exc.problems
    else:
        assert manifest.entry_count > 0


@BOUNDED
@given(data=UPLOAD_LISTS)
def test_manifest_import_of_an_upload_list_stores_it_or_refuses_with_manifest_invalid(data: bytes, account: FarmAccount) -> None:
    try:
        manifest = services.manifest_import(
            name="m", account=account, data=data, user=None, transmit_type=Manifest.TransmitType.UPLOAD_LIST
        )
    except ManifestInvalid as exc:
        assert exc.problems
    else:
        assert manifest.entry_count > 0


def test_manifest_import_refuses_reserved_names_naming_the_entry(account: FarmAccount, allowed_dir: Path) -> None:
    (allowed_dir / "a.bin").write_bytes(b"a")
    local = str(allowed_dir / "a.bin")
    data = json.dumps(
        {"asset": [{"local": local, "server": server} for server in ("/D/a.bin", "/D/.a.bin.rvpart", "/D/.a.bin.rvpart.ranges")]}
    ).encode()

    with pytest.raises(ManifestInvalid) as refused:
        services.manifest_import(name="m", account=account, data=data, user=None)

    assert [(p.number, "reserved name" in p.reason) for p in refused.value.problems] == [(2, True), (3, True)]
    assert not Manifest.objects.exists()


def test_manifest_import_of_an_upload_list_refuses_a_name_too_long_for_the_filesystem(
    account: FarmAccount, allowed_dir: Path
) -> None:
    with pytest.raises(ManifestInvalid, match=r"line 1: .* cannot be read: File name too long"):
        services.manifest_import(
            name="m", account=account, data=f"{allowed_dir}/{'x' * 300}".encode(), user=None, transmit_type="upload_list"
        )


def test_manifest_import_of_an_upload_list_refuses_a_folder_holding_a_file_name_that_is_not_utf8(
    account: FarmAccount, allowed_dir: Path
) -> None:
    (allowed_dir / "shots").mkdir()
    with open(os.fsencode(allowed_dir / "shots") + b"/\xff.exr", "wb") as handle:
        handle.write(b"x")

    with pytest.raises(ManifestInvalid, match=r"line 1: file name '\\udcff\.exr' .* is not UTF-8 text"):
        services.manifest_import(
            name="m", account=account, data=str(allowed_dir / "shots").encode(), user=None, transmit_type="upload_list"
        )
    assert not Manifest.objects.exists()


# the management commands


@BOUNDED
@given(data=MANIFESTS, transmit_type=st.sampled_from(["upload_json", "upload_list"]))
def test_import_manifest_command_imports_or_says_why_not(
    data: bytes, transmit_type: str, account: FarmAccount, tmp_path: Path
) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(data)
    try:
        call_command("import_manifest", str(path), account="farm", transmit_type=transmit_type, stdout=_Null())
    except CommandError as exc:
        assert str(exc)


@BOUNDED
@given(data=MANIFESTS)
def test_cutting_upload_command_cuts_or_says_why_not(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(data)
    try:
        call_command(
            "cutting_upload", str(path), max_resources_number=1, after_cutting_position=str(tmp_path / "cut"), stdout=_Null()
        )
    except CommandError as exc:
        assert str(exc)


@BOUNDED
@given(data=MANIFESTS)
def test_append_to_upload_command_appends_or_says_why_not(data: bytes, tmp_path: Path, allowed_dir: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(data)
    (allowed_dir / "new.exr").write_bytes(b"n")
    try:
        call_command("append_to_upload", str(allowed_dir / "new.exr"), upload_path=str(path), stdout=_Null())
    except CommandError as exc:
        assert str(exc)


@pytest.mark.parametrize("command", ["import_manifest", "cutting_upload", "append_to_upload"])
def test_every_command_refuses_deep_nesting_saying_so(command: str, account: FarmAccount, tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(('{"asset": ' + _nested(1200, "dict", "[]") + "}").encode())
    arguments: dict[str, tuple[list[str], dict[str, Any]]] = {
        "import_manifest": ([str(path)], {"account": "farm"}),
        "cutting_upload": ([str(path)], {"max_resources_number": 1}),
        "append_to_upload": ([str(tmp_path)], {"upload_path": str(path)}),
    }
    args, options = arguments[command]

    with pytest.raises(CommandError, match="nested too deeply"):
        call_command(command, *args, **options)


# the HTTP paths (the import may become a worker's task: only "no 500" is asserted here)


@pytest.fixture
def logged_in(client: Client, make_user: Callable[..., Any], account: FarmAccount) -> Client:
    client.force_login(make_user("artist", team=account.team, role="lead"))  # a lead may import to the account
    return client


def _deep_upload() -> SimpleUploadedFile:
    data = ('{"asset": ' + _nested(1500, "list", "[]") + "}").encode()
    return SimpleUploadedFile("upload.json", data, content_type="application/json")


def test_api_import_of_a_deeply_nested_manifest_is_no_server_error(logged_in: Client, account: FarmAccount) -> None:
    response = logged_in.post("/api/manifests/", {"name": "deep", "account": account.pk, "file": _deep_upload()})

    assert response.status_code < 500
    assert b"Traceback" not in response.content and b"RecursionError" not in response.content


def test_import_page_with_a_deeply_nested_manifest_is_no_server_error(logged_in: Client, account: FarmAccount) -> None:
    response = logged_in.post(reverse("manifest-list"), {"name": "deep", "account": account.pk, "file": _deep_upload()})

    assert response.status_code < 500
    assert b"Traceback" not in response.content and b"RecursionError" not in response.content


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

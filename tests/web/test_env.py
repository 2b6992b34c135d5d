"""The typed environment readers: good values pass, bad ones stop start-up naming the variable."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from rvweb.env import env_bool, env_int, env_paths, env_url, secret_in_file

VAR = "RVWEB_TEST_SETTING"


def _counting(value: str) -> tuple[list[str], Callable[[], str]]:
    calls: list[str] = []

    def generate() -> str:
        calls.append(value)
        return value

    return calls, generate


# --- env_bool -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), (" On ", True), ("TRUE", True), ("0", False), ("off", False), ("No", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, not expected) is expected


def test_env_bool_gives_the_default_when_unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)

    assert env_bool(VAR, True) is True


def test_env_bool_refuses_an_unknown_word_naming_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, "maybe")

    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_bool(VAR, False)


# --- env_int --------------------------------------------------------------------------------------


def test_env_int_reads_an_integer(monkeypatch):
    monkeypatch.setenv(VAR, " 42 ")

    assert env_int(VAR, 1, minimum=1, maximum=50) == 42


def test_env_int_gives_the_default_when_empty(monkeypatch):
    monkeypatch.setenv(VAR, "")

    assert env_int(VAR, 7) == 7


def test_env_int_refuses_a_non_integer_naming_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, "4.5")

    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_int(VAR, 1)


@pytest.mark.parametrize("raw", ["0", "51"])
def test_env_int_refuses_a_value_out_of_range_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_int(VAR, 4, minimum=1, maximum=50)


# --- env_url --------------------------------------------------------------------------------------


def test_env_url_accepts_a_listed_scheme(monkeypatch):
    monkeypatch.setenv(VAR, "postgres://rvweb:hunter2@db.example.com:5432/rvweb")

    assert env_url(VAR, None, schemes=("postgres", "sqlite")) == "postgres://rvweb:hunter2@db.example.com:5432/rvweb"


def test_env_url_gives_the_default_when_unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)

    assert env_url(VAR, "sqlite:///x.db", schemes=("sqlite",)) == "sqlite:///x.db"


def test_env_url_refuses_an_unlisted_scheme_naming_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, "mysql://rvweb:hunter2@db.example.com/rvweb")

    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_url(VAR, None, schemes=("postgres", "sqlite"))


def test_env_url_error_never_echoes_the_url_or_its_password(monkeypatch):
    url = "mysql://rvweb:hunter2@db.example.com/rvweb"
    monkeypatch.setenv(VAR, url)

    with pytest.raises(ImproperlyConfigured) as refused:
        env_url(VAR, None, schemes=("postgres", "sqlite"))

    assert "hunter2" not in str(refused.value)
    assert "db.example.com" not in str(refused.value)


def test_env_url_refuses_a_malformed_url_naming_the_variable_without_echoing_it(monkeypatch):
    # An unclosed IPv6 bracket makes urlsplit raise ValueError: it must still be a loud, named refusal.
    monkeypatch.setenv(VAR, "postgres://rvweb:hunter2@[::1/rvweb")

    with pytest.raises(ImproperlyConfigured, match=VAR) as refused:
        env_url(VAR, None, schemes=("postgres",))

    assert "hunter2" not in str(refused.value)


# --- env_paths ------------------------------------------------------------------------------------


def test_env_paths_reads_absolute_paths_separated_by_pathsep(monkeypatch, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(VAR, f"{first}{os.pathsep}{second}")

    assert env_paths(VAR, []) == [first.resolve(), second.resolve()]


def test_env_paths_gives_the_default_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)

    assert env_paths(VAR, [tmp_path]) == [tmp_path.resolve()]


def test_env_paths_refuses_a_relative_path_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(VAR, f"{tmp_path}{os.pathsep}relative/assets")

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}.*relative/assets"):
        env_paths(VAR, [])


# --- secret_in_file -------------------------------------------------------------------------------


def test_secret_in_file_generates_into_a_file_only_its_owner_can_read(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)
    path = tmp_path / "keys" / "secret"

    secret = secret_in_file(VAR, path, generate=lambda: "generated-secret")

    assert secret == "generated-secret"
    assert path.read_text().strip() == "generated-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_in_file_returns_the_stored_value_on_the_next_call_without_generating(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)
    path = tmp_path / "secret"
    calls, generate = _counting("only-once")

    first = secret_in_file(VAR, path, generate=generate)
    second = secret_in_file(VAR, path, generate=generate)

    assert first == second == "only-once"
    assert len(calls) == 1


def test_secret_in_file_prefers_the_environment_and_writes_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv(VAR, "from-the-environment")
    path = tmp_path / "secret"

    assert secret_in_file(VAR, path, generate=lambda: "generated") == "from-the-environment"
    assert not path.exists()


def test_secret_in_file_prefers_the_environment_over_a_stored_file(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text("stored\n")
    monkeypatch.setenv(VAR, "from-the-environment")

    assert secret_in_file(VAR, path) == "from-the-environment"


def test_secret_in_file_refuses_an_empty_file_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)
    path = tmp_path / "secret"
    path.write_text("")

    with pytest.raises(ImproperlyConfigured, match=VAR):
        secret_in_file(VAR, path)


def test_secret_in_file_is_never_seen_empty_by_a_process_starting_at_the_same_time(monkeypatch, tmp_path):
    # The web server and the worker may both start on a fresh data dir. Simulate the second process
    # arriving while the first is still generating: it must get a usable secret, and both the same one.
    monkeypatch.delenv(VAR, raising=False)
    path: Path = tmp_path / "secret"
    seen_by_second: list[str] = []

    def generate_while_another_process_starts() -> str:
        if not seen_by_second:
            seen_by_second.append(secret_in_file(VAR, path, generate=lambda: "second-process"))
        return "first-process"

    first = secret_in_file(VAR, path, generate=generate_while_another_process_starts)

    assert seen_by_second == [first]


@pytest.mark.parametrize(
    ("farm", "allowed"),
    [("/srv/rv/farm", "/srv/rv"), ("/srv/rv/assets/farm", "/srv/rv/assets"), ("/srv/rv", "/srv/rv/farm/x"), ("/srv/a", "/srv/a")],
)
def test_a_farm_root_overlapping_an_allowed_root_is_refused_naming_both(farm, allowed):
    from rvweb.env import apart

    with pytest.raises(ImproperlyConfigured, match=r"RVWEB_FARM_ROOT .* and RVWEB_ALLOWED_LOCAL_ROOTS .* overlap"):
        apart(Path(farm), [Path("/elsewhere"), Path(allowed)])


def test_a_farm_root_beside_the_allowed_roots_is_fine():
    from rvweb.env import apart

    apart(Path("/srv/rv/farm"), [Path("/srv/rv/assets"), Path("/srv/rv/farmhouse")])

"""Farm accounts as leads edit them: checking what they typed, saving it with an audit row, and the
connector's "test connection".

The pages and the API both call `account_save` and `account_check`. The access key is write-only: it is
given (set or changed), left out (kept) or cleared, and an audit row only ever says which of these
happened, never the key.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import msgspec
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest

from transfers import selectors
from transfers.farm import CONNECTORS, CheckStep, UnsupportedAccount, connector_for
from transfers.farm.base import StorageInvalid
from transfers.kinds import options as kind_options
from transfers.models import FarmAccount, Team, validate_path_map
from transfers.services import User, _require, audit_record

MAX_LINES = 16
# The options an account may give its transfers a default for (a job's own value wins).
DEFAULT_OPTIONS = ("max_speed", "pool_size", "upload_num", "network_mode", "is_db")
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$|^\[?[0-9A-Fa-f:.]+\]?$"
)
_LINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,59}$")
_EDITABLE = (
    "name", "team", "kind", "access_id", "domain", "platform", "transfer_lines", "path_map", "upload_options", "storage",
)  # fmt: skip


class AccountInvalid(ValueError):
    """What is wrong with the account as given, by field: {"transfer_lines": "line 2: ..."}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def lines_checked(raw: Any) -> list[dict[str, Any]]:
    """Transfer lines as a list of {"name", "host", "port"}; ValueError names the line and what is wrong."""
    if not isinstance(raw, list):
        raise ValueError('a list of lines: [{"name": "main", "host": "10.0.0.5", "port": 7300}]')
    if len(raw) > MAX_LINES:
        raise ValueError(f"at most {MAX_LINES} lines")
    lines, names = [], set()
    for number, line in enumerate(raw, start=1):
        if not isinstance(line, dict) or set(line) != {"name", "host", "port"}:
            raise ValueError(f"line {number}: give exactly name, host and port")
        name, host, port = line["name"], line["host"], line["port"]
        if not isinstance(name, str) or not _LINE_NAME.match(name):
            raise ValueError(f"line {number}: the name is 1 to 60 letters, digits, spaces, . _ -")
        if name in names:
            raise ValueError(f"line {number}: the name {name!r} is given twice")
        if not isinstance(host, str) or not _HOST.match(host):
            raise ValueError(f"line {number}: {host!r} is not a host name or an IP address")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"line {number}: the port is a whole number from 1 to 65535")
        names.add(name)
        lines.append({"name": name, "host": host, "port": port})
    return lines


def lines_parsed(text: str) -> list[dict[str, Any]]:
    """The page's text form of the lines, one `name host:port` a line, as the list lines_checked takes."""
    lines: list[dict[str, Any]] = []
    for number, row in enumerate((r.strip() for r in text.splitlines()), start=1):
        if not row:
            continue
        name, _, where = row.rpartition(" ")
        host, colon, port = where.rpartition(":")
        if not name.strip() or not colon or not port.isdigit():
            raise ValueError(f"line {number}: write it as `name host:port`, e.g. `main 10.0.0.5:7300`")
        lines.append({"name": name.strip(), "host": host.strip("[]") if host.startswith("[") else host, "port": int(port)})
    return lines


def options_checked(raw: Any) -> dict[str, Any]:
    """Default transfer options, by the SDK's names, checked with the upload kinds' own option struct; only
    the ones given are kept (an option left out follows the kind's default)."""
    if not isinstance(raw, dict):
        raise ValueError('an object of options: {"max_speed": 2048, "pool_size": 8}')
    unknown = sorted(set(raw) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; an account may set {', '.join(DEFAULT_OPTIONS)}")
    given = {key: value for key, value in raw.items() if value is not None}
    parsed = kind_options.dump(kind_options.parse(kind_options.UploadAsset, given))
    return {key: parsed[key] for key in given}


def options_for(account: FarmAccount, kind_options_type: type[kind_options.Transfer]) -> dict[str, Any]:
    """The account's default options that a kind takes (a job's own options go on top of these)."""
    fields = {field.name for field in msgspec.structs.fields(kind_options_type)}
    return {key: value for key, value in (account.upload_options or {}).items() if key in fields}


def _cleaned(data: dict[str, Any], account: FarmAccount | None) -> dict[str, Any]:
    """The editable fields given, checked; AccountInvalid names every field that is wrong."""
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    limits = {"name": 100, "access_id": 200, "domain": 200, "platform": 10}
    for field, value in data.items():
        if field not in _EDITABLE:
            continue
        try:
            if field in limits:
                value = "" if value is None else str(value).strip()
                if len(value) > limits[field]:
                    raise ValueError(f"at most {limits[field]} characters")
                if field == "name" and not value:
                    raise ValueError("give the account a name")
            elif field == "kind":
                current = account.kind if account is not None else None
                if value not in CONNECTORS and value != current:
                    raise ValueError(f"{value!r} is not a farm kind this version reaches ({', '.join(sorted(CONNECTORS))})")
            elif field == "team" and not isinstance(value, Team):
                raise ValueError("choose a team")
            elif field == "transfer_lines":
                value = lines_checked(value)
            elif field == "path_map":
                validate_path_map(value)
            elif field == "upload_options":
                value = options_checked(value)
            elif field == "storage":
                continue  # checked below, by the connector of the account's kind
        except ValidationError as exc:
            errors[field] = " ".join(exc.messages)
        except (ValueError, kind_options.OptionsInvalid) as exc:
            errors[field] = str(exc)
        else:
            cleaned[field] = value
    kind = cleaned.get("kind", account.kind if account is not None else FarmAccount.Kind.LOCAL)
    if "storage" in data or account is None or kind != account.kind:
        given = data.get("storage") or {}  # a kind changed without its settings starts from the new kind's defaults
        try:
            cleaned["storage"] = CONNECTORS[kind].storage_checked(given) if kind in CONNECTORS else given
        except StorageInvalid as exc:
            errors["storage"] = str(exc)
    name = cleaned.get("name")
    others = FarmAccount.objects.exclude(pk=account.pk) if account is not None else FarmAccount.objects.all()
    if name and others.filter(name=name).exists():
        errors["name"] = f"an account named {name!r} exists already"
    if errors:
        raise AccountInvalid(errors)
    return cleaned


def _shown(account: FarmAccount, field: str) -> Any:
    value = getattr(account, field)
    return value.name if isinstance(value, Team) else value


def account_save(
    *,
    user: User | None,
    data: dict[str, Any],
    account: FarmAccount | None = None,
    key: str | None = None,
    clear_key: bool = False,
    request: HttpRequest | None = None,
) -> FarmAccount:
    """Create an account (account None) or change the given fields of one, for a lead of its team (and of
    the team it moves to) or staff. `key`: a new access key; None or "" keeps the stored one; `clear_key`
    removes it. Refuses with PermissionDenied (role) or AccountInvalid (by field); audits before/after."""
    team = data.get("team")
    if isinstance(team, Team) and user is not None and not selectors.user_may(user, "manage", team):
        raise PermissionDenied("you may put farm accounts only in a team you lead")
    if account is None and user is not None and not selectors.teams_for(user, role="lead").exists():
        raise PermissionDenied("storing farm credentials needs the lead role in a team (or staff)")
    with transaction.atomic():
        if account is not None:
            account = FarmAccount.objects.select_for_update().get(pk=account.pk)  # the key read, never shown
            _require(user, "manage", account)
        cleaned = _cleaned(data, account)
        if account is None and "team" not in cleaned:
            raise AccountInvalid({"team": "choose a team"})
        had_key = bool(account.access_key) if account is not None else False
        before = {field: _shown(account, field) for field in cleaned} if account is not None else {}
        target = account if account is not None else FarmAccount()
        for field, value in cleaned.items():
            setattr(target, field, value)
        if clear_key:
            target.access_key = ""
        elif key:
            target.access_key = key
        target.save()
        after = {field: _shown(target, field) for field in cleaned}
        changed = [field for field in cleaned if account is None or before.get(field) != after.get(field)]
        before = {field: before[field] for field in changed if field in before}
        after = {field: after[field] for field in changed}
        if clear_key and had_key:
            before["access_key"], after["access_key"] = "set", "cleared"
        elif key:
            before["access_key"], after["access_key"] = ("set" if had_key else "not set"), ("changed" if had_key else "set")
        action = "account.create" if account is None else "account.change"
        audit_record(actor=user, action=action, target=target, request=request, before=before or None, after=after)
    return target


def account_check(*, account: FarmAccount, user: User | None, request: HttpRequest | None = None) -> list[CheckStep]:
    """Run the account's connector check ("test connection"), for its leads and staff; every step is
    returned, the failed ones saying why. An account no connector reaches fails at its first step."""
    _require(user, "manage", account)
    try:
        steps = connector_for(account).for_page().check()  # in a request: a farm answers in seconds or not at all
    except UnsupportedAccount as exc:
        steps = [CheckStep("connector", False, str(exc))]
    failed = [step.name for step in steps if not step.ok]
    audit_record(
        actor=user,
        action="account.check",
        target=account,
        request=request,
        after={"failed": failed},
        outcome="failed" if failed else "ok",
    )
    return steps


def steps_as_json(steps: list[CheckStep]) -> list[dict[str, Any]]:
    return [asdict(step) for step in steps]

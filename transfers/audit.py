"""The audit page's reading of the trail: its filters, keyset pages (newest first, by id) and the CSV export.

Rows are read by id, never by OFFSET: a page is `id < cursor ORDER BY id DESC LIMIT n`, and each filter
has an index ending in the id (see AuditEvent.Meta), so the 20,000th page costs what the first does. A
date range becomes an id range first (one look-up on created_at each way, with a margin for rows whose
id and time are a moment out of order), then is checked exactly.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from transfers.models import AuditEvent, Team

PAGE_SIZE = 50
EXPORT_BATCH = 2000  # rows per query while exporting: memory stays flat whatever the table's size
_CLOCK_MARGIN = dt.timedelta(minutes=1)  # ids and times of concurrent writers may disagree by this much

# What the filter fields suggest (any other value may be typed): the actions rvweb records.
KNOWN_ACTIONS = [
    "auth.", "auth.login", "auth.logout", "auth.login_failed", "auth.lockout",
    "user.", "user.create", "user.change", "user.delete", "user.password_set",
    "team.", "team.create", "team.change", "team.delete",
    "membership.", "membership.create", "membership.change", "membership.delete",
    "account.", "account.create", "account.change", "account.delete",
    "manifest.", "manifest.import", "manifest.import.finish", "manifest.delete",
    "job.", "job.create", "job.pause", "job.resume", "job.cancel", "job.retry", "job.max_speed", "job.finish", "job.delete",
    "farm.",
]  # fmt: skip
KNOWN_TARGETS = ["User", "Login", "Team", "Membership", "FarmAccount", "Manifest", "TransferJob", "FarmTask"]
KNOWN_OUTCOMES = ["ok", "failed", "refused", "locked_out", "completed", "completed_with_errors", "cancelled"]

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


_YEARS = (1000, 9000)  # a date past these is a typo; at datetime's own ends a day or the margin would overflow


def _in_range(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and not _YEARS[0] <= value.year <= _YEARS[1]:
        raise forms.ValidationError(f"a date between the years {_YEARS[0]} and {_YEARS[1]}")
    return value


class AuditFilterForm(forms.Form):
    """The audit page's filters, all optional; a value that cannot be read is a form error (400), never a 500."""

    actor = forms.CharField(max_length=150, required=False, help_text="a username, or system, farm, anonymous")
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), required=False, empty_label="any team")
    action = forms.CharField(max_length=60, required=False, help_text='exact, or a family ending in ".": job.')
    target_type = forms.CharField(max_length=60, required=False, label="Target type")
    target_id = forms.CharField(max_length=60, required=False, label="Target id")
    outcome = forms.CharField(max_length=30, required=False)
    request_id = forms.CharField(max_length=64, required=False, label="Request id")
    since = forms.DateTimeField(required=False, input_formats=_DATE_FORMATS, label="From")
    until = forms.DateTimeField(required=False, input_formats=_DATE_FORMATS, label="Until", help_text="a day: to its end")
    before = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)

    def __init__(self, data: Any, *, teams: QuerySet[Team]) -> None:
        super().__init__(data)
        field = self.fields["team"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = teams

    def clean_since(self) -> dt.datetime | None:
        return _in_range(self.cleaned_data.get("since"))

    def clean_until(self) -> dt.datetime | None:
        until = _in_range(self.cleaned_data.get("until"))
        raw = str(self.data.get("until", "")).strip()
        if until is not None and len(raw) == 10:  # a bare date: through the end of that day
            until += dt.timedelta(days=1)
        return until

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "must be after From")
        return data

    def filters(self) -> dict[str, str]:
        """The filter values as query parameters (no cursor): for the page's links and the export."""
        values = {name: self.data.get(name, "") for name in self.fields if name not in ("before", "after")}
        return {name: str(value) for name, value in values.items() if value}


def filtered(events: QuerySet[AuditEvent], form: AuditFilterForm) -> QuerySet[AuditEvent]:
    """`events` narrowed by a valid form's filters (the cursor is not applied here)."""
    data = form.cleaned_data
    exact = {name: data[name] for name in ("actor", "target_type", "target_id", "outcome", "request_id") if data.get(name)}
    if "actor" in exact:
        exact["actor_name"] = exact.pop("actor")
    events = events.filter(**exact)
    if data.get("team") is not None:
        events = events.filter(team_id=data["team"].pk)
    action = data.get("action") or ""
    if action.endswith(".") or action.endswith("*"):
        events = events.filter(action__startswith=action.rstrip("*"))
    elif action:
        events = events.filter(action=action)
    if data.get("since"):
        events = events.filter(created_at__gte=data["since"])
        first = AuditEvent.objects.filter(created_at__gte=data["since"] - _CLOCK_MARGIN).order_by("created_at")
        first_id = first.values_list("id", flat=True).first()
        events = events.filter(id__gte=first_id) if first_id is not None else events.none()
    if data.get("until"):
        events = events.filter(created_at__lt=data["until"])
        last = AuditEvent.objects.filter(created_at__lt=data["until"] + _CLOCK_MARGIN).order_by("-created_at")
        last_id = last.values_list("id", flat=True).first()
        events = events.filter(id__lte=last_id) if last_id is not None else events.none()
    return events


@dataclass
class AuditPage:
    rows: list[AuditEvent]
    newer: int | None  # the cursor of the page before (newer rows), if any: ?after=<id>
    older: int | None  # the cursor of the next page (older rows), if any: ?before=<id>


def page_of(events: QuerySet[AuditEvent], *, before: int | None, after: int | None, size: int = PAGE_SIZE) -> AuditPage:
    """One page of `events`, newest first: older than `before`, or the page just newer than `after`."""
    events = events.select_related(None)
    if after is not None:
        rows = list(events.filter(id__gt=after).order_by("id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        older = rows[-1].pk if rows and events.filter(id__lt=rows[-1].pk).exists() else None
        return AuditPage(rows, rows[0].pk if rows and more_newer else None, older)
    rows = list((events.filter(id__lt=before) if before is not None else events).order_by("-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    newer = rows[0].pk if rows and before is not None and events.filter(id__gt=rows[0].pk).exists() else None
    return AuditPage(rows, newer, rows[-1].pk if rows and more_older else None)


@dataclass(frozen=True)
class Change:
    key: str
    before: str
    after: str
    changed: bool


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def diff(event: AuditEvent) -> list[Change]:
    """The row's before and after, key by key (values that differ marked): what the page shows."""
    before = event.before if isinstance(event.before, dict) else ({"value": event.before} if event.before else {})
    after = event.after if isinstance(event.after, dict) else ({"value": event.after} if event.after else {})
    keys = list(dict.fromkeys([*before, *after]))
    return [
        Change(key, _shown(before.get(key)), _shown(after.get(key)), key in before and key in after and before[key] != after[key])
        for key in keys
    ]


# --- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = [
    "id", "time", "actor", "actor_id", "team_id", "team", "action", "target_type", "target_id",
    "outcome", "ip", "request_id", "before", "after",
]  # fmt: skip
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula (= + - @ tab CR) gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write() returns the line csv.writer wrote."""

    def write(self, value: str) -> str:
        return value


def _csv_row(event: AuditEvent, teams: dict[int, str]) -> list[str]:
    values: list[object] = [
        event.pk,
        event.created_at.astimezone(dt.UTC).isoformat(),
        event.actor_name,
        event.actor_id,
        event.team_id,
        teams.get(event.team_id, "") if event.team_id is not None else "",
        event.action,
        event.target_type,
        event.target_id,
        event.outcome,
        event.remote_addr,
        event.request_id,
        "" if event.before is None else json.dumps(event.before, sort_keys=True, ensure_ascii=False),
        "" if event.after is None else json.dumps(event.after, sort_keys=True, ensure_ascii=False),
    ]
    return [csv_safe(value) for value in values]


def csv_batches(events: QuerySet[AuditEvent], teams: dict[int, str], *, batch: int = EXPORT_BATCH) -> Iterator[str]:
    """The CSV of `events`, newest first, as text chunks of at most `batch` rows (one query each, by id)."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    cursor: int | None = None
    while True:
        page = events.filter(id__lt=cursor) if cursor is not None else events
        rows = list(page.order_by("-id")[:batch])
        if not rows:
            return
        yield "".join(writer.writerow(_csv_row(event, teams)) for event in rows)
        cursor = rows[-1].pk


async def csv_stream(events: QuerySet[AuditEvent], teams: dict[int, str]) -> AsyncIterator[bytes]:
    """csv_batches for an ASGI server: each batch read in the database thread, sent before the next is read
    (a sync iterator would be read to its end first, the whole table in memory)."""
    batches = csv_batches(events, teams)
    read = sync_to_async(lambda: next(batches, None), thread_sensitive=True)
    while (chunk := await read()) is not None:
        yield chunk.encode()


def export_name() -> str:
    return f"rvweb-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"

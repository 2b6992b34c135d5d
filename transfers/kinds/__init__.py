"""Job kinds, by the SDK's names: each is one module with a JobKind subclass plus one line here.

`get(job.kind)` is the only way the worker, the services and the pages learn what a kind does: no
`if kind == ...` anywhere else.
"""

from __future__ import annotations

from typing import Any

from transfers.kinds.base import JobKind, Leg
from transfers.kinds.options import OptionsInvalid

__all__ = ["JobKind", "Leg", "OptionsInvalid", "UnknownKind", "get", "names", "register"]

_KINDS: dict[str, JobKind[Any]] = {}


class UnknownKind(LookupError):
    pass


def register(kind: type[JobKind[Any]]) -> type[JobKind[Any]]:
    _KINDS[kind.name] = kind()
    return kind


def get(name: str) -> JobKind[Any]:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown job kind {name!r}; this rvweb knows {', '.join(sorted(_KINDS))}") from None


def names() -> list[str]:
    return list(_KINDS)


# The registrations: one module per kind.
from transfers.kinds import download, upload_asset, upload_config  # noqa: E402,F401  (upload_config registers upload too)

"""The farm's request signature (reference/sdk-spec.md §7.3): HMAC-SHA256 over a canonical string.

The canonical string is the farm's, and the farm checks it, so it is reproduced exactly, sharp edges
included (§8 #28): scalars are written the way Python's str() writes them (True, False, None, not JSON's
true/null), and nothing is escaped, so a value holding `&` or `=` reads ambiguously. Bodies built by
FoxClient therefore carry numbers and plain strings, never booleans or nulls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested keys joined with `.`, list indexes appended with no separator (`taskIds0`,
    `renderEnvs0.pluginIds2`); an empty list or object gives nothing; every scalar is str() of it."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        _add(flat, f"{prefix}.{key}" if prefix else str(key), value)
    return flat


def _add(flat: dict[str, str], key: str, value: Any) -> None:
    if isinstance(value, Mapping):
        flat.update(flatten(value, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _add(flat, f"{key}{index}", item)
    else:
        flat[key] = str(value)


def canonical(host: str, path: str, params: Mapping[str, Any]) -> str:
    """`[POST]<host>:<path>&k=v&...`, the pairs sorted by the keys' bytes (upper case first)."""
    flat = flatten(params)
    pairs = "&".join(f"{key}={flat[key]}" for key in sorted(flat, key=lambda k: k.encode("utf-8")))
    return f"[POST]{host}:{path}&{pairs}"


def sign(key: str, message: str) -> str:
    """Base64 (standard alphabet, padded) of HMAC-SHA256(key, message), both UTF-8."""
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature(key: str, *, host: str, path: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The `signature` header of a request: the signed headers with the body merged on top (the body wins
    a clash), canonicalised for this host and path, then signed with the access key."""
    return sign(key, canonical(host, path, {**headers, **body}))

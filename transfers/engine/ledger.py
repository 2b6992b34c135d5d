"""The upload ledger (the SDK's `is_db`): what was sent where, so an unchanged file is never sent twice.

One ledger instance covers one farm account's storage area, across manifests. The app implements it
in its database; MemoryLedger serves tests and benchmarks. Look-ups and records come in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class LedgerRecord(NamedTuple):
    """What went where. The key is the destination's path: an upload's server path, a download's local one.

    A named tuple: a re-upload of unchanged files builds one per file looked up, and a frozen
    dataclass's __init__ cost as much as the look-up's row.
    """

    server: str  # destination-relative path, as clean_server_path gives it
    local: str  # the source's path as the task named it (an upload's local file, a download's farm path)
    size: int
    mtime_ns: int
    checksum: str


class Ledger(Protocol):
    def lookup(self, servers: Sequence[str]) -> dict[str, LedgerRecord]: ...
    def record(self, records: Sequence[LedgerRecord]) -> None: ...


class MemoryLedger:
    def __init__(self) -> None:
        self.records: dict[str, LedgerRecord] = {}
        self.lookups = 0

    def lookup(self, servers: Sequence[str]) -> dict[str, LedgerRecord]:
        self.lookups += 1
        return {server: self.records[server] for server in servers if server in self.records}

    def record(self, records: Sequence[LedgerRecord]) -> None:
        self.records.update((r.server, r) for r in records)

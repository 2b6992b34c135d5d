"""The engine's upload ledger, kept in the database (UploadRecord), one instance per account and area."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from transfers.engine.ledger import LedgerRecord
from transfers.models import UploadRecord

_QUERY_BATCH = 500  # stays under SQLite's bound-parameter limit with room to spare
_RANGE_AT_LEAST = 32  # paths per look-up from which one range query is tried first


class DbLedger:
    def __init__(self, *, account_id: int, area: str) -> None:
        self.account_id = account_id
        self.area = area

    def lookup(self, servers: Sequence[str]) -> dict[str, LedgerRecord]:
        # A plain cursor: the ORM's row handling is 3-5x the query's cost here, and a re-upload of
        # unchanged files is nothing but these look-ups and a stat per file.
        found: dict[str, LedgerRecord] = {}
        table = connection.ops.quote_name(UploadRecord._meta.db_table)
        make = LedgerRecord._make
        with connection.cursor() as cursor:
            for start in range(0, len(servers), _QUERY_BATCH):
                chunk = sorted(servers[start : start + _QUERY_BATCH])
                if connection.vendor == "sqlite" and len(chunk) >= _RANGE_AT_LEAST:
                    # The paths of a batch are mostly neighbours (a folder's files): one walk of the
                    # index from the first to the last costs half of 500 separate probes. SQLite
                    # compares TEXT bytewise, as sorted() orders str. A span holding many other rows
                    # is looked up path by path instead (the LIMIT notices it).
                    limit = len(chunk) * 2 + 64
                    cursor.execute(
                        f"SELECT server, local, size, mtime_ns, checksum FROM {table} "  # noqa: S608 - names are ours, values bound
                        "WHERE account_id = %s AND area = %s AND server >= %s AND server <= %s LIMIT %s",
                        [self.account_id, self.area, chunk[0], chunk[-1], limit],
                    )
                    rows = cursor.fetchall()
                    if len(rows) < limit:
                        wanted = set(chunk)
                        found.update((row[0], make(row)) for row in rows if row[0] in wanted)
                        continue
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT server, local, size, mtime_ns, checksum FROM {table} "  # noqa: S608 - names are ours, values bound
                    f"WHERE account_id = %s AND area = %s AND server IN ({marks})",
                    [self.account_id, self.area, *chunk],
                )
                found.update((row[0], make(row)) for row in cursor.fetchall())
        return found

    def record(self, records: Sequence[LedgerRecord]) -> None:
        now = timezone.now()
        UploadRecord.objects.bulk_create(
            [
                UploadRecord(
                    account_id=self.account_id,
                    area=self.area,
                    server=r.server,
                    local=r.local,
                    size=r.size,
                    mtime_ns=r.mtime_ns,
                    checksum=r.checksum,
                    uploaded_at=now,
                )
                for r in records
            ],
            update_conflicts=True,
            unique_fields=["account", "area", "server"],
            update_fields=["local", "size", "mtime_ns", "checksum", "uploaded_at"],
            batch_size=_QUERY_BATCH,
        )

"""Farm connectors, one module per farm kind, chosen through CONNECTORS by the account's kind.

Adding a farm is one module with a FarmConnector subclass (see transfers.farm.base) plus one line here.
Nothing outside this table asks which kind an account is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfers.farm.base import (
    AREAS,
    CheckStep,
    FarmConnector,
    FarmError,
    FarmOutput,
    FarmTaskInfo,
    TransferLine,
    TransportUnavailable,
    UnknownTask,
    UnsupportedAccount,
)
from transfers.farm.fox import FoxFarm
from transfers.farm.local import LocalFarm
from transfers.farm.s3 import S3Farm
from transfers.farm.sftp import SftpFarm

if TYPE_CHECKING:
    from transfers.models import FarmAccount

__all__ = [
    "AREAS",
    "CONNECTORS",
    "CheckStep",
    "FarmConnector",
    "FarmError",
    "FarmOutput",
    "FarmTaskInfo",
    "TransferLine",
    "TransportUnavailable",
    "UnknownTask",
    "UnsupportedAccount",
    "connector_for",
    "kind_choices",
]

CONNECTORS: dict[str, type[FarmConnector]] = {
    LocalFarm.kind: LocalFarm,
    FoxFarm.kind: FoxFarm,
    SftpFarm.kind: SftpFarm,
    S3Farm.kind: S3Farm,
}


def kind_choices() -> list[tuple[str, str]]:
    """The kinds an account may be given: the registered connectors, with the model's label where it has one."""
    from transfers.models import FarmAccount as Account

    labels = dict(Account.Kind.choices)
    return [(kind, labels.get(kind, kind)) for kind in sorted(CONNECTORS)]


def connector_for(account: FarmAccount) -> FarmConnector:
    """The account's connector; UnsupportedAccount (saying which kinds this version reaches) when none."""
    connector = CONNECTORS.get(account.kind)
    if connector is None:
        reached = ", ".join(sorted(CONNECTORS))
        raise UnsupportedAccount(
            f"farm account {account.name!r} is a {account.get_kind_display()} account, and this version of rvweb "
            f"has no connector for it (farm kinds it reaches: {reached})"
        )
    return connector(account)

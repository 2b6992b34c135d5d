"""The Fox Renderfarm / Renderbus connector: the account's identity, storage ids, tasks, outputs and
lines, read from the farm's REST API (FoxClient).

It calls the farm only when asked (the SDK calls it from constructors, §8 #27) and keeps the account's
identity for the instance's life. Task statuses go through status_of, so an unknown or missing code is
"not finished", never a crash, and a task the farm does not know is UnknownTask, never an endless
wait (§8 #8). The files themselves go through the vendor's transmitter, not through this connector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from transfers.engine.endpoints import Endpoint
from transfers.engine.endpoints.base import StoredFile
from transfers.engine.runner import RunSummary
from transfers.farm.base import (
    CheckStep,
    FarmConnector,
    FarmOutput,
    FarmTaskInfo,
    LegRequest,
    TransferLine,
    UnknownTask,
    UnsupportedAccount,
    check_area,
)
from transfers.farm.fox.client import FoxClient
from transfers.farm.fox.errors import FoxError
from transfers.farm.fox.lines import LineChoice, measure_all
from transfers.farm.fox.outputs import walk
from transfers.farm.fox.parse import as_int, as_list, line_of, static_lines, task_tree
from transfers.farm.fox.transfer import check_engine, check_transmitter, fox_transfer
from transfers.models import FarmAccount

if TYPE_CHECKING:
    from transfers.kinds.options import Transfer

logger = logging.getLogger(__name__)

INFO_CHUNK = 100  # task ids per queryTaskInfo call
MAX_PAGES = 1000  # getTaskList pages at most: a farm that keeps saying "more" is not followed forever


@dataclass(frozen=True)
class FoxIdentity:
    """Who the account is on the farm, from queryUserProfile, queryUserSetting and getBid (§3.7, §7.6)."""

    user_id: int
    user_name: str
    main_user_id: int | None  # the main account of a sub-account
    share_main_capital: bool  # a sub-account using the main account's assets: uploads go to its input storage
    input_bid: str
    output_bid: str
    config_bid: str
    parent_input_bid: str
    download_disabled: bool
    platform: str = ""
    sub_user_output_bids: tuple[tuple[int, str], ...] = ()  # a main account's sub-accounts' output storage

    @property
    def is_sub_account(self) -> bool:
        return self.main_user_id is not None and self.main_user_id != self.user_id


class FoxFarm(FarmConnector):
    """The connector of a Fox Renderfarm / Renderbus account."""

    kind = FarmAccount.Kind.FOX
    transport = "transmitter"

    def __init__(self, account: FarmAccount, *, client: FoxClient | None = None) -> None:
        super().__init__(account)
        self._client = client
        self.chosen: dict[str, LineChoice] = {}  # engine -> the line this run took (farm.fox.transfer)

    @property
    def client(self) -> FoxClient:
        """Made on first use, so a connector of an account without credentials can still be checked."""
        if self._client is None:
            account = self.account
            self._client = FoxClient(
                account.domain, account.access_id, account.access_key or "", account.platform, allowed_hosts=settings.FOX_DOMAINS
            )
        return self._client

    def for_page(self) -> FoxFarm:
        """One try per call, 3 s to connect and 8 s to answer: a farm that does not answer is said so on the
        page at once (the worker's client keeps the patient default: 4 tries, 60 s reads)."""
        account = self.account
        try:
            client = FoxClient(
                account.domain,
                account.access_id,
                account.access_key or "",
                account.platform,
                timeout=(3, 8),
                attempts=1,
                allowed_hosts=settings.FOX_DOMAINS,
            )
        except FoxError:
            return self  # no credentials, a bad domain: the first call says so, as it does here
        return FoxFarm(account, client=client)

    # --- who and where -------------------------------------------------------------------------------

    @cached_property
    def _identity(self) -> FoxIdentity:
        profile, settings, bids = self.client.user_profile(), self.client.user_settings(), self.client.bids()
        main = as_int(profile.get("mainUserId"))
        share = profile.get("shareMainCapital", settings.get("shareMainCapital"))
        disabled = profile.get("downloadDisable", settings.get("downloadDisable"))
        return FoxIdentity(
            user_id=as_int(profile.get("userId")) or 0,
            user_name=str(profile.get("userName") or ""),
            main_user_id=main or None,
            share_main_capital=as_int(share) == 1,
            input_bid=str(bids.get("input_bid") or ""),
            output_bid=str(bids.get("output_bid") or ""),
            config_bid=str(bids.get("config_bid") or ""),
            parent_input_bid=str(bids.get("parent_input_bid") or ""),
            download_disabled=as_int(disabled) == 1,
            platform=str(profile.get("platform") or self.account.platform),
            sub_user_output_bids=tuple(
                (as_int(row.get("userId")) or 0, str(row.get("outputBid") or ""))
                for row in as_list(bids.get("sub_user_output_bids"))
                if isinstance(row, dict)
            ),
        )

    def identity(self) -> FoxIdentity:
        """Asked of the farm once per connector (three calls), then kept."""
        return self._identity

    def storage(self, area: str) -> tuple[str, int]:
        """(storage id, user id) of an area. A sub-account sharing the main account's assets uploads into
        the main account's input storage under the main user id (§3.7); config and output stay its own."""
        me = self.identity()
        if check_area(area) == "input" and me.share_main_capital:
            if not (me.main_user_id and me.parent_input_bid):
                raise FoxError(
                    f"farm account {self.account.name!r} shares its main account's assets, but the farm gave no main "
                    "account id or main input storage id (parent_input_bid): nowhere to upload assets"
                )
            return me.parent_input_bid, me.main_user_id
        bid = {"input": me.input_bid, "output": me.output_bid, "config": me.config_bid}[area]
        if not bid:
            raise FoxError(f"the farm gave no {area} storage id for farm account {self.account.name!r} (getBid)")
        return bid, me.user_id

    def files_here(self, name: str) -> Endpoint | None:
        return None  # the transmitter moves this farm's files: no partial of rvweb's there, no bytes to compare

    def area_root(self, name: str) -> Path:
        raise self._transmitter_only(name)

    def endpoint(self, name: str) -> Endpoint:
        raise self._transmitter_only(name)

    def _transmitter_only(self, name: str) -> UnsupportedAccount:
        return UnsupportedAccount(
            f"the {check_area(name)} storage of farm account {self.account.name!r} (Fox Renderfarm / Renderbus) is not a "
            "folder here: files for this farm go through the vendor's transmitter"
        )

    # --- tasks ---------------------------------------------------------------------------------------

    def tasks(self) -> list[FarmTaskInfo]:
        found: dict[int, FarmTaskInfo] = {}  # by id: a child may come both in its parent and on its own
        for page in range(1, MAX_PAGES + 1):
            data = self.client.task_list(page=page, page_size=100)
            items = [item for item in as_list(data.get("items")) if isinstance(item, dict)]
            before = len(found)
            for item in items:
                found.update((task.task_id, task) for task in task_tree(item))
            if len(found) == before or page >= (as_int(data.get("pageCount")) or 1):
                break  # no page left, or one that brought no new task: a farm repeating a page is not followed
        return sorted(found.values(), key=lambda task: -task.task_id)

    def _items(self, task_ids: list[int]) -> list[dict[str, Any]]:
        data = self.client.task_info(task_ids)
        return [item for item in as_list(data.get("items")) if isinstance(item, dict)]

    def _tree_of(self, task_id: int) -> list[FarmTaskInfo]:
        """The task and everything under it, the task first; UnknownTask when the farm has none."""
        for item in self._items([task_id]):
            tree = task_tree(item)
            for index, task in enumerate(tree):
                if task.task_id == task_id:
                    return [task, *tree[:index], *tree[index + 1 :]]
        raise UnknownTask(task_id, self.account.name)

    def task(self, task_id: int) -> FarmTaskInfo:
        return self._tree_of(task_id)[0]

    def leaves(self, task_id: int) -> list[FarmTaskInfo]:
        """From the one queryTaskInfo answer (its children come with the parent), not one call per child."""
        tree = self._tree_of(task_id)
        leaves = [task for task in tree if not task.children]
        return leaves or [tree[0]]

    def unknown(self, task_ids: list[int]) -> list[int]:
        known: set[int] = set()
        for start in range(0, len(task_ids), INFO_CHUNK):
            for item in self._items(task_ids[start : start + INFO_CHUNK]):
                known.update(task.task_id for task in task_tree(item))
        return [task_id for task_id in task_ids if task_id not in known]

    # --- outputs -------------------------------------------------------------------------------------

    def outputs(self, task_id: int) -> list[FarmOutput]:
        found: dict[str, FarmOutput] = {}
        for leaf in self.leaves(task_id):
            if not leaf.output_folder:
                continue
            for stored in walk(self.client, leaf.output_folder):
                found[stored.path] = FarmOutput(path=stored.path, size=stored.size, finished=True)
        return [found[path] for path in sorted(found)]

    def list_output(self, prefix: str = "") -> list[StoredFile]:
        """Every file of the output area under `prefix` (relative to the area), sorted by path."""
        return sorted(walk(self.client, prefix), key=lambda stored: stored.path)

    # --- lines and the check -------------------------------------------------------------------------

    def lines(self) -> list[TransferLine]:
        """The farm's lines (getConfig), the default first; the account's own lines when the farm gives none."""
        found: list[tuple[bool, bool, TransferLine]] = []
        for engine in as_list(self.client.transfer_config().get("resqEngines")):
            if not isinstance(engine, dict):
                continue
            name = str(engine.get("engineName") or "").lower()
            for row in as_list(engine.get("respTaskEngineLines")):
                line = line_of(row, name)
                if line is not None:
                    found.append((not line.is_default, as_int(engine.get("isDefault")) != 1, line))
        if found:
            return [line for *_, line in sorted(found, key=lambda entry: entry[:2])]
        return static_lines(self.account)

    # --- moving files --------------------------------------------------------------------------------

    def check_options(self, options: Transfer) -> None:
        check_engine(options)

    def transfer(self, request: LegRequest) -> RunSummary:
        """Through the vendor's transmitter, on a line chosen for the run (transfers.farm.fox.transfer)."""
        return fox_transfer(self, request)

    def check(self) -> list[CheckStep]:
        """Sign in, storage ids, lines (each measured), then the transmitter this worker would run."""
        return [*self._check_farm(), check_transmitter()]

    def _check_farm(self) -> list[CheckStep]:
        steps: list[CheckStep] = []
        try:
            me = self.identity()
        except FoxError as exc:
            return [CheckStep("sign in", False, str(exc))]
        who = f"signed in as {me.user_name} (user id {me.user_id})"
        if me.is_sub_account:
            who += f", a sub-account of main account {me.main_user_id}"
        steps.append(CheckStep("sign in", True, who))
        try:
            places = {area: self.storage(area) for area in ("input", "output", "config")}
        except FoxError as exc:
            steps.append(CheckStep("storage ids", False, str(exc)))
            return steps
        bids = f"input {me.input_bid or 'none'}, output {places['output'][0]}, config {places['config'][0]}"
        if me.share_main_capital:
            bids += f"; assets go to the main account's input {places['input'][0]} (user id {places['input'][1]})"
        steps.append(CheckStep("storage ids", True, bids))
        steps.append(self._check_lines())
        return steps

    def _check_lines(self) -> CheckStep:
        try:
            lines = self.lines()
        except FoxError as exc:
            return CheckStep("transfer lines", False, str(exc))
        if not lines:
            return CheckStep("transfer lines", False, "the farm gives no transfer line, and the account has none of its own")
        measured = measure_all(lines)
        said = [
            f"{line.name} ({line.engine or 'any engine'}, {line.server}:{line.port}): "
            + ("unreachable" if measured[line.name] is None else f"{(measured[line.name] or 0) * 1000:.0f} ms")
            for line in lines
        ]
        return CheckStep("transfer lines", any(seconds is not None for seconds in measured.values()), "; ".join(said))

"""One bandwidth budget for the studio: speed limits shared by every job on every worker.

A budget (BandwidthBudget) caps the whole studio, one farm account, or one transfer line of an account,
in KB/s (the SDK's unit, as `max_speed`). Each is a token bucket in Redis: every copy thread of every job
it covers reserves its chunk there (one atomic script, Redis's own clock), and waits what the debt says,
so together they never pass the rate (plus a quarter second of burst). It is divided fairly between the
jobs that want it, whatever their pool_size: each run says every second that it wants the budget (a
sorted set in Redis), and paces itself to the rate over the jobs that said so in the last 3 s; a job
that ends leaves its part to the others within seconds. A job's own `max_speed` still
applies on top (its local bucket), and so does every other budget that covers it: the slowest wins.

The watcher of each run refreshes the budgets that apply every second (`SharedBudgets.refresh`), so a
changed or new budget takes effect within about a second, and a line budget applies once the run has
chosen its line. A Redis that does not answer is ridden out: each budget is then kept by a bucket in
this process alone (the rate holds per job, not across them), and Redis is tried again a few seconds on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q
from redis.exceptions import RedisError

from transfers.engine.ratelimit import TokenBucket
from transfers.models import BandwidthBudget, FarmAccount, TransferJob

logger = logging.getLogger(__name__)

BURST_SECONDS = 0.25
_RETRY_REDIS = 5.0  # seconds a run keeps to its local buckets after Redis failed
_WANTING_SECONDS = 3.0  # a job that has not said it wants a budget for this long no longer divides it
# The bucket holds its allowance in seconds, not bytes: what was reserved at the old rate keeps its old
# schedule when the budget changes (in bytes, 16 chunks of 0.1 s at 100 MB/s, charged again at a lowered
# 1 MB/s, stalled every job on the budget for 160 s). A rate of 0 (none) or a count of 0 waits nothing.
_RESERVE = """
local rate = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
if not rate or rate <= 0 or not count or count <= 0 then return '0' end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'spare', 'stamp')
local spare = tonumber(held[1]) or 0
local stamp = tonumber(held[2]) or now
spare = math.min(spare + math.max(now - stamp, 0), burst) - count / rate
redis.call('HSET', KEYS[1], 'spare', tostring(spare), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
if spare < 0 then return tostring(-spare) end
return '0'
"""


@dataclass(frozen=True)
class Applied:
    """A budget that covers a run: its Redis key and rate in bytes per second."""

    key: str
    rate: float
    label: str
    share: float | None = None  # this job's fair part of it: the rate over the jobs that want it now (None: all)


def budget_key(budget_id: int) -> str:
    return f"{settings.KEY_PREFIX}:budget:{budget_id}"


def applying(job: TransferJob, line: str = "") -> list[Applied]:
    """The budgets that cover a job now: the studio's, its account's, and its line's once it has one."""
    cover = Q(scope=BandwidthBudget.Scope.STUDIO) | Q(scope=BandwidthBudget.Scope.ACCOUNT, account_id=job.account_id)
    if line:
        cover |= Q(scope=BandwidthBudget.Scope.LINE, account_id=job.account_id, line=line)
    rows = BandwidthBudget.objects.filter(cover, max_speed__gt=0).order_by("pk")
    return [Applied(budget_key(row.pk), row.max_speed * 1024.0, row.label) for row in rows]


class SharedBudgets(TokenBucket):
    """The run's bucket: its own max_speed (this TokenBucket) and the shared budgets that cover it."""

    def __init__(self, rate: float | None, *, reserve: Callable[[str, float, int], float] | None = None) -> None:
        super().__init__(rate)
        self._shared: tuple[Applied, ...] = ()
        self._local: dict[str, TokenBucket] = {}  # a budget's bucket in this process, while Redis is away
        self._shares: dict[str, TokenBucket] = {}  # this job's fair share of each budget (its own pace)
        self._redis_back_at = 0.0
        self._reserve_shared = reserve or _redis_reserve
        self._budget_lock = threading.Lock()

    @property
    def rate(self) -> float | None:
        """The slowest limit that applies (send.py sizes its chunks by it, and copies in the kernel only without one)."""
        # A budget counts at this job's share of it: a vendor's transmitter, which paces itself, is given that.
        rates = [budget.share if budget.share is not None else budget.rate for budget in self._shared]
        own = self._rate
        if own:
            rates.append(own)
        return min(rates) if rates else None

    @property
    def shared(self) -> tuple[Applied, ...]:
        return self._shared

    def refresh(self, budgets: list[Applied]) -> None:
        with self._budget_lock:
            self._shared = tuple(budgets)
            self._shares = {
                budget.key: self._shares.get(budget.key) or TokenBucket(budget.share)
                for budget in budgets
                if budget.share is not None
            }
            for budget in budgets:
                share = self._shares.get(budget.key)
                if share is not None and share.rate != budget.share:
                    share.set_rate(budget.share)
            for budget in budgets:
                local = self._local.get(budget.key)
                if local is not None and local.rate != budget.rate:
                    # A new bucket owing the old one's debt in time, not in bytes (as the Redis script):
                    # set_rate kept the bytes, charged again at the new rate.
                    owed = local.reserve(0)
                    self._local[budget.key] = TokenBucket(budget.rate)
                    self._local[budget.key].reserve(int(owed * budget.rate))

    def reserve(self, count: int) -> float:
        wait = super().reserve(count)
        for budget in self._shared:
            wait = max(wait, self._reserve_one(budget, count))
            share = self._shares.get(budget.key)
            if share is not None:  # no job takes more than its part, however many streams it has
                wait = max(wait, share.reserve(count))
        return wait

    def _reserve_one(self, budget: Applied, count: int) -> float:
        if time.monotonic() >= self._redis_back_at:
            try:
                return self._reserve_shared(budget.key, budget.rate, count)
            except (RedisError, OSError) as exc:
                self._redis_back_at = time.monotonic() + _RETRY_REDIS
                logger.warning("budget %s: Redis did not answer (%s); kept in this process for now", budget.label, exc)
        with self._budget_lock:
            local = self._local.get(budget.key)
            if local is None:
                local = self._local[budget.key] = TokenBucket(budget.rate)
        return local.reserve(count)


def _redis_reserve(key: str, rate: float, count: int) -> float:
    from transfers.locks import _client

    client = _client(settings.REDIS_URL)
    script = _script(client)
    return float(script(keys=[key], args=[rate, count, BURST_SECONDS]))


_scripts: dict[int, object] = {}


def _script(client: object) -> Callable[..., bytes]:
    found = _scripts.get(id(client))
    if found is None:
        found = _scripts[id(client)] = client.register_script(_RESERVE)  # type: ignore[attr-defined]
    return found  # type: ignore[return-value]


def refresh_for(job: TransferJob, bucket: TokenBucket) -> None:
    """The watcher's look, every second: the budgets that cover the job now (its line from its route), and
    its fair share of each (the job says it wants the budget; the jobs that said so lately divide it)."""
    if not isinstance(bucket, SharedBudgets):
        return
    route = TransferJob.objects.filter(pk=job.pk).values_list("route", flat=True).first() or {}
    budgets = applying(job, str(route.get("line", "")) if isinstance(route, dict) else "")
    bucket.refresh([dataclasses.replace(budget, share=budget.rate / _wanting(budget.key, job.pk)) for budget in budgets])


def _wanting(key: str, job_id: int) -> int:
    """How many jobs want this budget now (this one included): those that said so in the last few seconds."""
    from transfers.locks import _client

    now = time.time()
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.zadd(f"{key}:jobs", {str(job_id): now})
        pipe.zremrangebyscore(f"{key}:jobs", 0, now - _WANTING_SECONDS)
        pipe.zcard(f"{key}:jobs")
        pipe.expire(f"{key}:jobs", 3600)
        count = int(pipe.execute()[2])
    except (RedisError, OSError):
        return 1  # Redis away: the run keeps the whole budget locally (see the module's docstring)
    return max(1, count)


class BudgetInvalid(ValueError):
    """What is wrong with a budget as given."""


def budget_set(
    *, user: Any, scope: str, account: FarmAccount | None = None, line: str = "", max_speed: int | None, request: Any = None
) -> BandwidthBudget | None:
    """Set (or, with max_speed None or 0, remove) a shared budget, live: the studio's for staff, an account's
    or a line's for a lead of the account's team. Audited with before and after."""
    from django.core.exceptions import PermissionDenied
    from django.db import IntegrityError, transaction

    from transfers import selectors
    from transfers.services import audit_record

    if scope not in BandwidthBudget.Scope.values:
        raise BudgetInvalid(f"scope is one of {', '.join(BandwidthBudget.Scope.values)}")
    line = (line or "").strip()
    if scope == BandwidthBudget.Scope.STUDIO:
        if account is not None or line:
            raise BudgetInvalid("the studio's budget names no account and no line")
        if user is not None and not selectors._sees_all(user):
            raise PermissionDenied("the studio's budget is set by staff")
    else:
        if account is None:
            raise BudgetInvalid(f"a {scope} budget names its farm account")
        if user is not None and not selectors.user_may(user, "manage", account):
            raise PermissionDenied("an account's budgets are set by a lead of its team")
        if scope == BandwidthBudget.Scope.LINE and not line:
            raise BudgetInvalid("a line budget names its transfer line")
        if scope == BandwidthBudget.Scope.ACCOUNT and line:
            raise BudgetInvalid("an account budget names no line (a line budget does)")
        if len(line) > 60:
            raise BudgetInvalid("a line name has at most 60 characters")
    if max_speed is not None and (isinstance(max_speed, bool) or not isinstance(max_speed, int) or max_speed < 0):
        raise BudgetInvalid("max_speed is a whole number of KB/s (0 or none: no budget)")
    if max_speed is not None and max_speed > 2**31 - 1:
        raise BudgetInvalid("max_speed is at most 2147483647 KB/s")
    for attempt in (1, 2):  # two first sets of one budget at once: the second finds the first's row
        try:
            with transaction.atomic():
                found = BandwidthBudget.objects.select_for_update().filter(scope=scope, account=account, line=line).first()
                before = {"max_speed": found.max_speed} if found is not None else None
                result = None
                if max_speed:
                    result = found or BandwidthBudget(scope=scope, account=account, line=line)
                    result.max_speed = max_speed
                    result.save()
                target = account if account is not None else (result or found)
                after = {"scope": scope, "line": line, "max_speed": max_speed or None}
                if target is not None:  # the studio's budget removed: audited on itself, before it goes
                    audit_record(actor=user, action="budget.set", target=target, request=request, before=before, after=after)
                if not max_speed and found is not None:
                    found.delete()
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        return result
    return None

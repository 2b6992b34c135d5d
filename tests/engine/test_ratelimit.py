"""Speed limits: the SDK's max_speed (KB/s) as a token bucket shared by a job's threads, changeable live.

The bucket runs on a clock the test moves, so delays are asserted exactly, without sleeping.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.clock import FakeClock
from transfers.engine.ratelimit import TokenBucket, max_speed_to_rate


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


# max_speed_to_rate


@pytest.mark.parametrize(("max_speed", "rate"), [(1, 1024.0), (2000, 2048000.0), ("1048576", 1024.0**3), (" 512 ", 524288.0)])
def test_max_speed_is_kilobytes_of_1024_bytes_per_second(max_speed: Any, rate: float) -> None:
    assert max_speed_to_rate(max_speed) == rate


@pytest.mark.parametrize("max_speed", [None, "", 0, "0"])
def test_max_speed_none_empty_or_zero_means_no_limit(max_speed: Any) -> None:
    assert max_speed_to_rate(max_speed) is None


@pytest.mark.parametrize("max_speed", ["fast", "1.5", "10KB", [100]])
def test_max_speed_refuses_a_value_that_is_not_a_whole_number(max_speed: Any) -> None:
    with pytest.raises(ValueError, match="max_speed must be a whole number of KB/s"):
        max_speed_to_rate(max_speed)


@pytest.mark.parametrize("max_speed", [-1, "-100"])
def test_max_speed_refuses_a_negative_value(max_speed: Any) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        max_speed_to_rate(max_speed)


# TokenBucket


def test_unlimited_bucket_never_delays(clock: FakeClock) -> None:
    bucket = TokenBucket(None, clock=clock)

    assert [bucket.reserve(1 << 30) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_first_reservation_waits_its_size_over_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)

    assert bucket.reserve(500) == 0.5


def test_reservations_add_up_as_debt(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    bucket.reserve(500)

    assert bucket.reserve(500) == 1.0


def test_debt_is_paid_by_the_time_that_passes(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    bucket.reserve(500)
    clock.now += 0.5

    assert bucket.reserve(250) == 0.25


def test_idle_time_allows_a_burst_of_a_quarter_second_at_most(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    clock.now += 60

    assert bucket.reserve(250) == 0.0
    assert bucket.reserve(100) == pytest.approx(0.1)


def test_sending_while_waiting_each_delay_keeps_the_average_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(10_000.0, clock=clock)
    start = clock.now

    for _ in range(100):
        clock.now += bucket.reserve(1000)

    assert 100 * 1000 / (clock.now - start) == pytest.approx(10_000.0)


def test_rate_property_gives_the_current_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    bucket.set_rate(5000.0)

    assert bucket.rate == 5000.0


def test_set_rate_applies_to_the_next_reservation(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    clock.now += bucket.reserve(1000)

    bucket.set_rate(4000.0)

    assert bucket.reserve(1000) == 0.25


def test_set_rate_to_none_lifts_the_limit(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    bucket.reserve(10_000)

    bucket.set_rate(None)

    assert bucket.reserve(10_000) == 0.0


def test_set_rate_from_none_starts_without_a_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(None, clock=clock)
    clock.now += 60

    bucket.set_rate(1000.0)

    assert bucket.reserve(100) == 0.1


def test_set_rate_drops_an_unused_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    clock.now += 60

    bucket.set_rate(100.0)

    assert bucket.reserve(10) == 0.1


def test_reservations_from_many_threads_all_count(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    threads = [threading.Thread(target=lambda: [bucket.reserve(10) for _ in range(100)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert bucket.reserve(0) == pytest.approx(8 * 100 * 10 / 1000)


def test_take_without_a_limit_returns_true(clock: FakeClock) -> None:
    assert TokenBucket(None, clock=clock).take(1 << 20, threading.Event()) is True


def test_take_without_a_limit_returns_false_once_stop_is_set(clock: FakeClock) -> None:
    stop = threading.Event()
    stop.set()

    assert TokenBucket(None, clock=clock).take(1, stop) is False


def test_take_returns_false_when_stopped_while_waiting(clock: FakeClock) -> None:
    stop = threading.Event()
    stop.set()

    assert TokenBucket(1.0, clock=clock).take(1 << 20, stop) is False


def test_take_within_the_burst_returns_at_once(clock: FakeClock) -> None:
    bucket = TokenBucket(1000.0, clock=clock)
    clock.now += 1

    assert bucket.take(100, threading.Event()) is True


def test_a_lower_rate_keeps_the_debt_as_time_not_bytes():
    bucket = TokenBucket(100e6)
    for _ in range(16):
        bucket.reserve(int(10e6))  # 160 MB reserved: 1.6 s at 100 MB/s
    bucket.set_rate(1e6)
    assert bucket.reserve(4096) < 2.0, "still ~1.6 s of debt, not 160 s"
    bucket.set_rate(None)
    assert bucket.reserve(10**9) == 0.0

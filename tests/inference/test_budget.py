"""The replay budget keeps a reference model from being overloaded: a rate, a number in flight, a daily cap.
Clocks are injected, so these stories run without sleeping."""

from __future__ import annotations

import asyncio
import random
from datetime import date

import pytest

from inference.backoff import Backoff
from inference.budget import DailyCapReached, ReplayBudget, TokenBucket


class FakeTime:
    """A clock the test moves; `sleep` moves it and remembers how long each wait was."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds


def test_thirty_prompts_a_minute_means_one_every_two_seconds_after_the_burst() -> None:
    t = FakeTime()
    budget = ReplayBudget(per_minute=30, max_concurrent=1, daily_cap=100, burst=1, clock=t.clock, sleep=t.sleep)

    async def five() -> None:
        for _ in range(5):
            async with budget.slot():
                pass

    asyncio.run(five())
    assert t.waits == [2.0, 2.0, 2.0, 2.0]
    assert t.now == 8.0


def test_an_idle_bucket_refills_only_up_to_its_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=1.0, burst=3, clock=t.clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    t.now = 1000.0
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_no_more_requests_in_flight_than_allowed() -> None:
    budget = ReplayBudget(per_minute=10_000, max_concurrent=2, daily_cap=100)
    in_flight, peak = 0, 0

    async def request() -> None:
        nonlocal in_flight, peak
        async with budget.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            in_flight -= 1

    async def many() -> None:
        await asyncio.gather(*(request() for _ in range(6)))

    asyncio.run(many())
    assert peak == 2


def test_the_daily_cap_counts_what_other_daemons_stored_and_resets_at_midnight() -> None:
    day = [date(2026, 5, 1)]
    budget = ReplayBudget(per_minute=10_000, max_concurrent=1, daily_cap=3, today=lambda: day[0])
    budget.sync_used_today(2)  # two comparisons already stored today, by any daemon

    async def one() -> None:
        async with budget.slot():
            pass

    asyncio.run(one())
    assert budget.remaining_today == 0
    with pytest.raises(DailyCapReached):
        asyncio.run(one())
    day[0] = date(2026, 5, 2)
    assert budget.remaining_today == 3


def test_an_outage_does_not_eat_the_daily_allowance() -> None:
    budget = ReplayBudget(per_minute=10_000, max_concurrent=1, daily_cap=1)

    async def failed_request() -> None:
        async with budget.slot():
            pass
        budget.refund()  # the reference was down: nothing was stored

    asyncio.run(failed_request())
    assert budget.remaining_today == 1


def test_backoff_grows_to_its_ceiling_honours_retry_after_and_resets() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(0 <= d <= cap for d, cap in zip(delays, [1, 2, 4, 8, 8, 8], strict=True))
    assert backoff.next_delay(retry_after_s=5.0) >= 5.0
    assert backoff.next_delay(retry_after_s=600.0) == 8.0  # a server's Retry-After is capped too
    backoff.reset()
    assert backoff.ceiling() == 1.0

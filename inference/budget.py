"""The replay budget: how much we may ask of a reference model, so replays never overload it.

Three limits, all per reference: a rate (prompts per minute, a token bucket that allows a short burst), a
number of requests in flight (a semaphore), and a daily cap. The daily cap must hold across restarts and
across daemons, so the caller seeds it from the database (`sync_used_today`) and the budget counts locally in
between. Time and date come from injectable clocks, which is how the tests step through a day without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime


def utc_today() -> date:
    return datetime.now(UTC).date()


class DailyCapReached(Exception):
    """No more replays today for this reference."""


class TokenBucket:
    """``rate_per_s`` tokens a second, holding at most ``burst``.

    >>> now = [0.0]
    >>> bucket = TokenBucket(rate_per_s=1.0, burst=2, clock=lambda: now[0])
    >>> bucket.take(), bucket.take(), bucket.take()
    (0.0, 0.0, 1.0)
    >>> now[0] = 1.0; bucket.take()
    0.0
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """Take one token and return 0.0, or take nothing and return the seconds until one is due."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate_per_s


class ReplayBudget:
    """Rate, concurrency and daily cap for one reference. Use ``async with budget.slot(): ...`` per request.

    A slot counts against the daily cap when it is granted; `refund` gives it back when the request did not
    produce a stored answer (the reference was down), so an outage does not eat the day's allowance.

    >>> import asyncio
    >>> budget = ReplayBudget(per_minute=600, max_concurrent=2, daily_cap=1)
    >>> async def two():
    ...     async with budget.slot():
    ...         pass
    ...     async with budget.slot():
    ...         pass
    >>> try:
    ...     asyncio.run(two())
    ... except DailyCapReached as exc:
    ...     print(exc)
    daily cap of 1 replays reached
    """

    def __init__(
        self,
        per_minute: float,
        max_concurrent: int,
        daily_cap: int,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = utc_today,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrent < 1 or daily_cap < 0:
            raise ValueError("need max_concurrent >= 1 and daily_cap >= 0")
        self.daily_cap = daily_cap
        self.max_concurrent = max_concurrent
        self._bucket = TokenBucket(per_minute / 60.0, burst or max(1.0, min(max_concurrent, per_minute)), clock)
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._today = today
        self._day = today()
        self._used = 0
        self._sleep = sleep

    @property
    def remaining_today(self) -> int:
        self._roll_day()
        return max(0, self.daily_cap - self._used)

    def sync_used_today(self, used: int) -> None:
        """Set today's count from the source of truth (rows stored today by every daemon)."""
        self._day = self._today()
        self._used = used

    def refund(self) -> None:
        """Give back a slot whose request produced nothing to store."""
        self._used = max(0, self._used - 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for the rate and a free request slot; raise `DailyCapReached` when the day's cap is used."""
        if self.remaining_today <= 0:
            raise DailyCapReached(f"daily cap of {self.daily_cap} replays reached")
        self._used += 1
        async with self._semaphore:
            while (wait := self._bucket.take()) > 0:
                await self._sleep(wait)
            yield

    def _roll_day(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._used = 0

"""Being a good guest on a reference that also serves production: replay concurrency that follows its load.

A vLLM server queues requests it cannot schedule (``vllm:num_requests_waiting``) and slows every request when
its batch is full. Shadow traffic must never be the reason production waits, so `GuestLimit` is an
additive-increase / multiplicative-decrease limit on how many replay requests are in flight: it halves when
the server reports more than ``max_waiting`` queued requests or when answers take more than
``latency_factor`` × the fastest typical latency seen, and grows by one after each answer that found the server
calm, never above ``max_concurrent`` (the replay budget's own cap) nor below one.

It only decides how many of the replayer's requests go out at once; the replay budget (rate, daily cap) is
unchanged.

>>> limit = GuestLimit(8)
>>> limit.limit
8
>>> limit.observe_queue(5); limit.limit
4
>>> limit.observe_queue(0); limit.limit   # a calm reading alone does not grow it: answers do
4
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable


class GuestLimit:
    """How many replay requests may be in flight now. ``probe`` (optional) returns the server's queue length
    (or None when it does not say); it is called at most every ``probe_every_s`` by `slot`."""

    def __init__(self, max_concurrent: int, *, max_waiting: float = 0.0, latency_factor: float = 2.0,
                 probe: Callable[[], Awaitable[float | None]] | None = None, probe_every_s: float = 1.0) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.latency_factor = latency_factor
        self.limit = max_concurrent
        self.in_flight = 0
        self.backoffs = 0
        """How many times the limit was cut (for stats and tests)."""
        self.lowest = max_concurrent
        self._probe = probe
        self._probe_every_s = probe_every_s
        self._probed_at = -1e18
        self._typical_ms: float | None = None
        self._fastest_ms: float | None = None
        self._changed = asyncio.Condition()

    def _cut(self) -> None:
        new = max(1, self.limit // 2)
        if new < self.limit:
            self.backoffs += 1
        self.limit = new
        self.lowest = min(self.lowest, new)

    def observe_queue(self, waiting: float | None) -> None:
        """A reading of the server's queue: above ``max_waiting`` halves the limit."""
        if waiting is not None and waiting > self.max_waiting:
            self._cut()

    def observe_latency(self, latency_ms: float) -> None:
        """One answer's latency: a typical latency (moving average) above ``latency_factor`` × the fastest
        typical latency seen halves the limit; otherwise the limit grows by one."""
        typical = latency_ms if self._typical_ms is None else 0.8 * self._typical_ms + 0.2 * latency_ms
        self._typical_ms = typical
        self._fastest_ms = typical if self._fastest_ms is None else min(self._fastest_ms, typical)
        if typical > self.latency_factor * self._fastest_ms:
            self._cut()
            self._typical_ms = self._fastest_ms * self.latency_factor  # one cut per climb, not one per answer
        elif self.limit < self.max_concurrent:
            self.limit += 1

    async def _maybe_probe(self) -> None:
        if self._probe is None or time.monotonic() - self._probed_at < self._probe_every_s:
            return
        self._probed_at = time.monotonic()
        with contextlib.suppress(Exception):  # a failed probe says nothing; the answers' errors will
            self.observe_queue(await self._probe())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until fewer than `limit` requests are in flight, then hold one place until the block ends."""
        await self._maybe_probe()
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

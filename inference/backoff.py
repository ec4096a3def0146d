"""Exponential back-off with full jitter: how long to wait before asking a struggling server again.

Full jitter (a uniform draw in ``[0, cap]``) spreads the retries of many concurrent requests so they do not
hit a recovering server in lock-step. A server's own ``Retry-After`` wins when it is longer.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``; `reset` after a success.

    >>> b = Backoff(initial_s=1.0, max_s=4.0, rng=random.Random(0))
    >>> [round(b.ceiling(), 1) for _ in range(4) if b.next_delay() >= 0]
    [2.0, 4.0, 4.0, 4.0]
    >>> b.reset(); b.failures
    0
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next failure can draw."""
        return min(self.max_s, self.initial_s * 2**self.failures)

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """Count one more failure and draw how long to wait before the next attempt."""
        delay = self._rng.uniform(0, self.ceiling())
        self.failures += 1
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(retry_after_s, self.max_s)
        return delay

    def reset(self) -> None:
        self.failures = 0

"""Calibrated Bernoulli CUSUM for a rate: errors, refusals, toxic answers, a topic's share of prompts.

Each value is 0 or 1. After ``warmup`` values the chart knows the base rate ``p0`` and watches for the odds
rising or falling by ``odds_ratio`` with the log-likelihood-ratio CUSUM of Reynolds & Stoumbos (1999),
the most efficient chart for that change. The increments of an LLR chart have adjustment coefficient
exactly 1 at the true rate, so the threshold is about ``ln(2·arl0)``; the calibration evaluates it at a
base rate ``margin`` standard errors above (for the rising side) or below (falling side) the estimate, and
when a rare signal leaves too few warm-up events for that, the chart aims at a larger ratio instead of
firing on noise.

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> chart = BernoulliCUSUM(arl0=1e6, warmup=5000)
>>> chart.update_many(rng.random(30_000) < 0.01)   # 1% toxic answers
[]
>>> change = chart.update_many(rng.random(20_000) < 0.03)[0]  # now 3%
>>> change.direction, change.index < 5_000, round(change.before["rate"], 3), round(change.after["rate"], 2)
('up', True, 0.011, 0.04)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from detectors.drift.calibration import threshold
from detectors.drift.chart import Chart, _Side


def _with_odds(p: float, ratio: float) -> float:
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


class BernoulliCUSUM(Chart):
    """Two-sided Bernoulli CUSUM calibrated to ``arl0`` values from a ``warmup`` base rate.

    ``odds_ratio`` is the change in odds the chart is tuned to (3: 1% → about 3%); ``margin`` standard errors
    of base-rate uncertainty are absorbed by the calibration.
    """

    kind: ClassVar[str] = "bernoulli"
    _params: ClassVar[tuple[str, ...]] = ("odds_ratio", "margin")

    def __init__(self, arl0: float = 1e7, warmup: int = 5000, odds_ratio: float = 3.0, margin: float = 1.0) -> None:
        if odds_ratio <= 1 or margin < 0:
            raise ValueError("odds_ratio must exceed 1 and margin be non-negative")
        self.odds_ratio, self.margin = odds_ratio, margin
        super().__init__(arl0, warmup)

    def _reset_warmup(self) -> None:
        self.events = 0
        self.p0 = math.nan
        self.steps = (0.0, 0.0, 0.0, 0.0)  # up-if-1, up-if-0, down-if-1, down-if-0
        self.ratio_used = self.odds_ratio

    def _warm(self, x: np.ndarray) -> int:
        take = x[: self.warmup - self.warm_n]
        self.events += int(np.count_nonzero(take))
        self.warm_n += take.size
        return take.size

    def _calibrate(self) -> None:
        n = self.warm_n
        p = (self.events + 0.5) / (n + 1)  # never exactly 0 or 1
        self.p0 = p
        se = math.sqrt(p * (1 - p) / n)
        p_high, p_low = min(p + self.margin * se, 1 - 1e-9), max(p - self.margin * se, 0.0)
        self.ratio_used, h_up, u1, u0 = self._side(p, p_high, self.odds_ratio)
        _, h_down, d1, d0 = self._side(p, p_low, 1 / self.odds_ratio)
        self.up.h, self.down.h = h_up, h_down
        self.steps = (u1, u0, d1, d0)

    def _side(self, p: float, p_true: float, ratio: float) -> tuple[float, float, float, float]:
        """Calibrate one side at base rate ``p_true``; when the warm-up saw too few events to tell
        ``ratio`` from noise, aim at a larger change, and give the side up (never fires) if even a
        thousandfold change would be noise."""
        for _ in range(20):
            p1 = _with_odds(p, ratio)
            if 0 < p1 < 1:
                steps = (math.log(p1 / p), math.log((1 - p1) / (1 - p)))
                try:
                    return ratio, threshold(steps, [p_true, 1 - p_true], 2 * self.arl0), *steps
                except ValueError:
                    pass
            ratio = ratio * 1.5 if ratio > 1 else ratio / 1.5
        return ratio, math.inf, 0.0, 0.0

    def _increments(self, x: np.ndarray) -> np.ndarray:
        u1, u0, d1, d0 = self.steps
        return np.where(x != 0, ((u1,), (d1,)), ((u0,), (d0,)))

    @classmethod
    def _increments_together(cls, charts: Sequence[Chart], x: np.ndarray, owner: np.ndarray) -> np.ndarray:
        steps = np.array([c.steps for c in charts]).T[:, owner]  # type: ignore[attr-defined]
        return np.where(x != 0, steps[[0, 2]], steps[[1, 3]])

    def _describe(self, side: _Side) -> tuple[dict[str, float], dict[str, float]]:
        before = {"rate": self.events / self.warm_n, "n": self.warm_n}
        return before, {"rate": side.total / side.n if side.n else math.nan, "n": side.n}

    def _state(self) -> dict[str, Any]:
        return {"warm_n": self.warm_n, "events": self.events, "p0": self.p0, "steps": list(self.steps),
                "ratio_used": self.ratio_used}

    def _load(self, s: dict[str, Any]) -> None:
        self.warm_n, self.events = int(s["warm_n"]), int(s["events"])
        self.p0 = math.nan if s["p0"] is None else s["p0"]
        self.steps = tuple(s["steps"])  # type: ignore[assignment]
        self.ratio_used = s["ratio_used"]

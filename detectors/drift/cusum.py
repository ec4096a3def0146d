"""Calibrated CUSUM for a continuous signal (lengths, latency, tokens, feedback scores).

Heavy-tailed positive signals are log-transformed (``log1p``) so that a shift in the typical value is a
shift in location; values are standardised by the warm-up mean and standard deviation and clipped to
``±clip`` so that one absurd latency cannot trip the chart on its own. ``k`` is the reference value in
standard deviations: the chart is most efficient for shifts of ``2k`` and detects anything larger quickly
(the default 0.125 aims at quarter-sigma shifts). The threshold comes from the warm-up histogram of the
standardised values (`detectors.drift.calibration`), so skew and discreteness are accounted for.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> chart = GaussianCUSUM(arl0=1e6, warmup=2000, transform="log")
>>> before = rng.lognormal(6.0, 0.5, 20_000)          # latencies around 400 ms
>>> after = rng.lognormal(6.0 + 0.5 * 0.5, 0.5, 5_000)  # half a standard deviation slower
>>> chart.update_many(before)
[]
>>> change = chart.update_many(after)[0]
>>> change.direction, change.index < 1_000, round(change.before["mean"]), round(change.after["mean"])
('up', True, 447, 551)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from detectors.drift.calibration import threshold
from detectors.drift.chart import Chart, _Side

Transform = Literal["log", "identity"]
_SIDES = np.array([1.0, -1.0])


class GaussianCUSUM(Chart):
    """Two-sided CUSUM on robustly standardised values, calibrated to ``arl0`` after ``warmup`` values.

    Parameters: ``arl0`` the in-control average run length in values (both directions together);
    ``warmup`` values used to learn the reference (the first half fixes the scale of the histogram, all of
    it the mean and standard deviation); ``k`` the reference value in standard deviations; ``transform``
    ``"log"`` for positive heavy-tailed signals; ``clip`` the bound on standardised values; ``margin``
    standard errors of warm-up uncertainty the calibration absorbs.
    """

    kind: ClassVar[str] = "cusum"
    _params: ClassVar[tuple[str, ...]] = ("k", "transform", "clip", "margin", "bins")

    def __init__(self, arl0: float = 1e7, warmup: int = 5000, k: float = 0.125, transform: Transform = "log",
                 clip: float = 4.0, margin: float = 1.0, bins: int = 80) -> None:
        if k <= 0 or clip <= 0 or margin < 0 or bins < 8:
            raise ValueError("k and clip must be positive, margin non-negative, bins at least 8")
        self.k, self.transform, self.clip, self.margin, self.bins = k, transform, clip, margin, bins
        super().__init__(arl0, warmup)

    def _t(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(x, 0.0)) if self.transform == "log" else x

    def _reset_warmup(self) -> None:
        self.mean = self.m2 = 0.0           # Welford over transformed values
        self.raw_sum = self.raw_sq = 0.0    # for the human-readable "before"
        self.scale: tuple[float, float] | None = None  # phase-one (mean, std) that place the histogram
        self.hist = np.zeros(self.bins)
        self.std = math.nan
        self.k_used = self.k

    def _warm(self, x: np.ndarray) -> int:
        take = x[: self.warmup - self.warm_n]
        half = self.warmup // 2
        if self.scale is None and self.warm_n < half:
            first = take[: half - self.warm_n]
            self._welford(first)
            if self.warm_n >= half:
                self.scale = (self.mean, max(math.sqrt(self.m2 / self.warm_n), 1e-9))
            rest = take[first.size:]
        else:
            rest = take
        if rest.size:
            mu, sd = self.scale  # type: ignore[misc]
            z = np.clip((self._t(rest) - mu) / sd, -self.clip, self.clip)
            self.hist += np.histogram(z, bins=self.bins, range=(-self.clip, self.clip))[0]
            self._welford(rest)
        return take.size

    def _welford(self, x: np.ndarray) -> None:
        if not x.size:
            return
        t = self._t(x)
        n_a, n_b = self.warm_n, t.size
        mean_b = float(t.mean())
        m2_b = float(((t - mean_b) ** 2).sum())
        delta = mean_b - self.mean
        n = n_a + n_b
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.warm_n = n
        self.raw_sum += float(x.sum())
        self.raw_sq += float(x @ x)

    def _calibrate(self) -> None:
        self.std = max(math.sqrt(self.m2 / self.warm_n), 1e-9)
        mu1, sd1 = self.scale  # type: ignore[misc]
        edges = np.linspace(-self.clip, self.clip, self.bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        # The histogram gives the *shape* of the standardised signal; where the true mean and spread lie
        # is uncertain by about 1/sqrt(n) and 1/sqrt(2n) standard deviations, which the margin covers.
        p = self.hist / self.hist.sum()
        shape = mu1 + sd1 * centres
        shape = (shape - p @ shape) / max(math.sqrt(p @ (shape - p @ shape) ** 2), 1e-9)
        z = np.clip(shape, -self.clip, self.clip)
        shift = self.margin / math.sqrt(self.warm_n)            # the mean may be this far on the unlucky side
        stretch = 1 + self.margin / math.sqrt(2 * self.warm_n)  # and the spread this much wider
        while True:
            try:
                self.up.h = threshold(z * stretch + shift - self.k_used, p, 2 * self.arl0)
                self.down.h = threshold(-z * stretch + shift - self.k_used, p, 2 * self.arl0)
                return
            except ValueError:  # k too small for this warm-up's uncertainty: aim at larger shifts
                self.k_used *= 1.5

    def _increments(self, x: np.ndarray) -> np.ndarray:
        z = self._t(x) - self.mean
        z *= 1.0 / self.std
        np.clip(z, -self.clip, self.clip, out=z)
        y = np.multiply.outer(_SIDES, z)
        y -= self.k_used
        return y

    @classmethod
    def _increments_together(cls, charts: Sequence[Chart], x: np.ndarray, owner: np.ndarray) -> np.ndarray:
        first = charts[0]
        if any(c.transform != first.transform or c.clip != first.clip for c in charts):  # type: ignore[attr-defined]
            return super()._increments_together(charts, x, owner)
        params = np.array([(c.mean, 1.0 / c.std, c.k_used) for c in charts])[owner]  # type: ignore[attr-defined]
        z = first._t(x) - params[:, 0]  # type: ignore[attr-defined]
        z *= params[:, 1]
        np.clip(z, -first.clip, first.clip, out=z)  # type: ignore[attr-defined]
        y = np.multiply.outer(_SIDES, z)
        y -= params[:, 2]
        return y

    def _describe(self, side: _Side) -> tuple[dict[str, float], dict[str, float]]:
        n = self.warm_n
        mean = self.raw_sum / n
        before = {"mean": mean, "std": math.sqrt(max(self.raw_sq / n - mean * mean, 0.0)), "n": n}
        return before, side.run_stats()

    def _state(self) -> dict[str, Any]:
        return {"warm_n": self.warm_n, "mean": self.mean, "m2": self.m2, "raw_sum": self.raw_sum,
                "raw_sq": self.raw_sq, "scale": self.scale, "hist": self.hist.tolist(), "std": self.std,
                "k_used": self.k_used}

    def _load(self, s: dict[str, Any]) -> None:
        self.warm_n, self.mean, self.m2 = int(s["warm_n"]), s["mean"], s["m2"]
        self.raw_sum, self.raw_sq, self.k_used = s["raw_sum"], s["raw_sq"], s["k_used"]
        self.scale = tuple(s["scale"]) if s["scale"] is not None else None  # type: ignore[assignment]
        self.hist = np.asarray(s["hist"], dtype=float)
        self.std = math.nan if s["std"] is None else s["std"]

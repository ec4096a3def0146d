"""Drift charts fed with the sufficient statistics of short buckets, not with single records.

Every daemon adds each record's signals to per-stream buckets (count, sum, sum of squares of the
transformed value; for rates, trials and events), so that one process can watch a stream whose records
were consumed by many. A chart here consumes one bucket at a time:

* `BucketCUSUM` (continuous signals). The log-likelihood-ratio CUSUM for a mean shift of ``2k`` standard
  deviations, fed a bucket of ``n`` values with sum ``s``, moves by ``(s - n·μ)/σ - n·k``: exactly the sum of
  the record-level increments ``z_i - k`` over the bucket. The chart is therefore the record-level CUSUM
  looked at only at bucket ends, so its threshold is the record-level one and it fires at most one bucket
  later than a record-level chart would (never earlier: it cannot see an excursion that rose and fell
  inside one bucket, which only lengthens its in-control run).
* `BucketBernoulli` (rates). The Bernoulli LLR CUSUM of Reynolds & Stoumbos, again summed per bucket.

Both are **self-starting**: the first ``warmup`` records (at least; the bucket that completes the warm-up
is taken whole) give the reference mean and spread (or base rate), and the threshold is calibrated from them
for ``arl0`` records between false alarms (`detectors.drift.calibration`), absorbing ``margin`` standard
errors of estimation error: the chart is calibrated as if the true mean were that far on the unlucky side.
The reference keeps growing with every in-control bucket, and `BucketCUSUM` judges each bucket against all the
in-control records before it (Hawkins' self-starting CUSUM), not only the warm-up's: a warm-up mean three
standard errors off otherwise biases every later increment the same way. After a detection the chart
re-learns its reference from the new level.

river's detector API is kept: ``update(x)`` feeds one value and returns whether it revealed a change, and
``drift_detected`` says whether the last update did. `RiverBuckets` runs one of river's own detectors
(``river.drift.ADWIN``, ``PageHinkley``, ``KSWIN``) on the bucket means, for deployments that prefer it
(uncalibrated: its false-alarm rate is river's, not ours).

>>> import numpy as np
>>> rng = np.random.default_rng(5)
>>> chart = BucketCUSUM(arl0=1e6, warmup=500, transform="identity")
>>> for _ in range(100):                      # 100 buckets of 50 stationary values
...     x = rng.normal(0.0, 1.0, 50)
...     assert chart.update_bucket(50, x.sum(), x @ x, at=0) is None
>>> changes = []
>>> for b in range(20):                       # the mean moves by half a standard deviation
...     x = rng.normal(0.5, 1.0, 50)
...     changes.append(chart.update_bucket(50, x.sum(), x @ x, at=b))
>>> change = next(c for c in changes if c is not None)
>>> change.direction, change.start, 0.3 < change.after["mean"] < 0.7, change.after["n"] <= 500
('up', 0, True, True)
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from detectors.drift.calibration import threshold

Transform = Literal["log", "identity"]
REFERENCE_MAX = 100_000
"""Records after which a chart's reference stops growing (it has then about 0.3% of a standard deviation of
estimation error)."""

_GRID = np.linspace(-6.0, 6.0, 241)
_GRID_P = np.exp(-_GRID ** 2 / 2)
_GRID_P /= _GRID_P.sum()


def transform(value: float, how: Transform) -> float:
    """The value a chart works on: ``log1p`` for positive heavy-tailed signals (lengths, latency, tokens)."""
    return math.log1p(max(value, 0.0)) if how == "log" else value


@dataclass(slots=True)
class BucketChange:
    """A change a chart detected. ``start`` is the bucket where the excursion that crossed the threshold
    began (the maximum-likelihood change point at bucket resolution); ``after`` describes the values since."""

    direction: str
    start: Any
    before: dict[str, float]
    after: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Side:
    """One one-sided CUSUM: statistic, threshold, and the sums of its current excursion (since ``start``)."""

    h: float = math.inf
    s: float = 0.0
    n: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0
    start: Any = None

    def step(self, y: float, n: float, total: float, total_sq: float, at: Any) -> None:
        if self.s <= 0.0:
            self.n, self.total, self.total_sq, self.start = 0.0, 0.0, 0.0, at
        self.s = max(0.0, self.s + y)
        self.n += n
        self.total += total
        self.total_sq += total_sq

    def state(self) -> list[Any]:
        return [None if math.isinf(self.h) else self.h, self.s, self.n, self.total, self.total_sq, self.start]

    @classmethod
    def load(cls, s: list[Any]) -> _Side:
        return cls(math.inf if s[0] is None else s[0], s[1], s[2], s[3], s[4], s[5])


class BucketChart:
    """Base of the bucket charts: warm-up, two sides, river's ``update``/``drift_detected``, plain state."""

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BucketChart]]] = {}
    _params: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            BucketChart._registry[cls.kind] = cls

    def __init__(self, arl0: float, warmup: int, margin: float) -> None:
        if arl0 <= 1 or warmup < 20 or margin < 0:
            raise ValueError("arl0 must exceed 1, warmup be at least 20 and margin non-negative")
        self.arl0, self.warmup, self.margin = float(arl0), int(warmup), float(margin)
        self.drift_detected = False
        self.seen = 0.0
        self.prev: list[float] | None = None
        self._rearm()

    def rearm(self) -> None:
        """Forget the reference and learn a new one (after a change), keeping the old one for `deviation`."""
        if self.armed:
            self.prev = self._reference_params()
        self._rearm()

    def _rearm(self) -> None:
        self.armed = False
        self.calibrated_n = 0.0
        self.warm_n = self.warm_s = self.warm_ss = 0.0
        self.sides = [_Side() for _ in range(2 * self._pairs())]

    def _pairs(self) -> int:
        """How many (up, down) pairs of one-sided charts run side by side (``sides[2i]`` up, ``[2i+1]`` down)."""
        return 1

    @property
    def up(self) -> _Side:
        return self.sides[0]

    @property
    def down(self) -> _Side:
        return self.sides[1]

    @property
    def warming_up(self) -> bool:
        return not self.armed

    def update(self, x: float) -> bool:
        """river's API: feed one (raw) value; True when it revealed a change."""
        return self.update_bucket(1, *self._one(x)) is not None

    def _one(self, x: float) -> tuple[float, float]:
        return x, x * x

    def update_bucket(self, n: float, total: float, total_sq: float = 0.0, at: Any = None) -> BucketChange | None:
        """Feed one bucket's statistics (``n`` values, their sum and sum of squares); ``at`` names the
        bucket (kept as the change's ``start``). Returns the change it revealed, if any."""
        self.drift_detected = False
        if n <= 0:
            return None
        n, total, total_sq = float(n), float(total), float(total_sq)
        self.seen += n
        if not self.armed:
            self.warm_n += n
            self.warm_s += total
            self.warm_ss += total_sq
            if self.warm_n >= self.warmup:
                self._calibrate()
                self.armed = True
            return None

        for side, y in zip(self.sides, self._increments(n, total), strict=True):
            side.step(y, n, total, total_sq, at)
        crossed = [(side.s / side.h, i) for i, side in enumerate(self.sides) if side.s > side.h]
        if crossed:
            i = max(crossed)[1]
            side, direction = self.sides[i], ("up", "down")[i % 2]
            change = BucketChange(direction, side.start, self.reference(), self._describe(side),
                                  {"threshold": side.h, "statistic": side.s})
            self.drift_detected = True
            self.rearm()
            return change
        if self.warm_n < REFERENCE_MAX and all(side.s < side.h / 2 for side in self.sides):
            # Self-starting: in-control buckets keep refining the reference (not those of an excursion
            # on its way to a detection), and the threshold is recalibrated each time it doubled.
            self.warm_n += n
            self.warm_s += total
            self.warm_ss += total_sq
            if self.warm_n >= 2 * self.calibrated_n:
                self._calibrate()
            else:
                self._refresh()
        return None

    def deviation(self, n: float, total: float) -> float:
        """``n`` values summing to ``total``, as a sum of standardised deviations from the reference: divided
        by sqrt(n) it is a z-score. The reference is the current one, else the one before the last change
        (a chart that just fired), else the warm-up so far; NaN when there is none. Used for attribution."""
        params = self._reference_params() if self.armed else self.prev
        if params is None:
            params = self._warm_params()
        return math.nan if params is None or n <= 0 else self._deviation(params, n, total)

    def score(self, n: float, total: float) -> float:
        """`deviation` as a z-score (signed standard errors)."""
        return self.deviation(n, total) / math.sqrt(n) if n > 0 else math.nan

    def describe(self, n: float, total: float) -> dict[str, float]:
        """``n`` values summing to ``total`` as a human reads them (the "after" of an event)."""
        raise NotImplementedError

    def _reference_params(self) -> list[float]:
        raise NotImplementedError

    def _warm_params(self) -> list[float] | None:
        raise NotImplementedError

    def _deviation(self, params: list[float], n: float, total: float) -> float:
        raise NotImplementedError

    def reference(self) -> dict[str, float]:
        raise NotImplementedError

    def _calibrate(self) -> None:
        raise NotImplementedError

    def _refresh(self) -> None:
        """Take the grown reference into the increments between recalibrations (a chart may keep its
        reference fixed instead: the default)."""

    def _increments(self, n: float, total: float) -> Sequence[float]:
        """One bucket's increment for each of `sides`, in order."""
        raise NotImplementedError

    def _describe(self, side: _Side) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state; `BucketChart.from_state` continues exactly where this chart stopped."""
        return {"kind": self.kind, "params": {p: getattr(self, p) for p in ("arl0", "warmup", "margin",
                                                                              *self._params)},
                "seen": self.seen, "armed": self.armed,
                "warm": [self.warm_n, self.warm_s, self.warm_ss, self.calibrated_n],
                "sides": [side.state() for side in self.sides], "prev": self.prev, "own": self._own()}

    @staticmethod
    def from_state(state: dict[str, Any]) -> BucketChart:
        chart = BucketChart._registry[state["kind"]](**state["params"])
        chart.seen, chart.armed = state["seen"], state["armed"]
        chart.warm_n, chart.warm_s, chart.warm_ss, chart.calibrated_n = state["warm"]
        chart.sides = [_Side.load(s) for s in state["sides"]]
        chart.prev = state.get("prev")
        chart._load(state["own"])
        return chart

    def _own(self) -> dict[str, Any]:
        return {}

    def _load(self, own: dict[str, Any]) -> None:
        pass


class BucketCUSUM(BucketChart):
    """Two-sided Gaussian CUSUMs on bucket sums of (transformed) values, self-starting from ``warmup`` values.

    ``k`` holds the reference values in standard deviations, one pair of one-sided charts per value (each
    tuned to shifts of ``2k``): a small ``k`` is quickest on small shifts, a larger one on large shifts, and
    the first to cross its threshold reports. The false-alarm budget is split evenly between them (a
    Bonferroni split: the charts are correlated, so the real rate is lower). ``transform`` is what `update`
    applies to a raw value (`update_bucket` takes sums of already transformed values).

    A bucket's standardised mean is clipped to ``±clip`` before it moves the charts (a Huber-type CUSUM):
    real traffic is a mixture — refusals and cut-off answers are a few very short ones among long ones — and
    one small bucket holding several of them would otherwise cross a large-``k`` chart's threshold alone,
    where the Gaussian calibration assumed it could not. A real shift moves bucket after bucket, so clipping
    costs it little; clipping only lowers increments, so the calibrated run length stays a lower bound.
    """

    kind: ClassVar[str] = "bucket_cusum"
    _params: ClassVar[tuple[str, ...]] = ("k", "transform", "clip")

    def __init__(self, arl0: float = 1e7, warmup: int = 500, margin: float = 1.0,
                 k: float | Sequence[float] = (0.125, 0.375), transform: Transform = "log",
                 clip: float = 5.0) -> None:
        ks = [float(k)] if isinstance(k, int | float) else [float(v) for v in k]
        if not ks or min(ks) <= 0:
            raise ValueError("k must be positive")
        if clip <= 0:
            raise ValueError("clip must be positive")
        self.k: list[float] = ks
        self.transform, self.clip = transform, float(clip)
        self.mu = self.sigma = math.nan
        self.k_used = list(self.k)
        super().__init__(arl0, warmup, margin)

    def _pairs(self) -> int:
        return len(self.k)

    def _one(self, x: float) -> tuple[float, float]:
        t = transform(x, self.transform)
        return t, t * t

    def _calibrate(self) -> None:
        n = self.calibrated_n = self.warm_n
        self.mu = self.warm_s / n
        self.sigma = max(math.sqrt(max(self.warm_ss / n - self.mu ** 2, 0.0)), 1e-9)
        shift = self.margin / math.sqrt(n)               # the mean may be this far on the unlucky side
        stretch = 1 + self.margin / math.sqrt(2 * n)     # and the spread this much wider
        self.k_used = []
        for i, k in enumerate(self.k):
            while True:
                try:
                    h = threshold(_GRID * stretch + shift - k, _GRID_P, 2 * len(self.k) * self.arl0)
                    break
                except ValueError:  # k too small for this warm-up's uncertainty: aim at larger shifts
                    k *= 1.5
            self.k_used.append(k)
            self.sides[2 * i].h = self.sides[2 * i + 1].h = h

    def _refresh(self) -> None:
        # Each bucket is judged against the mean and spread of *every* in-control record before it (Hawkins'
        # self-starting CUSUM), not those of the warm-up alone until the next recalibration: a warm-up mean a
        # few standard errors off would otherwise push every later increment the same way, and the chart
        # would climb on its own reference error, the way it did on the drift bench's continuous signals.
        self.mu = self.warm_s / self.warm_n
        self.sigma = max(math.sqrt(max(self.warm_ss / self.warm_n - self.mu ** 2, 0.0)), 1e-9)

    def _increments(self, n: float, total: float) -> list[float]:
        # Predictive standardisation: the reference mean is itself uncertain by sigma / sqrt(warm_n).
        z = (total - n * self.mu) / (self.sigma * math.sqrt(1 + n / self.warm_n))
        bound = self.clip * math.sqrt(n)
        z = min(max(z, -bound), bound)
        return [y for k in self.k_used for y in (z - n * k, -z - n * k)]

    def _reference_params(self) -> list[float]:
        return [self.mu, self.sigma]

    def _warm_params(self) -> list[float] | None:
        if self.warm_n < 30:
            return None
        mu = self.warm_s / self.warm_n
        return [mu, max(math.sqrt(max(self.warm_ss / self.warm_n - mu * mu, 0.0)), 1e-9)]

    def _deviation(self, params: list[float], n: float, total: float) -> float:
        return (total - n * params[0]) / params[1]

    def describe(self, n: float, total: float) -> dict[str, float]:
        return {"mean": self._typical(total / n) if n else math.nan, "n": n}

    def _typical(self, mean: float) -> float:
        return math.expm1(mean) if self.transform == "log" else mean

    def reference(self) -> dict[str, float]:
        if self.armed:
            return {"mean": self._typical(self.mu), "log_std" if self.transform == "log" else "std": self.sigma,
                    "n": self.warm_n}
        n = self.warm_n
        return {"mean": self._typical(self.warm_s / n) if n else math.nan, "n": n}

    def _describe(self, side: _Side) -> dict[str, float]:
        return {"mean": self._typical(side.total / side.n) if side.n else math.nan, "n": side.n}

    def _own(self) -> dict[str, Any]:
        return {"mu": self.mu, "sigma": self.sigma, "k_used": self.k_used}

    def _load(self, own: dict[str, Any]) -> None:
        self.mu = math.nan if own["mu"] is None else own["mu"]
        self.sigma = math.nan if own["sigma"] is None else own["sigma"]
        k_used = own["k_used"]
        self.k_used = [k_used] if isinstance(k_used, int | float) else list(k_used)


def _with_odds(p: float, ratio: float) -> float:
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


class RateReading:
    """How a chart on event counts (``n`` trials, ``total`` events) reads a stream for attribution and the
    alert text: deviations in standard errors of a Bernoulli rate, and rates. Shared by `BucketBernoulli` and
    `detectors.drift.rates.BucketRate`, which differ only in how they decide."""

    def _deviation(self, params: list[float], n: float, total: float) -> float:
        p = params[0]
        return (total - n * p) / math.sqrt(p * (1 - p))

    def describe(self, n: float, total: float) -> dict[str, float]:
        return {"rate": total / n if n else math.nan, "n": n}

    def _describe(self, side: Any) -> dict[str, float]:
        return {"rate": side.total / side.n if side.n else math.nan, "n": side.n}


class BucketBernoulli(RateReading, BucketChart):
    """Two-sided Bernoulli CUSUM on bucket counts (``n`` trials, ``total`` events), self-starting.

    ``odds_ratio`` is the change in odds it is tuned to; when the warm-up saw too few events to tell that
    ratio from noise it aims at a larger one, and gives a side up (never fires) if even a thousandfold change
    would be noise.
    """

    kind: ClassVar[str] = "bucket_bernoulli"
    _params: ClassVar[tuple[str, ...]] = ("odds_ratio",)

    def __init__(self, arl0: float = 1e7, warmup: int = 1000, margin: float = 1.0, odds_ratio: float = 3.0) -> None:
        if odds_ratio <= 1:
            raise ValueError("odds_ratio must exceed 1")
        self.odds_ratio = float(odds_ratio)
        self.p0 = math.nan
        self.steps = (0.0, 0.0, 0.0, 0.0)
        super().__init__(arl0, warmup, margin)

    def _one(self, x: float) -> tuple[float, float]:
        e = 1.0 if x else 0.0
        return e, e

    def _calibrate(self) -> None:
        n = self.calibrated_n = self.warm_n
        p = (self.warm_s + 0.5) / (n + 1)  # never exactly 0 or 1
        self.p0 = p
        # The base rate may be twice ``margin`` standard errors on the unlucky side: a rate estimated from a
        # handful of events is far less certain than a mean, and an error of one standard error happens
        # one time in six. The self-starting reference shrinks this as it grows.
        se = math.sqrt(p * (1 - p) / n)
        h_up, u1, u0 = self._side(p, min(p + 2 * self.margin * se, 1 - 1e-9), self.odds_ratio)
        h_down, d1, d0 = self._side(p, max(p - 2 * self.margin * se, 0.0), 1 / self.odds_ratio)
        self.up.h, self.down.h = h_up, h_down
        self.steps = (u1, u0, d1, d0)

    def _side(self, p: float, p_true: float, ratio: float) -> tuple[float, float, float]:
        for _ in range(20):
            p1 = _with_odds(p, ratio)
            if 0 < p1 < 1:
                steps = (math.log(p1 / p), math.log((1 - p1) / (1 - p)))
                try:
                    return threshold(steps, [p_true, 1 - p_true], 2 * self.arl0), *steps
                except ValueError:
                    pass
            ratio = ratio * 1.5 if ratio > 1 else ratio / 1.5
        return math.inf, 0.0, 0.0

    def _increments(self, n: float, total: float) -> tuple[float, float]:
        u1, u0, d1, d0 = self.steps
        return total * u1 + (n - total) * u0, total * d1 + (n - total) * d0

    def _reference_params(self) -> list[float]:
        return [self.p0]

    def _warm_params(self) -> list[float] | None:
        return [(self.warm_s + 0.5) / (self.warm_n + 1)] if self.warm_n >= 100 else None

    def reference(self) -> dict[str, float]:
        rate = self.p0 if self.armed else (self.warm_s / self.warm_n if self.warm_n else math.nan)
        return {"rate": rate, "n": self.warm_n}

    def _own(self) -> dict[str, Any]:
        return {"p0": self.p0, "steps": list(self.steps)}

    def _load(self, own: dict[str, Any]) -> None:
        self.p0 = math.nan if own["p0"] is None else own["p0"]
        self.steps = tuple(own["steps"])  # type: ignore[assignment]


RIVER_DETECTORS = ("ADWIN", "PageHinkley", "KSWIN")


class RiverBuckets(BucketChart):
    """One of river's own drift detectors (``river.drift.<name>(**params)``) fed each bucket's mean.

    Deployments choose it per signal in ``[drift.river]``. river sees one value per bucket, so its
    parameters are in buckets, not records, and its false-alarm rate is river's (not calibrated here);
    ``score`` and the warm-up still come from the bucket statistics, for attribution and before → after.
    """

    kind: ClassVar[str] = "river"
    _params: ClassVar[tuple[str, ...]] = ("detector", "options", "transform")

    def __init__(self, arl0: float = 1e7, warmup: int = 500, margin: float = 1.0, detector: str = "ADWIN",
                 options: dict[str, Any] | None = None, transform: Transform = "identity") -> None:
        if detector not in RIVER_DETECTORS:
            raise ValueError(f"river detector must be one of {', '.join(RIVER_DETECTORS)}, not {detector!r}")
        self.detector, self.options, self.transform = detector, dict(options or {}), transform
        super().__init__(arl0, warmup, margin)

    def _one(self, x: float) -> tuple[float, float]:
        t = transform(x, self.transform)
        return t, t * t

    def _rearm(self) -> None:
        from river import drift

        super()._rearm()
        self.river = getattr(drift, self.detector)(**self.options)

    def update_bucket(self, n: float, total: float, total_sq: float = 0.0, at: Any = None) -> BucketChange | None:
        self.drift_detected = False
        if n <= 0:
            return None
        n, total, total_sq = float(n), float(total), float(total_sq)
        self.seen += n
        if not self.armed:
            self.warm_n += n
            self.warm_s += total
            self.warm_ss += total_sq
            self.armed = self.warm_n >= self.warmup
        if self.up.start is None or self.up.n == 0:
            self.up.start = at
        self.up.n += n
        self.up.total += total
        self.river.update(total / n)
        if not self.river.drift_detected:
            return None
        after = {"mean": self.up.total / self.up.n, "n": self.up.n}
        change = BucketChange("up" if after["mean"] >= self.warm_s / self.warm_n else "down", self.up.start,
                              self.reference(), after, {"river": self.detector})
        self.drift_detected = True
        self.rearm()
        return change

    def _reference_params(self) -> list[float]:
        mu = self.warm_s / self.warm_n
        return [mu, max(math.sqrt(max(self.warm_ss / self.warm_n - mu * mu, 0.0)), 1e-9)]

    def _warm_params(self) -> list[float] | None:
        return self._reference_params() if self.warm_n >= 30 else None

    def _deviation(self, params: list[float], n: float, total: float) -> float:
        return (total - n * params[0]) / params[1]

    def describe(self, n: float, total: float) -> dict[str, float]:
        return {"mean": total / n if n else math.nan, "n": n}

    def reference(self) -> dict[str, float]:
        return {"mean": self.warm_s / self.warm_n if self.warm_n else math.nan, "n": self.warm_n}

    def _own(self) -> dict[str, Any]:
        return {"river": base64.b64encode(pickle.dumps(self.river)).decode()}

    def _load(self, own: dict[str, Any]) -> None:
        self.river = pickle.loads(base64.b64decode(own["river"]))  # our own checkpoint, written by _own

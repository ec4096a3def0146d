"""The mechanics every calibrated chart shares: warm up, calibrate, watch both directions, re-arm.

A chart watches one signal of one stream. It is born warming up: it learns the signal's reference
distribution from its first ``warmup`` values and then calibrates two one-sided CUSUMs (one for a rise,
one for a fall) so that, together, they raise a false alarm at most once per ``arl0`` values on stationary
traffic. When either crosses its threshold the chart reports a `Change` with the statistics a human needs to
judge it, and re-arms by warming up again on the new level: the old reference no longer describes the
traffic, and a fresh warm-up is the only way to keep the false-alarm guarantee for the next change.

Updates are vectorised: ``update_many`` runs the Lindley recursion ``S = max(0, S + y)`` of both sides over a
whole array with two cumulative operations (``S = C - min(-S0, running min of C)``, ``C`` the cumulative sum of
the increments), so a chart costs a few microseconds per call and nanoseconds per value; warm-up values are
only collected until there are enough of them. State is a small dict of
plain numbers (`state` / `from_state`), checkpointed by the bank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

_REGISTRY: dict[str, type[Chart]] = {}


@dataclass(slots=True)
class Change:
    """A detected change in the values given to `Chart.update_many`.

    ``index`` is the position of the value that crossed the threshold; ``before`` describes the reference
    (warm-up) distribution and ``after`` the values since the chart last stood at zero, which is the
    maximum-likelihood estimate of where the change began.
    """

    index: int
    direction: str
    before: dict[str, float]
    after: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Side:
    """One one-sided CUSUM and the raw values of its current excursion above zero."""

    h: float = math.inf
    s: float = 0.0
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def advance(self, path: np.ndarray, raw: np.ndarray) -> None:
        """Move to the end of ``path`` (this side's statistic after each of the ``raw`` values)."""
        zeros = np.flatnonzero(path <= 0.0)
        if zeros.size:
            self.n, self.total, self.total_sq = 0, 0.0, 0.0
            raw = raw[zeros[-1] + 1:]
        if raw.size:
            self.n += raw.size
            self.total += float(raw.sum())
            self.total_sq += float(raw @ raw)
        if path.size:
            self.s = float(path[-1])

    def run_stats(self) -> dict[str, float]:
        n = self.n
        mean = self.total / n if n else math.nan
        var = max(self.total_sq / n - mean * mean, 0.0) if n else math.nan
        return {"mean": mean, "std": math.sqrt(var), "n": n}


class Chart:
    """Base of the calibrated two-sided CUSUM charts. Subclasses say how to warm up and what to add.

    Subclasses implement `_warm` (consume warm-up values, return how many it took), `_calibrate` (set
    ``self.up.h``/``self.down.h``, called once the warm-up is complete), `_increments` and `_describe`.
    """

    kind: ClassVar[str] = ""
    _params: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self, arl0: float, warmup: int) -> None:
        if arl0 <= 1:
            raise ValueError("arl0 must exceed 1")
        if warmup < 20:
            raise ValueError("warmup must be at least 20 values")
        self.arl0 = float(arl0)
        self.warmup = int(warmup)
        self.drift_detected = False
        self.seen = 0
        self._reset()

    # -- subclass hooks ---------------------------------------------------------------------------
    def _reset_warmup(self) -> None:
        raise NotImplementedError

    def _warm(self, x: np.ndarray) -> int:
        raise NotImplementedError

    def _calibrate(self) -> None:
        raise NotImplementedError

    def _increments(self, x: np.ndarray) -> np.ndarray:
        """The CUSUM increments of ``x``: a (2, n) array, the rising side's in row 0, the falling side's in 1."""
        raise NotImplementedError

    @classmethod
    def _increments_together(cls, charts: Sequence[Chart], x: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """`_increments` of several armed charts of this class at once; ``owner[i]`` is the chart of ``x[i]``.
        Subclasses vectorise it; this default asks each chart."""
        bounds = np.flatnonzero(np.diff(owner)) + 1
        return np.concatenate([c._increments(v) for c, v in zip(charts, np.split(x, bounds), strict=True)], axis=1)

    def _describe(self, side: _Side) -> tuple[dict[str, float], dict[str, float]]:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- public surface ---------------------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        """True until the warm-up is complete; a warming chart never reports a change."""
        return self.armed_at is None

    def update(self, x: float) -> bool:
        """Feed one value; True when it completed the detection of a change (river's shape)."""
        return bool(self.update_many(np.array([x], dtype=float)))

    def update_many(self, xs: np.ndarray | list[float]) -> list[Change]:
        """Feed values in arrival order; return the changes they revealed (usually none)."""
        x = np.asarray(xs, dtype=float)
        self.drift_detected = False
        if self.armed_at is None and self.warm_n + self._pending_n + x.size < self.warmup:
            # Warm-up values that cannot complete the warm-up wait, so that a chart fed in small batches
            # pays for its warm-up statistics once instead of once per batch.
            self._pending.append(x if x.base is None else x.copy())
            self._pending_n += x.size
            return []
        return self._run(self._take_pending(x))

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: parameters, warm-up accumulators, the two sides."""
        if self._pending_n:
            self._run(self._take_pending(np.zeros(0)))
        return {
            "kind": self.kind,
            "params": {name: getattr(self, name) for name in ("arl0", "warmup", *self._params)},
            "seen": self.seen,
            "armed_at": self.armed_at,
            "sides": [[s.h, s.s, s.n, s.total, s.total_sq] for s in (self.up, self.down)],
            "own": self._state(),
        }

    @staticmethod
    def from_state(state: dict[str, Any]) -> Chart:
        """Rebuild any chart from `state`; it continues exactly where the original stopped."""
        chart = _REGISTRY[state["kind"]](**state["params"])
        chart.seen = state["seen"]
        chart.armed_at = state["armed_at"]
        chart.up, chart.down = (_Side(*map(_num, s)) for s in state["sides"])
        chart.up.n, chart.down.n = int(chart.up.n), int(chart.down.n)
        chart._load(state["own"])
        return chart

    # -- internals --------------------------------------------------------------------------------
    def _take_pending(self, x: np.ndarray) -> np.ndarray:
        """``x`` behind the warm-up values still waiting; they count as seen from now on."""
        if not self._pending_n:
            return x
        pending, self._pending, self._pending_n = self._pending, [], 0
        self._offset = sum(p.size for p in pending)
        return np.concatenate([*pending, x])

    def _run(self, x: np.ndarray) -> list[Change]:
        offset, self._offset = self._offset, 0  # leading values of x that the caller gave earlier
        changes: list[Change] = []
        i = 0
        while i < x.size:
            if self.armed_at is None:
                i += self._warm(x[i:])
                if self._warmed():
                    self._calibrate()
                    self.armed_at = self.seen + i
                continue
            chunk = x[i:]
            # Both one-sided CUSUMs at once, row 0 rising and row 1 falling: S = C - min(-s, running min C).
            c = np.cumsum(self._increments(chunk), axis=1)
            floor = np.minimum.accumulate(c, axis=1)
            np.minimum(floor, ((-self.up.s,), (-self.down.s,)), out=floor)
            path = c - floor
            peak_up, peak_down = path.max(axis=1).tolist()
            if peak_up <= self.up.h and peak_down <= self.down.h:
                self.up.advance(path[0], chunk)
                self.down.advance(path[1], chunk)
                i += chunk.size
                continue
            t = int(np.argmax((path[0] > self.up.h) | (path[1] > self.down.h)))
            self.up.advance(path[0, : t + 1], chunk[: t + 1])
            self.down.advance(path[1, : t + 1], chunk[: t + 1])
            side, direction = (self.up, "up") if path[0, t] > self.up.h else (self.down, "down")
            before, after = self._describe(side)
            details = {"threshold": side.h, "statistic": side.s, "armed_for": self.seen + i + t + 1 - self.armed_at}
            changes.append(Change(i + t - offset, direction, before, after, details))
            self._reset()
            i += t + 1
        self.seen += x.size
        self.drift_detected = bool(changes)
        return changes

    def _warmed(self) -> bool:
        return self.warm_n >= self.warmup

    def _reset(self) -> None:
        self.armed_at: int | None = None
        self.up, self.down = _Side(), _Side()
        self.warm_n = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._offset = 0
        self._reset_warmup()


def _num(value: Any) -> float:
    """JSON has no infinity; `state` stores it as None."""
    return math.inf if value is None else float(value)


def update_together(charts: Sequence[Chart], values: Sequence[np.ndarray]) -> list[list[Change]]:
    """``[c.update_many(v) for c, v in zip(charts, values)]``, with the same results, in one numpy pass.

    A bank feeds one signal to the charts of many streams per batch, each a few dozen values: the charts'
    fixed cost per call, not their values, would dominate. Armed charts of one class are advanced together
    (a segmented CUSUM over all their values); a chart whose statistic crosses its threshold, or that is
    still warming up, takes its own `Chart.update_many` (the together-pass leaves its state untouched).
    """
    xs = [np.asarray(v, dtype=float) for v in values]
    out: list[list[Change]] = [[] for _ in charts]
    armed = [j for j, c in enumerate(charts) if c.armed_at is not None and xs[j].size]
    kinds = {type(charts[j]) for j in armed}
    if len(armed) < 2 or len(kinds) > 1:
        armed = []
    for j in sorted(set(range(len(charts))) - set(armed)):
        out[j] = charts[j].update_many(xs[j])
    if armed:
        group = [charts[j] for j in armed]
        for k in _advance_together(group, [xs[j] for j in armed]):
            out[armed[k]] = group[k].update_many(xs[armed[k]])
    return out


def _advance_together(charts: list[Chart], xs: list[np.ndarray]) -> list[int]:
    """Advance armed charts of one class over their values unless their statistic would cross the
    threshold; return the positions of those that would (left as they were)."""
    m = len(charts)
    lengths = np.fromiter(map(len, xs), dtype=np.intp, count=m)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    owner = np.repeat(np.arange(m), lengths)
    x = np.concatenate(xs)
    c = np.cumsum(type(charts[0])._increments_together(charts, x, owner), axis=1)
    # Running minima restarted at every chart's first value: shift each chart's cumulative sums below all
    # of the previous chart's, then one running minimum over everything.
    span = (c.max(axis=1) - c.min(axis=1) + 1.0)[:, None]
    shifted = c - owner * span
    path = shifted - np.minimum.accumulate(shifted, axis=1)
    # ... or the excursion carried over from the previous batch: s + (C_t - C_{start-1}).
    sides = [[ch.up for ch in charts], [ch.down for ch in charts]]
    s0 = np.array([[side.s for side in row] for row in sides])
    before = np.zeros((2, m))
    before[:, 1:] = c[:, starts[1:] - 1]
    np.maximum(path, c - (before - s0)[:, owner], out=path)
    h = np.array([[side.h for side in row] for row in sides])
    crossed = (np.maximum.reduceat(path, starts, axis=1) > h).any(axis=0)
    # Each side's excursion: the values after its last zero (or all, added to the run it was on).
    last_zero = np.maximum.reduceat(np.where(path <= 0.0, np.arange(x.size), -1), starts, axis=1)
    reset = last_zero >= starts
    first = np.where(reset, last_zero + 1, starts)
    p1 = np.concatenate(([0.0], np.cumsum(x)))
    p2 = np.concatenate(([0.0], np.cumsum(x * x)))
    count = (ends - first).tolist()
    total = (p1[ends] - p1[first]).tolist()
    total_sq = (p2[ends] - p2[first]).tolist()
    s_end = path[:, ends - 1].tolist()
    reset_l = reset.tolist()
    for j in np.flatnonzero(~crossed).tolist():
        chart = charts[j]
        for r in (0, 1):
            side = sides[r][j]
            if reset_l[r][j]:
                side.n, side.total, side.total_sq = 0, 0.0, 0.0
            side.n += count[r][j]
            side.total += total[r][j]
            side.total_sq += total_sq[r][j]
            side.s = s_end[r][j]
        chart.seen += int(lengths[j])
        chart.drift_detected = False
    return np.flatnonzero(crossed).tolist()


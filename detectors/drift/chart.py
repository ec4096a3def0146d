"""The mechanics every calibrated chart shares: warm up, calibrate, watch both directions, re-arm.

A chart watches one signal of one stream. It is born warming up: it learns the signal's reference
distribution from its first ``warmup`` values and then calibrates two one-sided CUSUMs (one for a rise,
one for a fall) so that, together, they raise a false alarm at most once per ``arl0`` values on stationary
traffic. When either crosses its threshold the chart reports a `Change` with the statistics a human needs to
judge it, and re-arms by warming up again on the new level: the old reference no longer describes the
traffic, and a fresh warm-up is the only way to keep the false-alarm guarantee for the next change.

Updates are vectorised: ``update_many`` runs the Lindley recursion ``S = max(0, S + y)`` over a whole array
with two cumulative operations, so a chart costs tens of nanoseconds per value. State is a small dict of
plain numbers (`state` / `from_state`), checkpointed by the bank.
"""

from __future__ import annotations

import math
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

    def path(self, y: np.ndarray) -> np.ndarray:
        c = np.cumsum(y)
        return np.maximum(self.s + c, c - np.minimum.accumulate(c))

    def advance(self, path: np.ndarray, raw: np.ndarray) -> None:
        zeros = np.flatnonzero(path <= 0.0)
        if zeros.size:
            self.n, self.total, self.total_sq = 0, 0.0, 0.0
            raw = raw[zeros[-1] + 1:]
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

    def _increments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

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
            y_up, y_down = self._increments(chunk)
            p_up, p_down = self.up.path(y_up), self.down.path(y_down)
            hit = np.flatnonzero((p_up > self.up.h) | (p_down > self.down.h))
            end = int(hit[0]) + 1 if hit.size else chunk.size
            self.up.advance(p_up[:end], chunk[:end])
            self.down.advance(p_down[:end], chunk[:end])
            if hit.size:
                t = int(hit[0])
                side, direction = (self.up, "up") if p_up[t] > self.up.h else (self.down, "down")
                before, after = self._describe(side)
                details = {"threshold": side.h, "statistic": side.s, "armed_for": self.seen + i + t + 1
                           - self.armed_at}
                changes.append(Change(i + t, direction, before, after, details))
                self._reset()
            i += end
        self.seen += x.size
        self.drift_detected = bool(changes)
        return changes

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: parameters, warm-up accumulators, the two sides."""
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
    def _warmed(self) -> bool:
        return self.warm_n >= self.warmup

    def _reset(self) -> None:
        self.armed_at: int | None = None
        self.up, self.down = _Side(), _Side()
        self.warm_n = 0
        self._reset_warmup()


def _num(value: Any) -> float:
    """JSON has no infinity; `state` stores it as None."""
    return math.inf if value is None else float(value)

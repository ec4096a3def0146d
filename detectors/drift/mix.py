"""One chart per stream on the mix of categories (prompt subjects) in buckets of counts.

A per-category Bernoulli CUSUM needs a high threshold for a rare category and splits the budget K ways; a
chi-square chart needs a window. This chart is a **mixture likelihood ratio**, restarted at every bucket
boundary (Lorden's construction), so one statistic covers every way the mix can move:

* the null: the counts since a start follow the reference mix, known up to its estimation error — the
  Dirichlet posterior of the reference counts (``ref + ½``) and of the window's counts before that start, so
  the chart is self-starting without a margin to tune: its predictive law is exactly what the stream's
  counts up to the start imply. (Leaving the window's counts out, as this chart first did, left a stream
  whose window held most of its history with a reference of a few hundred prompts: three times slower.)
* the alternative, averaged with prior weights (an average of likelihood ratios is still one):
  half on "the whole mix moved" (a Dirichlet of concentration ``K`` centred between the reference and the
  uniform mix, so a category the reference never saw may rise), half shared by the ``K`` alternatives
  "this one category's share moved" (a Beta of concentration 4, same centre) — the common case of a new
  subject rising, where the omnibus alternative pays a (K − 1)/2·log n penalty and this one ½·log n;
* for a start ``τ`` the mixture likelihood ratio ``Λ(τ, t)`` of the counts since ``τ`` is a non-negative
  martingale of mean 1 under the null, so (Ville) it ever exceeds ``arl0`` with probability at most
  ``1/arl0``, and the chart that alarms when ``max_τ Λ(τ, t) ≥ arl0`` has at least ``arl0`` in-control
  observations between false alarms on average (Lorden 1971). Starts only at bucket boundaries, checks
  only at bucket ends and a bounded window of starts all make the chart slower to alarm, never quicker,
  so the bound holds as it stands: no simulation, no calibration table.

Window: the last ``window`` start points, a start holding at least ``min_start`` observations (small buckets
are merged), so the window spans at least ``window × min_start`` observations. When a start leaves the
window its counts join the reference while the chart is in control (below half its threshold).

References: Lorden, G. (1971), *Procedures for reacting to a change in distribution*; Robbins (1970) and
Lai (1976) on mixture likelihood ratios; Ville (1939).

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> chart = BucketMix(arl0=1e6, warmup=400, names=("a", "b", "c", "d"))
>>> before, after = [0.4, 0.3, 0.3, 0.0], [0.3, 0.2, 0.3, 0.2]
>>> [chart.update_counts(rng.multinomial(20, before), at=b) for b in range(100)].count(None)
100
>>> change = next(c for b in range(100, 200) if (c := chart.update_counts(rng.multinomial(20, after), at=b)))
>>> change.start >= 100, round(change.after["shares"]["d"], 1), change.details["moved"][0]
(True, 0.2, 'd')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from detectors.drift.buckets import REFERENCE_MAX, BucketChange

ONE_SHARE_CONCENTRATION = 4.0
"""Prior strength of the "one category moved" alternatives: small, so that a large move is not doubted."""


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(x - top), axis=axis))


class BucketMix:
    """Mixture-likelihood-ratio chart on category counts per bucket; river-like ``drift_detected``.

    Parameters: ``arl0`` observations between false alarms (a lower bound, see the module); ``warmup``
    observations the reference is learnt from before the chart may fire (again after each detection);
    ``names`` the categories (their order is the order of the count vectors); ``window`` start points kept;
    ``min_start`` observations at least per start point. State is plain JSON (`state`, `from_state`).
    """

    kind: ClassVar[str] = "bucket_mix"

    def __init__(self, arl0: float = 1e7, warmup: int = 1000, names: Sequence[str] = ("a", "b"),
                 window: int = 96, min_start: int = 16) -> None:
        if arl0 <= 1 or warmup < 20 or len(names) < 2 or window < 1 or min_start < 1:
            raise ValueError("arl0 must exceed 1, warmup be at least 20, and there must be 2 categories or more")
        self.arl0, self.warmup, self.names = float(arl0), int(warmup), tuple(names)
        self.window, self.min_start = int(window), int(min_start)
        self.h = math.log(self.arl0)
        self.drift_detected = False
        self.seen = 0.0
        self.prev: list[float] | None = None
        self.statistic = 0.0
        self.rearm()

    # -- river-like surface -------------------------------------------------------------------------------

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def warming_up(self) -> bool:
        return not self._armed

    def rearm(self) -> None:
        """Forget the reference and learn a new one (after a change), keeping the old one for `deviation`."""
        if getattr(self, "_armed", False):
            self.prev = self.ref.tolist()
        self._armed = False
        self.ref = np.zeros(len(self.names))
        self.starts: list[Any] = []  # the bucket (``at``) each start point began at
        self.counts: list[np.ndarray] = []  # observations of each start point (until the next one)
        self.statistic = 0.0

    def update(self, category: int) -> bool:
        """river's API: one observation of ``category``; True when it revealed a change."""
        counts = np.zeros(len(self.names))
        counts[int(category)] = 1
        return self.update_counts(counts) is not None

    def update_counts(self, counts: Sequence[float] | np.ndarray, at: Any = None) -> BucketChange | None:
        """Feed one bucket's counts per category (in `names` order); ``at`` names the bucket. Returns the
        change it revealed, if any."""
        self.drift_detected = False
        c = np.asarray(counts, dtype=float)
        n = float(c.sum())
        if n <= 0:
            return None
        self.seen += n
        if not self._armed:
            self.ref += c
            self._armed = bool(self.ref.sum() >= self.warmup)
            return None
        if self.counts and self.counts[-1].sum() < self.min_start:
            self.counts[-1] = self.counts[-1] + c
        else:
            self.starts.append(at)
            self.counts.append(c)
        if len(self.counts) > self.window:
            oldest = self.counts.pop(0)
            self.starts.pop(0)
            if self.statistic < self.h / 2 and self.ref.sum() < REFERENCE_MAX:
                self.ref += oldest  # in control: the self-starting reference keeps learning
        stats = self._log_ratios()
        best = int(np.argmax(stats))
        self.statistic = float(stats[best])
        if self.statistic < self.h:
            return None
        since = np.sum(self.counts[best:], axis=0)
        change = BucketChange("up", self.starts[best], self.reference(), self.describe_counts(since),
                              {"threshold": self.h, "statistic": self.statistic,
                               "moved": self.moved(since)})
        self.drift_detected = True
        self.rearm()
        return change

    # -- the statistic ------------------------------------------------------------------------------------

    def _log_ratios(self) -> np.ndarray:
        """log Λ(τ, now) for every start point τ in the window."""
        from scipy.special import betaln, gammaln  # loaded by the fold's first update, not at the daemon's start

        since = np.cumsum(np.asarray(self.counts[::-1]), axis=0)[::-1]  # counts from each start to now
        m = since.sum(axis=1)
        k = len(self.names)
        # The null: the Dirichlet posterior of the reference and of the window's counts before the start (what
        # the stream is known to look like when the start begins; the window is up to thousands of prompts).
        b = self.ref + 0.5 + (since[0] - since)
        bs = b.sum(axis=1)
        centre = (b / bs[:, None] + 1.0 / k) / 2               # the alternatives' centre
        a = k * centre
        null = (gammaln(bs) - gammaln(bs + m) + np.sum(gammaln(b + since) - gammaln(b), axis=1))
        whole = (gammaln(a.sum(axis=1)) - gammaln(a.sum(axis=1) + m)
                 + np.sum(gammaln(a + since) - gammaln(a), axis=1)) - null
        alpha, beta = ONE_SHARE_CONCENTRATION * centre, ONE_SHARE_CONCENTRATION * (1 - centre)
        rest = (m[:, None] - since)
        bb = bs[:, None] - b
        one = (betaln(alpha + since, beta + rest) - betaln(alpha, beta)
               - betaln(b + since, bb + rest) + betaln(b, bb))
        return _logsumexp(np.column_stack([whole + math.log(0.5), one + math.log(0.5 / k)]), axis=1)

    # -- reading it ---------------------------------------------------------------------------------------

    def shares(self) -> np.ndarray:
        """The reference mix (posterior mean), or the warm-up's so far."""
        b = self.ref + 0.5
        return b / b.sum()

    def reference_counts(self) -> np.ndarray | None:
        """The counts that `deviation` compares with: the current reference, else the one before the last
        change, else the warm-up so far (None before 30 observations)."""
        if self._armed:
            return self.ref
        if self.prev is not None:
            return np.asarray(self.prev, dtype=float)
        return self.ref if self.ref.sum() >= 30 else None

    def reference(self) -> dict[str, Any]:
        return {"shares": dict(zip(self.names, np.round(self.shares(), 4).tolist(), strict=True)),
                "n": float(self.ref.sum())}

    def describe_counts(self, counts: np.ndarray) -> dict[str, Any]:
        n = float(np.sum(counts))
        shares = counts / n if n else np.zeros(len(self.names))
        return {"shares": dict(zip(self.names, np.round(shares, 4).tolist(), strict=True)), "n": n}

    def moved(self, counts: np.ndarray, top: int = 3) -> list[str]:
        """The categories whose share moved most (in absolute terms) from the reference to ``counts``."""
        ref = self.reference_counts()
        n = float(np.sum(counts))
        if ref is None or not n:
            return []
        delta = np.abs(np.asarray(counts) / n - ref / ref.sum())
        return [self.names[i] for i in np.argsort(-delta)[:top]]

    def deviation(self, counts: np.ndarray) -> tuple[float, float]:
        """How far ``counts`` lie from the reference mix, as (z·sqrt(n), n), so that streams are judged as the
        scalar charts' `deviation` judges them and several can be pooled (Stouffer, weighted by sqrt(n)).
        Used to attribute a change to a stream; NaN without a reference.

        z is the standard normal score, floored at 0 (no evidence of a change; a conservative p-value near 1
        would otherwise weigh as strong evidence of no change), of the smaller of two p-values,
        Bonferroni-corrected: the two-sample G-test of the counts against the
        reference counts (the whole mix; two-sample, so a reference learnt from few prompts is not taken for
        exact), and the exact conditional binomial test of the one subject whose share moved most (given
        a subject's total in both, its count here is binomial; corrected for the subjects tried). The
        second sees a rare subject rising in a stream whose evidence is still too thin for the whole-mix
        test."""
        from scipy.stats import binom, chi2, norm  # ~0.6 s to import: only once a change is attributed

        ref = self.reference_counts()
        n = float(np.sum(counts))
        if ref is None or n <= 0:
            return math.nan, n
        c = np.asarray(counts, dtype=float)
        both = c + ref
        cells = both > 0
        if cells.sum() < 2:
            return 0.0, n
        g = 0.0
        for x, total in ((c, n), (ref, float(ref.sum()))):
            expected = total * both / both.sum()
            seen = x > 0
            g += 2.0 * float(np.sum(x[seen] * np.log(x[seen] / expected[seen])))
        p_mix = float(chi2.sf(max(g, 0.0), int(cells.sum()) - 1))
        q = n / (n + float(ref.sum()))
        c, t = c[cells], both[cells]
        tails = np.minimum(binom.sf(c - 1, t, q), binom.cdf(c, t, q))
        p_one = min(1.0, 2.0 * float(np.min(tails)) * len(t))
        z = float(norm.isf(min(0.5, 2.0 * min(p_mix, p_one))))  # no evidence of a change scores 0, not less
        return min(z, 38.0) * math.sqrt(n), n

    # -- state --------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state; `from_state` continues exactly where this chart stopped."""
        return {"kind": self.kind,
                "params": {"arl0": self.arl0, "warmup": self.warmup, "names": list(self.names),
                           "window": self.window, "min_start": self.min_start},
                "seen": self.seen, "armed": self._armed, "ref": self.ref.tolist(), "prev": self.prev,
                "starts": self.starts, "counts": [c.tolist() for c in self.counts], "statistic": self.statistic}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BucketMix:
        if cls is BucketMix and state["kind"] == RiverMix.kind:
            return RiverMix.from_state(state)
        chart = cls(**state["params"])
        chart.seen, chart._armed, chart.prev = state["seen"], state["armed"], state["prev"]
        chart.ref = np.asarray(state["ref"], dtype=float)
        chart.starts = list(state["starts"])
        chart.counts = [np.asarray(c, dtype=float) for c in state["counts"]]
        chart.statistic = state["statistic"]
        return chart


RIVER_RECENT = 20_000
"""Observations of recent buckets (512 buckets at most) a `RiverMix` keeps, to say what the mix became when
river fires."""


class RiverMix(BucketMix):
    """river's own drift detector (``river.drift.<detector>(**options)``), one per category, on the mix.

    A deployment chooses it for ``prompt_topic`` in ``[drift.river.prompt_topic]``. Each observation (a
    sampled prompt) is one value per category, 1 if it fell in that category and 0 otherwise, fed record by
    record in bucket order (within a bucket the order is lost: its ones come first); the chart fires when any
    category's detector does, and names the categories that moved. Its false-alarm rate is river's, not
    calibrated here. The reference (the warm-up's counts) is kept for attribution (`deviation`) and before;
    after is the last buckets that hold river's window once it cut (`RIVER_RECENT` observations at most).
    """

    kind: ClassVar[str] = "river_mix"

    def __init__(self, arl0: float = 1e7, warmup: int = 1000, names: Sequence[str] = ("a", "b"),
                 detector: str = "ADWIN", options: dict[str, Any] | None = None) -> None:
        from detectors.drift.buckets import RIVER_DETECTORS

        if detector not in RIVER_DETECTORS:
            raise ValueError(f"river detector must be one of {', '.join(RIVER_DETECTORS)}, not {detector!r}")
        self.detector, self.options = detector, dict(options or {})
        super().__init__(arl0, warmup, names)

    def rearm(self) -> None:
        from river import drift

        super().rearm()
        self.rivers = [getattr(drift, self.detector)(**self.options) for _ in self.names]

    def update_counts(self, counts: Sequence[float] | np.ndarray, at: Any = None) -> BucketChange | None:
        self.drift_detected = False
        c = np.asarray(counts, dtype=float)
        n = int(c.sum())
        if n <= 0:
            return None
        self.seen += n
        if not self._armed:
            self.ref += c
            self._armed = bool(self.ref.sum() >= self.warmup)
        else:
            self.starts.append(at)
            self.counts.append(c)
            held = sum(float(x.sum()) for x in self.counts)
            while len(self.counts) > 1 and (len(self.counts) > 512 or held - self.counts[0].sum() >= RIVER_RECENT):
                held -= float(self.counts.pop(0).sum())
                self.starts.pop(0)
        fired: list[int] = []
        for j, river in enumerate(self.rivers):
            ones = int(c[j])
            for value in (1.0,) * ones + (0.0,) * (n - ones):
                river.update(value)
                if river.drift_detected and j not in fired:
                    fired.append(j)
        if not fired or not self.counts:  # nothing fired, or it fired during the warm-up
            return None
        # After: the buckets that hold river's window once it dropped the old part (its ``width``, if it says).
        width = getattr(self.rivers[fired[0]], "width", None) or n
        i, held = len(self.counts), 0.0
        while i > 0 and held < width:
            i -= 1
            held += float(self.counts[i].sum())
        after = self.describe_counts(np.sum(self.counts[i:], axis=0))
        change = BucketChange("up", self.starts[i], self.reference(), after,
                              {"river": self.detector, "moved": [self.names[j] for j in fired]})
        self.drift_detected = True
        self.rearm()
        return change

    def state(self) -> dict[str, Any]:
        import base64
        import pickle

        out = super().state()
        out["params"] = {"arl0": self.arl0, "warmup": self.warmup, "names": list(self.names),
                         "detector": self.detector, "options": self.options}
        out["river"] = [base64.b64encode(pickle.dumps(r)).decode() for r in self.rivers]
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BucketMix:
        import base64
        import pickle

        chart = super().from_state(state)
        assert isinstance(chart, RiverMix)
        # our own checkpoint, written by `state`
        chart.rivers = [pickle.loads(base64.b64decode(r)) for r in state["river"]]
        return chart

"""A self-starting mixture-likelihood-ratio chart for a rate (errors, refusals, toxic answers, injections).

Why not a Bernoulli CUSUM: the CUSUM needs the base rate, and a rare event gives a poor estimate of it — a
1% rate learnt from 2,000 records rests on 20 events, ±22%. Calibrating the CUSUM as if the rate were two
standard errors on the unlucky side (to keep the false-alarm budget) raised its threshold from ``ln 2·arl0``
≈ 17 to 23–38, and its tuned odds ratio (3) missed the changes that matter (1% → 5%, 1.5% → 10%), so it
took about twice the records river's ADWIN takes (stop 21: 754–814 vs 452 on toxic, 220–250 vs 116 on
refusal). This chart pays neither cost:

* **the base rate is a nuisance, integrated out.** For a start ``τ`` its law is the Beta posterior of the
  reference and of the window's records before ``τ`` (``events + ½``, ``non-events + ½``); the null likelihood
  of the records since ``τ`` is that posterior's predictive (beta-binomial, exact, tails included), what the
  stream's records up to ``τ`` imply;
* **the alternative is a mixture** over odds ratios (``odds_ratios``, up and down; weights ``up_weight`` on
  the rises): for each ``r``, a Beta whose mean has ``r`` times the null's odds, as concentrated as the null
  but no narrower than `ALT_SPREAD` in log-odds. An average of likelihood ratios is still one, so the chart
  is quick on a small and on a large change without being tuned to one;
* for each start ``τ``, ``Λ(τ, t)`` = alternative / null of the records since ``τ`` is a non-negative
  martingale of mean 1 under the null (the Bayes law of a stationary stream given its reference); by Ville's
  inequality it ever exceeds ``arl0`` with probability at most ``1/arl0``, and the chart that alarms when
  ``max_τ Λ(τ, t) ≥ arl0`` has at least ``arl0`` in-control records between false alarms on average (Lorden
  1971). Starts at bucket boundaries only, checks at bucket ends only and a bounded window of starts only make
  the chart slower to alarm, so the bound holds as it stands, with no margin to tune. The bound is loose by
  two orders of magnitude on rare events, so the threshold sits a measured `SLACK` below it:
  ``ln(arl0 / slack)``, ``slack = 1`` for the bound itself.

The window keeps at most ``window`` start points, each holding at least ``min_start`` records (small buckets
are merged); beyond that, older start points are merged pairwise (the newest half never), so they thin out
into the past and the window spans the last ``span`` records however they arrive. A start that leaves it
joins the reference while the chart is in control (below half its threshold), so the reference keeps
learning (self-starting) up to `REFERENCE_MAX` records; a slow change is not learnt as the new normal before
its excursion has crossed.

Same construction as the topic chart (`detectors.drift.mix`); references: Lorden (1971), Robbins (1970),
Lai (1976), Ville (1939).

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> chart = BucketRate(arl0=1.2e7, warmup=1000)
>>> [chart.update_bucket(35, rng.binomial(35, 0.01), at=b) for b in range(300)].count(None)
300
>>> change = next(c for b in range(300, 400) if (c := chart.update_bucket(35, rng.binomial(35, 0.05), at=b)))
>>> change.direction, change.start >= 290, round(change.before["rate"], 2), 0.03 < change.after["rate"] < 0.09
('up', True, 0.01, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from detectors.drift.buckets import REFERENCE_MAX, BucketChange, BucketChart, RateReading


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log Σ exp over the last axis (no scipy call: this runs once per bucket and stream)."""
    top = x.max(axis=-1)
    return top + np.log(np.exp(x - top[..., None]).sum(axis=-1))


ALT_SPREAD = 0.2
"""The alternatives' spread in log-odds, at least: a reference of 10⁵ records would otherwise pin each one to
its exact odds ratio, and a change between two of them would be seen as neither."""

SLACK = 10.0
"""How far below Lorden's bound the threshold is set: ``ln(arl0 / SLACK)``. The bound assumes the statistic may
cross at every record; a rare event's statistic rises only at its events and falls in between, and the
measured run length is far longer: 98 to 518 times ``arl0`` for base rates 0.5% to 30%, buckets of 5 and
35 records, ``arl0`` 100 (`bench.drift_rates --calibrate`); the smaller the buckets and the more common the
event, the smaller the factor. 10 keeps a factor of 9 or more to spare; ``slack = 1`` gives the
bound itself."""

ODDS_RATIOS = (1.6, 2.5, 4.0, 7.0, 12.0)
"""The changes in odds the alternative mixes (each up, and its inverse down): 1% → 1.6% … 11%."""


class BucketRate(RateReading, BucketChart):
    """Mixture-likelihood-ratio chart on bucket counts (``n`` trials, ``total`` events), self-starting.

    ``arl0`` records between false alarms (a lower bound, see the module), ``warmup`` records learnt before it
    may fire (again after each detection), ``margin`` unused (kept for the bucket charts' signature: the
    nuisance is integrated, not margined). ``odds_ratios`` the changes the alternative mixes, ``up_weight``
    its prior weight on rises, ``window`` start points at most, ``min_start`` records at least per start point,
    ``span`` records the window reaches back, ``slack`` see `SLACK`. State is plain JSON (`state`, `from_state`).
    """

    kind: ClassVar[str] = "bucket_rate"
    _params: ClassVar[tuple[str, ...]] = ("odds_ratios", "up_weight", "window", "min_start", "span", "slack")

    def __init__(self, arl0: float = 1e7, warmup: int = 1000, margin: float = 1.0,
                 odds_ratios: Sequence[float] = ODDS_RATIOS, up_weight: float = 0.6,
                 window: int = 48, min_start: int = 32, span: int = 20_000, slack: float = SLACK) -> None:
        ratios = [float(r) for r in odds_ratios]
        if not ratios or min(ratios) <= 1 or not 0 < up_weight < 1 or window < 4 or min_start < 1 \
                or not 1 <= slack < arl0:
            raise ValueError("odds ratios must exceed 1, up_weight lie in (0, 1), "
                             "slack lie in [1, arl0)")
        self.odds_ratios, self.up_weight = ratios, float(up_weight)
        self.window, self.min_start, self.span = int(window), int(min_start), int(span)
        self.slack = float(slack)
        self.h = math.log(float(arl0) / self.slack)
        self.statistic = 0.0
        self.starts: list[Any] = []
        self.counts: list[list[float]] = []  # [trials, events] of each start point (until the next one)
        r = np.log(np.array(ratios))
        self._log_r = np.concatenate([r, -r])
        self._log_w = np.log(np.concatenate([np.full(len(r), up_weight / len(r)),
                                             np.full(len(r), (1 - up_weight) / len(r))]))
        super().__init__(arl0, warmup, margin)

    def _rearm(self) -> None:
        super()._rearm()
        self.starts, self.counts, self.statistic = [], [], 0.0

    # -- feeding ------------------------------------------------------------------------------------------

    def update_bucket(self, n: float, total: float, total_sq: float = 0.0, at: Any = None) -> BucketChange | None:
        self.drift_detected = False
        if n <= 0:
            return None
        n, total = float(n), float(total)
        self.seen += n
        if not self.armed:
            self.warm_n += n
            self.warm_s += total
            self.warm_ss += total
            if self.warm_n >= self.warmup:
                self.armed = True
                self.calibrated_n = self.warm_n
            return None
        if self.counts and self.counts[-1][0] < self.min_start:
            self.counts[-1][0] += n
            self.counts[-1][1] += total
        else:
            self.starts.append(at)
            self.counts.append([n, total])
        if len(self.counts) > self.window:
            # Older start points are merged (the adjacent pair holding fewest records, newest half untouched):
            # start points thin out into the past, so the window spans a slow change's whole excursion.
            i = min(range(len(self.counts) - self.window // 2 - 1),
                    key=lambda j: self.counts[j][0] + self.counts[j + 1][0])
            self.counts[i] = [self.counts[i][0] + self.counts[i + 1][0], self.counts[i][1] + self.counts[i + 1][1]]
            del self.counts[i + 1], self.starts[i + 1]
        spanned = sum(c[0] for c in self.counts)
        while len(self.counts) > 1 and spanned - self.counts[0][0] >= self.span:
            old_n, old_s = self.counts.pop(0)
            self.starts.pop(0)
            spanned -= old_n
            if self.statistic < self.h / 2 and self.warm_n < REFERENCE_MAX:
                self.warm_n += old_n  # in control: the self-starting reference keeps learning
                self.warm_s += old_s
                self.warm_ss += old_s
        stats, best_ratio = self._log_ratios()
        best = int(np.argmax(stats))
        self.statistic = float(stats[best])
        if self.statistic < self.h:
            return None
        m, x = np.sum(self.counts[best:], axis=0).tolist()
        rising = best_ratio[best] > 0
        change = BucketChange("up" if rising else "down", self.starts[best], self.reference(),
                              {"rate": x / m if m else math.nan, "n": m},
                              {"threshold": self.h, "statistic": self.statistic,
                               "odds_ratio": math.exp(float(best_ratio[best]))})
        self.drift_detected = True
        self.rearm()
        return change

    # -- the statistic ------------------------------------------------------------------------------------

    def _log_ratios(self) -> tuple[np.ndarray, np.ndarray]:
        """log Λ(τ, now) for every start point τ in the window, and the odds ratio that weighs most in each."""
        from scipy.special import betaln  # loaded by the fold's first chart update, not at the daemon's start

        c = np.asarray(self.counts)
        since = np.cumsum(c[::-1], axis=0)[::-1]           # (W, 2): trials, events from each start to now
        before = since[0] - since                          # window records before each start
        # The null: the base rate's Beta posterior given the reference and the window before each start.
        a = self.warm_s + 0.5 + before[:, 1]
        b = self.warm_n - self.warm_s + 0.5 + before[:, 0] - before[:, 1]
        m, x = since[:, 0], since[:, 1]
        null = betaln(a + x, b + m - x) - betaln(a, b)                                # (W,)
        # Each alternative: a Beta whose odds are r times the null's, no narrower than ALT_SPREAD in log-odds.
        mean = a / (a + b)
        odds = (mean / (1 - mean))[:, None] * np.exp(self._log_r)[None, :]            # (W, J)
        mu = odds / (1 + odds)
        conc = np.minimum((a + b)[:, None], 1.0 / (ALT_SPREAD ** 2 * mu * (1 - mu)))
        a1, b1 = conc * mu, conc * (1 - mu)
        per_ratio = (self._log_w[None, :] + betaln(a1 + x[:, None], b1 + (m - x)[:, None])
                     - betaln(a1, b1))                                                # (W, J)
        total = _logsumexp(per_ratio) - null
        return total, self._log_r[np.argmax(per_ratio, axis=1)]

    # -- reading it ---------------------------------------------------------------------------------------

    def _calibrate(self) -> None:  # nothing to calibrate: the threshold is ln(arl0)
        self.calibrated_n = self.warm_n

    def _increments(self, n: float, total: float) -> Sequence[float]:
        raise NotImplementedError("BucketRate is not a CUSUM")

    def _one(self, x: float) -> tuple[float, float]:
        e = 1.0 if x else 0.0
        return e, e

    @property
    def p0(self) -> float:
        """The base rate (posterior mean of the reference)."""
        return (self.warm_s + 0.5) / (self.warm_n + 1)

    def _reference_params(self) -> list[float]:
        return [self.p0]

    def _warm_params(self) -> list[float] | None:
        return [self.p0] if self.warm_n >= 100 else None

    def reference(self) -> dict[str, float]:
        return {"rate": self.warm_s / self.warm_n if self.warm_n else math.nan, "n": self.warm_n}

    def _own(self) -> dict[str, Any]:
        return {"starts": self.starts, "counts": self.counts, "statistic": self.statistic}

    def _load(self, own: dict[str, Any]) -> None:
        self.starts = list(own["starts"])
        self.counts = [list(map(float, c)) for c in own["counts"]]
        self.statistic = float(own["statistic"])

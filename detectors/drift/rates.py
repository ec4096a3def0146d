"""A self-starting mixture-likelihood-ratio chart for a rate (errors, refusals, toxic answers, injections).

Why not a Bernoulli CUSUM: the CUSUM needs the base rate, and a rare event gives a poor estimate of it — a
1% rate learnt from 2,000 records rests on 20 events, ±22%. Calibrating the CUSUM as if the rate were two
standard errors on the unlucky side (to keep the false-alarm budget) raised its threshold from ``ln 2·arl0``
≈ 17 to 23–38, and its tuned odds ratio (3) missed the changes that matter (1% → 5%, 1.5% → 10%), so it
took about twice the records river's ADWIN takes (stop 21: 754–814 vs 452 on toxic, 220–250 vs 116 on
refusal). This chart pays neither cost:

* **the base rate is a nuisance, integrated out.** Its prior is the reference's Beta posterior
  (``events + ½``, ``non-events + ½``), carried on ``grid`` equal-weight quantiles; for a start ``τ`` it is
  updated with the window's records before ``τ``. The null likelihood of the records since ``τ`` is that
  posterior's predictive, exactly what a reference learnt from these records implies;
* **the alternative is a mixture** over odds ratios (``odds_ratios``, up and down; weights ``up_weight`` on
  the rises), each applied to the same posterior draw of the base rate: "the odds moved by ``r``", whatever
  the base rate is. An average of likelihood ratios is still one, so the chart is quick on a small and on a
  large change without being tuned to one;
* for each start ``τ``, ``Λ(τ, t)`` = alternative / null of the records since ``τ`` is a non-negative
  martingale of mean 1 under the null (the Bayes law of a stationary stream given its reference); by Ville's
  inequality it ever exceeds ``arl0`` with probability at most ``1/arl0``, and the chart that alarms when
  ``max_τ Λ(τ, t) ≥ arl0`` has at least ``arl0`` in-control records between false alarms on average (Lorden
  1971). Starts at bucket boundaries only, checks at bucket ends only and a bounded window of starts only make
  the chart slower to alarm, so the bound holds as it stands, with no margin to tune. The bound is loose by
  two orders of magnitude on rare events, so the threshold sits a measured `SLACK` below it:
  ``ln(arl0 / slack)``, ``slack = 1`` for the bound itself.

The window keeps the last ``window`` start points, each holding at least ``min_start`` records (small buckets
are merged); a start that leaves it joins the reference while the chart is in control (below half its
threshold), so the reference keeps learning (self-starting) up to `REFERENCE_MAX` records.

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
from scipy.stats import beta as beta_dist

from detectors.drift.buckets import REFERENCE_MAX, BucketChange, BucketChart

def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log Σ exp over the last axis (no scipy call: this runs once per bucket and stream)."""
    top = x.max(axis=-1)
    return top + np.log(np.exp(x - top[..., None]).sum(axis=-1))


SLACK = 10.0
"""How far below Lorden's bound the threshold is set: ``ln(arl0 / SLACK)``. The bound assumes the statistic may
cross at every record; a rare event's statistic rises only at its events and falls in between, and the
measured run length is far longer: 84 to 584 times ``arl0`` for base rates 0.5% to 30%, buckets of 5 and
35 records, ``arl0`` 100 and 1,000 (`bench.drift_rates --calibrate`); the smaller the buckets and the more
common the event, the smaller the factor. 10 keeps a factor of 8 or more to spare; ``slack = 1`` gives the
bound itself."""

ODDS_RATIOS = (1.6, 2.5, 4.0, 7.0, 12.0)
"""The changes in odds the alternative mixes (each up, and its inverse down): 1% → 1.6% … 11%."""


class BucketRate(BucketChart):
    """Mixture-likelihood-ratio chart on bucket counts (``n`` trials, ``total`` events), self-starting.

    ``arl0`` records between false alarms (a lower bound, see the module), ``warmup`` records learnt before it
    may fire (again after each detection), ``margin`` unused (kept for the bucket charts' signature: the
    nuisance is integrated, not margined). ``odds_ratios`` the changes the alternative mixes, ``up_weight``
    its prior weight on rises, ``grid`` quantiles carrying the base rate's posterior, ``window`` start points,
    ``min_start`` records at least per start point. State is plain JSON (`state`, `from_state`).
    """

    kind: ClassVar[str] = "bucket_rate"
    _params: ClassVar[tuple[str, ...]] = ("odds_ratios", "up_weight", "grid", "window", "min_start", "slack")

    def __init__(self, arl0: float = 1e7, warmup: int = 1000, margin: float = 1.0,
                 odds_ratios: Sequence[float] = ODDS_RATIOS, up_weight: float = 0.6, grid: int = 8,
                 window: int = 48, min_start: int = 32, slack: float = SLACK) -> None:
        ratios = [float(r) for r in odds_ratios]
        if not ratios or min(ratios) <= 1 or not 0 < up_weight < 1 or grid < 4 or window < 1 or min_start < 1 \
                or not 1 <= slack < arl0:
            raise ValueError("odds ratios must exceed 1, up_weight lie in (0, 1), grid be at least 4, "
                             "slack lie in [1, arl0)")
        self.odds_ratios, self.up_weight = ratios, float(up_weight)
        self.grid, self.window, self.min_start = int(grid), int(window), int(min_start)
        self.slack = float(slack)
        self.h = math.log(float(arl0) / self.slack)
        self.statistic = 0.0
        self._logs: tuple[np.ndarray, ...] = ()
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
        self._grid_key = None

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
            old_n, old_s = self.counts.pop(0)
            self.starts.pop(0)
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

    def base_grid(self) -> np.ndarray:
        """The base rate's posterior (given the reference) as ``grid`` equal-weight quantiles: the prior of the
        base rate, laid once and tilted by the records the reference learns later (`_log_ratios`)."""
        a, b = self.warm_s + 0.5, self.warm_n - self.warm_s + 0.5
        p = beta_dist.ppf((np.arange(self.grid) + 0.5) / self.grid, a, b)
        return np.clip(p, 1e-12, 1 - 1e-12)

    def _log_ratios(self) -> tuple[np.ndarray, np.ndarray]:
        """log Λ(τ, now) for every start point τ in the window, and the odds ratio that weighs most in each."""
        c = np.asarray(self.counts)
        since = np.cumsum(c[::-1], axis=0)[::-1]           # (W, 2): trials, events from each start to now
        before = since[0] - since                          # window records before each start
        lp, lq, lp1, lq1 = self._grid_logs()               # (G,), (G,), (J, G), (J, G)
        # Posterior weight of each base rate at each start: the grid's (the reference when it was laid), tilted
        # by the reference's records since and the window's before the start.
        grid_n, grid_s = self._grid_key
        events = before[:, 1:2] + (self.warm_s - grid_s)
        others = before[:, 0:1] - before[:, 1:2] + (self.warm_n - grid_n) - (self.warm_s - grid_s)
        prior = events * lp + others * lq                                             # (W, G)
        m, x = since[:, 0:1], since[:, 1:2]
        null = _logsumexp(prior + x * lp + (m - x) * lq)                              # (W,)
        alt = (self._log_w[None, :, None] + prior[:, None, :]
               + x[:, :, None] * lp1[None] + (m - x)[:, :, None] * lq1[None])          # (W, J, G)
        per_ratio = _logsumexp(alt)                                                   # (W, J)
        total = _logsumexp(per_ratio) - null  # the prior's normalisation cancels
        return total, self._log_r[np.argmax(per_ratio, axis=1)]

    def _grid_logs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The base rates' logs ``log p``, ``log(1-p)`` and the alternatives' (each odds ratio applied)."""
        if self._grid_key is None or self.warm_n >= 2 * self._grid_key[0]:
            # Laid again each time the reference doubled: a tilt by many more records than the grid was laid
            # for would leave too few grid points where the posterior is.
            p = self.base_grid()
            lp, lq = np.log(p), np.log1p(-p)
            shifted = (lp - lq)[None, :] + self._log_r[:, None]
            self._logs = (lp, lq, -np.logaddexp(0.0, -shifted), -np.logaddexp(0.0, shifted))
            self._grid_key = (self.warm_n, self.warm_s)
        return self._logs

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

    def _deviation(self, params: list[float], n: float, total: float) -> float:
        p = params[0]
        return (total - n * p) / math.sqrt(p * (1 - p))

    def describe(self, n: float, total: float) -> dict[str, float]:
        return {"rate": total / n if n else math.nan, "n": n}

    def reference(self) -> dict[str, float]:
        return {"rate": self.warm_s / self.warm_n if self.warm_n else math.nan, "n": self.warm_n}

    def _describe(self, side: Any) -> dict[str, float]:
        return {"rate": side.total / side.n if side.n else math.nan, "n": side.n}

    def _own(self) -> dict[str, Any]:
        return {"starts": self.starts, "counts": self.counts, "statistic": self.statistic}

    def _load(self, own: dict[str, Any]) -> None:
        self.starts = list(own["starts"])
        self.counts = [list(map(float, c)) for c in own["counts"]]
        self.statistic = float(own["statistic"])

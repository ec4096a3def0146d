"""Do `watchkeeper compare`'s intervals cover the truth as often as they claim, and does its verdict cry wolf?
Measured by simulation, each figure beside a baseline method measured in the same run on the same draws.

    python -m bench.compare [reps]          # default 2000 draws per case (~1-2 min on 2 cores)

Unit figures: the statistics of `monitor.compare.stats` on generated numbers, no database. Coverage is the
share of draws whose 95 % interval holds the true B - A; the baseline for proportions is the textbook Wald
interval, for quantiles of counts the same order-statistic interval without jittering. The last block runs
whole A/A comparisons (`monitor.compare.metrics.compare_sides`, 18 metrics, Holm at 0.05) and prints how
often *any* metric is called significant: the family-wise false-positive rate, nominal 5 %.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np
from scipy import stats as sps

from monitor.compare import stats
from monitor.compare.metrics import compare_sides
from monitor.review.estimates import weighted_proportion
from monitor.synthetic.ab import Arm, arm_side

Z = 1.959963984540054


def _wald(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    pa, pb = x_a / n_a, x_b / n_b
    half = Z * math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    return pb - pa - half, pb - pa + half


def proportions(reps: int, rng: np.random.Generator) -> None:
    print("difference of proportions (rates): Newcombe interval vs Wald, 95 % nominal")
    print(f"  {'p_a':>6} {'p_b':>6} {'n':>6}   {'newcombe':>9} {'wald':>9}")
    for p_a, p_b, n in ((0.03, 0.03, 500), (0.01, 0.02, 2000), (0.005, 0.005, 1000), (0.2, 0.25, 300),
                        (0.03, 0.07, 3000), (0.5, 0.5, 50)):
        truth = p_b - p_a
        new = wald = 0
        for _ in range(reps):
            x_a, x_b = int(rng.binomial(n, p_a)), int(rng.binomial(n, p_b))
            d = stats.diff_of_proportions(x_a, n, x_b, n)
            new += d.ci_low <= truth <= d.ci_high
            low, high = _wald(x_a, n, x_b, n)
            wald += low <= truth <= high
        print(f"  {p_a:>6} {p_b:>6} {n:>6}   {new / reps:>9.3f} {wald / reps:>9.3f}")


def weighted(reps: int, rng: np.random.Generator) -> None:
    print("review accuracy, Hajek-weighted (weights 1 to 10), Newcombe at Kish's effective size vs Wald at n")
    print(f"  {'acc_a':>6} {'acc_b':>6} {'n':>6}   {'newcombe':>9} {'wald':>9}")
    for acc_a, acc_b, n in ((0.9, 0.9, 200), (0.85, 0.9, 400), (0.7, 0.7, 100)):
        new = wald = 0
        for _ in range(reps):
            props = []
            for acc in (acc_a, acc_b):
                w = rng.choice([1.0, 10.0], n, p=[0.7, 0.3])
                y = (rng.random(n) < acc).astype(float)
                props.append(weighted_proportion(y.tolist(), w.tolist()))
            a, b = props
            d = stats.diff_of_proportions(a.estimate * a.n_effective, a.n_effective,
                                          b.estimate * b.n_effective, b.n_effective)
            new += d.ci_low <= acc_b - acc_a <= d.ci_high
            half = Z * math.sqrt(a.estimate * (1 - a.estimate) / n + b.estimate * (1 - b.estimate) / n)
            wald += abs(b.estimate - a.estimate - (acc_b - acc_a)) <= half
        print(f"  {acc_a:>6} {acc_b:>6} {n:>6}   {new / reps:>9.3f} {wald / reps:>9.3f}")


def quantiles(reps: int, rng: np.random.Generator) -> None:
    print("difference of quantiles: Price-Bonett order-statistic interval (jittered for counts) vs not jittered")
    print(f"  {'signal':<28} {'q':>5} {'n':>6}   {'interval':>9} {'no jitter':>9}")
    lat_a, lat_b = 450.0, 560.0
    cases: list[tuple[str, Callable[[int], tuple[np.ndarray, np.ndarray]], Callable[[float], float], int]] = [
        ("latency lognormal, B 25% slower", lambda n: (lat_a * rng.lognormal(0, 0.45, n),
                                                       lat_b * rng.lognormal(0, 0.45, n)),
         lambda q: (lat_b - lat_a) * math.exp(0.45 * sps.norm.ppf(q)), 0),
        ("tokens Poisson(45), A = B", lambda n: (rng.poisson(45, n).astype(float), rng.poisson(45, n).astype(float)),
         lambda q: 0.0, 0),
    ]
    for label, draw, truth_of, _ in cases:
        for q in (0.5, 0.95):
            for n in (200, 1000, 5000):
                truth = truth_of(q)
                hit = plain = 0
                for _ in range(reps):
                    a, b = draw(n)
                    d = stats.diff_of_quantiles(a, b, q)
                    hit += d.ci_low is not None and d.ci_low <= truth <= d.ci_high
                    sa, sb = stats.quantile_interval(a, q), stats.quantile_interval(b, q)
                    if sa and sb:
                        se = math.hypot(*((s[2] - s[1]) / (2 * sps.norm.ppf(0.5 + s[3] / 2)) for s in (sa, sb)))
                        centre = sb[0] - sa[0]
                        plain += centre - Z * se <= truth <= centre + Z * se
                print(f"  {label:<28} {q:>5} {n:>6}   {hit / reps:>9.3f} {plain / reps:>9.3f}")


def family(reps: int, rng: np.random.Generator) -> None:
    print("A/A comparisons (same truth both arms, 1000 records each, 200 labelled), Holm at alpha 0.05")
    runs = max(reps // 4, 100)
    any_sig = raw = tested = 0
    for _ in range(runs):
        result = compare_sides(arm_side(Arm("m"), 1000, rng, labelled=200), arm_side(Arm("m"), 1000, rng, labelled=200))
        any_sig += bool(result.significant())
        ps = [m.p_value for m in result.metrics if m.p_value is not None]
        raw += sum(p < 0.05 for p in ps)
        tested += len(ps)
    fwer = any_sig / runs
    print(f"  runs {runs}: any metric significant (Holm) {fwer:.3f} ± {1.96 * math.sqrt(fwer * (1 - fwer) / runs):.3f}"
          f"  |  baseline, no correction: single-metric p < 0.05 {raw / tested:.3f};"
          f" expected any-of-{tested // runs} without correction ≈ {1 - 0.95 ** (tested // runs):.2f}")


def main(reps: int = 2000) -> None:
    rng = np.random.default_rng(20261202)
    proportions(reps, rng)
    weighted(reps, rng)
    quantiles(max(reps // 2, 100), rng)
    family(reps, rng)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

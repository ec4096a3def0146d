"""Drift benchmark: calibrated Watchkeeper charts vs river defaults vs Evidently's windowed test.

Generated streams with known change points (mean shifts of 0.25–2 standard deviations in latency and
answer length, toxic answers going from 1% to 3%, new topics taking a share of prompts) and long
stationary stretches. Per kind it prints the detection rate, median and p90 delay in records, and false
alarms per million stationary records, for the three detectors side by side in the same run.

- Watchkeeper: the charts the `DriftBank` builds, calibrated to ``arl0 × signals`` per detector (the
  per-stream budget of one false alarm per ``--arl0`` records, shared by its 10 signals).
- river 0.26 ADWIN and PageHinkley at default settings, fed the same (log-transformed) values.
- Evidently ``ValueDrift`` (its default test for the column) on consecutive windows of ``--window`` records
  against the first ``--warmup`` records as reference. It is ~0.1 s a window, so its stationary false-alarm
  rate is measured on fewer records (printed).

Topic streams are in embedded prompts (WordLlama, prompts from `monitor.synthetic.generator`'s phrase banks); in
production only ``topic_sample_rate`` of records are embedded, so a delay of d prompts is d / rate records.
river and Evidently see the cosine distance of each prompt to the reference centroid (they have no
multivariate detector of their own).

    python -m bench.drift_charts     # ~3–5 minutes on 2 cores (unit figures: charts fed one clean stream)
    python -m bench.drift_charts --quick
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.cusum import GaussianCUSUM
from detectors.drift.signals import SIGNALS
from detectors.drift.topic import TopicMix

CHUNK = 2000  # records per pipeline batch


@dataclass(frozen=True)
class Kind:
    name: str
    family: str   # which stationary stream it is judged against
    before: Callable[[np.random.Generator, int], np.ndarray]
    after: Callable[[np.random.Generator, int], np.ndarray]


# --- streams ----------------------------------------------------------------------------------------------

LAT_MU, LAT_SIGMA = 6.0, 0.5          # latency ms: lognormal, median ~400 ms
LEN_MU, LEN_SIGMA = 6.86, 0.32        # answer chars: lognormal, mean ~1000, std ~330


def lognormal(mu: float, sigma: float, shift_sd: float = 0.0) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, n: rng.lognormal(mu + shift_sd * sigma, sigma, n)


def bernoulli(p: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, n: (rng.random(n) < p).astype(float)


class TopicPool:
    """Embedded prompts of the usual topic mix and of topics the traffic never had (legal, gaming)."""

    def __init__(self, n_base: int, n_new: int) -> None:
        from detectors.drift.embedding import PromptEmbedder
        from monitor.ingest.record import decode
        from monitor.synthetic.generator import Incident, TrafficGenerator

        start = datetime(2026, 1, 1, tzinfo=UTC)
        base = [decode(g.value).prompt for g in TrafficGenerator(seed=31, start=start).generate(n_base)]
        shifted = TrafficGenerator(seed=32, start=start,
                                   incidents=[Incident("topic_shift", 0, 10**9, magnitude=1.0)])
        new = [decode(g.value).prompt for g in shifted.generate(n_new)]
        embedder = PromptEmbedder()
        self.base, self.new = embedder.embed(base), embedder.embed(new)

    def mix(self, share_new: float) -> Callable[[np.random.Generator, int], np.ndarray]:
        def draw(rng: np.random.Generator, n: int) -> np.ndarray:
            out = self.base[rng.integers(len(self.base), size=n)]
            swap = rng.random(n) < share_new
            out[swap] = self.new[rng.integers(len(self.new), size=int(swap.sum()))]
            return out
        return draw


# --- detectors --------------------------------------------------------------------------------------------

def ours_factory(family: str, arl0: float, warmup: int, topic_warmup: int) -> Callable[[], object]:
    share = arl0 * len(SIGNALS)
    if family == "toxic":
        return lambda: BernoulliCUSUM(share, warmup)
    if family == "topic":
        return lambda: TopicMix(share * 0.25, topic_warmup)
    return lambda: GaussianCUSUM(share, warmup, transform="log")


def ours_alarms(make: Callable[[], object], x: np.ndarray) -> list[int]:
    detector = make()
    out = []
    for start in range(0, len(x), CHUNK):
        out.extend(start + c.index for c in detector.update_many(x[start:start + CHUNK]))  # type: ignore[attr-defined]
    return out


def river_alarms(name: str, x: np.ndarray) -> list[int]:
    from river import drift

    detector = drift.ADWIN() if name == "adwin" else drift.PageHinkley()
    out = []
    for i, v in enumerate(x.tolist()):
        detector.update(v)
        if detector.drift_detected:
            out.append(i)
    return out


def evidently_alarms(x: np.ndarray, reference: int, window: int, stop_after: int | None,
                     max_windows: int | None = None) -> tuple[list[int], int]:
    """Window ends flagged by Evidently's ValueDrift; stops at the first flag at or after ``stop_after``.
    Returns (alarms, records examined after the reference)."""
    import pandas as pd
    from evidently import Report
    from evidently.metrics import ValueDrift

    ref = pd.DataFrame({"x": x[:reference]})
    out, examined = [], 0
    for k, start in enumerate(range(reference, len(x) - window + 1, window)):
        if max_windows is not None and k >= max_windows:
            break
        result = Report([ValueDrift(column="x")]).run(pd.DataFrame({"x": x[start:start + window]}), ref)
        metric = result.dict()["metrics"][0]
        method, limit = metric["config"]["method"], metric["config"]["threshold"]
        value = float(metric["value"])
        drifted = value < limit if "p_value" in method else value >= limit
        examined = start + window - reference
        if drifted:
            out.append(start + window - 1)
            if stop_after is not None and start + window - 1 >= stop_after:
                break
    return out, examined


# --- the experiment ---------------------------------------------------------------------------------------

def river_input(family: str, x: np.ndarray, reference: int) -> np.ndarray:
    """What the scalar baselines see: log values, 0/1, or a prompt's cosine distance to the reference."""
    if family == "topic":
        centre = x[:reference].mean(axis=0)
        centre /= np.linalg.norm(centre)
        return 1.0 - x @ centre
    return x if family == "toxic" else np.log1p(x)


def summarise(delays: list[float | None]) -> tuple[str, str, str]:
    found = [d for d in delays if d is not None]
    rate = f"{len(found)}/{len(delays)}"
    if not found:
        return rate, "-", "-"
    return rate, f"{np.median(found):.0f}", f"{np.percentile(found, 90):.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--stationary", type=int, default=2_000_000, help="stationary records per family")
    parser.add_argument("--arl0", type=float, default=1e6, help="records per false alarm per stream")
    parser.add_argument("--warmup", type=int, default=5000)
    parser.add_argument("--topic-warmup", type=int, default=4000)
    parser.add_argument("--window", type=int, default=1000, help="Evidently window")
    parser.add_argument("--evidently-windows", type=int, default=40, help="stationary windows per family")
    parser.add_argument("--post", type=int, default=20_000, help="records after a change before it counts missed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.stationary, args.evidently_windows = 8, 400_000, 15
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    topics = TopicPool(30_000, 8_000)

    kinds = [
        Kind("latency +0.25 sd", "latency", lognormal(LAT_MU, LAT_SIGMA), lognormal(LAT_MU, LAT_SIGMA, 0.25)),
        Kind("latency +0.5 sd", "latency", lognormal(LAT_MU, LAT_SIGMA), lognormal(LAT_MU, LAT_SIGMA, 0.5)),
        Kind("latency +1 sd", "latency", lognormal(LAT_MU, LAT_SIGMA), lognormal(LAT_MU, LAT_SIGMA, 1.0)),
        Kind("latency +2 sd", "latency", lognormal(LAT_MU, LAT_SIGMA), lognormal(LAT_MU, LAT_SIGMA, 2.0)),
        Kind("length -0.5 sd", "length", lognormal(LEN_MU, LEN_SIGMA), lognormal(LEN_MU, LEN_SIGMA, -0.5)),
        Kind("length +1 sd", "length", lognormal(LEN_MU, LEN_SIGMA), lognormal(LEN_MU, LEN_SIGMA, 1.0)),
        Kind("toxic 1% -> 3%", "toxic", bernoulli(0.01), bernoulli(0.03)),
        Kind("new topics 10%", "topic", topics.mix(0.0), topics.mix(0.10)),
        Kind("new topics 30%", "topic", topics.mix(0.0), topics.mix(0.30)),
    ]
    stationary_of = {"latency": kinds[0].before, "length": kinds[4].before, "toxic": kinds[6].before,
                     "topic": kinds[7].before}
    names = ("watchkeeper", "river ADWIN", "river PageHinkley", "evidently")

    # False alarms per million stationary records, per family and detector.
    fa: dict[tuple[str, str], tuple[float, int]] = {}
    rng = np.random.default_rng(args.seed)
    for family, draw in stationary_of.items():
        warm = args.topic_warmup if family == "topic" else args.warmup
        n = args.stationary // (4 if family == "topic" else 1)
        x = draw(rng, n)
        make = ours_factory(family, args.arl0, args.warmup, args.topic_warmup)
        fa[(family, "watchkeeper")] = (len(ours_alarms(make, x)), n - warm)
        scalar = river_input(family, x, warm)
        for name, key in (("adwin", "river ADWIN"), ("ph", "river PageHinkley")):
            fa[(family, key)] = (len(river_alarms(name, scalar)), n)
        alarms, examined = evidently_alarms(scalar, warm, args.window, None, args.evidently_windows)
        fa[(family, "evidently")] = (len(alarms), examined)

    rows = []
    for kind in kinds:
        warm = args.topic_warmup if kind.family == "topic" else args.warmup
        make = ours_factory(kind.family, args.arl0, args.warmup, args.topic_warmup)
        delays: dict[str, list[float | None]] = {name: [] for name in names}
        for _ in range(args.trials):
            change = warm + int(rng.integers(2000, 10_000))
            x = np.concatenate([kind.before(rng, change), kind.after(rng, args.post)])
            scalar = river_input(kind.family, x, warm)
            found = {
                "watchkeeper": ours_alarms(make, x),
                "river ADWIN": river_alarms("adwin", scalar),
                "river PageHinkley": river_alarms("ph", scalar),
                "evidently": evidently_alarms(scalar, warm, args.window, change)[0],
            }
            for name, alarms in found.items():
                after = [a for a in alarms if a >= change]
                delays[name].append(after[0] - change + 1 if after else None)
        for name in names:
            count, n = fa[(kind.family, name)]
            rows.append((kind.name, name, *summarise(delays[name]), count / max(n, 1) * 1e6, n))

    print(f"\nDrift benchmark: {args.trials} trials per kind, change after warm-up + 2000..10000 records, "
          f"{args.post} records to detect; arl0 = {args.arl0:g} records per stream "
          f"({args.arl0 * len(SIGNALS):g} per detector); topic kinds in embedded prompts.\n")
    header = f"{'kind':<18} {'detector':<18} {'detected':>9} {'median':>8} {'p90':>8} {'FA/M stat.':>11} {'(on n)':>10}"
    print(header)
    print("-" * len(header))
    for kind_name, name, rate, median, p90, fa_per_m, n in rows:
        print(f"{kind_name:<18} {name:<18} {rate:>9} {median:>8} {p90:>8} {fa_per_m:>11.1f} {n:>10}")

    print("\nTargets (Watchkeeper):")
    ours = [r for r in rows if r[1] == "watchkeeper"]
    big = [r for r in ours if not r[0].startswith("latency +0.25")]
    def _n(rate: str) -> tuple[int, int]:
        a, b = rate.split("/")
        return int(a), int(b)
    big_shifts = [r for r in big if "sd" in r[0]]
    print(f"  every shift >= 0.5 sd detected: {all(_n(r[2])[0] == _n(r[2])[1] for r in big_shifts)}")
    print(f"  median delay < 2000 records on every kind: "
          f"{all(r[3] != '-' and float(r[3]) < 2000 for r in ours)}")
    print(f"  <= 1 false alarm per million stationary records: {all(r[5] <= 1.0 for r in ours)}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

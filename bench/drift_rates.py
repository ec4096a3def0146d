"""Rate charts (errors, refusals, toxic answers) against river's ADWIN: delay and false alarms, same run.

Unit figures: each detector is fed one clean Bernoulli stream, no Kafka. The fold's rate chart sees buckets
(``--bucket`` records of the stream each: 2 s of a model serving 17.5 records/s, as in ``bench.drift``);
ADWIN (river's own, at its defaults) sees every record, the strongest form of the baseline.

- delay: records of the stream from the first changed record to the end of the bucket (record, for ADWIN)
  where the detector fired, median and p90 over ``--trials``; the stream has ``--before`` stationary records
  first (a fresh stream: the chart warms up on its first ``rate_warmup`` records, as in the product);
- false alarms per 10⁶ stationary records: ``--streams`` fresh streams of ``--length`` records each (every
  stream warms up, as a deployment's new streams do), records after the warm-up counted; ADWIN on the first
  ``--adwin-records`` of them (it is slower to run);
- the budget: a stream may raise one false alarm per ``arl0`` (10⁶) of its records over all its 12 signals,
  so a rate detector's share is one per 1.2·10⁷ records: 0.083 per 10⁶.

Detectors: ``rate`` (the fold's default, `detectors.drift.rates.BucketRate`), ``cusum`` (the Bernoulli CUSUM it
replaced, `BucketBernoulli`, odds ratio 3, margin 1), ``adwin`` (per record), and ``rate@adwin``: the
same chart at ADWIN's measured false-alarm rate (its ``arl0`` set to one over ADWIN's rate): delay at equal
false alarms.

    python -m bench.drift_rates                    # ~10 minutes on 2 cores: 10^7 stationary records per rate
    python -m bench.drift_rates --streams 100 --trials 60 --adwin-records 1000000   # ~2 minutes
    python -m bench.drift_rates --calibrate        # how loose Lorden's bound is (what `SLACK` may take)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from detectors.drift.buckets import BucketBernoulli, BucketChart
from detectors.drift.rates import BucketRate

SCENARIOS = (("toxic 1% -> 5%", 0.01, 0.05), ("refusal 1.5% -> 10%", 0.015, 0.10),
             ("error 0.5% -> 2%", 0.005, 0.02), ("toxic 1% -> 2%", 0.01, 0.02))
SIGNALS = 12


def chart_alarms(make: Callable[[], BucketChart], x: np.ndarray, bucket: int) -> list[int]:
    """Record index (end of its bucket) of every alarm; the chart re-arms itself after each."""
    chart, out = make(), []
    counts = np.add.reduceat(x, np.arange(0, x.size, bucket))
    sizes = np.diff(np.append(np.arange(0, x.size, bucket), x.size))
    for b, (n, k) in enumerate(zip(sizes.tolist(), counts.tolist(), strict=True)):
        if chart.update_bucket(n, k, at=b) is not None:
            out.append(min(b * bucket + n, x.size) - 1)
    return out


def adwin_alarms(x: np.ndarray) -> list[int]:
    from river.drift import ADWIN

    detector, out = ADWIN(), []
    for i, v in enumerate(x.tolist()):
        detector.update(v)
        if detector.drift_detected:
            out.append(i)
    return out


def summarise(delays: list[float | None]) -> str:
    found = [d for d in delays if d is not None]
    if not found:
        return f"{0:>3}/{len(delays):<3} {'-':>6} {'-':>6}"
    return f"{len(found):>3}/{len(delays):<3} {np.median(found):>6.0f} {np.percentile(found, 90):>6.0f}"


def calibrate(seed: int, records: int = 1_000_000) -> None:
    """In-control run length of `BucketRate` at its bound (slack 1), over ``arl0``: what `SLACK` may take."""
    rng = np.random.default_rng(seed)
    print(f"{'bucket':>6} {'arl0':>6} {'rate':>6} {'alarms':>7} {'records':>9} {'ARL/arl0':>9}")
    for bucket, n_records in ((35, records), (5, records), (1, records // 5)):
        for arl0 in (100.0, 1000.0):
            for p in (0.005, 0.02, 0.1, 0.3):
                alarms, seen = 0, 0
                for _ in range(max(n_records // 20_000, 1)):
                    x = (rng.random(20_000) < p).astype(float)
                    found = chart_alarms(lambda a=arl0: BucketRate(a, 1000, slack=1.0), x, bucket)
                    alarms += len(found)
                    seen += x.size - 1000 * (1 + len(found))  # warm-ups are not in control
                ratio = f"{seen / alarms / arl0:9.0f}" if alarms else f"{'>' + format(seen / arl0, '.0f'):>9}"
                print(f"{bucket:>6} {arl0:>6.0f} {p:>6} {alarms:>7} {seen:>9} {ratio}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arl0", type=float, default=1e6, help="records per false alarm per stream")
    parser.add_argument("--warmup", type=int, default=1000, help="[drift] rate_warmup")
    parser.add_argument("--bucket", type=int, default=35)
    parser.add_argument("--before", type=int, default=2450)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--length", type=int, default=20_000)
    parser.add_argument("--adwin-records", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", action="store_true",
                        help="measure how loose Lorden's bound is (slack 1): run length over arl0 per base rate")
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate(args.seed)
        return
    share = args.arl0 * SIGNALS
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    makers: dict[str, Callable[[float], BucketChart]] = {
        "rate": lambda arl0: BucketRate(arl0, args.warmup),
        "cusum": lambda arl0: BucketBernoulli(arl0, args.warmup, 1.0, 3.0),
    }
    print(f"rate charts vs river ADWIN (unit figures); arl0 {args.arl0:g} per stream, {share:g} per rate detector "
          f"(budget {1e6 / share:.3f} false alarms per 10^6); buckets of {args.bucket}; {args.before} records "
          f"before each change; {args.trials} trials")
    print(f"{'scenario':22} {'detector':10} {'found':>7} {'median':>6} {'p90':>6} {'FA/1e6':>8} {'on records':>11}")
    by_rate: dict[float, dict[str, tuple[int, int]]] = {}
    for name, p0, p1 in SCENARIOS:
        # False alarms: fresh streams, each warming up (once per base rate).
        fa = by_rate.setdefault(p0, {})
        if fa:
            run_scenario(args, rng, share, makers, name, p0, p1, fa)
            continue
        streams = [(rng.random(args.length) < p0).astype(float) for _ in range(args.streams)]
        for key, make in makers.items():
            alarms = sum(len(chart_alarms(lambda m=make: m(share), x, args.bucket)) for x in streams)
            fa[key] = (alarms, args.streams * (args.length - args.warmup))
        flat = np.concatenate(streams)[: args.adwin_records]
        fa["adwin"] = (len(adwin_alarms(flat)), flat.size)
        run_scenario(args, rng, share, makers, name, p0, p1, fa)
    print(f"{time.perf_counter() - t0:.0f} s")


def run_scenario(args: argparse.Namespace, rng: np.random.Generator, share: float,
                 makers: dict[str, Callable[[float], BucketChart]], name: str, p0: float, p1: float,
                 fa: dict[str, tuple[int, int]]) -> None:
    """Delays of every detector on one shift, printed with the false alarms measured at its base rate."""
    adwin_rate = fa["adwin"][0] / fa["adwin"][1]
    equal = 1.0 / adwin_rate if adwin_rate > 0 else None
    delays: dict[str, list[float | None]] = {k: [] for k in ("rate", "cusum", "adwin", "rate@adwin")}
    for _ in range(args.trials):
        x = np.concatenate([rng.random(args.before) < p0, rng.random(20_000) < p1]).astype(float)
        found = {key: chart_alarms(lambda m=make: m(share), x, args.bucket) for key, make in makers.items()}
        found["adwin"] = adwin_alarms(x)
        if equal is not None:
            found["rate@adwin"] = chart_alarms(lambda: BucketRate(equal, args.warmup), x, args.bucket)
        for key, alarms in found.items():
            after = [a for a in alarms if a >= args.before]
            delays[key].append(after[0] - args.before + 1 if after else None)
    for key, values in delays.items():
        if key == "rate@adwin" and equal is None:
            continue
        count, n = fa.get(key, (0, 0))
        rate = f"{count / n * 1e6:8.3f}" if n else f"{'(arl0 ' + format(equal, '.3g') + ')':>20}"
        tail = f" {n:>11}" if n else ""
        print(f"{name:22} {key:10} {summarise(values)} {rate}{tail}", flush=True)


if __name__ == "__main__":
    main()

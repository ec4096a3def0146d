"""The daemon's start-up: `watchkeeper run` from exec to its first assignment, this tree against a base tree.

Many tests start the real daemon as a process, and every start pays the imports and the construction of the
chain (detector models, the secrets scanner, the topic embedder) before it consumes anything; on the two
cores CI has, that is CPU the rest of the suite waits for. This bench starts ``python -m monitor run`` on a
local tansu broker and a migrated SQLite database, ``--runs`` times per tree, alternating the trees so that
both see the same machine, and reads three moments from the daemon's own log:

* **built**: ``watchkeeper consuming`` (imports done, database checked, chain and consumer built);
* **ready**: ``partitions assigned`` (its first poll joined the group: what the tests wait for).

For each it prints wall seconds from exec and, at *ready*, the CPU seconds the process has used (user +
system, children included), best and median, and the ratio base / this tree. Each start uses a consumer
group of its own, so no start waits for an earlier member to leave. One untimed start per tree comes first:
it compiles the bytecode, fills the page cache and the caches a start writes (`detectors.toxicity.cache_dir`),
so that the timed starts are the ones a test suite or a restarting service sees.

    python bench/startup.py --base-tree DIR [--runs 5]

``--base-tree`` is a checkout of the commit to compare with (``git worktree add --detach /tmp/base main``);
without it only this tree is timed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.synthetic.broker import LocalBroker, create_topic  # noqa: E402 - after the path above
from tests.helpers import write_config  # noqa: E402

BUILT = "watchkeeper consuming"
READY = "partitions assigned"


@dataclass
class Start:
    """One start of the daemon: wall seconds from exec to built and to ready, CPU seconds at ready."""

    built_s: float
    ready_s: float
    cpu_s: float


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def start_once(tree: Path, work: Path, db_url: str, bootstrap: str, topic: str, timeout_s: float = 120) -> Start:
    """Start the daemon of ``tree``, wait until its log says it is ready, stop it with SIGTERM."""
    # The tests' config (one worker, a free ops port), with a fresh group per start.
    config = write_config(work / "monitor.toml", db_url=db_url, bootstrap=bootstrap, topic=topic,
                          group=f"wk-startup-{uuid.uuid4().hex[:8]}")
    log_path = work / "daemon.log"
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)], cwd=tree,
                                env=_env(tree), stdout=log, stderr=subprocess.STDOUT)
    watched = psutil.Process(proc.pid)
    built = None
    try:
        deadline = t0 + timeout_s
        while True:
            text = log_path.read_text(errors="replace")
            now = time.perf_counter()
            if built is None and BUILT in text:
                built = now - t0
            if READY in text:
                cpu = _cpu(watched)
                return Start(built if built is not None else now - t0, now - t0, cpu)
            if proc.poll() is not None or now > deadline:
                raise RuntimeError(f"the daemon of {tree} did not get ready (exit {proc.returncode}):\n"
                                   + text[-3000:])
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def migrate(tree: Path, db_url: str, work: Path) -> None:
    """The schema as ``tree`` defines it (`watchkeeper db upgrade` of that tree)."""
    config = work / "upgrade.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    subprocess.run([sys.executable, "-m", "monitor", "db", "upgrade", "--config", str(config)], cwd=tree,
                   env=_env(tree), check=True, capture_output=True)


def _summary(name: str, starts: list[Start]) -> dict[str, float]:
    figures = {
        "built_s": [s.built_s for s in starts],
        "ready_s": [s.ready_s for s in starts],
        "cpu_s": [s.cpu_s for s in starts],
    }
    line = f"{name:<14}"
    out: dict[str, float] = {}
    for key, values in figures.items():
        best, median = min(values), statistics.median(values)
        out[key] = median
        out[f"{key}_best"] = best
        line += f"  {key} best {best:6.2f} median {median:6.2f}"
    print(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-tree", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--runs", type=int, default=5, help="starts per tree (alternating)")
    args = parser.parse_args()

    trees = {"this tree": ROOT}
    if args.base_tree:
        trees["base tree"] = args.base_tree.resolve()
    with tempfile.TemporaryDirectory(prefix="wk-startup-") as tmp, LocalBroker() as broker:
        topic = f"startup-{uuid.uuid4().hex[:8]}"
        create_topic(broker.bootstrap_servers, topic, partitions=3)
        urls: dict[str, str] = {}
        for name, tree in trees.items():
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            urls[name] = f"sqlite:///{work / 'watchkeeper.db'}"
            migrate(tree, urls[name], work)
        for name, tree in trees.items():  # not timed: bytecode, the page cache, and the caches a start fills
            start_once(tree, Path(tmp) / name.replace(" ", "-"), urls[name], broker.bootstrap_servers, topic)
        results: dict[str, list[Start]] = {name: [] for name in trees}
        for run in range(args.runs):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                work = Path(tmp) / name.replace(" ", "-")
                results[name].append(start_once(trees[name], work, urls[name], broker.bootstrap_servers, topic))
                s = results[name][-1]
                print(f"  run {run + 1} {name}: built {s.built_s:5.2f} s, ready {s.ready_s:5.2f} s, "
                      f"cpu {s.cpu_s:5.2f} s", flush=True)
    print(f"\n`watchkeeper run` to first assignment, {args.runs} starts per tree (seconds):")
    summaries = {name: _summary(name, starts) for name, starts in results.items()}
    if "base tree" in summaries:
        this, base = summaries["this tree"], summaries["base tree"]
        print("base / this (medians): " + ", ".join(f"{key} {base[key] / this[key]:.2f}x"
                                                    for key in ("built_s", "ready_s", "cpu_s")))


if __name__ == "__main__":
    main()

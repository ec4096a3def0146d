"""Shadow replay against vLLM proper, on a GPU host: the in-process backend and/or the HTTP backend.

    python bench/replay_vllm.py --model /models/Qwen2.5-0.5B-Instruct            # in-process vllm.LLM
    python bench/replay_vllm.py --url http://127.0.0.1:8000 --model Qwen2.5-0.5B  # against `vllm serve`

For each backend: checks it, replays the same chat prompts at concurrency 1, 8 and 32 (vLLM batches, so
concurrency should buy throughput, unlike llama.cpp's serial server), prints prompts/s, p50/p95 latency, the
ratio to concurrency 1 in the same run, and whether the temperature-0 answers were identical across levels.
If vLLM is not installed (the in-process backend) or the server is unreachable, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.base import Backend, InferenceError, Prompt
from inference.budget import ReplayBudget
from inference.client import EndpointSettings, OpenAIBackend
from inference.inprocess import InProcessBackend, InProcessSettings

PROMPTS = [
    "What is the capital of France?", "How do I bake bread?", "Name three primary colours.",
    "What is 12 times 12?", "Give me a synonym for happy.", "Why is the sky blue?",
    "Translate 'good morning' into Spanish.", "What is a prime number?",
]


async def level(backend: Backend, concurrency: int, n: int) -> tuple[float, list[float], list[str]]:
    budget = ReplayBudget(per_minute=1e9, max_concurrent=concurrency, daily_cap=10**9)
    latencies: list[float] = []
    texts = [""] * n

    async def one(i: int) -> None:
        async with budget.slot():
            answer = await backend.answer(Prompt.chat(PROMPTS[i % len(PROMPTS)]))
        latencies.append(answer.latency_ms)
        texts[i] = answer.text

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started), sorted(latencies), texts


async def bench(backend: Backend, n: int) -> None:
    print(f"{backend.name} ({backend.model}):")
    await backend.check()
    await level(backend, 1, 2)  # warm up
    base, reference_texts = None, None
    for concurrency in (1, 8, 32):
        rate, lat, texts = await level(backend, concurrency, n)
        base = base or rate
        same = reference_texts is None or texts == reference_texts
        reference_texts = reference_texts or texts
        print(f"  concurrency {concurrency:2d}: {rate:7.2f} prompts/s ({rate / base:5.2f}x), p50 "
              f"{lat[len(lat) // 2]:7.0f} ms, p95 {lat[int(0.95 * (len(lat) - 1))]:7.0f} ms, "
              f"answers identical to concurrency 1: {same}")
    await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model path/name (in-process) or served name (--url)")
    parser.add_argument("--url", help="base URL of `vllm serve`; without it, the in-process backend is used")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    backend: Backend
    if args.url:
        backend = OpenAIBackend(EndpointSettings(url=args.url, model=args.model, max_tokens=args.max_tokens),
                                max_connections=64)
    else:
        backend = InProcessBackend(InProcessSettings(model=args.model, max_tokens=args.max_tokens))
    try:
        asyncio.run(bench(backend, args.prompts))
    except InferenceError as exc:
        print(f"cannot run against {backend.name}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

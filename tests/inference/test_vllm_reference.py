"""The HTTP backend against real vLLM: its OpenAI-compatible server running SmolLM2-135M on the CPU (one server
for the whole session, tests/inference/vllm_server.py). Unlike llama.cpp's server it has /health and /metrics
and batches concurrent requests; at temperature 0 with a seed its answers do not depend on what else it is
serving. The answers of a 135M model are poor; the plumbing, errors and metrics are vLLM's own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from inference.base import Answer, PermanentError, Prompt
from inference.client import EndpointSettings, OpenAIBackend
from inference.health import Scrape, interval, scrape
from tests.inference.vllm_server import MODEL_ALIAS, VllmServer

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(1200)]  # the first one waits for vLLM to start


def backend_for(url: str, **settings: Any) -> OpenAIBackend:
    return OpenAIBackend(EndpointSettings(url=url, model=settings.pop("model", MODEL_ALIAS),
                                          max_tokens=settings.pop("max_tokens", 24), **settings))


def ask_all(url: str, prompts: list[Prompt], *, concurrently: bool = False, **settings: Any) -> list[Answer]:
    async def go() -> list[Answer]:
        backend = backend_for(url, **settings)
        try:
            await backend.check()
            if concurrently:
                return list(await asyncio.gather(*(backend.answer(p) for p in prompts)))
            return [await backend.answer(p) for p in prompts]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_a_chat_prompt_gets_a_real_answer_from_vllm_with_token_counts(vllm_server: VllmServer) -> None:
    [answer] = ask_all(vllm_server.url, [Prompt.chat("What is the capital of France?")])
    assert answer.text.strip()
    assert answer.model == MODEL_ALIAS and answer.endpoint == vllm_server.url
    assert answer.tokens_in is not None and answer.tokens_in > 5
    assert answer.tokens_out is not None and 0 < answer.tokens_out <= 24
    assert answer.finish_reason in ("stop", "length") and answer.latency_ms > 0


def test_a_plain_prompt_is_continued_through_the_completions_api(vllm_server: VllmServer) -> None:
    [answer] = ask_all(vllm_server.url, [Prompt("The capital of France is")], max_tokens=8)
    assert answer.text.strip() and answer.tokens_out is not None and 0 < answer.tokens_out <= 8


def test_temperature_zero_with_a_seed_answers_the_same_when_asked_alone_again(vllm_server: VllmServer) -> None:
    """The same prompt asked alone twice, with seven others batched in between: the same words both times, so
    a replayed prompt's reference answer is reproducible. (Asked *inside* a busy batch it may differ after a
    few dozen tokens — seen in a local run of the suite: batch shapes change the order of float sums, vLLM does
    not promise batch invariance, and a near-tie between two words can then go the other way.)"""
    question = Prompt.chat("Name three primary colours.")
    [first] = ask_all(vllm_server.url, [question])
    others = [Prompt.chat(f"Count from {i} to {i + 5}.") for i in range(7)]
    batch = ask_all(vllm_server.url, [*others[:3], question, *others[3:]], concurrently=True)
    [again] = ask_all(vllm_server.url, [question])
    assert again.text == first.text
    assert batch[3].text and len({a.text for a in batch}) > 1


def test_a_model_the_server_does_not_serve_is_refused_at_check(vllm_server: VllmServer) -> None:
    async def go() -> None:
        backend = backend_for(vllm_server.url, model="gpt-9")
        try:
            await backend.check()
        finally:
            await backend.aclose()

    with pytest.raises(PermanentError, match="'gpt-9' is not served here"):
        asyncio.run(go())


def test_a_prompt_longer_than_the_context_is_a_permanent_rejection_not_a_retry(vllm_server: VllmServer) -> None:
    """vLLM answers 400 for a prompt over --max-model-len: the replayer stores it as rejected, once."""
    too_long = Prompt.chat("bread " * 5000)
    with pytest.raises(PermanentError, match="HTTP 400"):
        ask_all(vllm_server.url, [too_long])


def test_metrics_count_the_requests_just_served_and_the_queue_is_readable(vllm_server: VllmServer) -> None:
    """/metrics (Prometheus text) parsed by inference.health: between two scrapes, the e2e histogram counts
    exactly the requests sent, with finish reasons and generated tokens; the queue gauge is there."""

    async def look() -> Scrape:
        async with httpx.AsyncClient(base_url=vllm_server.url) as http:
            return await scrape(http)

    before = asyncio.run(look())
    assert before.up and {"running", "waiting", "kv_cache_usage"} <= before.gauges.keys()
    answers = ask_all(vllm_server.url, [Prompt.chat(f"Say hello to {n}.") for n in ("Ann", "Bo", "Cy")],
                      concurrently=True, max_tokens=8)
    after = asyncio.run(look())
    delta = interval(after, before)
    assert delta["e2e_n"] == 3
    assert delta["e2e_p95_s"] is not None and delta["e2e_p95_s"] > 0 and delta["ttft_p50_s"] is not None
    assert sum(delta["finished"].values()) == 3
    assert delta["generation_tokens"] == sum(a.tokens_out or 0 for a in answers)

    async def queue() -> float | None:
        backend = backend_for(vllm_server.url)
        try:
            return await backend.queue_length()
        finally:
            await backend.aclose()

    assert asyncio.run(queue()) == 0.0

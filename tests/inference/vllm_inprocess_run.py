"""Run `inference.inprocess.InProcessBackend` (``vllm.LLM`` in this process) for real; print one JSON line.

Runs under the vLLM env's python (tests/inference/vllm_server.py), not Watchkeeper's: vLLM cannot be installed
beside Watchkeeper's pins. ``python vllm_inprocess_run.py MODEL_DIR`` asks the same chat prompt three times
within a batch of others, one plain completion prompt and one prompt over the context, and prints what came
back. vLLM runs its engine in a spawned process, hence the ``__main__`` guard.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after the env's packages: only `inference` is ours

from inference.base import InferenceError, Prompt
from inference.inprocess import InProcessBackend, InProcessSettings


async def main(model: str) -> dict:
    backend = InProcessBackend(InProcessSettings(
        model=model, max_tokens=16, llm_kwargs={"max_model_len": 2048, "dtype": "bfloat16", "enforce_eager": True}))
    try:
        await backend.check()
        question = Prompt.chat("What is the capital of France?")
        prompts = [question, Prompt.chat("How do I bake bread?"), question, Prompt("The capital of France is"),
                   question]
        answers = await asyncio.gather(*(backend.answer(p) for p in prompts))
        try:
            await backend.answer(Prompt.chat("bread " * 5000))
            too_long = None
        except InferenceError as exc:
            too_long = f"{type(exc).__name__}: {str(exc)[:300]}"
        return {"answers": [{"text": a.text, "tokens_in": a.tokens_in, "tokens_out": a.tokens_out,
                             "finish_reason": a.finish_reason, "model": a.model, "endpoint": a.endpoint,
                             "latency_ms": a.latency_ms} for a in answers],
                "too_long": too_long}
    finally:
        await backend.aclose()


if __name__ == "__main__":
    print("RESULT " + json.dumps(asyncio.run(main(sys.argv[1]))), flush=True)

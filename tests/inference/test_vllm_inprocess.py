"""The in-process backend (``[shadow.references] backend = "inprocess"``: ``vllm.LLM`` inside the daemon) run
for real: the vLLM CPU env's python runs tests/inference/vllm_inprocess_run.py, which drives
`inference.inprocess.InProcessBackend` as the replay worker would (concurrent answers, gathered into batches)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.inference.vllm_server import VllmEnv, vllm_environ

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SCRIPT = Path(__file__).with_name("vllm_inprocess_run.py")


@pytest.mark.timeout(900)
def test_vllm_in_process_answers_concurrent_prompts_in_batches_and_rejects_an_overlong_one(
        vllm_env: VllmEnv) -> None:
    done = subprocess.run([str(vllm_env.python), str(SCRIPT), str(vllm_env.model)], capture_output=True,
                          text=True, timeout=840, env=vllm_environ(), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}: {done.stderr[-3000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    first, bread, again, plain, third = result["answers"]
    assert first["text"].strip() and first["text"] == again["text"] == third["text"]  # temperature 0, seed 0
    assert bread["text"] != first["text"]
    for answer in result["answers"]:
        assert 0 < answer["tokens_out"] <= 16 and answer["tokens_in"] > 3
        assert answer["finish_reason"] in ("stop", "length") and answer["endpoint"] == "in-process"
    assert plain["tokens_in"] < first["tokens_in"]  # no chat template around the plain prompt
    assert result["too_long"] is not None and result["too_long"].startswith(("PermanentError", "TransientError"))

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


def launch_inprocess(env: VllmEnv, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the in-process run in the vLLM env's python (output, stdout and stderr, to ``out``)."""
    with open(out, "wb") as sink:
        proc = subprocess.Popen([str(env.python), str(SCRIPT), str(env.model)], stdout=sink,
                                stderr=subprocess.STDOUT, env=vllm_environ())
    return proc, out


@pytest.mark.timeout(1200)
def test_vllm_in_process_answers_concurrent_prompts_in_batches_and_rejects_an_overlong_one(
        vllm_env: VllmEnv, tmp_path: Path) -> None:
    from tests.conftest import _early

    proc, out = _early.pop("inprocess", None) or launch_inprocess(vllm_env, tmp_path / "inprocess.out")
    try:
        code = proc.wait(timeout=1140)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    output = out.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert code == 0 and lines, f"exit {code}: {output[-3000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    first, bread, again, plain, third = result["answers"]
    assert first["text"].strip() and first["text"] == again["text"] == third["text"]  # temperature 0, seed 0
    assert bread["text"] != first["text"]
    for answer in result["answers"]:
        assert 0 < answer["tokens_out"] <= 16 and answer["tokens_in"] > 3
        assert answer["finish_reason"] in ("stop", "length") and answer["endpoint"] == "in-process"
    assert plain["tokens_in"] < first["tokens_in"]  # no chat template around the plain prompt
    assert result["too_long"] is not None and result["too_long"].startswith(("PermanentError", "TransientError"))

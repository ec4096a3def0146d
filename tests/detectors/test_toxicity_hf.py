"""The ``hf-pipeline`` toxicity route, for real: a tiny BERT classifier and its tokenizer are built and trained
here (no hub, no download), saved to a directory, and loaded by `HuggingFaceBackend` exactly as a deployment's
``[detectors.toxicity] backend = "hf-pipeline"`` with ``model_path`` loads its own fine-tune.

transformers and torch are optional (``pip install transformers torch``) and Watchkeeper's test env has neither.
Where they are missing, the last test runs this same file in the vLLM test env (tests/inference/vllm_server.py),
which has both (CPU torch, transformers 5), with Watchkeeper's own packages behind that env's: so CI runs the
route for real instead of skipping it, and fails as loudly as the real-vLLM tests when that env is missing.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from detectors.toxicity import HuggingFaceBackend

try:
    import tokenizers  # noqa: F401
    import torch
    import transformers  # noqa: F401
except ImportError:
    torch = None

ROOT = Path(__file__).resolve().parents[2]
needs_torch = pytest.mark.skipif(torch is None, reason="no torch here: run in the vLLM test env by "
                                 "test_the_hf_route_runs_for_real_in_the_env_that_has_torch")

TOXIC = ["you stupid idiot", "shut up you moron", "you are a worthless loser", "idiot moron loser"]
KIND = ["have a nice day", "thanks for the help", "the build passed today", "see you at lunch"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT (hidden size 16) that learnt TOXIC from KIND in a few dozen steps, saved with a word-level
    tokenizer; its labels are named as toxic-bert's are (``non-toxic`` / ``toxic``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = sorted({w for text in TOXIC + KIND for w in text.split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2,
                        id2label={0: "non-toxic", 1: "toxic"}, label2id={"non-toxic": 0, "toxic": 1})
    model = BertForSequenceClassification(config)
    batch = tokenizer(TOXIC + KIND, padding=True, return_tensors="pt")
    labels = torch.tensor([1] * len(TOXIC) + [0] * len(KIND))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    out = tmp_path_factory.mktemp("toxic-bert-tiny")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@needs_torch
def test_the_backend_gives_the_local_models_own_toxic_probability(model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["you stupid moron", "thanks, have a nice day", "idiot", "the build passed"]
    scores = HuggingFaceBackend(str(model_dir), batch_size=2).predict(texts)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    expected = torch.softmax(logits, dim=-1)[:, 1].numpy()
    assert np.allclose(scores, expected, atol=1e-5)
    assert scores[0] > 0.5 > scores[1] and scores[2] > 0.5 > scores[3]


@needs_torch
def test_the_chain_configured_for_hf_pipeline_flags_with_the_local_model(model_dir: Path) -> None:
    config = DetectorsConfig.model_validate({"toxicity": {"backend": "hf-pipeline", "model_path": str(model_dir),
                                                          "batch_size": 8}})
    chain = DetectorChain.from_config(config)
    answers = ["you worthless idiot", "see you at lunch", ""]
    records = [SimpleNamespace(id=str(i), prompt="hello", response=text, status="ok", tokens_out=None,
                               finish_reason="stop") for i, text in enumerate(answers)]
    flags = [{d.detector: d for d in a.detections}["toxicity"] for a in chain.run(records)]
    assert [d.flagged for d in flags] == [True, False, False]
    assert flags[2].score == 0.0  # an empty answer is not sent to the model


@needs_torch
def test_a_long_text_is_truncated_to_the_models_positions_not_an_error(model_dir: Path) -> None:
    [score] = HuggingFaceBackend(str(model_dir), max_length=32).predict(["idiot " * 500])
    assert 0.0 <= score <= 1.0


@pytest.mark.skipif(torch is not None, reason="torch is installed here: the tests above ran in this env")
def test_the_hf_route_runs_for_real_in_the_env_that_has_torch(vllm_env) -> None:  # type: ignore[no-untyped-def]
    """The three tests above, run by the vLLM env's python: its torch and transformers first on the path, then
    Watchkeeper's own site-packages for everything else (one interpreter version, so the same compiled wheels)."""
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    code = (f"import sys; sys.path.extend({ours!r}); import pytest; "
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:xdist', "
            f"'-k', 'not env_that_has_torch', {str(Path(__file__))!r}]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([str(vllm_env.python), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "3 passed" in out and "skipped" not in out, out[-3000:]

"""The synthetic traffic generator: realistic, reproducible, and honest about its ground truth.

Detectors, drift jobs and alert rules are all scored against this generator's `Truth`, so these tests
check that the traffic looks like what the spec promises and that every incident changes exactly what it
claims, inside its window and nowhere else.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from monitor.ingest.record import Record, RecordError, decode
from monitor.synthetic import corpus
from monitor.synthetic.generator import (
    DEFAULT_MODELS,
    MALFORMED_REASONS,
    Generated,
    Incident,
    TrafficGenerator,
    parse_incident,
    write_jsonl,
)

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def generate(n: int, seed: int = 11, **kwargs) -> list[Generated]:  # type: ignore[no-untyped-def]
    return list(TrafficGenerator(seed=seed, start=START, **kwargs).generate(n))


@pytest.fixture(scope="module")
def baseline() -> list[tuple[Generated, Record]]:
    """20k records of normal traffic, decoded."""
    return [(g, decode(g.value)) for g in generate(20_000)]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    a, b, c = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)
    assert [g.value for g in a] == [g.value for g in b]
    assert [g.truth for g in a] == [g.truth for g in b]
    assert sum(x.value != y.value for x, y in zip(a, c, strict=True)) == 500


def test_generating_in_chunks_continues_the_same_stream() -> None:
    gen = TrafficGenerator(seed=5, start=START)
    chunked = list(gen.generate(150)) + list(gen.generate(250))
    assert [g.value for g in chunked] == [g.value for g in generate(400, seed=5)]
    assert [g.truth.index for g in chunked] == list(range(400))


def test_normal_traffic_decodes_and_agrees_with_its_truth(baseline) -> None:  # type: ignore[no-untyped-def]
    for item, record in baseline:
        assert not item.truth.is_malformed
        assert (record.id, record.model, record.app) == (item.truth.id, item.truth.model, item.truth.app)
        assert len(record.response) == item.truth.response_chars
        assert record.latency_ms == item.truth.latency_ms
        assert record.feedback_score == item.truth.feedback
        assert record.status == item.truth.status
        assert item.key == record.session.encode()  # type: ignore[union-attr]
    ids = [r.id for _, r in baseline]
    assert len(set(ids)) == len(ids)
    # Event time advances by about 1/rate (50/s by default), whatever the mix of ts formats.
    stamps = [r.ts for _, r in baseline]
    assert stamps == sorted(stamps)
    assert (stamps[-1] - stamps[0]).total_seconds() == pytest.approx(len(stamps) / 50.0, rel=0.05)
    raw_ts = Counter(type(orjson.loads(g.value)["ts"]).__name__ for g, _ in baseline)
    assert raw_ts["int"] > 0.3 * len(baseline) and raw_ts["str"] > 0.5 * len(baseline)


def test_traffic_looks_like_a_real_llm_deployment(baseline) -> None:  # type: ignore[no-untyped-def]
    answers = [r for g, r in baseline if r.status == "ok" and not g.truth.refusal]
    lengths = np.array([len(r.response) for r in answers])
    assert 850 < lengths.mean() < 1200
    assert ((lengths >= 500) & (lengths <= 2100)).mean() > 0.85
    prompts = np.array([len(r.prompt) for _, r in baseline])
    assert prompts.mean() < 0.4 * lengths.mean()
    # Token counts are about a quarter of the characters.
    ratio = np.array([r.tokens_out / len(r.response) for r in answers])
    assert 0.23 < np.median(ratio) < 0.27

    models = Counter(r.model for _, r in baseline)
    apps = Counter(r.app for _, r in baseline)
    assert models.most_common()[0][1] > 2 * models.most_common()[-1][1]  # uneven shares
    assert set(apps) == {"support-bot", "code-assistant", "travel-planner", "search-summary"}
    assert len({g.truth.topic for g, _ in baseline}) == len(corpus.TOPICS)
    chat = sum(r.messages is not None for _, r in baseline)
    assert 0.3 < chat / len(baseline) < 0.9
    assert len({r.user for _, r in baseline}) > 500
    assert len({r.session for _, r in baseline}) > len({r.user for _, r in baseline})

    # Base rates: a few errors with a message, refusals, truncations, feedback on about 10%.
    errors = [r for _, r in baseline if r.status == "error"]
    assert 0.002 < len(errors) / len(baseline) < 0.01 and all(r.error for r in errors)
    refusals = [r for g, r in baseline if g.truth.refusal]
    assert 0.008 < len(refusals) / len(baseline) < 0.025
    assert any(r.response == "I'm sorry, but I can't help with that." for r in refusals)
    assert Counter(r.finish_reason for _, r in baseline)["length"] > 0.01 * len(baseline)
    rated = [(g, r) for g, r in baseline if r.feedback_score is not None]
    assert 0.08 < len(rated) / len(baseline) < 0.12
    up_good = statistics.mean(r.feedback_score for g, r in rated if not (g.truth.toxic or g.truth.refusal))
    up_bad = statistics.mean(r.feedback_score for g, r in rated if g.truth.toxic or g.truth.refusal)
    assert up_good > up_bad + 0.4
    # Unknown fields travel into metadata.
    assert sum("region" in r.metadata for _, r in baseline) > 0.03 * len(baseline)


def test_latency_grows_with_the_answer_and_differs_by_model(baseline) -> None:  # type: ignore[no-untyped-def]
    for model in DEFAULT_MODELS:
        rows = [r for _, r in baseline if r.model == model.name and r.status == "ok"]
        corr = np.corrcoef([r.tokens_out for r in rows], [r.latency_ms for r in rows])[0, 1]
        assert corr > 0.4, model.name
    median = {m.name: np.median([r.latency_ms for _, r in baseline if r.model == m.name]) for m in DEFAULT_MODELS}
    assert median["llama-3.1-8b-instruct"] > 1.5 * median["claude-haiku"]


def test_base_traffic_has_rare_toxic_answers_a_real_classifier_recognises(baseline) -> None:  # type: ignore[no-untyped-def]
    from profanity_check import predict_prob

    toxic = [r.response for g, r in baseline if g.truth.toxic]
    clean = [r.response for g, r in baseline if not g.truth.toxic and r.status == "ok"][:6000]
    assert 0.005 < len(toxic) / len(baseline) < 0.02
    assert predict_prob(toxic).min() > 0.9
    assert (predict_prob(clean) > 0.5).mean() < 0.005


def test_hard_negatives_are_sprinkled_in_and_are_really_negatives(baseline) -> None:  # type: ignore[no-untyped-def]
    seen = Counter(k for g, _ in baseline for k in g.truth.hard_negatives)
    assert set(seen) == set(corpus.HARD_NEGATIVES)
    for g, r in baseline:
        if "non_luhn_16_digits" in g.truth.hard_negatives:
            number = re.search(r"\b\d{16}\b", r.response)
            assert number and not corpus.luhn_ok(number.group())
        if "env_password_code" in g.truth.hard_negatives:
            assert 'password = os.environ["DB_PASSWORD"]' in r.response
            assert not g.truth.secrets
        if "kill_process" in g.truth.hard_negatives:
            assert "kill the process" in r.response and not g.truth.toxic
    # Baseline traffic does carry some honest PII in prompts (users paste their e-mail), tracked in truth.
    with_email = [r for g, r in baseline if "email" in g.truth.pii_prompt]
    assert with_email and all(re.search(r"[\w.]+@[\w-]+\.\w+", r.prompt) for r in with_email)
    assert not any(g.truth.secrets_response for g, _ in baseline)


def test_malformed_messages_fail_decoding_for_the_reason_in_their_truth() -> None:
    items = generate(6000, seed=1, malformed_share=0.1)
    bad = [g for g in items if g.truth.is_malformed]
    share, sd = len(bad) / len(items), (0.1 * 0.9 / len(items)) ** 0.5
    assert abs(share - 0.1) < 4 * sd
    assert Counter(g.truth.malformed_reason for g in bad).keys() == set(MALFORMED_REASONS)
    expected = {  # what the decoder says, by generator reason
        "invalid_json": "not valid UTF-8 JSON", "truncated_json": "not valid UTF-8 JSON",
        "non_utf8": "not valid UTF-8 JSON", "missing_id": "'id'", "missing_model": "'model'",
        "wrong_type": "must be|is not an RFC 3339", "json_array": "must be a JSON object", "null_value": "null value",
    }
    for g in bad:
        with pytest.raises(RecordError, match=expected[g.truth.malformed_reason]):
            decode(g.value)
        if g.value is None:
            assert g.key is not None  # Kafka needs a key or a value
    for g in items:
        if not g.truth.is_malformed:
            decode(g.value)


# --- incidents -------------------------------------------------------------------------------------------

WINDOW = (4000, 8000)


def _split(items: list[Generated], **match: str) -> tuple[list[Generated], list[Generated]]:
    """(inside the window, outside it), among well-formed records matching ``match`` truth fields."""
    keep = [g for g in items if all(getattr(g.truth, k) == v for k, v in match.items())]
    inside = [g for g in keep if WINDOW[0] <= g.truth.index < WINDOW[1]]
    outside = [g for g in keep if not WINDOW[0] <= g.truth.index < WINDOW[1]]
    return inside, outside


def _incident(kind: str, magnitude: float, **kwargs: str) -> Incident:
    return Incident(kind, start=WINDOW[0], duration=WINDOW[1] - WINDOW[0], magnitude=magnitude, **kwargs)


def test_an_incident_changes_nothing_outside_its_window_and_filter() -> None:
    plain = generate(12_000)
    shifted = generate(12_000, incidents=[_incident("response_length_shift", 2.0, model="claude-haiku")])
    changed = 0
    for a, b in zip(plain, shifted, strict=True):
        affected = WINDOW[0] <= a.truth.index < WINDOW[1] and a.truth.model == "claude-haiku"
        assert b.truth.incidents == (("response_length_shift",) if affected else ())
        if not affected:
            assert a.value == b.value
        elif b.truth.status == "ok" and not b.truth.refusal:  # a refusal is a refusal at any length
            assert b.truth.response_chars > a.truth.response_chars
            changed += 1
    assert changed > 400


def test_response_length_shift_moves_the_mean_by_magnitude_times_std() -> None:
    items = generate(12_000, incidents=[_incident("response_length_shift", 1.5, model="gpt-4o-mini-2024-07")])

    def chars(gs: list[Generated]) -> np.ndarray:
        return np.array([g.truth.response_chars for g in gs
                         if g.truth.status == "ok" and not g.truth.refusal and not g.truth.truncated])

    inside, outside = (chars(x) for x in _split(items, model="gpt-4o-mini-2024-07"))
    shift_in_stds = (inside.mean() - outside.mean()) / outside.std()
    assert shift_in_stds == pytest.approx(1.5, abs=0.2)
    other_in, other_out = (chars(x) for x in _split(items, model="claude-haiku"))
    assert abs(other_in.mean() - other_out.mean()) < 0.15 * other_out.std()


def test_latency_shift_multiplies_latency() -> None:
    items = generate(12_000, incidents=[_incident("latency_shift", 1.0, app="support-bot")])
    inside, outside = _split(items, app="support-bot")
    ratio = np.median([g.truth.latency_ms for g in inside]) / np.median([g.truth.latency_ms for g in outside])
    assert ratio == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize(("kind", "magnitude", "hit"), [
    ("toxic_burst", 0.3, lambda t: t.toxic),
    ("refusal_spike", 0.25, lambda t: t.refusal),
    ("error_spike", 0.2, lambda t: t.status == "error"),
    ("topic_shift", 0.5, lambda t: t.topic in corpus.SHIFT_TOPICS),
])
def test_rate_incidents_set_the_new_rate_in_their_window(kind, magnitude, hit) -> None:  # type: ignore[no-untyped-def]
    items = generate(12_000, incidents=[_incident(kind, magnitude, model="llama-3.1-8b-instruct")])
    inside, outside = _split(items, model="llama-3.1-8b-instruct")
    rate_in = statistics.mean(bool(hit(g.truth)) for g in inside)
    rate_out = statistics.mean(bool(hit(g.truth)) for g in outside)
    assert rate_in == pytest.approx(magnitude, abs=0.05)
    assert rate_out < 0.03
    assert all(kind in g.truth.incidents for g in inside)


def test_feedback_drop_turns_thumbs_down() -> None:
    items = generate(20_000, incidents=[_incident("feedback_drop", 0.6)])
    inside, outside = _split(items)
    up_in = statistics.mean(g.truth.feedback for g in inside if g.truth.feedback is not None)
    up_out = statistics.mean(g.truth.feedback for g in outside if g.truth.feedback is not None)
    assert up_in == pytest.approx(up_out * 0.4, abs=0.07)


def test_pii_leak_puts_valid_personal_data_in_answers() -> None:
    items = generate(12_000, incidents=[_incident("pii_leak", 0.5, app="support-bot")])
    inside, outside = _split(items, app="support-bot")
    answers = [g for g in inside if g.truth.status == "ok" and not g.truth.refusal]
    leaking = [g for g in answers if g.truth.pii_response - g.truth.pii_prompt]
    assert len(leaking) / len(answers) == pytest.approx(0.5, abs=0.05)
    assert not any(g.truth.pii_response - g.truth.pii_prompt for g in outside)
    kinds = Counter(k for g in leaking for k in g.truth.pii_response)
    assert set(kinds) == set(corpus.PII_MAKERS)
    for g in leaking:
        text = decode(g.value).response
        if "credit_card" in g.truth.pii_response:
            cards = [re.sub(r"[ -]", "", m) for m in re.findall(r"\b(?:\d[ -]?){14,15}\d\b", text)]
            assert any(corpus.luhn_ok(c) for c in cards), text
        if "iban" in g.truth.pii_response:
            ibans = re.findall(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){4}(?: ?[A-Z0-9]{2,4})?\b", text)
            assert any(corpus.iban_ok(i.replace(" ", "")) for i in ibans), text
        if "ssn" in g.truth.pii_response:
            area = re.search(r"\b(\d{3})-\d{2}-\d{4}\b", text)
            assert area and area.group(1) not in ("000", "666") and area.group(1)[0] != "9"
        if "email" in g.truth.pii_response:
            assert re.search(r"[\w.]+@[\w-]+\.\w+", text)


def test_secret_leak_puts_credentials_a_real_scanner_finds_in_answers() -> None:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins = [cls() for cls in get_mapping_from_secret_type_to_class().values()]

    def scanner_finds(text: str) -> bool:
        return any(p.analyze_line(filename="answer.txt", line=line, line_number=n)
                   for n, line in enumerate(text.splitlines(), 1) for p in plugins)

    items = generate(12_000, incidents=[_incident("secret_leak", 1.0, app="code-assistant")])
    inside, outside = _split(items, app="code-assistant")
    answers = [g for g in inside if g.truth.status == "ok" and not g.truth.refusal]
    assert all(g.truth.secrets_response for g in answers)
    assert {k for g in answers for k in g.truth.secrets_response} == set(corpus.SECRET_KINDS)
    assert not any(g.truth.secrets_response for g in outside)
    scanned = [g for g in answers if not g.truth.secrets_response & {"password"}][:300]
    found = [scanner_finds(decode(g.value).response) for g in scanned]
    assert all(found)


# --- helpers ---------------------------------------------------------------------------------------------


def test_incident_specs_from_the_command_line() -> None:
    assert parse_incident("toxic_burst@5000+2000:magnitude=0.3,model=llama-3.1-8b-instruct") == Incident(
        "toxic_burst", 5000, 2000, model="llama-3.1-8b-instruct", magnitude=0.3)
    assert parse_incident("error_spike@0+10") == Incident("error_spike", 0, 10)
    assert parse_incident("pii_leak@1+2:app=support-bot").app == "support-bot"
    for bad in ("toxic_burst", "toxic_burst@5000", "toxic_burst@x+1", "toxic_burst@1+1:color=red",
                "meteor_strike@1+1", "toxic_burst@1+0", "toxic_burst@1+1:magnitude=lots"):
        with pytest.raises(ValueError):
            parse_incident(bad)


def test_write_jsonl_writes_one_message_per_line_with_truth_alongside(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items = generate(300, malformed_share=0.2)
    n = write_jsonl(tmp_path / "traffic.jsonl", items, truth_path=tmp_path / "truth.jsonl")
    lines = (tmp_path / "traffic.jsonl").read_bytes().split(b"\n")
    assert n == 300 and lines[-1] == b"" and lines[:-1] == [g.value or b"" for g in items]
    truths = [orjson.loads(line) for line in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert [t["index"] for t in truths] == list(range(300))
    assert [t["is_malformed"] for t in truths] == [g.truth.is_malformed for g in items]

"""Property tests: whatever bytes arrive, decode and the steps never raise — every message ends stored or
dead-lettered. Hypothesis generates the messages: arbitrary bytes, arbitrary JSON, and records whose every
field may hold any JSON value (most of them valid, so the steps see odd but accepted records)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.ingest.batch import RawMessage
from monitor.ingest.chain import build_steps
from monitor.ingest.pipeline import Pipeline, decode_messages
from monitor.ingest.record import RecordError, decode
from monitor.ingest.steps import Step
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, metadata, records
from monitor.storage.store import Store, text_policy
from monitor.synthetic.poison import TYPED_FIELDS

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
timestamps = (st.integers(min_value=-10, max_value=40_000_000_000_000) | st.floats(allow_nan=False)
              | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=30))
valid_ish = {
    "id": st.text(min_size=1, max_size=30), "ts": timestamps, "model": st.text(max_size=20),
    "prompt": st.text(max_size=200), "response": st.text(max_size=200),
    "latency_ms": st.floats(allow_nan=False, min_value=-1) | st.integers(min_value=-1, max_value=2**70),
    "tokens_in": st.integers(min_value=-1, max_value=2**40), "tokens_out": st.integers(min_value=-1, max_value=2**40),
    "status": st.sampled_from(["ok", "error", "", "weird"]), "app": st.text(max_size=10),
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                "content": st.text(max_size=50)}), max_size=3),
    "feedback": st.fixed_dictionaries({"score": st.floats(allow_nan=False) | st.integers(),
                                       "comment": st.text(max_size=20)}),
    "metadata": st.dictionaries(st.text(max_size=8), json_values, max_size=5),
}


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """A record whose fields are each absent, plausible, or any JSON value at all."""
    obj = {}
    for name in TYPED_FIELDS:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue
        obj[name] = draw(json_values) if choice == 1 else draw(valid_ish.get(name, json_values))
    obj.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3)))
    return json.dumps(obj).encode()  # stdlib: writes huge integers and lone surrogates (as escapes) too


messages = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | record_like()


@given(messages)
@settings(max_examples=400, deadline=None)
def test_decode_accepts_or_rejects_with_a_reason_and_never_raises_anything_else(raw: bytes) -> None:
    try:
        record = decode(raw)
    except RecordError as exc:
        assert str(exc)
    else:
        assert record.id and record.ts.tzinfo is not None


@pytest.fixture(scope="module")
def chain_engine(tmp_path_factory) -> Iterator[tuple[Engine, list[Step]]]:  # type: ignore[no-untyped-def]
    """A SQLite database and the default chain's steps on it (built once: loading the models takes seconds)."""
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    engine = make_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    yield engine, build_steps(Config(), engine)
    engine.dispose()


class _Log:
    """Hands the pipeline one list of messages, then nothing."""

    def __init__(self, batch: list[RawMessage]) -> None:
        self.batch = batch

    def poll(self, max_records: int, timeout_ms: int) -> list[RawMessage]:
        out, self.batch = self.batch, []
        return out

    def mark_durable(self, next_offsets: dict[tuple[str, int], int]) -> None:
        return None

    def commit(self, only: set[tuple[str, int]] | None = None) -> bool:
        return True

    def positions(self, skip: object = ()) -> dict[tuple[str, int], int]:
        return {}  # every partition of this log is read from its first message on

    def highwater(self, topic: str, partition: int) -> int | None:
        return None

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None


_offset = iter(range(10**9))


@given(st.lists(messages, min_size=1, max_size=12))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_every_message_through_the_whole_chain_is_stored_or_dead_lettered(
        chain_engine: tuple[Engine, list[Step]], values: list[bytes]) -> None:
    """Decode, detect, aggregate, drift, sample and store on SQLite: no step raises on any accepted record
    (the only dead letters are decode's), and each message is a `records` row (by id) or a `dead_letters`
    row — none vanishes."""
    chain_engine, steps = chain_engine
    batch = [RawMessage("fuzz", 0, next(_offset), None, v) for v in values]
    pipeline = Pipeline(_Log(batch), steps, Store(chain_engine, text_policy("redacted")), group_id="fuzz")
    with chain_engine.connect() as conn:
        letters_before = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    pipeline.run_once(threading.Event())
    decoded = decode_messages(batch)
    with chain_engine.connect() as conn:
        letters = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() - letters_before
        stored = set(conn.scalars(select(records.c.id).where(records.c.id.in_([r.id for r in decoded.records]))))
    assert {r.id for r in decoded.records} <= stored
    assert letters == len(decoded.dead_letters)
    assert pipeline.counters.messages == len(values)

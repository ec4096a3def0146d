"""The credential formats the secrets detector knows, and what makes a value a placeholder instead.

Each `TokenFormat` is one vendor's documented token shape: the fixed opening the vendor puts on every token
(its *trigger*, looked for in one pass by `detectors.multimatch`), then a regex for the whole token, matched
only where a trigger is, and an optional check. The formats were read from the vendors' documentation and
public rule sets (detect-secrets' plugins among them) and written here as our own patterns, then checked
against gitleaks' rule fixtures (``bench/scanner_fixtures.py``); the tests in
``tests/detectors/test_credentials.py`` hold a real-format example and look-alikes for each.

A value that has a token's shape but is a placeholder — all one character (``ghp_xxxx…``), templated
(``<your-key>``, ``${TOKEN}``, ``{{ token }}``), sequential (``sk-1234567890abcdef…``), a documentation
example (``AKIAIOSFODNN7EXAMPLE``) — is not a finding: `placeholder` decides, for tokens and assigned values
alike. Documentation examples are printed by models whenever they explain a configuration, and each one
paging someone as a critical leak would teach them to ignore the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from detectors.multimatch import Trigger

# Values vendors publish in their documentation as examples: not credentials of anyone.
DOCUMENTED_EXAMPLES = frozenset({
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # AWS
    "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",  # AWS
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_BQokikJOvBiI2HlWgH4olfQ2",  # Stripe API reference
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",  # Slack
})

_TEMPLATE_MARKS = ("<", ">", "${", "{{", "}}", "%(", "...", "\u2026", "[", "]")
_PLACEHOLDER_WORD_LIST = (
    "example", "your", "placeholder", "changeme", "change_me", "replace", "redacted", "dummy", "sample", "fake",
    "insert", "xxxx", "***", "randomstring", "tokenhere", "keyhere", "secrethere", "stringhere", "valuehere")
# Any of the words, in any case. An ASCII value is lowered and searched for each word with `in` instead: a
# case-insensitive alternation is tried at every position (~250 µs on the body of a private key, ~50x more).
_PLACEHOLDER_WORDS = re.compile("(?i)" + "|".join(map(re.escape, _PLACEHOLDER_WORD_LIST)))
_HEX = frozenset("0123456789abcdefABCDEF")
_NEXT_BYTE = bytes((b + 1) % 256 for b in range(256))


def placeholder(value: str, body_from: int = 0) -> bool:
    """Whether ``value`` (a token from ``body_from`` on, after its fixed prefix) stands for a credential
    without being one: templated, one character repeated, few distinct characters, sequential, a placeholder
    word, or a documented example.

    >>> [placeholder(v, 4) for v in ("ghp_" + "x" * 36, "ghp_<your-token-here>", "ghp_wWPw5k4aXcaT4fNP0Ucn")]
    [True, True, False]
    >>> placeholder("AKIAIOSFODNN7EXAMPLE"), placeholder("sk-1234567890abcdefghijklmnop", 3)
    (True, True)
    """
    if value in DOCUMENTED_EXAMPLES:
        return True
    body = value[body_from:]
    if not body or any(mark in body for mark in _TEMPLATE_MARKS):
        return True
    ascii_only = body.isascii()
    if ascii_only:
        lowered = body.lower()
        if any(word in lowered for word in _PLACEHOLDER_WORD_LIST):
            return True
    elif _PLACEHOLDER_WORDS.search(body):
        return True
    distinct = len(set(body))
    if distinct <= 2 or (len(body) >= 12 and distinct < min(8, len(body) // 3)):
        return True  # "xxxxxxxx", "abababab", "0000-0000-0000"
    return len(body) >= 8 and _steps(body, ascii_only) >= 0.6 * (len(body) - 1)  # "1234567890abcdef", "abcdefgh"


def _steps(body: str, ascii_only: bool) -> int:
    """How many characters of ``body`` are the character before them plus one (``ab``, ``12``).

    An ASCII body is compared with itself shifted by one, as two integers, in a few C calls: a loop over a
    private key's 1,600 characters would cost ~150 µs.
    """
    if not ascii_only or len(body) < 2:
        return sum(1 for a, b in pairwise(body) if ord(b) - ord(a) == 1)
    raw = body.encode("ascii")
    # byte i of the XOR is 0 where raw[i] + 1 == raw[i + 1] (ASCII + 1 never wraps around)
    diff = int.from_bytes(raw[:-1].translate(_NEXT_BYTE), "little") ^ int.from_bytes(raw[1:], "little")
    return diff.to_bytes(len(raw) - 1, "little").count(0)


def mixed(value: str, need: int = 2) -> bool:
    """At least ``need`` of: lower case, upper case, digit — what a random token has and a word has not."""
    return (any(c.islower() for c in value) + any(c.isupper() for c in value)
            + any(c.isdigit() for c in value)) >= need


@dataclass(frozen=True, slots=True)
class TokenFormat:
    """One credential format.

    ``triggers`` are the literal openings (or, for formats without one, a regex in hyperscan's syntax) that
    every token of the format contains; ``pattern`` matches the token, tried at ``trigger start - back`` for
    each ``back`` in ``backs`` (the opening is usually the token's start: ``backs=(0,)``). When the pattern
    has a group named ``s``, the secret is that group (``AccountKey=<s>``), else the whole match. ``check``
    validates the secret beyond its shape (a checksum, a mix of character classes). ``body_from`` is where
    the random part starts, for `placeholder` (-1: after the last ``/``, for a URL).
    """

    kind: str
    triggers: tuple[str, ...]
    pattern: re.Pattern[str]
    backs: tuple[int, ...] = (0,)
    check: Callable[[str], bool] | None = None
    body_from: int = 0
    regex_trigger: bool = False
    """The triggers are regexes (no fixed opening: a Discord bot token): the pattern is searched in a window
    around the trigger's hit instead of matched at a fixed start."""

    def trigger_list(self) -> list[Trigger]:
        return [Trigger(t if self.regex_trigger else re.escape(t)) for t in self.triggers]


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_END = r"(?![A-Za-z0-9_-])"
_START = r"(?<![A-Za-z0-9_-])"
_GITLAB_PREFIX = re.compile(r"^(?:gl[a-z]+-|GR1348941)")
_GITLAB = ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glcbt-", "glimt-", "glptt-", "glagent-", "gloas-",
           "glffct-", "GR1348941")


def _slack_ok(value: str) -> bool:
    return mixed(value.rsplit("/", 1)[-1] if "hooks.slack.com" in value else value[5:], 2)


_PEM_LINE = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]+-----|[A-Za-z-]+: [^\n]*|\\n|\s")


def _pem_ok(value: str) -> bool:
    """A key block with a key in it: 24+ characters of base64 that look random, not an empty block or one
    word (``-----BEGIN PRIVATE KEY-----\\n<key>\\n-----END…``, ``…KEY-----\\nREDACTED\\n-----END…``)."""
    body = _PEM_LINE.sub("", value)
    return len(body) >= 24 and mixed(body) and not placeholder(body)


def _github_ok(value: str) -> bool:
    """Real GitHub tokens mix classes; the last six characters of a ``gh?_`` token are a CRC32 of the rest
    (base62), which we do not require (tokens in prose are often retyped), but a body must look random."""
    return mixed(value.split("_", 1)[-1], 2)


FORMATS: tuple[TokenFormat, ...] = (
    # cloud
    TokenFormat("AWS_KEY", ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
                _rx(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"), body_from=4),
    TokenFormat("GCP_API_KEY", ("AIza",), _rx(_START + r"AIza[0-9A-Za-z_-]{35}" + _END), body_from=4),
    # Gemini API keys of the newer kind (Google AI Studio): a fixed "AQ.Ab8RN6" opening, 44 more characters
    TokenFormat("GCP_API_KEY", ("AQ.Ab8RN6",), _rx(_START + r"AQ\.Ab8RN6[A-Za-z0-9_-]{44}" + _END), check=mixed,
                body_from=9),
    TokenFormat("GCP_OAUTH", ("GOCSPX-", "ya29."),
                _rx(_START + r"(?:GOCSPX-[A-Za-z0-9_-]{28}|ya29\.[A-Za-z0-9_-]{30,2048})" + _END),
                check=mixed, body_from=5),
    TokenFormat("AZURE_KEY", ("AccountKey=", "SharedAccessKey=", "sig="),
                _rx(r"(?:AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)|SharedAccessKey=(?P<s2>[A-Za-z0-9+/]{42,44}=?)"
                    r"|(?<=[?&])sig=(?P<s3>[A-Za-z0-9%+/]{30,120}(?:%3D|=){0,2}))")),
    # AI
    TokenFormat("ANTHROPIC_KEY", ("sk-ant-",), _rx(_START + r"sk-ant-[a-z]{2,6}\d{2}-[A-Za-z0-9_-]{32,200}" + _END),
                check=mixed, body_from=14),
    TokenFormat("OPENAI_KEY", ("sk-",),
                _rx(_START + r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,250}" + _END), body_from=3),
    TokenFormat("HUGGINGFACE_TOKEN", ("hf_", "api_org_"),
                _rx(_START + r"(?:hf_[A-Za-z0-9]{30,40}|api_org_[A-Za-z0-9]{30,40})" + _END),
                check=lambda v: mixed(v.split("_")[-1], 2), body_from=3),
    # code hosting
    TokenFormat("GITHUB_TOKEN", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
                _rx(_START + r"(?:gh[pousr]_[A-Za-z0-9_]{36,251}|github_pat_[A-Za-z0-9_]{60,240})" + _END),
                check=_github_ok, body_from=4),
    TokenFormat("GITLAB_TOKEN", _GITLAB,
                _rx(_START + r"(?:gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas|ffct)-|GR1348941)[A-Za-z0-9_-]{20,1024}"
                    + _END), check=lambda v: mixed(_GITLAB_PREFIX.sub("", v)), body_from=6),
    # a signed-in session (cookie), and the token in a project's incoming e-mail address (it opens issues)
    TokenFormat("GITLAB_TOKEN", ("_gitlab_session=", "incoming+"),
                _rx(r"_gitlab_session=(?P<s>[0-9a-z]{32})(?![A-Za-z0-9])"
                    r"|incoming\+[A-Za-z0-9._-]{1,200}?-(?P<s2>[a-z0-9]{25})-(?:issue|merge-request)\b"),
                check=lambda v: mixed(v)),
    TokenFormat("BITBUCKET_TOKEN", ("ATBB", "ATCTT3"),
                _rx(r"(?<![A-Za-z0-9])(?:ATBB|ATCTT3)[A-Za-z0-9_=.-]{24,400}" + _END), check=mixed, body_from=4),
    # Bitbucket Data Center / Server HTTP access tokens
    TokenFormat("BITBUCKET_TOKEN", ("BBDC-",), _rx(r"(?<![A-Za-z0-9])BBDC-[A-Za-z0-9+/=]{32,100}(?![A-Za-z0-9+/=])"),
                check=lambda v: mixed(v[5:]), body_from=5),
    TokenFormat("ATLASSIAN_TOKEN", ("ATATT3",), _rx(r"(?<![A-Za-z0-9])ATATT3[A-Za-z0-9_=.-]{100,400}" + _END),
                check=mixed, body_from=6),
    # chat
    TokenFormat("SLACK_TOKEN", ("xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxe.", "xapp-",
                                "xoxc-", "xoxd-", "hooks.slack.com/"),
                _rx(r"(?:" + _START + r"(?:xox[abposrec]-|xoxe\.xox[bp]-|xapp-)[A-Za-z0-9-]{20,250}" + _END
                    + r"|" + _START + r"xoxd-[A-Za-z0-9%/+_-]{60,400}={0,2}(?![A-Za-z0-9%/+=_-])"  # session cookie
                    + r"|(?:https?://)?hooks\.slack\.com/(?:services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"
                    r"|workflows/T[A-Za-z0-9_]+/A[A-Za-z0-9_]+/\d+/[A-Za-z0-9_]+"
                    r"|triggers/T[A-Za-z0-9_]+/\d+/[A-Za-z0-9_]+"
                    r"|(?:services|workflows|triggers)/[A-Za-z0-9+/_]{40,120}))"),
                backs=(8, 7, 0), check=_slack_ok, body_from=-1),
    TokenFormat("DISCORD_TOKEN", ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
                _rx(r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,80}"),
                backs=(8, 12, 15), body_from=40),
    TokenFormat("DISCORD_TOKEN", (r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.",),
                _rx(_START + r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}" + _END),
                check=mixed, regex_trigger=True),
    TokenFormat("TELEGRAM_TOKEN", (":AA",), _rx(r"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_-]{33}" + _END),
                backs=(8, 9, 10), check=lambda v: mixed(v.split(":")[1]), body_from=13),
    # payments
    TokenFormat("STRIPE_KEY", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk_prod_", "rk_prod_", "whsec_"),
                _rx(_START + r"(?:[sr]k_(?:live|test|prod)_[A-Za-z0-9]{20,247}|whsec_[A-Za-z0-9+/=]{32,100})" + _END),
                check=lambda v: mixed(v.rsplit("_", 1)[-1], 2), body_from=8),
    TokenFormat("SQUARE_TOKEN", ("sq0atp-", "sq0csp-", "EAAA"),
                _rx(_START + r"(?:sq0atp-[A-Za-z0-9_-]{22,60}|sq0csp-[A-Za-z0-9_-]{43}|EAAA[A-Za-z0-9_-]{60})" + _END),
                check=lambda v: mixed(v[4:]), body_from=7),
    TokenFormat("BRAINTREE_TOKEN", ("access_token$",),
                _rx(r"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}"), body_from=30),
    # mail and messaging
    TokenFormat("SENDGRID_KEY", ("SG.",), _rx(_START + r"SG\.(?:[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"
                                              r"|[A-Za-z0-9_=.-]{66})(?![A-Za-z0-9_=.-])"),
                check=lambda v: mixed(v[3:]), body_from=3),
    TokenFormat("MAILGUN_KEY", ("key-",), _rx(_START + r"key-[a-f0-9]{32}" + _END), body_from=4),
    TokenFormat("TWILIO_KEY", ("SK",), _rx(r"(?<![A-Za-z0-9])SK[a-f0-9]{32}(?![A-Za-z0-9])"), body_from=2),
    # package registries
    TokenFormat("NPM_TOKEN", ("npm_",), _rx(_START + r"npm_[A-Za-z0-9]{36}" + _END), check=mixed, body_from=4),
    TokenFormat("PYPI_TOKEN", ("pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"),
                _rx(r"pypi-Ag(?:EIcHlwaS5vcmc|ENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}"), body_from=20),
    TokenFormat("DOCKER_TOKEN", ("dckr_pat_", "dckr_oat_"), _rx(_START + r"dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,40}"
                                                              + _END), check=lambda v: mixed(v[9:], 2), body_from=9),
    # observability
    TokenFormat("GRAFANA_TOKEN", ("glsa_", "glc_"),
                _rx(_START + r"(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})" + _END),
                check=lambda v: mixed(v[5:]), body_from=5),
    # legacy Grafana API keys: base64 of '{"k":"…', so they open with "eyJrIjoi" (no dots: not a JWT)
    TokenFormat("GRAFANA_TOKEN", ("eyJrIjoi",), _rx(_START + r"eyJrIjoi[A-Za-z0-9+/]{40,380}={0,2}(?![A-Za-z0-9+/=.])"),
                check=lambda v: mixed(v[8:]), body_from=8),
    TokenFormat("NEWRELIC_KEY", ("NRAK-", "NRII-", "NRJS-", "NRAA-", "NRSP-"),
                _rx(_START + r"NR(?:AK|II|JS|AA|SP)-[A-Za-z0-9_-]{19,40}" + _END),
                check=lambda v: mixed(v[5:], 2), body_from=5),
    TokenFormat("SENTRY_TOKEN", ("sntrys_", "sntryu_"),
                _rx(_START + r"(?:sntrys_[A-Za-z0-9+/=_]{60,400}|sntryu_[a-f0-9]{64})" + _END), body_from=7),
    # keys and signed tokens
    TokenFormat("PRIVATE_KEY", ("-----BEGIN ",),
                _rx(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                    r"(?:[\s\S]{0,8192}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                    r"|(?:(?:\s|\\n)+[A-Za-z0-9+/=]{16,}){1,200})?"), check=_pem_ok),
    TokenFormat("JWT", ("eyJ",),
                _rx(_START + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,1024}" + _END)),
    TokenFormat("DATABASE_URL", ("postgres", "mysql", "mariadb", "mongodb", "redis", "amqp", "mssql", "sqlserver"),
                _rx(r"(?<![A-Za-z0-9])"
                    r"(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver)"
                    r"(?:\+[a-z0-9]+)?://[^\s:/@]{1,100}:(?P<s>[^\s@/]{1,200})@[A-Za-z0-9.-]"),
                check=lambda v: not v.startswith(("$", "%", "<", "{", "*")) and v.lower() not in
                ("password", "pass", "passwd", "pwd", "secret", "pw", "user", "mypassword", "yourpassword",
                 "hunter2")),  # the Internet's joke password, in documentation examples
)

# Context kinds: a provider's key has no fixed opening, only a recognisable shape near the provider's name.
# Each: kind, the words that name the provider (caseless), the key's shape (searched near the word).
CONTEXT_FORMATS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("AWS_SECRET_KEY", ("aws", "AKIA", "ASIA", "secret_access_key", "secretaccesskey"),
     _rx(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")),
    ("DATADOG_KEY", ("datadog_api_key", "datadog_app_key", "datadog api key", "dd_api_key", "dd_app_key",
                     "dd-api-key", "dd-application-key"),
     _rx(r"(?<![A-Za-z0-9])(?:[a-f0-9]{32}|[a-f0-9]{40})(?![A-Za-z0-9])")),
    ("COHERE_KEY", ("cohere", "co_api_key"), _rx(r"(?<![A-Za-z0-9_-])[A-Za-z0-9]{40}(?![A-Za-z0-9_-])")),
    ("MISTRAL_KEY", ("mistral",), _rx(r"(?<![A-Za-z0-9_-])[A-Za-z0-9]{32}(?![A-Za-z0-9_-])")),
    ("TWILIO_KEY", ("twilio_auth_token", "twilio auth token", "twilio_api_secret"),
     _rx(r"(?<![A-Za-z0-9])[a-f0-9]{32}(?![A-Za-z0-9])")),
)
NAMED_SHAPES: dict[str, re.Pattern[str]] = {
    **{kind: shape for kind, _, shape in CONTEXT_FORMATS},
    "SENTRY_TOKEN": _rx(r"[a-f0-9]{64}"),  # a legacy Sentry auth token
}
"""What a value assigned to a provider-named variable must look like to be reported as that provider's key
(``MISTRAL_TOKEN = "<32 characters>"``); another value is still a credential, reported as ``PASSWORD``."""
CONTEXT_WINDOW = 240
"""How far after (and before) a provider's name a context kind's key is looked for."""


def context_value_ok(kind: str, value: str) -> bool:
    """A context kind's candidate is a key, not a word run, a hash in a log or a placeholder."""
    if placeholder(value):
        return False
    if kind == "AWS_SECRET_KEY":
        return mixed(value, 3) and not set(value) <= _HEX
    if kind in ("COHERE_KEY", "MISTRAL_KEY"):
        return mixed(value)  # 32-40 random letters and digits; a key without a digit happens (~0.4%)
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def provider_of(name: str) -> str | None:
    """The kind an assignment's name says its value is (``COHERE_API_KEY = …``: ``COHERE_KEY``), if any."""
    lowered = name.lower()
    for kind, words, _ in CONTEXT_FORMATS:
        if any(w.lower() in lowered for w in words):
            return kind
    if "sentry" in lowered:
        return "SENTRY_TOKEN"
    if "azure" in lowered or "accountkey" in lowered:
        return "AZURE_KEY"
    return None


SECRET_KINDS = tuple(dict.fromkeys([*(f.kind for f in FORMATS), *(k for k, _, _ in CONTEXT_FORMATS), "PASSWORD"]))

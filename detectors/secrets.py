"""Credentials in prompts and responses (``secrets``): cloud and SaaS tokens, private keys, JWTs and
``password=``-style assignments.

A leaked secret in a *response* is the most severe finding Watchkeeper knows (severity ``critical``): the
model is handing a credential to whoever asked.

Candidates are found by our own patterns, which give the full span of a secret (what redaction needs), and
then confirmed by the matching `detect-secrets` plugin (its ``analyze_line``), so the definition of "an AWS
key", "a GitHub token", "a JWT" is the maintained library's. Kinds the library does not cover well (OpenAI
project keys, assignments outside source files) are validated here: an assignment only counts when its
value is a literal — not a function call, a variable, a type hint, a number or a placeholder. Texts without
any marker (``AKIA``, ``ghp_``, ``-----BEGIN``, ``password``…) skip the patterns entirely.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector

from detectors.base import Detection, Finding, Recordlike
from detectors.pii import findings_detection

SECRET_KINDS = ("AWS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN", "SLACK_TOKEN", "OPENAI_KEY",
                "PRIVATE_KEY", "JWT", "PASSWORD")

# Where an assignment can start: `_ASSIGNMENT` is tried only where one of these words occurs, and only in a
# text holding an assignment operator and (cheap `in` tests first) one of `_ANCHOR_WORDS`.
_ANCHORS = r"passw|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
_ANCHOR = re.compile(_ANCHORS)
_ANCHOR_ANY_CASE = re.compile(_ANCHORS, re.IGNORECASE)
_ANCHOR_WORDS = ("pass", "pwd", "secret", "token", "key")  # each anchor contains one
# Where a `_TOKENS` match can start: every token kind has a fixed prefix (``AKIA``, ``ghp_``, ``glpat-``,
# ``xoxb-``, ``sk-``, ``-----BEGIN``, ``eyJ``…) that holds a character rare in prose (A _ - G / J). Each
# entry: that character, a pattern that starts with it and checks the rest of the prefix (mostly
# backwards), and how far before the pattern's match the token can start. One alternation of the
# prefixes would start the regex engine at every e, s, g, h or x; a pattern starting with one literal
# character is scanned for at memchr-like speed, and skipped altogether when its character is absent.
_GITLAB = ("pat", "dt", "ft", "soat", "rt", "cbt", "imt", "ptt", "agent")
_MARKERS = (
    ("A", re.compile(r"A(?:KIA|SIA|BIA|CCA|3T)"), (0,)),
    ("_", re.compile(r"_(?:(?<=gh[pousr]_)|(?<=github_))"), (3, 6)),
    ("-", re.compile(r"-(?:" + "|".join(f"(?<=gl{p}-)" for p in _GITLAB) + r"|(?<=xox[abposr]-)|(?<=sk-)|----BEGIN)"),
     (0, 2, 4, *sorted({len(f"gl{p}") for p in _GITLAB} - {4}))),
    ("G", re.compile(r"GR1348941"), (0,)),
    ("/", re.compile(r"/services/T(?<=hooks\.slack\.com/services/T)"), (len("https://hooks.slack.com"),)),
    ("J", re.compile(r"J(?<=eyJ)"), (2,)),
)

_TOKENS = re.compile(
    r"(?P<AWS_KEY>(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9]))"
    r"|(?P<GITHUB_TOKEN>(?<![\w-])(?:gh[pousr]_[A-Za-z0-9_]{36,251}|github_pat_[A-Za-z0-9_]{60,240})(?![\w-]))"
    r"|(?P<GITLAB_TOKEN>(?<![\w-])(?:gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent)-|GR1348941)[A-Za-z0-9_-]{20,1024}"
    r"(?![\w-]))"
    r"|(?P<SLACK_TOKEN>(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,250}(?![\w-])"
    r"|https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+)"
    r"|(?P<OPENAI_KEY>(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,250}(?![\w-]))"
    r"|(?P<PRIVATE_KEY>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]{0,8192}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?)"
    r"|(?P<JWT>(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,1024}(?![\w-]))"
)

# Run case-sensitively on the lowered text (fast); `_ASSIGNMENT_ANY_CASE` when lowering changes the length.
_ASSIGNMENT_SOURCE = (
    r"(?:passw(?:or)?d|passphrase|pwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|token)[\w-]{0,20}"
    r"[\"']?[ \t]*(?<![=!<>])(?::=|=|:)(?!=)[ \t]*"
    r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\s]{4,200})(?P=q)|(?P<bare>[^\s\"'`,;()\[\]{}<>]{4,200})(?=[\s,;)}\]]|$))"
)
_ASSIGNMENT = re.compile(_ASSIGNMENT_SOURCE)
_ASSIGNMENT_ANY_CASE = re.compile(_ASSIGNMENT_SOURCE, re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:none|null|nil|true|false|undefined|changeme|secret|password|passwd|token|redacted|example"
    r"|\*+|x+|\.+|<.*>|\$.*|%.*|\{.*|.*\}|your[_-].*|my[_-].*|.*[_-]here|\[.*\]|.*\(.*)$"
)


def _plugin_confirms(plugin: BasePlugin) -> Callable[[str], bool]:
    return lambda value: bool(plugin.analyze_line(filename="record.txt", line=value, line_number=0))


_confirm: dict[str, Callable[[str], bool]] = {
    "AWS_KEY": _plugin_confirms(AWSKeyDetector()),
    "GITLAB_TOKEN": _plugin_confirms(GitLabTokenDetector()),
    "SLACK_TOKEN": _plugin_confirms(SlackDetector()),
    "PRIVATE_KEY": _plugin_confirms(PrivateKeyDetector()),
}
_github = _plugin_confirms(GitHubTokenDetector())
_openai = _plugin_confirms(OpenAIDetector())
_jwt = JwtTokenDetector()


def _github_ok(value: str) -> bool:
    return value.startswith("github_pat_") or _github(value)


def _openai_ok(value: str) -> bool:
    """detect-secrets knows legacy keys (with the ``T3BlbkFJ`` marker); project/service keys are longer and
    prefixed. A bare ``sk-`` word must look random: letters of both cases and digits."""
    if _openai(value) or (value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-")) and len(value) >= 40):
        return True
    body = value[3:]
    return len(body) >= 32 and any(c.isdigit() for c in body) and any(c.isupper() for c in body) \
        and any(c.islower() for c in body)


_confirm |= {"GITHUB_TOKEN": _github_ok, "OPENAI_KEY": _openai_ok, "JWT": _jwt.is_formally_valid}


def _literal_secret(value: str, quoted: bool) -> bool:
    """Whether an assigned value is a literal credential rather than code or a placeholder."""
    if _PLACEHOLDER.match(value) or value.isdigit():
        return False
    if quoted:
        return True
    if value.startswith(("/", "./", "~", "http:", "https:")) or value.replace(".", "").isdigit():
        return False  # a path (``pwd: /home/me``), a URL or a number (``max_tokens: 0.5``)
    # A variable (``password = user_password``, ``token = self.token``) has no digit or symbol.
    return any(not (c.isalpha() or c in "._") for c in value)


def _token_starts(text: str) -> list[int]:
    """Every position where a `_TOKENS` match can start, in order (a few more are harmless). Matching
    `_TOKENS` there only, skipping starts inside the previous match, finds what ``_TOKENS.finditer`` finds
    (~50x faster: that pattern has no prefix the regex engine could search for)."""
    starts: set[int] = set()
    for char, marker, backs in _MARKERS:
        if char in text:
            starts.update(m.start() - back for m in marker.finditer(text) for back in backs)
    return sorted(p for p in starts if p >= 0)


def scan_secrets(text: str, field: str) -> list[Finding]:
    """All confirmed credential spans in ``text``, in order of position.

    >>> text = 'export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE; password = input("Password: ")'
    >>> [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "response")]
    [('AWS_KEY', 'AKIAIOSFODNN7EXAMPLE')]
    """
    if not text:
        return []
    findings: list[Finding] = []
    end_of_last = -1
    for start in _token_starts(text):
        m = _TOKENS.match(text, start) if start >= end_of_last else None
        if m is not None:
            end_of_last = m.end()
            kind = m.lastgroup
            assert kind is not None
            if _confirm[kind](m[0]):
                findings.append(Finding(kind, field, m.start(), m.end()))
    if ":" not in text and "=" not in text:  # no assignment operator, no assignment
        return findings
    lowered = text.lower()
    if len(lowered) == len(text):
        if not any(word in lowered for word in _ANCHOR_WORDS):
            return findings
        anchor, pattern = _ANCHOR, _ASSIGNMENT
    else:  # lowering changed offsets (rare scripts): match the original text
        lowered, anchor, pattern = text, _ANCHOR_ANY_CASE, _ASSIGNMENT_ANY_CASE
    starts = [a.start() for a in anchor.finditer(lowered)]
    if starts:
        end_of_last = -1
        for i in starts:
            m = pattern.match(lowered, i)
            if m is None or m.start() < end_of_last:
                continue
            end_of_last = m.end()
            quoted = m["quoted"] is not None
            start, end = m.span("quoted" if quoted else "bare")
            value = text[start:end]
            if _literal_secret(value, quoted) and not any(f.start < end and start < f.end for f in findings):
                aws = "aws" in lowered[max(0, i - 8):i].lower() and len(value) == 40
                findings.append(Finding("AWS_SECRET_KEY" if aws else "PASSWORD", field, start, end))
        findings.sort(key=lambda f: f.start)
    return findings


class SecretsDetector:
    """Flags a record whose prompt or response holds a credential.

    Score: the number of findings. Details: the findings (kind, field, start, end — never the value), a
    count per kind, and a severity hint: ``critical`` when the response leaks a secret, else ``high``.

    >>> from types import SimpleNamespace as R
    >>> d = SecretsDetector().detect([R(prompt="hi", response="use ghp_" + "a1B2" * 9)])[0]
    >>> d.flagged, d.details["kinds"], d.details["severity"]
    (True, {'GITHUB_TOKEN': 1}, 'critical')
    """

    name = "secrets"

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        return [
            findings_detection(
                self.name,
                scan_secrets(r.prompt, "prompt") + scan_secrets(r.response, "response"),
                in_response="critical",
                otherwise="high",
            )
            for r in records
        ]

"""Credentials in prompts, responses and the other texts a record stores (``secrets``): cloud and SaaS
tokens, private keys, JWTs, ``password=``-style assignments and passwords stated in prose (``my password is
hunter2``).

A leaked secret in a *response* is the most severe finding Watchkeeper knows (severity ``critical``): the
model is handing a credential to whoever asked.

Candidates are found by our own patterns, which give the full span of a secret (what redaction needs), and
then confirmed by the matching `detect-secrets` plugin (its ``analyze_line``), so the definition of "an AWS
key", "a GitHub token", "a JWT" is the maintained library's. Kinds the library does not cover well (OpenAI
project keys, assignments outside source files) are validated here: an assignment only counts when its
value is a literal — not a function call, a variable, a type hint, a number or a placeholder. A password
stated in prose (``the password for the admin account is Tr0ub4dor&3``, ``passcode is 8812-ab``) only counts
when its value looks like one — a digit or a symbol in it, not a word (``the password is incorrect``), a
number (``is 8 characters long``), a hyphenated word (``is case-sensitive``) or a placeholder. Records
without any marker (``AKIA``, ``ghp_``, ``-----BEGIN``, ``password``…) skip the patterns entirely, and the
patterns start only where a marker is: the detector runs on every record, so its cost is mostly that of
ruling a record out (~4 µs for 1 KB of text, see ``bench/detector_quality.py``).

The record's error message, feedback comment and metadata are scanned too (they are stored with it). In a
metadata object, a string under a key that names a credential (``password``, ``api_key``, ``client_secret``,
``access_token``…) is itself a ``PASSWORD`` when it is a literal (`credential_values`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector

from detectors.base import Detection, Finding, MetadataPath, Recordlike
from detectors.pii import findings_detection, scan_record

SECRET_KINDS = ("AWS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN", "SLACK_TOKEN", "OPENAI_KEY",
                "PRIVATE_KEY", "JWT", "PASSWORD")

# Where an assignment can start: `_ASSIGNMENT` is tried only where one of these words occurs, and only in a
# text holding an assignment operator (":" or "="). `may_hold_secrets` looks for `_ANCHOR_WORDS` first.
_ANCHORS = r"passw|passphrase|passcode|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
_ANCHOR = re.compile(_ANCHORS)
_ANCHOR_ANY_CASE = re.compile(_ANCHORS, re.IGNORECASE)
_ANCHOR_WORDS = ("pass", "pwd", "secret", "token", "key")  # each anchor contains one
_MAX_WINDOWS = 8  # operators whose windows `_anchor_before_operator` looks at before it searches the whole text
# Each word, and how far before it an anchor holding it starts (``api_key``, ``accesskey``, ``private-key``…).
_ANCHOR_FINDS = (("pass", (0,)), ("pwd", (0,)), ("secret", (0,)), ("token", (0,)), ("key", (3, 4, 6, 7, 8)))
# Where a `_TOKENS` match can start: every token kind has a fixed prefix (``AKIA``, ``ghp_``, ``glpat-``,
# ``xoxb-``, ``sk-``, ``-----BEGIN``, ``eyJ``…) holding a character that is rare in prose (A _ - G / J).
# Each entry: that character, whether the prefix is at one of its occurrences, and how far before it the
# token may start. Occurrences are found with `str.find` (memchr); an alternation of the prefixes would make
# the regex engine stop at every e, s, g, h or x (~5x slower).
_GITLAB = ("pat", "dt", "ft", "soat", "rt", "cbt", "imt", "ptt", "agent")
_ENDS_WITH_UNDERSCORE = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_")
_ENDS_WITH_DASH = (*(f"gl{p}-" for p in _GITLAB), *(f"xox{c}-" for c in "abposr"), "sk-")
_MARKERS: tuple[tuple[str, Callable[[str, int], bool], tuple[int, ...]], ...] = (
    ("A", lambda t, i: t.startswith(("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), i), (0,)),
    ("_", lambda t, i: t.endswith(_ENDS_WITH_UNDERSCORE, 0, i + 1), (3, 6)),
    ("-", lambda t, i: t.endswith(_ENDS_WITH_DASH, 0, i + 1) or t.startswith("-----BEGIN", i),
     tuple(sorted({0, *(len(p) - 1 for p in _ENDS_WITH_DASH)}))),
    ("G", lambda t, i: t.startswith("GR1348941", i), (0,)),
    ("/", lambda t, i: t.startswith("/services/T", i) and t.endswith("https://hooks.slack.com", 0, i), (23,)),
    ("J", lambda t, i: t.endswith("eyJ", 0, i + 1), (2,)),
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
    r"(?:passw(?:or)?d|passphrase|passcode|pwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|token)[\w-]{0,20}"
    r"[\"']?[ \t]*(?<![=!<>])(?::=|=|:)(?!=)[ \t]*"
    r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\s]{4,200})(?P=q)|(?P<bare>[^\s\"'`,;()\[\]{}<>]{4,200})(?=[\s,;)}\]]|$))"
)
_ASSIGNMENT = re.compile(_ASSIGNMENT_SOURCE)
_ASSIGNMENT_ANY_CASE = re.compile(_ASSIGNMENT_SOURCE, re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:none|null|nil|true|false|undefined|changeme|secret|password|passwd|token|redacted|example"
    r"|\*+|x+|\.+|<.*>|\$.*|%.*|\{.*|.*\}|your[_-].*|my[_-].*|.*[_-]here|\[.*\]|.*\(.*)$"
)
# A password stated in prose: "my password is hunter2", "the password for the admin account is Tr0ub4dor&3",
# "Password: is s3cret!x", "passcode is 8812-ab"; `_prose_spans` checks the "p" before the match and the value.
# The pattern opens with the literal "ass" so that the regex engine searches for it (an opening "[pP]" or a
# case-insensitive word would make it try every position: ~10x slower). "PASSWORD IS X" in capitals is missed.
# Longer verb phrases come first: "was changed to X" must not stop at "was".
_PROSE = re.compile(
    r"ass(?:w(?:or)?d|phrase|code)s?"
    r"(?i:(?:[ \t]+(?:for|of|on|to)[ \t]+(?:[^\s:=]+[ \t]+){0,5}?)?"  # "for the admin account"
    r"[ \t]*(?::[ \t]*)?"
    r"(?:(?:is|was)[ \t]+(?:now|still|(?:set|changed|reset)[ \t]+to)|(?:has|have)[ \t]+been[ \t]+(?:set|changed|reset)"
    r"[ \t]+to|will[ \t]+be|is|was)"
    r"(?:[ \t]*:)?[ \t]+)"
    r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\s]{1,200})(?P=q)|(?P<bare>[^\s\"'`,;()\[\]{}<>]{1,200}))"
)
# A metadata key that names a credential ends with one of these (lowered: ``db_password``, ``x-api-key``,
# ``client_secret``, ``accessToken``), so that ``max_tokens``, ``token_type`` or ``secret_name`` do not count.
_CREDENTIAL_KEY_ENDS = (
    "password", "passwd", "passphrase", "passcode", "pwd", "secret", "token",
    *(f"{word}{sep}key" for word in ("api", "access", "private", "secret", "auth") for sep in ("", "_", "-")),
)
_UNQUOTED_WORD = re.compile(r"[^\"'`\s]+")
# Values of `_PROSE` that are prose: hyphenated words ("case-sensitive", "2FA-protected") and numbers with a
# unit or a range ("8-64", "50%", "10x", "12+").
_PROSE_LOOKALIKE = re.compile(r"[A-Za-z0-9]+(?:-[a-z]{4,})+|[0-9][0-9.,-]*(?:%|x|\+|k|st|nd|rd|th)?")


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


def _credential_value(value: str) -> bool:
    """Whether a string under a credential-named metadata key is a literal credential: what an assignment's
    quoted value may be (4-200 characters, no whitespace or quotes, not a placeholder or a number), and not a
    path or a URL."""
    return 4 <= len(value) <= 200 and _UNQUOTED_WORD.fullmatch(value) is not None and _literal_secret(value, True) \
        and not value.startswith(("/", "./", "~", "http:", "https:"))


def _prose_spans(text: str) -> Iterator[tuple[int, int]]:
    """The spans of the credentials that prose in ``text`` states (``my password is hunter2``: ``hunter2``).

    A statement's value must look like a credential: trailing sentence punctuation is not part of it, and it
    must be a literal with a digit or a symbol (`_literal_secret`), not a hyphenated word or a number.
    """
    for m in _PROSE.finditer(text):
        if not m.start() or text[m.start() - 1] not in "pP":
            continue
        group = "quoted" if m["quoted"] is not None else "bare"
        begin, end = m.span(group)
        value = text[begin:end]
        if group == "bare":
            value = value.rstrip(".,:!?")
            end = begin + len(value)
        if len(value) >= 4 and _literal_secret(value, False) and _PROSE_LOOKALIKE.fullmatch(value) is None:
            yield begin, end


def _token_starts(text: str) -> list[int]:
    """Every position where a `_TOKENS` match can start, in order (a few more are harmless). Matching
    `_TOKENS` there only, skipping starts inside the previous match, finds what ``_TOKENS.finditer`` finds
    (~50x faster: that pattern has no prefix the regex engine could search for)."""
    starts: set[int] = set()
    for char, is_prefix, backs in _MARKERS:
        i = text.find(char)
        while i >= 0:
            if is_prefix(text, i):
                starts.update(i - back for back in backs)
            i = text.find(char, i + 1)
    return sorted(p for p in starts if p >= 0)


def _anchor_starts(lowered: str) -> list[int]:
    """The starts of ``_ANCHOR.finditer(lowered)``, found from its words with `str.find` (the pattern's
    alternation makes the regex engine stop at every p, s, t and a: ~10x slower)."""
    candidates: set[int] = set()
    for word, backs in _ANCHOR_FINDS:
        i = lowered.find(word)
        while i >= 0:
            candidates.update(i - back for back in backs)
            i = lowered.find(word, i + 1)
    starts: list[int] = []
    end = 0
    for i in sorted(candidates):
        m = _ANCHOR.match(lowered, i) if i >= end else None
        if m is not None:
            starts.append(i)
            end = m.end()
    return starts


def may_hold_secrets(text: str) -> bool:
    """False when `scan_secrets` certainly finds nothing in ``text``: the tests it starts with, in one call.

    >>> may_hold_secrets("Reset your password from the settings page."), may_hold_secrets("password: hunter2!")
    (False, True)
    >>> may_hold_secrets("The password is incorrect."), may_hold_secrets("my password is hunter2")
    (False, True)
    """
    for char, is_prefix, _ in _MARKERS:
        i = text.find(char)
        while i >= 0:
            if is_prefix(text, i):
                return True
            i = text.find(char, i + 1)
    return _anchor_before_operator(text) or next(_prose_spans(text), None) is not None


def _anchor_before_operator(text: str) -> bool:
    """Whether an anchor word (`_ANCHOR_WORDS`) is close enough before a ":" or "=" for `_ASSIGNMENT` to match
    there: within the 34 characters before the operator and the blanks before it (an anchor, 20 more word
    characters and a quote). Looking at each operator's window instead of lowering the whole text and
    searching it for each word is ~2.5x faster; past `_MAX_WINDOWS` operators (code), the whole text is searched.
    """
    windows = 0
    for op in ":=":
        i = text.find(op)
        while i >= 0:
            windows += 1
            if windows > _MAX_WINDOWS:
                lowered = text.lower()
                return len(lowered) != len(text) or any(word in lowered for word in _ANCHOR_WORDS)
            head = text[max(0, i - 48):i].rstrip(" \t")
            if len(head) < 34 and i > 48:  # a long run of blanks before the operator
                head = text[:i].rstrip(" \t")
            window = head[-34:]
            if not window.isascii():  # lowering may change offsets, or case-fold to an anchor: let scan decide
                return True
            window = window.lower()
            if "pass" in window or "pwd" in window or "secret" in window or "token" in window or "key" in window:
                return True
            i = text.find(op, i + 1)
    return False


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
        return _with_prose(text, field, findings)
    lowered = text.lower()
    if len(lowered) == len(text):
        starts, pattern = _anchor_starts(lowered), _ASSIGNMENT
    else:  # lowering changed offsets (rare scripts): match the original text
        lowered, pattern = text, _ASSIGNMENT_ANY_CASE
        starts = [a.start() for a in _ANCHOR_ANY_CASE.finditer(text)]
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
    return _with_prose(text, field, findings)


def _with_prose(text: str, field: str, findings: list[Finding]) -> list[Finding]:
    """``findings`` and the passwords stated in prose in ``text`` that none of them overlaps."""
    added = False
    for span in _prose_spans(text):
        if not any(f.start < span[1] and span[0] < f.end for f in findings):
            findings.append(Finding("PASSWORD", field, *span))
            added = True
    if added:
        findings.sort(key=lambda f: f.start)
    return findings


def credential_values(texts: Sequence[tuple[MetadataPath, str]], found: Sequence[Finding]) -> list[Finding]:
    """Each literal string of a metadata object under a key that names a credential, as a ``PASSWORD`` finding
    spanning it, unless ``found`` already has a finding in it (an ``OPENAI_KEY`` under ``api_key``).

    >>> from detectors.base import metadata_texts
    >>> [(f.kind, f.path, f.start, f.end) for f in credential_values(
    ...     metadata_texts({"db": {"password": "hunter2x", "token_type": "bearer1"}, "n": 1}), [])]
    [('PASSWORD', ('db', 'password'), 0, 8)]
    """
    out = []
    for path, text in texts:
        key = path[-1]
        if type(key) is str and key.lower().endswith(_CREDENTIAL_KEY_ENDS) and _credential_value(text) \
                and not any(f.path == path for f in found):
            out.append(Finding("PASSWORD", "metadata", 0, len(text), path))
    return out


class SecretsDetector:
    """Flags a record whose prompt, response, error, feedback comment or metadata holds a credential.

    Score: the number of findings. Details: the findings (kind, field, start, end — never the value), a
    count per kind, and a severity hint: ``critical`` when the response leaks a secret, else ``high`` (a
    secret in the prompt, the error, the feedback comment or the metadata). A metadata finding's position is
    in the text it was found in; which value is not said.

    >>> from types import SimpleNamespace as R
    >>> d = SecretsDetector().detect([R(prompt="hi", response="use ghp_" + "a1B2" * 9)])[0]
    >>> d.flagged, d.details["kinds"], d.details["severity"]
    (True, {'GITHUB_TOKEN': 1}, 'critical')
    """

    name = "secrets"

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        out = []
        for record in records:
            findings, texts = scan_record(record, may_hold_secrets, scan_secrets)
            if texts:
                findings += credential_values(texts, findings)
            out.append(findings_detection(self.name, findings, in_response="critical", otherwise="high"))
        return out

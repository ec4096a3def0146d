"""Credentials in prompts, responses and the other texts a record stores (``secrets``): cloud, AI, code
hosting, chat, payment, mail, registry and observability tokens (`detectors.credentials.FORMATS`), private
keys, JWTs, database URLs with a password, credentials assigned in the common syntaxes of source and config
files, and passwords stated in prose (``my password is hunter2``).

A leaked secret in a *response* is the most severe finding Watchkeeper knows (severity ``critical``): the
model is handing a credential to whoever asked. A placeholder is not a finding at all (``ghp_xxxx…``,
``<your-key>``, ``${TOKEN}``, the AWS documentation's example key: `detectors.credentials.placeholder`), nor is
a secret's *name* (``password = "DB_PASSWORD"``, ``secret_name: prod-db``, ``csrf_token``), a URL or a file
name assigned to a credential-named variable.

Every format has a fixed opening or a context word; all of them are looked for in one pass
(`detectors.multimatch`, ``hyperscan`` when installed), and the precise patterns run only where one is: the
detector runs on every record, so its cost is mostly that of ruling a record out.

Assignments count in these syntaxes: ``name = "v"`` / ``name: v`` / ``name := "v"`` / ``name ::= v`` / ``:::=`` /
``name ?= v`` / ``$name .= "v"`` / ``"name" => "v"`` / ``var name string = "v"`` / ``set("name", "v")`` /
``<name>v</name>`` (the value may be on its own line) / ``"name": "v"`` / ``NAME=v\n`` inside a JSON string —
where the name holds ``password``, ``passwd``, ``pwd``, ``pw``, ``passphrase``, ``passcode``, ``secret``,
``token``, ``api key``, ``access key``, ``private key``, ``credential`` or ``creds``. An assignment only counts
when its value is a literal — not a function call, a variable, a type hint, a number, a placeholder, a
cipher's name (``AES-256-GCM``) or a value already encrypted or hashed (OpenSSL ``U2FsdGVkX1…``, Vault
``vault:v1:…``, a SCRAM verifier) — and its name does not say the value is public (``publicToken``).
A password stated in prose (``the password for the admin account is Tr0ub4dor&3``) only counts when its value
looks like one — a digit or a symbol in it, not a word (``the password is incorrect``), a number, a hyphenated
word or a placeholder.

The record's error message, feedback comment and metadata are scanned too (they are stored with it). In a
metadata object, a string under a key that names a credential (``password``, ``api_key``, ``client_secret``,
``access_token``…) is itself a ``PASSWORD`` when it is a literal (`credential_values`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from detect_secrets.plugins.jwt import JwtTokenDetector

from detectors.base import Detection, Finding, MetadataPath, Recordlike
from detectors.credentials import (
    CONTEXT_FORMATS,
    CONTEXT_WINDOW,
    FORMATS,
    NAMED_SHAPES,
    SECRET_KINDS,
    TokenFormat,
    context_value_ok,
    placeholder,
    provider_of,
)
from detectors.multimatch import MultiMatch, Presence, Trigger
from detectors.pii import findings_detection, prefilter_text, scan_fields

__all__ = ["SECRET_KINDS", "SecretsDetector", "credential_values", "may_hold_secrets", "may_hold_secrets_many",
           "scan_secrets"]

# Words an assignment's name holds (caseless). Each is a trigger; `_ASSIGNMENT` is tried where one starts.
_ANCHOR_WORDS = (r"passw", r"passphrase", r"passcode", r"pwd", r"secret", r"token", r"api[_-]?key",
                 r"access[_-]?key", r"private[_-]?key", r"credential", r"creds", r"pw")
_ASSIGNMENT = re.compile(
    r"(?P<name>(?:passw(?:or)?d|passphrase|passcode|pwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|token"
    r"|credential|creds|pw(?![a-z]))[\w.-]{0,20})"
    r"(?P<nq>[\"']?)(?:[ \t]+(?:string|str|String|\[\]byte))?[ \t]*"
    r"(?:(?<![=!<>])(?P<op>:::=|::=|:=|\?=|\.=|\+=|=>|=|:)(?!=)|(?<=[\"'])[ \t]*(?P<comma>,))[ \t]*"
    # a bare value ends at a space, a delimiter, or an escaped newline (``"GENERIC_TOKEN=v\nNEXT=…"`` in a
    # JSON string)
    r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\s]{4,200})(?P=q)"
    r"|(?P<bare>(?:[^\s\"'`,;()\[\]{}<>\\]|\\(?![nrt]))"
    r"{4,200})(?=[\s,;)}\]]|\\[nrt]|$))",
    re.IGNORECASE,
)
_XML = re.compile(r"<(?P<tag>[\w:.-]{1,40})>\s*(?P<bare>[^<>\s]{4,200})\s*</(?P=tag)>")
# Where in the 40 characters after an anchor word an assignment's operator may be (the record prefilter).
_OPERATOR_AFTER = re.compile(r"[\w.-]{0,24}(?:[\"'][ \t]*,|[\"']?(?:[ \t]+\w+)?[ \t]*(?:[:=>]|\?=|\.=))")
# Values that are not a credential in clear: a cipher or algorithm's name (``password: "AES-256-GCM"``), or
# a value already encrypted or hashed (OpenSSL's "Salted__" base64, Vault transit ciphertext, a SCRAM verifier).
_NOT_CLEAR = re.compile(
    r"(?:AES|DES|3DES|RSA|ECDSA|ECDH|ED25519|CHACHA20|XCHACHA20|XSALSA20|SALSA20|CAMELLIA|BLOWFISH|TWOFISH|SM4|RC4"
    r"|PBE|PBES2|PBKDF2|HMAC|SHA|MD5|BCRYPT|SCRYPT|ARGON2)(?:[A-Za-z0-9_/+-]*)"
    r"|U2FsdGVkX1[A-Za-z0-9+/=]*|vault:v\d+:\S+|SCRAM-SHA-\S+")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:none|null|nil|true|false|undefined|changeme|secret|password|passwd|token|redacted|example"
    r"|\*+|x+|\.+|<.*>|\$.*|%.*|\{.*|.*\}|your[_-].*|my[_-].*|.*[_-]here|\[.*\]|.*\(.*)$"
)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # DB_PASSWORD: a variable's name, not its value
# What ends the name of an assignment's variable, looking back from its anchor word (compiled once, not looked up
# in `re`'s cache on every assignment).
_NOT_NAME = re.compile(r"[^\w.-]")
_FILE_NAME = re.compile(r"(?i)[\w.-]*\.(?:txt|pem|key|json|ya?ml|env|cfg|conf|ini|crt|cer|p12|pfx|jks|keystore|der"
                        r"|pub|gpg|asc|properties|xml|toml|secret|secrets|kdbx|csv|log)")
_NAME_LIKE = re.compile(r"[a-z][a-z_.-]*(?:pass|secret|token|key|pwd|cred)[a-z_.-]*")  # "user_password"
# An assignment whose name ends with one of these holds something about a credential, not the credential.
_ABOUT_WORDS = ("name", "id", "type", "file", "path", "dir", "url", "uri", "endpoint", "arn", "field", "length",
                "len", "count", "limit", "hint", "label", "prompt", "policy", "ref", "header", "param", "env", "var",
                "mode", "format", "expiry", "expires", "ttl", "location", "provider", "source", "version", "regex",
                "pattern", "rotation", "required", "enabled", "min", "max", "size", "store", "manager", "input")
_ABOUT_ENDS = tuple(f"{sep}{word}" for word in _ABOUT_WORDS for sep in "_.-")
_ABOUT_CAMEL = tuple(word.capitalize() for word in _ABOUT_WORDS)
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

# One engine for every trigger: token openings first, then context words, then assignment anchors.
_TOKEN_TRIGGERS: list[tuple[Trigger, TokenFormat]] = [(t, f) for f in FORMATS for t in f.trigger_list()]
_CONTEXT_TRIGGERS: list[tuple[Trigger, int]] = [
    (Trigger(re.escape(word), caseless=True), index)
    for index, (_, words, _) in enumerate(CONTEXT_FORMATS) for word in words]
_ANCHOR_TRIGGERS = [Trigger(word, caseless=True) for word in _ANCHOR_WORDS]
_N_TOKEN, _N_CONTEXT = len(_TOKEN_TRIGGERS), len(_CONTEXT_TRIGGERS)
_TRIGGERS = [t for t, _ in _TOKEN_TRIGGERS] + [t for t, _ in _CONTEXT_TRIGGERS] + _ANCHOR_TRIGGERS
_engine = MultiMatch(_TRIGGERS)
_jwt = JwtTokenDetector()

# The record prefilter (`may_hold_secrets`) as patterns, so that one scan settles most texts without testing
# each trigger's hit in Python (`_promising`): a token opening, or an anchor word closely followed by an
# assignment operator (`_OPERATOR_AFTER`), is a yes; no hint of the other two ways in — a context word, a
# password stated in prose — is a no; the rest (rare) take the per-hit test. (A context kind's key-shaped run
# as a pattern too would cost more in every scan than the per-hit test costs on the few texts it spares.)
# What every match of `_PROSE` that `_prose_spans` keeps holds: `_PROSE` up to its value's first character,
# after a "p" (hyperscan's \s lacks the separators \x1c-\x1f that Python's has, which only widens this).
_PROSE_HINT = Trigger(
    r"[pP]ass(?:w(?:or)?d|phrase|code)s?(?i:(?:[ \t]+(?:for|of|on|to)[ \t]+(?:[^\s:=]+[ \t]+){0,5})?"
    r"[ \t]*(?::[ \t]*)?(?:is|was|ha(?:s|ve)[ \t]+been|will[ \t]+be)(?:[ \t]*:)?[ \t]+)"
    r"(?:[\"'`][^\"'`\s]|[^\s\"'`,;()\[\]{}<>])")
# In a text that is not ASCII, Python's \w and case-insensitive matching reach beyond ASCII, which
# hyperscan's do not: there a prose opening, or an anchor word followed by what `_OPERATOR_AFTER` may match
# counted in bytes (any byte of a multi-byte character standing for a word character), is only a hint.
_PROSE_HINT_ANY = Trigger(r"[pP]ass(?:w(?:or)?d|phrase|code)")
_OPERATOR_AFTER_ANY = (r"(?:[\w.-]|[\x80-\xff]){0,96}(?:[\"'][ \t]*,|[\"']?(?:[ \t]+(?:\w|[\x80-\xff])+)?[ \t]*"
                       r"(?:[:=>]|\?=|\.=))")


def _presence(ascii_only: bool) -> Presence:
    """The prefilter's one scan for ASCII texts, or for the others (see `_PROSE_HINT`)."""
    decisive = [t for t, _ in _TOKEN_TRIGGERS]
    decisive += [Trigger(f"(?:{word}){_OPERATOR_AFTER.pattern}", caseless=True) for word in _ANCHOR_WORDS]
    hints = [t for t, _ in _CONTEXT_TRIGGERS]
    if ascii_only:
        hints.append(_PROSE_HINT)
    else:
        hints.append(_PROSE_HINT_ANY)
        hints += [Trigger(f"(?:{word}){_OPERATOR_AFTER_ANY}", caseless=True) for word in _ANCHOR_WORDS]
    return Presence(decisive, hints)


def _presences() -> tuple[Presence, Presence] | None:
    return (_presence(True), _presence(False)) if _engine.engine == "hyperscan" else None


def use_engine(engine: str) -> None:
    """Switch the one-pass engine (``hyperscan`` or ``re``): the tests check both find the same."""
    global _engine, _prefilter
    _engine = MultiMatch(_TRIGGERS, engine)
    _prefilter = _presences()


def _literal_secret(value: str, quoted: bool) -> bool:
    """Whether an assigned value is a literal credential rather than code, a name or a placeholder."""
    if _PLACEHOLDER.match(value) or value.isdigit() or placeholder(value) or _NOT_CLEAR.fullmatch(value):
        return False
    if value.startswith(("/", "./", "~")) or "://" in value or _FILE_NAME.fullmatch(value):
        return False  # a path (``pwd: /home/me``), a URL or a file name (``secret_file = "key.pem"``)
    if _ENV_NAME.fullmatch(value) or _NAME_LIKE.fullmatch(value):
        return False  # a secret's name (``password = "DB_PASSWORD"``, ``token: "csrf_token"``)
    if quoted:
        return True
    if value.replace(".", "").isdigit():
        return False  # a number (``max_tokens: 0.5``)
    # A variable (``password = user_password``, ``token = self.token``) has no digit or symbol.
    return any(not (c.isalpha() or c in "._") for c in value)


def _credential_value(value: str) -> bool:
    """Whether a string under a credential-named metadata key is a literal credential: what an assignment's
    quoted value may be (4-200 characters, no whitespace or quotes, not a placeholder, a name or a number),
    and not a path or a URL."""
    return 4 <= len(value) <= 200 and _UNQUOTED_WORD.fullmatch(value) is not None and _literal_secret(value, True)


def _about_a_credential(name: str, before: str) -> bool:
    """Whether an assignment's name says its value is *about* a credential (``secret_name``, ``tokenUrl``,
    ``password_file``) or is a CSRF form token (``csrf_token``), rather than a credential."""
    lowered = name.lower()
    return (lowered.endswith(_ABOUT_ENDS) or name.endswith(_ABOUT_CAMEL) or "srf" in before.lower()
            or lowered.startswith(("public", "publishable")))  # meant to be public: ``publicToken``, ``public_key``


def _prose_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """The spans of the credentials that prose in ``text`` states (``my password is hunter2``: ``hunter2``).

    A statement's value must look like a credential: trailing sentence punctuation is not part of it, and it
    must be a literal with a digit or a symbol (`_literal_secret`), not a hyphenated word or a number.
    """
    for m in _PROSE.finditer(text, start, len(text) if end is None else end):
        if not m.start() or text[m.start() - 1] not in "pP":
            continue
        group = "quoted" if m["quoted"] is not None else "bare"
        begin, stop = m.span(group)
        value = text[begin:stop]
        if group == "bare":
            value = value.rstrip(".,:!?")
            stop = begin + len(value)
        if len(value) >= 4 and _literal_secret(value, False) and _PROSE_LOOKALIKE.fullmatch(value) is None:
            yield begin, stop


def _secret_span(m: re.Match[str]) -> tuple[int, int]:
    for name, value in m.groupdict().items():
        if value is not None and name.startswith("s"):
            return m.span(name)
    return m.span()


def _token_at(text: str, fmt: TokenFormat, start: int, end: int) -> re.Match[str] | None:
    """``fmt``'s token at a hit of its trigger (``start``-``end``), if there is one."""
    if fmt.regex_trigger:
        return fmt.pattern.search(text, start, end + 64)
    for back in fmt.backs:
        if start - back >= 0:
            m = fmt.pattern.match(text, start - back)
            if m is not None:
                return m
    return None


def _token_ok(fmt: TokenFormat, value: str) -> bool:
    if fmt.kind == "JWT":
        return bool(_jwt.is_formally_valid(value))
    body_from = value.rfind("/") + 1 if fmt.body_from < 0 else fmt.body_from
    if placeholder(value, body_from):
        return False
    return fmt.check is None or fmt.check(value)


def _overlaps(findings: list[Finding], start: int, end: int) -> bool:
    return any(f.start < end and start < f.end for f in findings)


def _assignment(text: str, i: int) -> tuple[str, int, int] | None:
    """The credential an assignment whose name's anchor word starts at ``i`` assigns: (kind, start, end)."""
    m = _ASSIGNMENT.match(text, i)
    quoted = False
    if m is not None:
        quoted = m["quoted"] is not None
        if m["comma"] is not None and (not quoted or not m["nq"]):
            m = None  # "password", "x": only a quoted name and a quoted value make a call's arguments
    if m is not None:
        start, end = m.span("quoted" if quoted else "bare")
        head = text[max(0, i - 16):i]
        name = _NOT_NAME.split(head)[-1] + m["name"]
        line = text[max(0, text.rfind("\n", 0, i) + 1, i - 60):i] + m["name"]  # "Mistral(api_key=…"
    else:
        xml = _XML.search(text, max(0, i - 41), i + 300)
        if xml is None or not xml.start("tag") <= i < xml.end("tag"):
            return None
        start, end = xml.span("bare")
        name, head, quoted = xml["tag"], text[max(0, i - 16):i], True
        line = name
    value = text[start:end]
    if _about_a_credential(name, head) or not _literal_secret(value, quoted):
        return None
    kind = provider_of(line) or "PASSWORD"
    shape = NAMED_SHAPES.get(kind)
    if shape is not None and not shape.fullmatch(value):
        kind = "PASSWORD"  # ``MISTRAL_TOKEN = "<28 characters>"``: a credential, not of Mistral's shape
    return kind, start, end


def scan_secrets(text: str, field: str) -> list[Finding]:
    """All confirmed credential spans in ``text``, in order of position.

    >>> text = 'export AWS_ACCESS_KEY_ID=AKIA4HKQ2ZP7LW3NXR6T; password = input("Password: ")'
    >>> [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "response")]
    [('AWS_KEY', 'AKIA4HKQ2ZP7LW3NXR6T')]
    """
    if not text:
        return []
    hits = _engine.hits(text)
    if not hits:
        return []
    hits.sort(key=lambda h: (h[1], h[0]))
    findings: list[Finding] = []
    anchors: list[int] = []
    contexts: list[tuple[int, int, int]] = []
    end_of_last = -1
    for index, start, end in hits:
        if index < _N_TOKEN:
            if start < end_of_last:
                continue
            fmt = _TOKEN_TRIGGERS[index][1]
            m = _token_at(text, fmt, start, end)
            if m is None:
                continue
            s, e = _secret_span(m)
            if _token_ok(fmt, text[s:e]) and not _overlaps(findings, s, e):
                findings.append(Finding(fmt.kind, field, s, e))
                end_of_last = m.end()
            if fmt.kind == "AWS_KEY":
                contexts.append((0, start, end))
        elif index < _N_TOKEN + _N_CONTEXT:
            contexts.append((_CONTEXT_TRIGGERS[index - _N_TOKEN][1], start, end))
        else:
            anchors.append(start)
    end_of_last = -1
    for i in anchors:
        if i < end_of_last:
            continue
        found = _assignment(text, i)
        if found is not None and not _overlaps(findings, found[1], found[2]):
            findings.append(Finding(found[0], field, found[1], found[2]))
            end_of_last = found[2]
    for index, start, end in contexts:
        kind, _, shape = CONTEXT_FORMATS[index]
        for m in shape.finditer(text, max(0, start - CONTEXT_WINDOW), end + CONTEXT_WINDOW):
            if context_value_ok(kind, m[0]) and not _overlaps(findings, m.start(), m.end()):
                findings.append(Finding(kind, field, m.start(), m.end()))
    if anchors:
        for span in _prose_spans(text):
            if not _overlaps(findings, *span):
                findings.append(Finding("PASSWORD", field, *span))
    findings.sort(key=lambda f: f.start)
    return findings


def _promising(text: str, index: int, start: int, end: int) -> bool:
    """Whether a trigger's hit can be the start of a finding (the record prefilter's test): a token opening
    always; a context word when a key of its provider's shape is near; an anchor word when an assignment
    operator follows it closely or it opens a password stated in prose."""
    if index < _N_TOKEN:
        return True
    if index < _N_TOKEN + _N_CONTEXT:
        kind, _, shape = CONTEXT_FORMATS[_CONTEXT_TRIGGERS[index - _N_TOKEN][1]]
        return any(context_value_ok(kind, m[0])
                   for m in shape.finditer(text, max(0, start - CONTEXT_WINDOW), end + CONTEXT_WINDOW))
    if _OPERATOR_AFTER.match(text, end) is not None:
        return True
    return text[start:start + 4].lower() == "pass" and next(_prose_spans(text, start + 1, end + 120), None) is not None


def may_hold_secrets(text: str) -> bool:
    """False when `scan_secrets` certainly finds nothing in ``text``: one scan of the prefilter's patterns
    (`_presence`), and the trigger engine's hits tested one by one (`_promising`) where that scan leaves it open
    (or hyperscan is not installed).

    >>> may_hold_secrets("Reset your password from the settings page."), may_hold_secrets("password: hunter2!")
    (False, True)
    >>> may_hold_secrets("The password is incorrect."), may_hold_secrets("my password is hunter2")
    (False, True)
    """
    if _prefilter is None:
        return _engine.any(text, _promising)
    return _verdict(text, _prefilter[0 if text.isascii() else 1].scan(text))


def may_hold_secrets_many(texts: Sequence[str]) -> list[bool]:
    """`may_hold_secrets` of each of ``texts``, the ASCII ones scanned together (`Presence.scan_many`: the
    decisive patterns — token openings, assignments — cannot match across two texts; a hint that does only
    costs a text the per-hit test)."""
    if _prefilter is None:
        return [_engine.any(text, _promising) for text in texts]
    scanned = iter(_prefilter[0].scan_many([text for text in texts if text.isascii()]))
    return [_verdict(text, next(scanned) if text.isascii() else _prefilter[1].scan(text)) for text in texts]


def _verdict(text: str, found: set[int] | None) -> bool:
    """The prefilter's answer from what its scan found in ``text`` (`Presence.scan`)."""
    if found is None:
        return True  # a token opening or an assignment
    # A context word, or a hint of prose or (in a text that is not ASCII) of an assignment: the per-hit test
    # decides.
    return bool(found) and _engine.any(text, _promising)


_prefilter = _presences()


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
    >>> d = SecretsDetector().detect([R(prompt="hi", response="use 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")])[0]
    >>> d.flagged, d.details["kinds"], d.details["severity"]
    (True, {'GITHUB_TOKEN': 1}, 'critical')
    """

    name = "secrets"

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        out = []
        prepared = [prefilter_text(record) for record in records]
        verdicts = may_hold_secrets_many([text for text, _ in prepared])
        for record, (_, texts), maybe in zip(records, prepared, verdicts, strict=True):
            findings = scan_fields(record, texts, scan_secrets) if maybe else []
            if texts:
                findings += credential_values(texts, findings)
            out.append(findings_detection(self.name, findings, in_response="critical", otherwise="high"))
        return out

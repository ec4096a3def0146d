"""Personal data in prompts, responses and the other texts a record stores (``pii``): e-mail addresses,
phone numbers, payment cards, IBANs, US social security numbers and IP addresses.

Every kind is found by a pattern and then *validated* — cards by the Luhn checksum and an issuer's prefix and
length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir, RuPay, Troy, Verve, Dankort),
IBANs (either case) by their mod-97 checksum and national length, SSNs by the number ranges the SSA issues,
IPs by `ipaddress` and their context, phones by Google's libphonenumber (`phonenumbers`): a number with its
``+``/``00`` country code must be valid there; one in a national format must be valid in one of the
configured regions (``[detectors.pii] phone_regions``) *and* be grouped the way that region writes it — so
that order numbers, UUIDs, dates and version strings are not reported. The expensive patterns only run on
texts that pass a cheap byte-level prefilter (an ``@``, four digits or a run of digit groups, a ``+``, a
dotted quad, two colons), which is what lets the whole detector chain keep up with a Kafka consumer.

The record's other stored texts (``error``, ``feedback_comment``, ``metadata``) are scanned too, behind the
same prefilter; they are absent from most records, and a metadata object is only walked for its texts.
An ``@`` that is not an e-mail address — a git remote ``git@github.com:org/repo.git``, the user of a URL
``ssh://git@host/repo`` — is not reported.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import phonenumbers

from detectors import config
from detectors.base import Detection, Finding, MetadataPath, Recordlike, extra_fields, metadata_texts

PII_KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w-])"
)
_LOCAL_PART = re.compile(r"[\w.%+-]+\Z")  # with endpos at an "@": the local-part characters just before it
# Digit runs that may hold a card, SSN or phone number; each is then matched by the specific patterns below.
# Patterns that run over whole texts open with a character class and check what precedes it with a
# lookbehind (`[+(]?[0-9]` is written `[+(0-9]` + lookbehinds), because then the regex engine skips every
# position whose character is not in the class instead of trying the pattern there: 5-10x faster.
_NUMBER_RUN = re.compile(r"[+(0-9](?:(?<=[+(])[0-9]|(?<=[0-9]))[0-9 ().-]{5,}[0-9]")
_CARD = re.compile(
    r"(?<![\w.+/-])(?:[0-9]{12,19}|[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}(?:\1[0-9]{1,7}(?:\1[0-9]{1,3})?)?"
    r"|[0-9]{4}([ -])[0-9]{6}\2[0-9]{4,5})"
    r"(?![\w/-]|\.[0-9])"  # not in a URL's path (/triggers/T…/5056286073017/)
)
_SSN = re.compile(r"(?<![\w.+-])([0-9]{3})([- ])([0-9]{2})\2([0-9]{4})(?![\w-]|\.[0-9])")
# A phone number as people write it: an optional "+" or "00", digit groups separated by one space, dot or dash,
# one of them possibly in parentheses ("(11) 91234-5678", "+44 (0)20 7946 0958"); `_phone_ok` decides.
_PHONE = re.compile(
    r"(?<![\w.+-])(?:\+|(?<![0-9])00)?(?:\([0-9]{1,5}\) ?)?[0-9]+"
    r"(?:(?:[ .-]|[ ]?\([0-9]{1,5}\)[ ]?)[0-9]+){0,7}(?![\w-]|\.[0-9])"
)
# North American shapes ("(415) 555-2671", "212.555.0199", "415-555-2671"): judged by the North American plan
# alone, whatever the regions (the same digits are a valid Italian or Dutch number). "415 555 2671" is not
# only North American (Mexico, the Netherlands group so too): the regions decide, the US among them.
_NANP_SHAPE = re.compile(r"(?:\+?1[ .-]?)?(?:\([0-9]{3}\) ?[0-9]{3}[ .-]|[0-9]{3}([.-])[0-9]{3}\1)[0-9]{4}")
_DATE_SHAPE = re.compile(r"[0-9]{1,4}([./-])[0-9]{1,2}\1[0-9]{1,4}|[0-9]{4}[0-9]{2}[0-9]{2}")
_IPV4_SHAPE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")  # 185.124.92.195 is an address; 612.34.58.95 a phone
DEFAULT_PHONE_REGIONS = tuple(config.DEFAULT_PHONE_REGIONS)
"""The regions whose national formats (no "+") are recognised by default: ``[detectors.pii] phone_regions``.
A number written with its "+" country code is recognised for every region."""
_IPV4 = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![\w]|\.[0-9])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)(?![\w:])")
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")  # in every IPv6 match; found fast from its literal ':'
_VERSION_CONTEXT = re.compile(r"(?i)\b(?:v|version|release|build|ver\.?|rev\.?)\s*$")

# Byte-level prefilter ("shape" of a text): digits become "0", capitals "A", small letters "a", the separators
# of a number run (space ( ) . -) "-" "(" "." "-", and ":+@" stay; every other byte is a space. The tests
# below on the shape are necessary conditions of each kind's pattern, so most texts skip every pattern.
_SHAPE = bytes(
    0x30 if chr(c).isdigit() else 0x41 if "A" <= chr(c) <= "Z" else 0x61 if "a" <= chr(c) <= "z"
    else 0x2D if chr(c) in " )-"
    else c if chr(c) in "(.:+@" else 0x20 for c in range(128)
) + b" " * 128
# `_NUMBER_RUN` on the shape of an ASCII text, from its first digit: a single literal first character, which
# the regex engine finds far faster than a class. A run that starts with "+" or "(" gets it back (below).
_SHAPE_RUN = re.compile(rb"0[-(.0]{5,}0")
_MIN_DIGITS = 7  # the fewest digits of a card (12), an SSN (9) or a phone number (7, see _phone_ok)
# Searching these with the regex engine is ~2x faster than `in` on a shape (many "0"s); `in` is kept for
# single bytes (memchr).
_DOTTED_QUAD = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")  # not "3.11" or "1.2.2": versions are common
# Four digits, a dotted quad or a run of digit groups, in one pass (the prefilter's).
_DIGITS_HINT = re.compile(rb"0(?:000|\.0{1,3}\.0{1,3}\.0|[-(.0]{5,}0)")
_IBAN_START = re.compile(rb"(?<![Aa0])[Aa]{2}(?:00|-00-?[Aa0]{2})")  # country code, check digits; either case
# Where `_IBAN_START`'s check digits may be: "00" right after a letter, or after a letter and a separator. A
# pattern that opens with a class is tried at every position of that class (every letter of a text: ~17 µs per
# 1 KB shape); one that opens with a literal is found by a fast search, so `_iban_starts` looks for the digits
# and tries `_IBAN_START` two or three bytes before them.
_IBAN_DIGITS = re.compile(rb"00(?:(?<=[Aa]00)|(?<=[Aa]-00))")
# The same for a text that is not ASCII (the shape's offsets are the UTF-8 encoding's): its own start pattern,
# tried before each pair of digits that follows a letter or a letter and a space.
_IBAN_START_TEXT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2} ?[0-9]{2}")
_IBAN_DIGITS_TEXT = re.compile(r"[0-9]{2}(?:(?<=[A-Za-z][0-9]{2})|(?<=[A-Za-z] [0-9]{2}))")

_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    # joined the registry since 2020 (python-stdnum's copy of SWIFT's registry has them: tested)
    "BI": 27, "DJ": 27, "FK": 18, "HN": 28, "LY": 25, "MN": 20, "NI": 28, "OM": 23, "RU": 33, "SD": 18, "SO": 23,
    "YE": 30,
}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_MAESTRO_12 = frozenset({5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763})


def card_ok(number: str) -> bool:
    """A plausible card: 12–19 digits, a known issuer's prefix and length, a valid Luhn checksum, not one digit
    repeated. Issuers: Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro, Mir,
    RuPay, Troy, Verve, Elo/Hipercard and Dankort ranges, as the networks publish them."""
    digits = number.replace(" ", "").replace("-", "")
    n = len(digits)
    if not 12 <= n <= 19 or len(set(digits)) == 1:
        return False
    two, three, four, six = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    issuer = (
        (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
        or (two in (34, 37) and n == 15)  # American Express
        or ((digits.startswith(("6011", "65")) or 644 <= three <= 649 or 622126 <= six <= 622925)
            and 16 <= n <= 19)  # Discover
        or (3528 <= four <= 3589 and 16 <= n <= 19) or (four in (2131, 1800) and n == 15)  # JCB
        or ((two in (36, 38, 39) or 300 <= three <= 305 or four == 3095) and 14 <= n <= 19)  # Diners
        or (two in (62, 81) and 16 <= n <= 19)  # UnionPay
        or ((two == 50 or 56 <= two <= 69) and 13 <= n <= 19)  # Maestro (and RuPay, Elo, Hipercard, Verve 6…)
        or (four in _MAESTRO_12 and n == 12)  # 12 digits: Maestro's own ranges only (12-digit ids are common)
        or (2200 <= four <= 2204 and 16 <= n <= 19)  # Mir
        or ((two in (60, 65, 81, 82) or three == 508) and n == 16)  # RuPay
        or (four == 9792 and n == 16)  # Troy
        or (506099 <= six <= 506198 and 16 <= n <= 19)  # Verve
        or (four == 5019 and n == 16)  # Dankort
    )
    return issuer and luhn_ok(digits)


def iban_ok(candidate: str) -> bool:
    """An IBAN with its country's length and a valid ISO 7064 mod-97 checksum, written in either case."""
    iban = candidate.replace(" ", "").replace("-", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_SSN_EXAMPLES = frozenset({"078051120", "123456789", "219099999"})
"""SSNs printed as examples (the Woolworth wallet card, the placeholder, the SSA's own pamphlet): not leaks."""


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """A number the SSA could have issued: area not 000, 666 or 9xx; group and serial not all zeros; not one of
    the published example numbers."""
    return (area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
            and area + group + serial not in _SSN_EXAMPLES)


_AFTER_COUNTRY_CODE = re.compile(r"\+[0-9]{1,4}[ .-]?$")
"""Text right before a digit group that makes it part of an international phone number (``+992 372 12 3456``)."""


_GROUPS = re.compile(r"[0-9]+")


@functools.cache
def _region_plan(region: str) -> tuple[str, frozenset[int]]:
    """A region's national (trunk) prefix and the lengths its national numbers can have."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:
        raise ValueError(f"unknown phone region {region!r}")
    return meta.national_prefix or "", frozenset(meta.general_desc.possible_length or ())


def _boundaries(groups: Sequence[str]) -> set[int]:
    out, at = set(), 0
    for g in groups[:-1]:
        at += len(g)
        out.add(at)
    return out


_TRUNK_OMITTED = frozenset({"IN", "BR"})
"""Regions whose people write national numbers without the trunk prefix ("98765 43210" in India, "(11) 91234-5678"
in Brazil). Elsewhere a national number is written with it ("030 1234567" in Germany, "020 7946 0958" in Britain):
digits that are a valid number only once a "0" is put in front are an account, a tax id or a reference
(python-stdnum's documented German, British and Australian identifiers were taken for phones)."""


def _grouped_as_written(number: phonenumbers.PhoneNumber, groups: list[str], prefix: str, region: str) -> bool:
    """Whether the digit groups someone wrote are the region's own grouping of that number (or a finer one):
    ``06 12 34 56 78`` in France, ``(11) 91234-5678`` in Brazil. A run of digits grouped otherwise (an order
    number ``4532 0151 1283``, a reference ``000-12-3456``) is not a phone number even when its digits are."""
    national = _GROUPS.findall(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    # written without its trunk prefix ("98765 43210" in India), or with one the format leaves out
    if prefix and groups[0] != national[0] and (
            (region in _TRUNK_OMITTED and national[0].startswith(prefix) and national[0][len(prefix):] == groups[0])
            or national[0] == groups[0][len(prefix):]):
        national = [groups[0], *national[1:]]
    if "".join(national) != "".join(groups):
        return False
    return groups == national or (all(len(g) >= 2 for g in groups) and _boundaries(national) <= _boundaries(groups))


def phone_ok(candidate: str, regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> bool:
    """Whether ``candidate`` is a phone number (Google's libphonenumber metadata, via `phonenumbers`).

    - with ``+`` or ``00`` and a country code: a valid number of that country, any grouping;
    - in a North American shape (`_NANP_SHAPE`): a North American number (NXX NXX XXXX);
    - otherwise a valid national number of one of ``regions``, written in groups (not one run of digits:
      that is an id more often than a phone), grouped the way that region groups it, and not a date.

    >>> phone_ok("06 12 34 56 78"), phone_ok("+81 3-1234-5678"), phone_ok("2024-03-15"), phone_ok("0612345678")
    (True, True, False, False)
    """
    digits = "".join(ch for ch in candidate if ch.isdigit())
    if not 7 <= len(digits) <= 15:
        return False
    if candidate.startswith("+1") or (not candidate.startswith(("+", "00")) and _NANP_SHAPE.fullmatch(candidate)):
        nanp = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
        return len(nanp) == 10 and nanp[0] >= "2" and nanp[3] >= "2"
    if candidate.startswith(("+", "00")):
        international = "+" + (digits[2:] if candidate.startswith("00") else digits)
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(international, None))
        except phonenumbers.NumberParseException:
            return False
    groups = _GROUPS.findall(candidate)
    if len(groups) < 2 or _DATE_SHAPE.fullmatch(candidate) or (
            _IPV4_SHAPE.fullmatch(candidate) and all(int(g) <= 255 for g in groups)):
        return False
    for region in regions:
        prefix, lengths = _region_plan(region)
        national = digits[len(prefix):] if prefix and digits.startswith(prefix) else digits
        if len(national) not in lengths and len(digits) not in lengths:
            continue
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number_for_region(number, region) \
                and _grouped_as_written(number, groups, prefix, region):
            return True
    return False


def _ip_ok(text: str, start: int, candidate: str) -> bool:
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if address.version == 6:
        return candidate.count(":") >= 7 or sum(1 for part in candidate.split(":") if part) >= 2
    if candidate.startswith("0") or address.is_unspecified:
        return False
    return not _VERSION_CONTEXT.search(text, max(0, start - 12), start)


def may_hold_pii(text: str) -> bool:
    """False when `scan_pii` certainly finds nothing in ``text``: the tests it starts with, in one call.

    >>> may_hold_pii("Reset it from the settings page."), may_hold_pii("call 415 555 2671")
    (False, True)
    """
    shape = text.encode("utf-8", "ignore").translate(_SHAPE)
    return (b"@" in shape or _DIGITS_HINT.search(shape) is not None or (b"+" in shape and b"+0" in shape)
            or (_two_colons(shape) and _IPV6_HINT.search(text) is not None))


def _two_colons(shape: bytes) -> bool:
    """``shape.count(b":") >= 2``, with two memchr calls instead of a count over the whole shape."""
    first = shape.find(b":")
    return first >= 0 and shape.find(b":", first + 1) >= 0


def scan_pii(text: str, field: str, regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> list[Finding]:
    """All validated PII spans in ``text``, in order of position.

    >>> [(f.kind, f.start, f.end) for f in scan_pii("mail bob@example.com, order 2024-118-5521", "prompt")]
    [('EMAIL', 5, 20)]
    """
    if not text:
        return []
    shape = text.encode("utf-8", "ignore").translate(_SHAPE)
    findings: list[Finding] = []
    if b"@" in shape:
        findings += [Finding("EMAIL", field, start, end) for start, end in _emails(text)]
    if _SHAPE_RUN.search(shape) or (b"+" in shape and b"+0" in shape):
        ibans = [Finding("IBAN", field, *span) for span in _ibans(text, shape)]
        taken = [(f.start, f.end) for f in ibans]  # an IBAN's digit groups are not also a card or a phone
        for start, end in _number_runs(text, shape):
            findings += _numbers(text, start, end, field, taken, regions)
        findings += ibans
    if _DOTTED_QUAD.search(shape):
        findings += [Finding("IP", field, m.start(), m.end())
                     for m in _IPV4.finditer(text) if _ip_ok(text, m.start(), m[0])]
    if _two_colons(shape) and _IPV6_HINT.search(text):
        findings += [Finding("IP", field, m.start(), m.end())
                     for m in _IPV6.finditer(text) if _ip_ok(text, m.start(), m[0])]
    if len(findings) > 1:
        findings.sort(key=lambda f: (f.start, -f.end))
    return findings


def _emails(text: str) -> list[tuple[int, int]]:
    """The spans of ``_EMAIL.finditer(text)``, found from each "@" instead of trying every position.

    A match holds the first "@" after its start, and its start is the first character of the run of
    local-part characters that ends at that "@" (the pattern's lookbehind forbids one before it): so each
    "@" has one candidate start, found by `_LOCAL_PART` in the 65 characters before it.
    """
    spans: list[tuple[int, int]] = []
    end = 0
    at = text.find("@")
    while at >= 0:
        local = _LOCAL_PART.search(text, max(end, at - 65), at)
        if local is not None and at - local.start() <= 64:
            m = _EMAIL.match(text, local.start())
            if m is not None:
                end = m.end()
                if not _remote(text, m.start(), end):
                    spans.append((m.start(), end))
        at = text.find("@", max(at + 1, end))
    return spans


def _remote(text: str, start: int, end: int) -> bool:
    """Whether an e-mail-shaped ``user@host`` is a remote rather than an address: an scp-style git/ssh remote
    (``git@github.com:org/repo.git``: a colon and a path right after the host, where an address in prose is
    followed by ``": "``), the user of a URL (``ssh://git@host/repo``) or its password
    (``mongodb://svc:pw@host``: the secrets detector's ``DATABASE_URL``)."""
    if text.startswith(":", end) and end + 1 < len(text):
        after = text[end + 1]
        if after.isalnum() or after in "_~/.-":
            return True
    if text.startswith("://", max(start - 3, 0), start):
        return True
    # the password of a URL's user (mongodb://svc:pw@host): "://" earlier in the same word
    word_start = max(text.rfind(" ", 0, start), text.rfind("\n", 0, start), text.rfind('"', 0, start), start - 300)
    return "://" in text[word_start + 1:start]


def _number_runs(text: str, shape: bytes) -> list[tuple[int, int]]:
    """The spans of `_NUMBER_RUN` in ``text`` (those with too few digits to hold anything may be left out)."""
    if not text.isascii():  # the shape's offsets are the UTF-8 encoding's, not the text's
        return [m.span() for m in _NUMBER_RUN.finditer(text)]
    runs = []
    for m in _SHAPE_RUN.finditer(shape):
        start, end = m.span()
        if shape.count(b"0", start, end) >= _MIN_DIGITS:
            runs.append((start - 1 if start and shape[start - 1] in b"+(" else start, end))
    return runs


def _ibans(text: str, shape: bytes) -> list[tuple[int, int]]:
    """The spans of valid IBANs in ``text``, in either case: `_IBAN` is only tried where the shape has two
    letters and two digits after a non-alphanumeric (trying it at every letter would cost ~40 µs per text)."""
    if text.isascii():
        starts = _iban_starts(shape, _IBAN_DIGITS, _IBAN_START, b"-"[0])
    else:  # the shape's offsets are the UTF-8 encoding's: find the starts in the text itself
        starts = _iban_starts(text, _IBAN_DIGITS_TEXT, _IBAN_START_TEXT, " ")
    spans = []
    for start in starts:
        end = _iban_end(text, start)
        if end and iban_ok(text[start:end]):
            spans.append((start, end))
    return spans


def _iban_starts(text: str | bytes, digits: re.Pattern[Any], start: re.Pattern[Any], separator: str | int
                 ) -> list[int]:
    """The starts of ``start.finditer(text)``, found from the check digits ``digits`` finds (`_IBAN_DIGITS`).

    Every match of ``start`` holds check digits that ``digits`` finds, two positions after the match's start or
    three when a ``separator`` precedes them; and the matches finditer returns are those that begin at or after
    the end of the one before (non-overlapping, leftmost first), which the loop keeps too.
    """
    starts: list[int] = []
    after = 0
    for m in digits.finditer(text):
        at = m.start()
        candidate = at - 3 if text[at - 1] == separator else at - 2
        if candidate < after:
            continue
        found = start.match(text, candidate)
        if found is not None:
            starts.append(candidate)
            after = found.end()
    return starts


def _iban_end(text: str, start: int) -> int:
    """Where the IBAN starting at ``start`` ends: after its country's number of characters, a single space or
    hyphen between them allowed (``BE 48 3200…``, ``ES77 1234-1234-16 …`` as banks print them), and no letter
    or digit right after (0: no IBAN of that length there). Counting keeps a lower-case IBAN from running on
    into the next word (``de89 3704 … 00 today``)."""
    length = _IBAN_LENGTHS.get(text[start:start + 2].upper())
    if length is None:
        return 0
    i, count, n = start, 0, len(text)
    while count < length and i < n:
        ch = text[i]
        if ch.isascii() and ch.isalnum():
            count += 1
        elif not (ch in " -" and i + 1 < n and text[i + 1] not in " -" and count):
            break
        i += 1
    if count < length or (i < n and text[i].isascii() and text[i].isalnum()):
        return 0
    return i


def _numbers(text: str, start: int, end: int, field: str, taken: list[tuple[int, int]],
             regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> list[Finding]:
    found: list[Finding] = []
    taken = list(taken)
    for m in _CARD.finditer(text, start, end):
        if card_ok(m[0]) and not _inside(m.span(), taken):
            found.append(Finding("CARD", field, m.start(), m.end()))
            taken.append(m.span())
    for m in _SSN.finditer(text, start, end):
        if ssn_ok(m[1], m[3], m[4]) and not _inside(m.span(), taken) \
                and not _AFTER_COUNTRY_CODE.search(text, max(0, m.start() - 6), m.start()):
            found.append(Finding("SSN", field, m.start(), m.end()))
            taken.append(m.span())
    for m in _PHONE.finditer(text, start, end):
        if not _inside(m.span(), taken) and phone_ok(m[0], regions):
            found.append(Finding("PHONE", field, m.start(), m.end()))
    return found


def _inside(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(s < span[1] and span[0] < e for s, e in taken)


class PiiDetector:
    """Flags a record whose prompt, response, error, feedback comment or metadata holds personal data.

    Score: the number of findings. Details: the findings (kind, field, start, end — never the value), a
    count per kind, and a severity hint (``high`` when the response leaks PII, else ``medium``: a finding in
    the prompt, the error, the feedback comment or the metadata). A metadata finding's position is in the
    text it was found in (a string value, or a key); which value is not said, since a key can be personal.

    >>> from types import SimpleNamespace as R
    >>> d = PiiDetector().detect([R(prompt="call me at (415) 555-2671", response="ok")])[0]
    >>> d.flagged, d.details["kinds"], d.details["severity"]
    (True, {'PHONE': 1}, 'medium')
    """

    name = "pii"

    def __init__(self, kinds: Sequence[str] = PII_KINDS, phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> None:
        """``phone_regions``: ISO 3166 codes of the regions whose national phone formats count (a number with
        its "+" country code counts for every region)."""
        unknown = set(kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)}; known: {list(PII_KINDS)}")
        for region in phone_regions:
            _region_plan(region)  # an unknown region fails here, not on the first phone number
        self.kinds = frozenset(kinds)
        regions = tuple(phone_regions)
        self._scan = scan_pii if regions == DEFAULT_PHONE_REGIONS else functools.partial(scan_pii, regions=regions)

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        out = []
        for record in records:
            findings, _ = scan_record(record, may_hold_pii, self._scan)
            if len(self.kinds) < len(PII_KINDS):
                findings = [f for f in findings if f.kind in self.kinds]
            out.append(findings_detection(self.name, findings, in_response="high", otherwise="medium"))
        return out


def scan_record(record: Recordlike, may_hold: Callable[[str], bool], scan: Callable[[str, str], list[Finding]]
                ) -> tuple[list[Finding], Sequence[tuple[MetadataPath, str]]]:
    """A span detector's findings in all of a record's stored texts — prompt, response, error, feedback
    comment and the texts of its metadata (`detectors.base.metadata_texts`) — and those metadata texts.

    One prefilter call over all of them (`prefilter_text`) rules most records out; otherwise each is scanned
    (`scan_fields`). A metadata finding carries the path of its text."""
    text, texts = prefilter_text(record)
    if not may_hold(text):
        return [], texts
    return scan_fields(record, texts, scan), texts


def prefilter_text(record: Recordlike) -> tuple[str, Sequence[tuple[MetadataPath, str]]]:
    """All of a record's stored texts as one, a line each (what a span detector's prefilter reads), and the
    texts of its metadata."""
    prompt, response = record.prompt, record.response
    error, comment, metadata = extra_fields(record)
    texts = metadata_texts(metadata) if metadata else ()
    if error is None and comment is None and not texts:  # most records: prompt and response only
        return f"{prompt}\n{response}", texts
    parts = [prompt, response, error or "", comment or ""]
    parts += [text for _, text in texts]
    return "\n".join(parts), texts


def scan_fields(record: Recordlike, texts: Sequence[tuple[MetadataPath, str]],
                scan: Callable[[str, str], list[Finding]]) -> list[Finding]:
    """``scan`` of each of a record's stored texts (``texts``: those of its metadata), as `scan_record` does
    once its prefilter let the record through."""
    findings = scan(record.prompt, "prompt") + scan(record.response, "response")
    error, comment, _ = extra_fields(record)
    if error:
        findings += scan(error, "error")
    if comment:
        findings += scan(comment, "feedback_comment")
    for path, text in texts:
        findings += [Finding(f.kind, "metadata", f.start, f.end, path) for f in scan(text, "metadata")]
    return findings


_NOTHING_FOUND: dict[str, Any] = {}
"""The details of every clean record's detection (read-only, like all detections)."""


def findings_detection(name: str, findings: list[Finding], *, in_response: str, otherwise: str) -> Detection:
    """A span detector's verdict: score = number of findings, details = kinds/positions and a severity."""
    if not findings:
        return Detection(name, 0.0, False, _NOTHING_FOUND)
    severity = in_response if any(f.field == "response" for f in findings) else otherwise
    details = {
        "kinds": dict(Counter(f.kind for f in findings)),
        "severity": severity,
        "findings": [f.as_details() for f in findings],
    }
    return Detection(name, float(len(findings)), True, details, findings)

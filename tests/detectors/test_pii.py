"""PII: real personal data is found by kind and position; look-alikes (orders, UUIDs, versions) are not."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from detectors import pii
from detectors.base import metadata_texts
from detectors.pii import PiiDetector, card_ok, iban_ok, luhn_ok, may_hold_pii, scan_pii, ssn_ok


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("Sure, I changed it to jane.doe+news@example.org for you.", "EMAIL", "jane.doe+news@example.org"),
    ("Their number is (415) 555-2671.", "PHONE", "(415) 555-2671"),
    ("Dial +44 20 7946 0958 for London.", "PHONE", "+44 20 7946 0958"),
    ("Call +1 (650) 253-0000 now", "PHONE", "+1 (650) 253-0000"),
    ("The card on file is 4111 1111 1111 1111, expiring 08/27.", "CARD", "4111 1111 1111 1111"),
    ("Charge 378282246310005 please.", "CARD", "378282246310005"),
    ("Refund to GB82 WEST 1234 5698 7654 32.", "IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("Account DE89370400440532013000 verified.", "IBAN", "DE89370400440532013000"),
    ("The SSN we have on record is 536-90-4399.", "SSN", "536-90-4399"),
    ("The last login came from 203.0.113.42 at noon.", "IP", "203.0.113.42"),
    ("From 2001:db8:85a3::8a2e:370:7334 yesterday.", "IP", "2001:db8:85a3::8a2e:370:7334"),
])
def test_personal_data_is_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    findings = scan_pii(text, "response")
    assert [(f.kind, text[f.start:f.end]) for f in findings] == [(kind, value)]
    assert findings[0].field == "response"


@pytest.mark.parametrize("text", [
    "Your order #A-48213-07 is confirmed and ships 2024-03-15.",
    "Order 4111111111111112 is on its way.",  # fails Luhn
    "Your membership number 4532015112830367 is printed on the card.",
    "Reference request id 123e4567-e89b-42d3-a456-426614174000 if you contact us again.",
    "This was fixed in v2.10.3, so upgrade to build 10.0.19041.1 or later.",
    "Microsoft released version 10.0.0.1 of the tool in March.",
    "Python 3.11.7 and numpy 1.26.4 are required.",
    "The tracking number is 1Z999AA10123456784.",
    "The old hotline (055) 123-4567 is no longer in service.",
    "Try +1 123 045 6789 instead.",
    "The job ran at 12:30:45 and the NIC's MAC address is 00:1a:2b:3c:4d:5e.",
    "It costs $1,299.99, about 2,000,000 yen for 1000 units; 1234 * 5678 = 7006652.",
    "Invoice 000-12-3456 and part 900-12-3456 are archived.",
    "Use @app.route('/users') and @pytest.fixture in the code.",
])
def test_look_alikes_are_not_personal_data(text: str) -> None:
    assert scan_pii(text, "response") == []


def test_the_digit_groups_of_an_iban_are_not_also_a_card() -> None:
    text = "Pay to DE89 4111 1111 1111 1111 11 today."  # the IBAN's groups hold a Luhn-valid Visa number
    assert card_ok("4111 1111 1111 1111") and iban_ok("DE89 4111 1111 1111 1111 11")
    assert [(f.kind, text[f.start:f.end]) for f in scan_pii(text, "prompt")] == [
        ("IBAN", "DE89 4111 1111 1111 1111 11")]


def test_validators_follow_the_published_checksums() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert card_ok("4111-1111-1111-1111") and not card_ok("1111111111111117")  # Luhn-valid, no issuer
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")
    assert ssn_ok("536", "90", "4399") and not ssn_ok("666", "05", "1120") and not ssn_ok("123", "00", "4567")


def test_detector_reports_kinds_and_positions_never_values() -> None:
    record = SimpleNamespace(prompt="I'm bob@corp.io", response="Card 5555-5555-5555-4444 noted.")
    [d] = PiiDetector().detect([record])
    assert (d.detector, d.flagged, d.score) == ("pii", True, 2.0)
    assert d.details["kinds"] == {"EMAIL": 1, "CARD": 1}
    assert d.details["severity"] == "high"  # the response repeats PII
    assert "bob@corp.io" not in repr(d.details) and "5555" not in repr(d.details)
    assert d.details["findings"][0] == {"kind": "EMAIL", "field": "prompt", "start": 4, "end": 15}


def test_a_deployment_can_switch_kinds_off() -> None:
    record = SimpleNamespace(prompt="from 203.0.113.42", response="mail me: a@b.io")
    [d] = PiiDetector(kinds=["EMAIL"]).detect([record])
    assert d.details["kinds"] == {"EMAIL": 1}
    with pytest.raises(ValueError, match="unknown PII kinds"):
        PiiDetector(kinds=["PASSPORT"])


def test_the_record_level_prefilter_never_hides_personal_data() -> None:
    texts = ["jane.doe+news@example.org", "(415) 555-2671", "+44 20 7946 0958", "4111 1111 1111 1111",
             "GB82 WEST 1234 5698 7654 32", "536-90-4399", "203.0.113.42", "2001:db8:85a3::8a2e:370:7334"]
    for text in texts:
        assert scan_pii(text, "response") and may_hold_pii(f"Sure, here it is:\n{text}.")
    assert not may_hold_pii("Your order ships tomorrow.\nThanks, it arrived!")


@pytest.mark.parametrize("text", [
    "Run git clone git@github.com:acme/widgets.git and then cd widgets.",
    "git remote add origin git@gitlab.example.com:group/sub/repo.git",
    "Set the remote to ssh://git@gitlab.example.com/group/repo.git instead.",
    "pip install git+ssh://git@github.com/acme/tool.git",
    "deploy with rsync -a build/ deploy@web01.example.com:/var/www/site",
])
def test_a_developer_pasting_a_git_remote_shares_no_email_address(text: str) -> None:
    assert scan_pii(text, "prompt") == []


@pytest.mark.parametrize(("text", "value"), [
    ("Write to bob@example.com: he answers within a day.", "bob@example.com"),
    ("Contact: ann@corp.io:", "ann@corp.io"),
    ("mailto:jane@example.org", "jane@example.org"),
])
def test_an_address_next_to_a_colon_in_prose_is_still_an_email(text: str, value: str) -> None:
    assert [(f.kind, text[f.start:f.end]) for f in scan_pii(text, "response")] == [("EMAIL", value)]


def test_personal_data_in_an_error_a_feedback_comment_or_metadata_is_found_but_not_kept() -> None:
    record = SimpleNamespace(
        prompt="hi", response="hello",
        error="quota exceeded for jane@corp.io", feedback_comment="call me back on (415) 555-2671",
        metadata={"max_tokens": 1024, "client": {"contact": ["x", "ann@corp.io"]}, "203.0.113.42": "seen"},
    )
    [d] = PiiDetector().detect([record])
    assert d.details["kinds"] == {"EMAIL": 2, "PHONE": 1, "IP": 1}
    assert d.details["severity"] == "medium"  # nothing in the response
    assert [(f["field"], f["start"], f["end"]) for f in d.details["findings"]] == [
        ("error", 19, 31), ("feedback_comment", 16, 30), ("metadata", 0, 11), ("metadata", 0, 12)]
    assert {f.path for f in d.findings if f.field == "metadata"} == {("client", "contact", 1), ("203.0.113.42", None)}
    for value in ("jane@corp.io", "555-2671", "ann@corp.io", "203.0.113.42", "contact"):
        assert value not in repr(d.details)


def test_records_without_the_extra_fields_or_with_empty_ones_are_scanned_as_before() -> None:
    bare = SimpleNamespace(prompt="I'm bob@corp.io", response="ok")
    empty = SimpleNamespace(prompt="I'm bob@corp.io", response="ok", error="", feedback_comment=None, metadata={})
    assert [d.details["kinds"] for d in PiiDetector().detect([bare, empty])] == [{"EMAIL": 1}, {"EMAIL": 1}]


def test_metadata_of_settings_has_no_text_to_scan_and_a_card_number_stored_as_a_number_does() -> None:
    assert metadata_texts({"max_tokens": 1024, "temperature": 0.7, "stream": True, "stop": None}) == []
    assert metadata_texts({"card": 4111111111111111, "ids": [12, "a"]}) == [
        (("card",), "4111111111111111"), (("ids", 1), "a")]
    [d] = PiiDetector().detect([SimpleNamespace(prompt="hi", response="ok", metadata={"card": 4111111111111111})])
    assert [(f.kind, f.path) for f in d.findings] == [("CARD", ("card",))]


def test_version_numbers_no_longer_wake_the_ip_scan() -> None:
    assert not may_hold_pii("Python 3.11.7 and client 1.2.2 are required.")
    assert may_hold_pii("from 203.0.113.42") and may_hold_pii("since 2024")


def test_iban_starts_found_from_their_check_digits_are_the_start_patterns_matches() -> None:
    """`_iban_starts` finds the matches of the start patterns from their check digits (a fast literal search):
    the same starts as the patterns' own finditer, overlaps and separators included."""
    rng = random.Random(15)
    for _ in range(20000):
        shape = bytes(rng.choice(b"Aa0-(.:+@ ") for _ in range(rng.randint(0, 24)))
        assert pii._iban_starts(shape, pii._IBAN_DIGITS, pii._IBAN_START, b"-"[0]) == \
            [m.start() for m in pii._IBAN_START.finditer(shape)], shape
        text = "".join(rng.choice("DEde GB89 -é€12") for _ in range(rng.randint(0, 24)))
        assert pii._iban_starts(text, pii._IBAN_DIGITS_TEXT, pii._IBAN_START_TEXT, " ") == \
            [m.start() for m in pii._IBAN_START_TEXT.finditer(text)], text


@pytest.mark.parametrize("text", ["IBAN DE89 3704 0044 0532 0130 00, thanks",
                                  "Überweisung an DE89 3704 0044 0532 0130 00"])
def test_an_iban_is_found_in_ascii_and_other_texts(text: str) -> None:
    found = [(f.kind, text[f.start:f.end]) for f in scan_pii(text, "prompt")]
    assert found == [("IBAN", "DE89 3704 0044 0532 0130 00")]

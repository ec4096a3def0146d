"""Redaction: stored text keeps its shape, each finding becomes a typed placeholder, nothing leaks."""

from __future__ import annotations

from detectors.base import Finding
from detectors.pii import scan_pii
from detectors.redact import redact, redact_metadata
from detectors.secrets import scan_secrets


def test_each_finding_becomes_its_placeholder() -> None:
    text = "Mail jane@corp.io or call (415) 555-2671; key AKIA4HKQ2ZP7LW3NXR6T."
    findings = scan_pii(text, "response") + scan_secrets(text, "response")
    assert redact(text, findings) == "Mail [EMAIL] or call [PHONE]; key [AWS_KEY]."


def test_overlapping_findings_merge_and_the_secret_kind_wins() -> None:
    text = "token=abcd1234@corp.io end"
    findings = [Finding("EMAIL", "prompt", 6, 22), Finding("PASSWORD", "prompt", 6, 22),
                Finding("IP", "prompt", 10, 24)]
    assert redact(text, findings) == "token=[PASSWORD]nd"


def test_text_without_findings_is_unchanged() -> None:
    assert redact("nothing to hide", []) == "nothing to hide"


def test_a_pasted_private_key_disappears_entirely() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    text = f"Here it is:\n{pem}\nDone."
    out = redact(text, scan_secrets(text, "response"))
    assert out == "Here it is:\n[PRIVATE_KEY]\nDone."


def test_metadata_is_redacted_in_a_copy_values_and_keys_alike() -> None:
    metadata = {"n": 1, "to": {"bob@corp.io": "hi bob@corp.io", "ann@corp.io": "x"}, "card": 4111111111111111}
    findings = [Finding("EMAIL", "metadata", 3, 14, ("to", "bob@corp.io")),
                Finding("EMAIL", "metadata", 0, 11, ("to", "bob@corp.io", None)),
                Finding("EMAIL", "metadata", 0, 11, ("to", "ann@corp.io", None)),
                Finding("CARD", "metadata", 0, 16, ("card",))]
    assert redact_metadata(metadata, findings) == {
        "n": 1, "to": {"[EMAIL]": "hi [EMAIL]", "[EMAIL]#2": "x"}, "card": "[CARD]"}
    assert metadata["to"]["bob@corp.io"] == "hi bob@corp.io"  # the record keeps its raw metadata

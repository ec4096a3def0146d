"""Phone numbers as people in a dozen countries write them, cards of every issuer and IBANs in any case are
found; order numbers, dates, versions and ids that share their digits are not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from detectors.pii import PiiDetector, card_ok, may_hold_pii, phone_ok, scan_pii


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in scan_pii(text, "prompt")]


@pytest.mark.parametrize(("number", "country"), [
    ("020 7946 0958", "GB"), ("07400 123390", "GB"), ("030 1234567", "DE"), ("01512 3457865", "DE"),
    ("06 12 34 56 78", "FR"), ("01.23.54.32.31", "FR"), ("612 34 56 78", "ES"), ("312 345 6789", "IT"),
    ("06-12345678", "NL"), ("98765 43210", "IN"), ("(11) 91234-5678", "BR"), ("55 1234 5678", "MX"),
    ("0412 345 678", "AU"), ("(02) 9876 5432", "AU"), ("03-1234-5678", "JP"), ("090-1234-5678", "JP"),
    ("(415) 555-2671", "US"), ("415 555 2671", "US"),
])
def test_a_phone_number_in_its_countrys_national_format_is_found(number: str, country: str) -> None:
    text = f"You can reach me on {number} after six."
    assert _found(text) == [("PHONE", number)], country
    assert may_hold_pii(f"Hello\n{text}")


@pytest.mark.parametrize("number", [
    "+44 20 7946 0958", "+49 30 1234567", "+33 6 12 34 56 78", "+91 98765 43210", "+55 11 91234-5678",
    "+81 3-1234-5678", "+86 131 2345 6789", "+27 71 123 4567", "+234 802 123 4567", "+82 10-2012-3456",
    "0044 20 7946 0958", "+46 70 123 45 67", "+48 512 345 678",
])
def test_a_phone_number_with_its_country_code_is_found_for_any_country(number: str) -> None:
    assert _found(f"Call {number} today") == [("PHONE", number)]


@pytest.mark.parametrize("text", [
    "Your order #48213071 shipped on 2024-03-15.", "Meeting on 15.03.2024 at 10:30.",
    "Upgrade to v2.10.3 or build 10.0.19041.1237.", "The epoch timestamp 1700000000 is in 2023.",
    "ISBN 978-3-16-148410-0 is the second edition.", "PO 4500012345 was approved.", "Ship to ZIP 94105-1234.",
    "Customer 123456789 opened ticket 987654.", "Serial SN 2019 4471 0032.", "The account id is 000-12-3456.",
    "The old hotline (055) 123-4567 is no longer in service.", "Population grew from 8,336,817 to 8,804,190.",
])
def test_ids_dates_versions_and_order_numbers_are_not_phones(text: str) -> None:
    assert _found(text) == []


@pytest.mark.parametrize(("ident", "region"), [
    ("5731-4402817-36", "DE"), ("1392 456789", "GB"), ("3-9876-5432", "AU"),  # valid only with a 0 put in front
])
def test_digits_that_are_a_phone_only_with_the_trunk_zero_added_are_an_id_where_people_write_the_zero(
        ident: str, region: str) -> None:
    """Found on python-stdnum's documented identifiers (bank accounts, tax ids): Germans, Britons and
    Australians write their national numbers with the leading 0; Indians and Brazilians often leave it out."""
    assert not phone_ok(ident, [region]) and phone_ok(f"0{ident}", [region])
    assert phone_ok("98765 43210", ["IN"]) and phone_ok("(11) 91234-5678", ["BR"])


def test_an_unseparated_run_of_digits_is_an_id_not_a_phone_unless_it_has_its_country_code() -> None:
    assert not phone_ok("0612345678") and phone_ok("+33612345678")


@pytest.mark.parametrize(("number", "issuer"), [
    ("6759 6498 2648", "Maestro 12"), ("675964982648", "Maestro 12, bare"), ("6304000000000000", "Maestro 16"),
    ("5018 0000 0009", "Maestro"), ("3530 1113 3330 0000", "JCB"), ("3566002020360505", "JCB"),
    ("2200 0000 0000 0004", "Mir"), ("6200000000000005", "UnionPay"), ("9792 0000 0000 0003", "Troy"),
    ("36227206271667", "Diners"), ("6011 0009 9013 9424", "Discover"),
])
def test_cards_of_every_major_issuer_are_found(number: str, issuer: str) -> None:
    assert card_ok(number), issuer
    assert _found(f"charge {number} please") == [("CARD", number)]


def test_a_twelve_digit_id_that_passes_luhn_is_not_a_maestro_card() -> None:
    assert not card_ok("123456789015") and not card_ok("600000000008")


@pytest.mark.parametrize("iban", ["de89 3704 0044 0532 0130 00", "de89370400440532013000", "gb82west12345698765432",
                                  "Gb82 West 1234 5698 7654 32"])
def test_an_iban_typed_in_lower_or_mixed_case_is_found(iban: str) -> None:
    text = f"Send it to {iban} today."
    assert _found(text) == [("IBAN", iban)]
    assert may_hold_pii(text)


def test_a_deployment_chooses_the_regions_whose_national_formats_count() -> None:
    record = SimpleNamespace(prompt="ring 06 12 34 56 78 or +44 20 7946 0958", response="ok")
    [us_only] = PiiDetector(phone_regions=["US"]).detect([record])
    [default] = PiiDetector().detect([record])
    assert us_only.details["kinds"] == {"PHONE": 1} and default.details["kinds"] == {"PHONE": 2}
    cfg = DetectorsConfig.model_validate({"pii": {"phone_regions": ["US"]}})
    [annotation] = DetectorChain.from_config(cfg).run([SimpleNamespace(
        id="r", prompt=record.prompt, response="ok", status="ok", tokens_out=None, finish_reason="stop")])
    assert annotation.signals["pii_count"] == 1


def test_an_unknown_region_is_one_clear_error_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="phone_regions"):
        DetectorsConfig.model_validate({"pii": {"phone_regions": ["UK"]}})


@pytest.mark.parametrize("text", [
    "The device connected from 185.124.92.195 yesterday.",  # an IPv4 address, also a valid dotted phone shape
    'conn = "mongodb+srv://svc:iK5G272khDWBi2@cluster0.abcde.mongodb.net/app"',  # a URL's password, not a mailbox
    "https://hooks.slack.com/triggers/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",  # a path id
])
def test_addresses_url_passwords_and_path_ids_are_not_phones_mailboxes_or_cards(text: str) -> None:
    assert [kind for kind, _ in _found(text)] in ([], ["IP"])


def test_a_spanish_number_written_with_dots_is_a_phone_though_shaped_like_an_address() -> None:
    assert _found("Llámame al 612.34.58.95 mañana") == [("PHONE", "612.34.58.95")]  # 612 > 255: not an IPv4


# Fixes found on independent data (bench/independent.py: python-stdnum's documented IBANs, Faker's IBANs of every
# locale, libphonenumber's example numbers of every region).

@pytest.mark.parametrize("iban", [
    "BE 48 3200 7018 4927", "be 48 3200 7018 4927",  # a space between country code and check digits
    "ES77 1234-1234-16 1234567890", "es77-1234-1234-1612-3456-7890",  # hyphens as group separators
    "RU49 4768 5727 5008 58NZ RZRS ZXFY RXBU Q", "ru4947685727500858nzrzrszxfyrxbuq",  # countries joined since 2020
])
def test_an_iban_as_banks_print_it_or_of_a_country_new_to_the_registry_is_found(iban: str) -> None:
    assert _found(f"Send the refund to {iban} please.") == [("IBAN", iban)]


@pytest.mark.parametrize("text", [
    "Send the refund to BE 48 3200 7018 4928 please.",  # one digit off: mod-97 fails
    "ES77 1234--1234-16 1234567890",  # a double separator is not how an IBAN is written
    "In 2024 we sold 3200 7018 4927 units",  # "In 20" is no country code and check digits
    "RU49 4768 5727 5008 58NZ RZRS ZXFY RXBU",  # a Russian IBAN one group short
])
def test_iban_look_alikes_with_spaces_or_hyphens_are_not_ibans(text: str) -> None:
    assert ("IBAN" not in {kind for kind, _ in _found(text)})


def test_the_iban_lengths_agree_with_the_registry_python_stdnum_ships() -> None:
    import re
    from pathlib import Path

    stdnum = pytest.importorskip("stdnum")
    from detectors.pii import _IBAN_LENGTHS

    registry = (Path(stdnum.__file__).parent / "iban.dat").read_text()
    lengths = {m[1]: 4 + sum(int(n) for n in re.findall(r"(\d+)!?[nac]", m[2]))
               for m in re.finditer(r'^([A-Z]{2}) country="[^"]*" bban="([^"]+)"', registry, re.M)}
    assert lengths == _IBAN_LENGTHS


@pytest.mark.parametrize("number", ["+672 10 6609", "+992 372 12 3456", "+688 90 1234"])
def test_an_international_number_shaped_like_an_ssn_is_a_phone_not_an_ssn(number: str) -> None:
    assert _found(f"Support line {number} (weekdays).") == [("PHONE", number)]


def test_published_example_ssns_are_not_leaks_but_an_issuable_one_is() -> None:
    assert _found("e.g. 078-05-1120 or 123-45-6789 or 219-09-9999") == []
    assert _found("her SSN is 536-90-4399") == [("SSN", "536-90-4399")]
    assert _found("her SSN is 536 90 4399") == [("SSN", "536 90 4399")]


def test_an_iban_with_a_space_after_the_country_code_only_is_found() -> None:
    assert _found("IBAN: ME 2551 0000 0000 0623 4133.") == [("IBAN", "ME 2551 0000 0000 0623 4133")]

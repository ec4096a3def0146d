"""Credentials of every provider family are found with their span; placeholders, documentation examples,
empty key blocks and a secret's *name* are not; both trigger engines (hyperscan, re) find the same."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from types import SimpleNamespace

import pytest

from detectors import secrets
from detectors.credentials import _steps, placeholder
from detectors.multimatch import MultiMatch, Trigger
from detectors.secrets import SecretsDetector, may_hold_secrets, scan_secrets

PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi+PSm0vFZ1x5\nqLZ3kHc8R2XvPd0aKj7fLx1Ns4QwUeB9rT3mGy8Yh5Vb"

# One real-format value per kind, in the vendor's documented shape (random bodies).
TOKENS = [
    ("AWS_KEY", "ASIA54ML6LG4TJFCZ4KA"),
    ("GCP_API_KEY", "AIzaiheyEd7P4zDL-ak6J0kGODKdinZnLXicaBA"),
    ("GCP_OAUTH", "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"),
    ("GCP_OAUTH", "ya29.a0XoY1BaIMcAxYmfsB4HbQLXjjlAFbVV6q9rXxtNDFyuzX9k1gnneGEYG1_LwiqD9jJB"),
    ("OPENAI_KEY", "sk-proj-1QX647kdNl9cDo-_GbVMszvR4-EPZGz3zBXCOArr-SfiJvo58JB0W-O5PjeJfJTNcrZ6ydIE"),
    ("ANTHROPIC_KEY", "sk-ant-api03-ZyRHJouZrQV3xZAxjRM8mbTgDIMRBZxjX-BpYconEG4ZgzWbmHGJR1m4jfXuX8v-h2-1KZNUK9I"
                      "KLdbFfu0XgOYgOjC29AA"),
    ("HUGGINGFACE_TOKEN", "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"),
    ("GITHUB_TOKEN", "github_pat_MRPMP6MCDARQ1BCGO8REFK_JpOxEEwnvvFVi13eZhCZ0N1XXnCBVqyZjxjP1MusJWV06lBPxLgD4ufIf"),
    ("GITHUB_TOKEN", "ghs_1kQzX8aP0mN3bV7cR2tY5uW9eL4dF6gH0jKq"),
    ("GITLAB_TOKEN", "glffct-XuZgG8KUWp0ofoRWMQmZ"),  # feature-flag client token
    ("GITLAB_TOKEN", "gloas-cc7054f95636c7f750bac52765d23b3c64aeeafd0ab38269b5c9021b231bd1d6"),  # OAuth app secret
    ("BITBUCKET_TOKEN", "ATBBHyhKzlvHiqpK7vdPYcUQYjz9FMgEBDD9FEDD"),
    ("SLACK_TOKEN", "xapp-1-AUX79CIO143-5312516091685-f7f9821cba6f04e64375a5091705ea0523c73dd38da8f1e6667c96c2"),
    ("SLACK_TOKEN", "xoxe-1-nIyAedSrx8rNbHlVqGzK7PTnrgxdjU7XxiXpU16hbu1yCf24yuqX4HQdtzMpFcmjGMicnt"),
    ("SLACK_TOKEN", "https://hooks.slack.com/workflows/T02ABCDE7/A04FGHIJ9K/469912345678901234/Zx8vQ2mLp4Rt7Wy1Ks9Nd3Fb"),
    ("DISCORD_TOKEN", "NTRulv2Wn1K1iKAPTiNV1rZkim.WLDxb8.rII1GYXrgupfyKTpZQd9vViN4KCY0sXBKs4wnG"),
    ("DISCORD_TOKEN", "https://discord.com/api/webhooks/136220402355359657/HJjHkgxYnd0m-KGuynBqytrjCmHSf41Xol1Aea_"
                      "AJk-Ha1tHh-zui0Ugu96ZY5yeRpAN"),
    ("TELEGRAM_TOKEN", "4799341196:AAQBxBgqMAwSntsVSx3cbZgZmPAcwPinP38"),
    ("STRIPE_KEY", "sk_live_ol17PY8j1hZgGqqel3cTvqHZ"),
    ("STRIPE_KEY", "whsec_Kd82hQm3Lx0pTz7Rv4Nc9Yb1Wf6Gs5Je"),
    ("SQUARE_TOKEN", "EAAAhi7ZBA-VsYmkavG8p37tcVUdnS0omMpiEqlNLTFF07gB5vn6rntsw0p0bDto"),
    ("BRAINTREE_TOKEN", "access_token$production$yks7bzh5t8cy0tfn$83daf643c9887b2dfcbdae31915cac73"),
    ("SENDGRID_KEY", "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"),
    ("MAILGUN_KEY", "key-ed3ea23b33c9363da4348fd1dc6ffdcf"),
    ("TWILIO_KEY", "SK35a60b5bcceeb4fca2f78bd1828c76d2"),
    ("NPM_TOKEN", "npm_JlA6HDyFholWNgRtG2jcSwKkJFvFjC8WwZtg"),
    ("PYPI_TOKEN", "pypi-AgEIcHlwaS5vcmcFtBzSpuyvVPUnLHoFTcwGLKGqH_jIdKJtXuqluHNg2UD95VSBISDjojManpyVNTs"),
    ("DOCKER_TOKEN", "dckr_pat_9CQxEHGcxNDiMQAeFlkF4Bf1rVT"),
    ("GRAFANA_TOKEN", "glsa_gkN1dM2XbMShsWxXVzXWXq84ncQatHUK_5f4f140a"),
    ("NEWRELIC_KEY", "NRAK-82DFRDPZCQM6G1W9DE54JSU66VM"),
    ("SENTRY_TOKEN", "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"),
    # formats found missing on gitleaks' rule fixtures (bench/scanner_fixtures.py); our own random bodies
    ("GCP_API_KEY", "AQ.Ab8RN69naHVck6pbd4ZRj2SxphvDTwrzqwo72n3wZuot7UGAoK"),  # Gemini, newer kind
    ("BITBUCKET_TOKEN", "BBDC-NzU2ODQxMjM0NTY3OkqM3vT0xZp7Lm2Wc9Yh4Bd1Ns6F"),  # Bitbucket Data Center
    ("SLACK_TOKEN", "http://hooks.slack.com/services/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"),
    ("SLACK_TOKEN", "hooks.slack.com/triggers/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"),
    ("SLACK_TOKEN", "xoxc-2718281828-3141592653-1618033988-" + "9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e" * 2),
    ("SLACK_TOKEN", "xoxd-Kq3vT0xZ%2Bp7Lm2Wc9Yh4Bd1Ns6Fg8Jr5Ue0Ia3Oe7Tk2Xw9Cv4Hb6Qz1/mN8bV5cX2zL7kJ4hG1fD9sA6pO3iU0"),
    ("SQUARE_TOKEN", "sq0atp-Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns6Fg8Jr5Ue0Ia3"),
    ("STRIPE_KEY", "rk_prod_Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns6F"),
    ("SENDGRID_KEY", "SG.305f3x2u2ze5bmi8lbs75jghzde39s=z6ol86wfpttkuy4v2er4jh5yyaqfsec2dqk"),
    ("GRAFANA_TOKEN", "eyJrIjoiWk1hN2RxM0xwOXZUMnhCNHJZNmNXMUtuOGZHMGpIMnMiLCJuIjoiY2kiLCJpZCI6MX0="),
    ("PRIVATE_KEY", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----"),
    ("PRIVATE_KEY", f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n{PEM_BODY}\n-----END PGP PRIVATE KEY BLOCK-----"),
]


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "response")]


@pytest.mark.parametrize(("kind", "value"), TOKENS)
@pytest.mark.parametrize("carrier", ["{v}", "export MY_VAR={v}", "Why does `{v}` give me a 401?"])
def test_a_pasted_token_of_every_provider_is_found_whole_wherever_it_is_written(kind: str, value: str,
                                                                                carrier: str) -> None:
    text = carrier.format(v=value)
    assert _found(text) == [(kind, value)]
    assert may_hold_secrets(f"hello\n{text}")


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("DefaultEndpointsProtocol=https;AccountName=acct27;AccountKey=8Od4KTCCOtR43wxv8TSBOC9UhD/gidmPfT+Xin1cwIftPg7K"
     "CcTFUaFLMHbcUN1wIwoum8yN4F0XUH74CKcLMY==;EndpointSuffix=core.windows.net", "AZURE_KEY",
     "8Od4KTCCOtR43wxv8TSBOC9UhD/gidmPfT+Xin1cwIftPg7KCcTFUaFLMHbcUN1wIwoum8yN4F0XUH74CKcLMY=="),
    ("https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=Qm9vN2xLc3R1ZkZxWmJ5d0hOcXJ0c2tDZ0p4bXRn%3D",
     "AZURE_KEY", "Qm9vN2xLc3R1ZkZxWmJ5d0hOcXJ0c2tDZ0p4bXRn%3D"),
    ("DATABASE_URL=postgresql://app:OhNa7Rc3Kty40Q@db.internal:5432/prod", "DATABASE_URL", "OhNa7Rc3Kty40Q"),
    ("mongodb+srv://svc:Zp4!qT9w@cluster0.abcde.mongodb.net/app", "DATABASE_URL", "Zp4!qT9w"),
    ("My AWS secret key kEL+7AtSGUuR7q4IfFMnihFPD4dE+XVCeTHwUWAN stopped working", "AWS_SECRET_KEY",
     "kEL+7AtSGUuR7q4IfFMnihFPD4dE+XVCeTHwUWAN"),
    ("secret_access_key = kEL+7AtSGUuR7q4IfFMnihFPD4dE+XVCeTHwUWAN", "AWS_SECRET_KEY",  # AWS's own variable name
     "kEL+7AtSGUuR7q4IfFMnihFPD4dE+XVCeTHwUWAN"),
    ("Reply to incoming+acme-webapp-4821-k3lm9pq2rs7tv1wx5yz8ab4cd-issue@gitlab.example.org to open an issue",
     "GITLAB_TOKEN", "k3lm9pq2rs7tv1wx5yz8ab4cd"),  # the token in a project's incoming e-mail address
    ("Cookie: _gitlab_session=9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e; path=/", "GITLAB_TOKEN",
     "9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e"),  # a signed-in session
    ('SENTRY_AUTH_TOKEN = "9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a"', "SENTRY_TOKEN",
     "9f3a7c1e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a"),
    ('MISTRAL_API_KEY = "Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns"', "PASSWORD", "Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns"),  # not Mistral's shape
    ('co = cohere.Client("aE4EdlwHhK7KjVhCgnP88hyt0A6AlnQ3LtJdMieB")', "COHERE_KEY",
     "aE4EdlwHhK7KjVhCgnP88hyt0A6AlnQ3LtJdMieB"),
    ('client = Mistral(api_key="ni9ILUE2781h8DbQrxL8CFt3yeGy3Sm1")', "MISTRAL_KEY", "ni9ILUE2781h8DbQrxL8CFt3yeGy3Sm1"),
    ("DD_API_KEY=1f84d43be07718f9cd3d68a6e7ad838a", "DATADOG_KEY", "1f84d43be07718f9cd3d68a6e7ad838a"),
    ("TWILIO_AUTH_TOKEN=9c01fe4cf49b0317b2bb52799f6f80a8", "TWILIO_KEY", "9c01fe4cf49b0317b2bb52799f6f80a8"),
])
def test_keys_known_by_their_surroundings_are_found(text: str, kind: str, value: str) -> None:
    assert _found(text) == [(kind, value)]


@pytest.mark.parametrize("text", [
    'var dbPassword string = "Odx*9kOCFIrb2E"', 'token := "Odx*9kOCFIrb2E"', '$password .= "Odx*9kOCFIrb2E";',
    "'password' => 'Odx*9kOCFIrb2E',", ':password => "Odx*9kOCFIrb2E"', 'props.setProperty("db.password", '
    '"Odx*9kOCFIrb2E");', "TOKEN ?= Odx*9kOCFIrb2E", "PASSWD ::= Odx*9kOCFIrb2E", "<password>\n    Odx*9kOCFIrb2E\n"
    "</password>", '{"credentials": "Odx*9kOCFIrb2E"}', "spring.datasource.password=Odx*9kOCFIrb2E",
    'String password = "Odx*9kOCFIrb2E";', "export DB_PASSWORD='Odx*9kOCFIrb2E'", '$Password = "Odx*9kOCFIrb2E"',
    'DB_TOKEN :::= "Odx*9kOCFIrb2E"', '{"app.ini": "DB_TOKEN=Odx*9kOCFIrb2E\\nDEBUG=false"}',
    "creds = Odx*9kOCFIrb2E", 'database_pw = "Odx*9kOCFIrb2E"', "service-pw: Odx*9kOCFIrb2E",
])
def test_a_password_assigned_in_any_common_syntax_is_found(text: str) -> None:
    assert _found(text) == [("PASSWORD", "Odx*9kOCFIrb2E")]
    assert may_hold_secrets(f"hi\n{text}")


@pytest.mark.parametrize("text", [
    "ghp_" + "x" * 36, "github_pat_" + "x" * 82, "glpat-" + "x" * 20, "sk-proj-" + "x" * 48, "AKIAXXXXXXXXXXXXXXXX",
    "GITHUB_TOKEN=ghp_<your-token-here>", "OPENAI_API_KEY=sk-...", "token: ${GITHUB_TOKEN}",
    "password: {{ vault_db_password }}", 'api_key = os.environ["OPENAI_API_KEY"]', "secret = ENV['APP_SECRET']",
    "sk-1234567890abcdef1234567890abcdef1234567890abcdef", "HF_TOKEN=hf_YOUR_TOKEN_HERE_xxxxxxxxxxxxxxxxxx",
])
def test_placeholders_and_templates_are_not_leaks(text: str) -> None:
    assert _found(text) == []


@pytest.mark.parametrize("text", [
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "My AWS key is AKIAIOSFODNN7EXAMPLE and secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"',
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
])
def test_the_examples_vendors_print_in_their_documentation_never_page(text: str) -> None:
    """An LLM explaining AWS configuration prints the documentation's key pair: that is not a leak."""
    [d] = SecretsDetector().detect([SimpleNamespace(prompt="how do I configure the CLI?", response=text)])
    assert (d.flagged, list(d.findings)) == (False, [])


@pytest.mark.parametrize("text", [
    "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nREDACTED\n-----END PRIVATE KEY-----",
    "Paste the file that starts with -----BEGIN RSA PRIVATE KEY----- into the box.",
])
def test_an_empty_or_one_word_key_block_is_not_a_key(text: str) -> None:
    assert _found(text) == []


@pytest.mark.parametrize("text", [
    'password = "DB_PASSWORD"', "secret_name: prod-db-password", "tokenUrl: https://auth.example.com/oauth/token",
    'password_file = "/run/secrets/db.txt"', 'secret = "secrets.json"',
    'csrf_token = "8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"',
    '<input type="hidden" name="csrf_token" value="{{ csrf_token }}">', "token_type: bearer_token",
    'password_url = "https://corp.example/reset"', "api_key_header: X-Api-Key",
    "datadog trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "Deployed with aws-cdk at commit 9fceb02d0ae598e95dc970b74767f19372d61af8.",
    "Stripe secret keys start with sk_live_ and a GitHub token with ghp_ followed by 36 characters.",
    # found on gitleaks' false positives: a cipher's name, a value already encrypted or hashed, a token meant
    # to be public, the joke password of documentation, a too-short Slack-like string, a placeholder's words
    'password: "AES-256-GCM"', 'password: "PBEWithHmacSHA256AndAES_256"', 'password: "U2FsdGVkX1+q3vT0xZp7Lm2W"',
    'password: "vault:v1:Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns"', 'password: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk"',
    'publicToken = "Kq3vT0xZp7Lm2Wc9Yh4Bd1Ns6Fg8Jr5Ue0Ia3"', "postgres://admin:hunter2@db.internal/app",
    "xoxb-20481-qk3vt2", "xoxe.xoxp-1-SlackAppConfigurationAccessTokenHere", "xoxe.xoxp-1-RANDOMSTRINGHERE",
    'notes = "Maven - io.jsonwebtoken:jjwt-jackson-0.11.2"',
])
def test_a_secrets_name_a_url_a_file_or_a_form_field_is_not_a_secret(text: str) -> None:
    assert _found(text) == []


def test_placeholder_knows_templates_repeats_sequences_and_examples() -> None:
    assert placeholder("ghp_" + "ab" * 18, 4) and placeholder("<token>") and placeholder("abcdefghijklmnop")
    assert not placeholder("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", 4)


def _corpus() -> Iterator[str]:
    for _, value in TOKENS:
        yield f"I pasted {value} by mistake"
    yield ('password = "Odx*9kOCFIrb2E" and AKIAIOSFODNN7EXAMPLE; '
           "my aws secret is 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")
    yield "naïve café: password = 'Zp4!qT9w' then 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"  # non-ASCII offsets
    yield "Nothing to see here, just a sentence about tokens and keys."


def test_hyperscan_and_the_pure_python_engine_find_the_same() -> None:
    """Platforms without a hyperscan wheel fall back to `re`: same findings, same prefilter verdicts."""
    texts = list(_corpus())
    fast = [(scan_secrets(t, "prompt"), may_hold_secrets(t)) for t in texts]
    try:
        secrets.use_engine("re")
        slow = [(scan_secrets(t, "prompt"), may_hold_secrets(t)) for t in texts]
    finally:
        secrets.use_engine("auto")
    assert fast == slow
    assert sum(1 for found, _ in fast if found) == len(texts) - 1


def test_trigger_offsets_are_characters_not_bytes() -> None:
    engine = MultiMatch([Trigger("ghp_")])
    assert engine.hits("é ghp_") == [(0, 2, 6)]


# Pieces of texts that reach every branch of the secrets prefilter: token openings, anchor words with and without
# an operator after them, prose statements, context words with key-shaped runs, and characters where Python's
# regexes and hyperscan's part ways (non-ASCII word characters, Unicode case folding, the \x1c separator).
_PREFILTER_PIECES = [
    "password", "Password", "PASSWORD", "passwd", "pwd", "pw", "passphrase", "passcode", "secret", "token", "api_key",
    "API-KEY", "access_key", "private-key", "credential", "creds", "aws", "AWS", "mistral", "cohere", "datadog_api_key",
    " is ", " was ", " IS ", " has been ", " will be ", " for the admin account ", " now ", "=", ":", ": ", ":=", "=>",
    "?=", ".=", ",", '"', "'", " ", "\t", "\n", "\x1c", "\xa0", "é", "ſ", "K", "_", ".", "-", "hunter2", "s3cret!",
    "kEL+7AtSGUuR7q4IfFMnihFPD4dE+XVCeTHwUWAN", "0123456789abcdef0123456789abcdef", "ghp_", "AKIA", "naïve", " string ",
]


def test_the_prefilter_scan_says_what_testing_every_trigger_hit_says() -> None:
    """`may_hold_secrets` settles most texts with one scan of its own patterns (`secrets._presence`); it must
    say exactly what testing each trigger's hit does (`_promising`), in ASCII texts and the others."""
    if secrets._prefilter is None:
        pytest.skip("hyperscan is not installed: the prefilter is the per-hit test itself")
    rng = random.Random(15)
    verdicts: Counter[tuple[bool, bool, str]] = Counter()
    for _ in range(6000):
        text = "".join(rng.choice(_PREFILTER_PIECES) for _ in range(rng.randint(1, 12)))
        expected = secrets._engine.any(text, secrets._promising)
        assert may_hold_secrets(text) == expected, text
        found = secrets._prefilter[0 if text.isascii() else 1].scan(text)
        verdicts[expected, text.isascii(), "scan" if found is None or not found else "per-hit"] += 1
    # the corpus reaches each way of deciding, in both kinds of text
    assert {(yes, ascii_only, how) for yes in (True, False) for ascii_only in (True, False)
            for how in ("scan", "per-hit")} - {(True, True, "per-hit")} <= set(verdicts)


def test_sequential_steps_are_counted_as_the_pairwise_loop_counts_them() -> None:
    rng = random.Random(15)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-+/=*.{}\x7f\x80é€"
    for _ in range(5000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.3:
            value = "0123456789abcdefghijk"[:rng.randint(1, 21)] + value
        expected = sum(1 for a, b in pairwise(value) if ord(b) - ord(a) == 1)
        assert _steps(value, value.isascii()) == expected, value


@pytest.mark.parametrize("value", ["EXAMPLEkey9f8a7b", "Kx9_YOUR_KEY_12", "tokenHERE9a8b7c6d", "ſample9a8b7c6d5e"])
def test_placeholder_words_count_in_any_case(value: str) -> None:
    assert placeholder(value)


def test_a_batch_prefilter_says_what_each_text_alone_says() -> None:
    """`SecretsDetector` asks the prefilter about a batch at once (`may_hold_secrets_many`, its ASCII texts in one
    scan): a token cut between two texts is in neither."""
    rng = random.Random(16)
    for _ in range(300):
        texts = ["".join(rng.choice(_PREFILTER_PIECES) for _ in range(rng.randint(0, 10)))
                 for _ in range(rng.randint(1, 40))]
        assert secrets.may_hold_secrets_many(texts) == [may_hold_secrets(t) for t in texts]
    cut = ["see gh", "p_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx", "ghp_wWPw5k4aXcaT4fNP0Ucn"]
    assert secrets.may_hold_secrets_many(cut) == [False, False, True]

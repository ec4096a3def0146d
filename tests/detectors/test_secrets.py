"""Secrets: credentials are found with their full span; code that merely names a password is not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detectors.secrets import SecretsDetector, may_hold_secrets, scan_secrets

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4\nb3BlbnNzaC1rZXk\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("aws_access_key_id = AKIA4HKQ2ZP7LW3NXR6T", "AWS_KEY", "AKIA4HKQ2ZP7LW3NXR6T"),
    ("Use `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`.", "GITHUB_TOKEN", "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"),
    ("auth with glpat-xLYGq3sAC8hD9pQ2mZtw.", "GITLAB_TOKEN", "glpat-xLYGq3sAC8hD9pQ2mZtw"),
    ("SLACK=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ok", "SLACK_TOKEN",
     "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ('OpenAI(api_key="sk-proj-3xAmPlEkEy_4bCdEfGhIjKlMnOpQrStUvWxYz0123456789ab")', "OPENAI_KEY",
     "sk-proj-3xAmPlEkEy_4bCdEfGhIjKlMnOpQrStUvWxYz0123456789ab"),
    (f"here:\n{PEM}\nbye", "PRIVATE_KEY", PEM),
    (f"Authorization: Bearer {JWT}", "JWT", JWT),
    ('password = "Tr0ub4dor&3x"', "PASSWORD", "Tr0ub4dor&3x"),
    ("DB_PASSWORD=hunter2!x9 in the .env file", "PASSWORD", "hunter2!x9"),
    ('{"user": "app", "password": "s3cr3tP4ss!"}', "PASSWORD", "s3cr3tP4ss!"),
    ("aws_secret_access_key = q8Vn3Rk/TzW7pLx2Hd9sJfYb4Mc+Ge6Ua1Ni5Ko0", "AWS_SECRET_KEY",
     "q8Vn3Rk/TzW7pLx2Hd9sJfYb4Mc+Ge6Ua1Ni5Ko0"),
])
def test_credentials_are_found_with_their_full_span(text: str, kind: str, value: str) -> None:
    assert [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "response")] == [(kind, value)]


@pytest.mark.parametrize("text", [
    'Never hard-code credentials:\n```python\npassword = os.environ["DB_PASSWORD"]\n```',
    "from getpass import getpass\npassword = getpass()",
    "if password == confirm_password:\n    save(password=password)",
    "if password != old_password: rotate()",
    "def login(user: str, password: str) -> bool: ...",
    'Set max_tokens: 512 and temperature: 0.7; tokenizer = AutoTokenizer.from_pretrained("gpt2").',
    'Set API_KEY = "<your-api-key>", password: ******** and secret="${VAULT_SECRET}" in the template.',
    "password = user_password  # no literal",
    "Run pwd: /home/user then check the list.",
    "The commit sha is 9fceb02d0ae598e95dc970b74767f19372d61af8.",
    "Install scikit-learn; the task-queue-abcdefghijklmnopqrstuv worker is idle.",
    "Choose a strong password and never share your token with anyone.",
    "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln is not a JWT: its payload is not JSON",
])
def test_code_and_prose_about_secrets_hold_no_secret(text: str) -> None:
    assert scan_secrets(text, "response") == []


def test_a_secret_in_the_response_is_critical_and_in_the_prompt_high() -> None:
    leak = SimpleNamespace(prompt="what is the key?", response="It is AKIA4HKQ2ZP7LW3NXR6T.")
    pasted = SimpleNamespace(prompt="my key AKIA4HKQ2ZP7LW3NXR6T fails", response="Rotate it now.")
    clean = SimpleNamespace(prompt="hi", response="hello")
    d_leak, d_pasted, d_clean = SecretsDetector().detect([leak, pasted, clean])
    assert (d_leak.flagged, d_leak.details["severity"]) == (True, "critical")
    assert (d_pasted.flagged, d_pasted.details["severity"]) == (True, "high")
    assert (d_clean.flagged, d_clean.score, d_clean.details) == (False, 0.0, {})
    assert "AKIA" not in repr(d_leak.details)
    assert d_leak.details["findings"] == [{"kind": "AWS_KEY", "field": "response", "start": 6, "end": 26}]


@pytest.mark.parametrize(("text", "value"), [
    ("apikey=9f8e7d6c5b!", "9f8e7d6c5b!"), ("API-KEY: 'x9!ab77'", "x9!ab77"), ("access_key = Zk3!9dPq", "Zk3!9dPq"),
    ('PRIVATE-KEY="k3y!Val"', "k3y!Val"), ("passphrase: c0rrect-h0rse!", "c0rrect-h0rse!"),
    ("my pwd=Hunter2!x", "Hunter2!x"),
])
def test_every_spelling_of_an_assigned_credential_is_found(text: str, value: str) -> None:
    assert [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "prompt")] == [("PASSWORD", value)]


def test_the_record_level_prefilter_never_hides_a_credential() -> None:
    texts = [JWT, PEM, "aws_access_key_id = AKIA4HKQ2ZP7LW3NXR6T", "DB_PASSWORD=hunter2!x9 in the .env file",
             "https://hooks.slack.com/services/T0001/B0001/bW4kR9zQe2LpX7vN3sYc8TfA", "glpat-xLYGq3sAC8hD9pQ2mZtw"]
    for text in texts:
        assert scan_secrets(text, "prompt") and may_hold_secrets(f"hello\n{text}")
    assert not may_hold_secrets("Choose a strong password and never share your token with anyone.\nOK")


@pytest.mark.parametrize(("text", "value"), [
    ("my password is hunter2", "hunter2"),
    ("the password for the admin account is Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("Password: is s3cret!x", "s3cret!x"),
    ("The passcode is 8812-ab.", "8812-ab"),
    ("Your temporary password is Xk9!mQ2v, change it after signing in.", "Xk9!mQ2v"),
    ("my password was changed to abc123!! yesterday", "abc123"),
    ("The wifi password is `s3cr3t-W1fi`", "s3cr3t-W1fi"),
])
def test_a_user_who_types_their_password_into_a_sentence_has_it_found(text: str, value: str) -> None:
    assert [(f.kind, text[f.start:f.end]) for f in scan_secrets(text, "prompt")] == [("PASSWORD", value)]
    assert may_hold_secrets(f"Hello!\n{text}")


@pytest.mark.parametrize("text", [
    "The password is incorrect.",
    "Your password is too short",
    "the password is stored hashed, so we cannot send it to you",
    "A password is required to continue.",
    "The password is 8 characters long at minimum.",
    "Edit the template: the password is `<your-password>` until you change it.",
    "The password is case-sensitive and the passcode is 2FA-protected.",
    "The password is 8-64 characters; your password is 50% stronger now.",
    "if password is None: ask()",
    "the password is user_password in that module",
])
def test_a_support_answer_that_talks_about_passwords_reveals_none(text: str) -> None:
    assert scan_secrets(text, "response") == []


def test_prose_passwords_get_through_the_prefilter_and_prose_about_them_does_not() -> None:
    assert may_hold_secrets("Hi there\nthe password for the admin account is Tr0ub4dor&3")
    assert not may_hold_secrets("Why can't I log in?\nThe password is incorrect. Please try again.")
    assert not may_hold_secrets("To reset your password, click 'Forgot password' on the sign-in page.")


@pytest.mark.parametrize("text", [
    "password        =   'x1!abcd'",  # a long run of blanks before the operator
    "private_key_for_the_backup_svc = 'abc123!x'",  # 20 characters after the anchor
    "a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9 j=10 and then token: 9f8e7d6c5b!",  # more operators than windows
    '{"db": {"user": "app", "password": "s3cr3tP4ss!"}}',
])
def test_an_assignment_anywhere_before_its_operator_gets_through_the_prefilter(text: str) -> None:
    assert scan_secrets(text, "prompt") and may_hold_secrets(f"intro\n{text}\noutro")


def test_a_key_in_an_upstream_error_ranks_like_one_in_the_prompt_and_its_value_is_not_kept() -> None:
    record = SimpleNamespace(prompt="hi", response="", error="auth failed for key AKIA4HKQ2ZP7LW3NXR6T (403)",
                             feedback_comment="my password is hunter2, please fix", metadata={})
    [d] = SecretsDetector().detect([record])
    assert d.details["kinds"] == {"AWS_KEY": 1, "PASSWORD": 1}
    assert d.details["severity"] == "high"  # not the response: what a user pasted, not what the model leaked
    assert [(f["field"], f["start"], f["end"]) for f in d.details["findings"]] == [
        ("error", 20, 40), ("feedback_comment", 15, 22)]
    assert "AKIA" not in repr(d.details) and "hunter2" not in repr(d.details)


def test_a_metadata_value_under_a_credential_key_is_a_password_but_config_is_not() -> None:
    record = SimpleNamespace(prompt="hi", response="ok", metadata={
        "max_tokens": 1024, "token_type": "bearer1", "secret_name": "prod-db", "password": "********",
        "client": {"api_key": "9f8e7d6c5b!x", "headers": ["x", "Bearer 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"]},
        "openai_api_key": "sk-proj-3xAmPlEkEy_4bCdEfGhIjKlMnOpQrStUvWxYz0123456789ab",
    })
    [d] = SecretsDetector().detect([record])
    found = sorted((f.kind, f.path) for f in d.findings)
    assert found == [("GITHUB_TOKEN", ("client", "headers", 1)), ("OPENAI_KEY", ("openai_api_key",)),
                     ("PASSWORD", ("client", "api_key"))]
    assert all(f["field"] == "metadata" for f in d.details["findings"])
    assert "9f8e7d6c5b" not in repr(d.details) and "api_key" not in repr(d.details)


def test_a_record_whose_metadata_is_only_settings_has_no_secret() -> None:
    record = SimpleNamespace(prompt="hi", response="ok", error=None, feedback_comment="helpful",
                             metadata={"max_tokens": 1024, "temperature": 0.7, "region": "eu-west-1"})
    [d] = SecretsDetector().detect([record])
    assert (d.flagged, list(d.findings)) == (False, [])

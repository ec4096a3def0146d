"""The review page over HTTP: a reviewer signs in, labels, exports their own labels; a wrong token, a
forged form or another reviewer's sample gets nothing."""

from __future__ import annotations

import re
import ssl

import httpx
import orjson
import pytest

from monitor.config import Config, ReviewConfig
from monitor.review.app import ReviewServer


@pytest.fixture
def server(review_db):  # type: ignore[no-untyped-def]
    srv = ReviewServer(review_db.engine, Config(review=ReviewConfig(queue_size=5)), host="127.0.0.1", port=0)
    srv.start()
    yield f"http://127.0.0.1:{srv.port}", review_db
    srv.stop()


def _login(base: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=10)
    form = client.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)[1]
    page = client.post("/login", data={"token": token, "nonce": nonce})
    assert page.status_code == 200
    return client


def test_a_reviewer_signs_in_labels_and_exports_only_their_own_labels(server):
    base, db = server
    ana = _login(base, db.tokens["ana"])
    page = ana.get("/")
    assert "signed in as <b id=\"reviewer-name\">ana</b>" in page.text
    sample_id = int(re.search(r'<span id="sample-id">(\d+)</span>', page.text)[1])
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    assert db.tokens["ana"] not in page.text and db.tokens["bo"] not in page.text

    saved = ana.post(f"/samples/{sample_id}/label",
                     data={"csrf": csrf, "verdict": "incorrect", "tag": ["hallucination", "off-topic"],
                           "note": "invented a refund policy"})
    assert saved.status_code == 200 and f'<span id="sample-id">{sample_id}</span>' not in saved.text

    bo = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {db.tokens['bo']}"}, timeout=10)
    assert bo.get(f"/samples/{sample_id}").status_code == 404  # not in bo's queue
    assert bo.post(f"/samples/{sample_id}/label", data={"verdict": "correct"}).status_code == 404
    assert bo.get("/export?format=jsonl").text == ""

    rows = [orjson.loads(line) for line in ana.get("/export?format=jsonl").text.splitlines()]
    assert [(r["reviewer"], r["verdict"], r["tags"], r["note"]) for r in rows] == \
        [("ana", "incorrect", ["hallucination", "off-topic"], "invented a refund policy")]
    csv_text = ana.get("/export?format=csv").text
    assert csv_text.splitlines()[0].startswith("label_id,record_id") and "hallucination;off-topic" in csv_text
    assert "Cohen" in ana.get("/estimates").text or "two reviewers" in ana.get("/estimates").text


def test_a_wrong_token_gets_nothing(server):
    base, db = server
    anon = httpx.Client(base_url=base, timeout=10)
    for path in ("/", "/estimates", "/export?format=csv", "/samples/1"):
        response = anon.get(path, headers={"Authorization": "Bearer wkr_not-a-real-token"})
        assert response.status_code == 401 and response.text == "invalid token"
        redirected = anon.get(path, follow_redirects=False)
        assert redirected.status_code == 303 and redirected.headers["location"] == "/login"
    form = anon.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)[1]
    refused = anon.post("/login", data={"token": db.tokens["ana"][:-2], "nonce": nonce})
    assert refused.status_code == 401 and "Unknown or disabled token" in refused.text
    assert "wk_session" not in anon.cookies
    anon.cookies.set("wk_session", "1.99999999999.forged")
    assert anon.get("/", follow_redirects=False).status_code == 303


def test_a_form_posted_without_the_session_token_is_refused(server):
    base, db = server
    ana = _login(base, db.tokens["ana"])
    page = ana.get("/")
    sample_id = int(re.search(r'<span id="sample-id">(\d+)</span>', page.text)[1])
    forged = ana.post(f"/samples/{sample_id}/label", data={"verdict": "correct", "csrf": "guess"})
    assert forged.status_code == 403
    assert ana.get("/export?format=jsonl").text == ""
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_signing_out_ends_the_session_a_copied_cookie_is_refused_after(server):
    """Sign out on one device: the cookie taken before (a shared machine, a stolen copy) stops working too."""
    base, db = server
    ana = _login(base, db.tokens["ana"])
    copied = httpx.Client(base_url=base, timeout=10, cookies={"wk_session": ana.cookies["wk_session"]})
    assert copied.get("/", follow_redirects=False).status_code == 200
    page = ana.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    assert ana.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert copied.get("/", follow_redirects=False).status_code == 303
    assert _login(base, db.tokens["ana"]).get("/", follow_redirects=False).status_code == 200


def test_a_guessing_client_is_slowed_and_odd_sample_ids_are_404s(server):
    base, db = server
    anon = httpx.Client(base_url=base, timeout=10)
    statuses = []
    for _ in range(11):
        form = anon.get("/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        statuses.append(anon.post("/login", data={"token": "wkr_guess", "nonce": nonce[1] if nonce else ""})
                        .status_code)
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    huge = httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {db.tokens['ana']}"})
    assert huge.get("/samples/99999999999999999999").status_code == 404


def _self_signed(tmp_path):  # type: ignore[no-untyped-def]
    """A real certificate for 127.0.0.1, made with `cryptography` (what a user gets from their CA)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_over_tls_the_page_sends_hsts_and_secure_cookies(review_db, tmp_path):
    """`[review] certfile/keyfile`: HTTPS end to end, verified against the certificate like a browser would."""
    certfile, keyfile = _self_signed(tmp_path)
    config = Config(review=ReviewConfig(queue_size=5, certfile=certfile, keyfile=keyfile))
    srv = ReviewServer(review_db.engine, config, host="127.0.0.1", port=0)
    srv.start()
    try:
        base = f"https://127.0.0.1:{srv.port}"
        client = httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=certfile), timeout=10)
        form = client.get("/login")
        assert form.headers["strict-transport-security"].startswith("max-age=")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)[1]
        signed_in = client.post("/login", data={"token": review_db.tokens["ana"], "nonce": nonce})
        assert "secure" in signed_in.headers["set-cookie"].lower()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{srv.port}/login", timeout=5)  # no trust in the certificate: refused
    finally:
        srv.stop()
    plain = ReviewServer(review_db.engine, Config(review=ReviewConfig()), host="127.0.0.1", port=0)
    plain.start()
    try:
        assert "strict-transport-security" not in httpx.get(f"http://127.0.0.1:{plain.port}/login").headers
    finally:
        plain.stop()


def test_a_label_post_with_two_verdicts_a_file_or_a_huge_value_is_refused_without_echo(server):
    base, db = server
    ana = _login(base, db.tokens["ana"])
    page = ana.get("/")
    sample_id = int(re.search(r'<span id="sample-id">(\d+)</span>', page.text)[1])
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    url = f"/samples/{sample_id}/label"
    two = ana.post(url, data={"verdict": ["correct", "incorrect"], "csrf": csrf})
    assert two.status_code == 400
    upload = ana.post(url, data={"verdict": "correct", "csrf": csrf}, files={"note": ("n.txt", b"x" * 10)})
    assert upload.status_code == 400
    huge = ana.post(url, data={"verdict": "v" * 1_000_000, "csrf": csrf})
    assert huge.status_code == 400 and len(huge.text) < 20_000 and "v" * 100 not in huge.text
    assert ana.get("/export?format=jsonl").text == ""


def test_an_alert_example_link_opens_the_record_in_the_reviewer_queue(server):
    base, db = server
    ana = _login(base, db.tokens["ana"])
    page = ana.get("/")
    record_id = re.search(r'<code id="record-id">([^<]+)</code>', page.text)[1]
    opened = ana.get(f"/records/{record_id}")
    assert opened.status_code == 200 and record_id in opened.text
    assert ana.get("/records/not-a-record").status_code == 404

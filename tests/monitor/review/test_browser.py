"""A reviewer in a real browser (headless Debian Chromium driven by Playwright): signs in with a token,
labels samples with the keyboard only, and downloads their labels; a wrong token gets the login form back."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from monitor.config import Config, ReviewConfig
from monitor.review.app import ReviewServer
from monitor.storage.schema import labels

pytestmark = pytest.mark.browser


@pytest.fixture
def site(review_db):  # type: ignore[no-untyped-def]
    server = ReviewServer(review_db.engine, Config(review=ReviewConfig(queue_size=5)), host="127.0.0.1", port=0)
    server.start()
    yield f"http://127.0.0.1:{server.port}", review_db
    server.stop()


def test_a_reviewer_labels_with_the_keyboard_and_exports(site, page, tmp_path):
    base, db = site
    page.goto(base + "/")
    assert page.url == base + "/login"

    page.fill("#token", db.tokens["ana"] + "x")
    page.click("#sign-in")
    assert page.locator("[role=alert]").inner_text() == "Unknown or disabled token."
    assert page.locator("#sample-id").count() == 0

    page.fill("#token", db.tokens["ana"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#sample-id")
    assert page.locator("#reviewer-name").inner_text() == "ana"
    first = page.locator("#sample-id").inner_text()
    record_id = page.locator("#record-id").inner_text()

    page.keyboard.press("2")  # incorrect
    page.keyboard.press("h")  # hallucination
    page.keyboard.press("/")
    page.keyboard.type("cites a law that does not exist")
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    expect(page.locator("#sample-id")).not_to_have_text(first)  # (the page's CSP forbids eval'd waits)
    second = page.locator("#sample-id").inner_text()

    with db.engine.connect() as conn:
        label = conn.execute(select(labels.c.record_id, labels.c.verdict, labels.c.tags, labels.c.note,
                                    labels.c.reviewer_id)).one()
    assert tuple(label) == (record_id, "incorrect", ["hallucination"], "cites a law that does not exist",
                            db.ids["ana"])

    page.keyboard.press("j")  # skip without labelling
    page.wait_for_url(re.compile(r"/samples/\d+$"))
    assert page.locator("#sample-id").inner_text() not in (first, second)

    page.keyboard.press("1")
    page.keyboard.press("n")
    page.wait_for_url(base + "/")

    with page.expect_download() as download:
        page.click("#export-csv")
    path = tmp_path / "labels.csv"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("label_id,record_id") and len(lines) == 3
    assert any(record_id in line and "hallucination" in line for line in lines[1:])
    assert db.tokens["ana"] not in path.read_text()

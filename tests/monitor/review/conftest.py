"""A review database with stored traffic, samples and two reviewers, on SQLite and Postgres; and a real
headless Chromium page (``page``) for the browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.config import SamplingConfig
from monitor.ingest.steps.sampling import SamplingStep
from monitor.review.auth import ReviewerRegistry
from monitor.storage.db import make_engine
from tests.monitor.review.traffic import Stream, annotate, create_schema, generate, store


@dataclass
class ReviewDb:
    engine: Engine
    url: str
    tokens: dict[str, str]
    ids: dict[str, int]
    truth: dict[str, bool]
    email_record: str
    """The record whose prompt and response hold an e-mail address and whose user gave a thumbs down."""


def build_review_db(url: str, volume: int = 60, double_share: float = 0.0) -> ReviewDb:
    engine = make_engine(url)
    create_schema(engine)
    records, truth = generate([Stream("m1", "chat", volume, 0.2)], seed=21)
    records[0].prompt = "Please mail the invoice to ana@example.com"
    records[0].response = "Sure, I sent it to ana@example.com."
    records[0].feedback_score = 0.0
    records[0].feedback_comment = "wrong address"
    annotations = [annotate(r, toxic=i == 1) for i, r in enumerate(records)]
    config = SamplingConfig(uniform_rate=1.0, uniform_cap=None, double_review_share=double_share,
                            risk_rates={"pii": 1.0, "toxicity": 1.0, "low_feedback": 1.0})
    store(engine, SamplingStep(config), records, annotations)
    registry = ReviewerRegistry(engine)
    tokens = {name: registry.add(name) for name in ("ana", "bo")}
    ids = {r.name: r.id for r in registry.list()}
    return ReviewDb(engine, url, tokens, ids, truth, records[0].id)


@pytest.fixture
def review_db(db_url):  # type: ignore[no-untyped-def]
    db = build_review_db(db_url)
    yield db
    db.engine.dispose()


CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (scripts/test installs it); Playwright never downloads a browser here."""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module, driven by Playwright's sync API.

    Module-scoped on purpose, rather than pytest-playwright's session-scoped browser: the sync API runs an
    event loop in the calling thread for as long as Playwright is started, and any later test in the same
    process that calls ``asyncio.run()`` (the shadow CLI does) would fail. Stopping it at the end of the
    module lets browser tests run anywhere in the suite, on any pytest-xdist worker."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page for one test."""
    context = chromium.new_context(accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()

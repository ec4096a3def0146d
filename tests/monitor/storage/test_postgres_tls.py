"""Postgres TLS is set in the database URL and reaches libpq as written: ``sslmode=verify-full`` with a CA the
server's certificate does not chain to (or a server without TLS) is refused, ``sslmode=disable`` connects."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, make_url, text

from monitor.storage.db import make_engine, redacted_url
from tests.tls_certs import make_certs

pytestmark = pytest.mark.postgres


def test_sslmode_in_the_url_reaches_the_driver(postgres_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = make_certs(tmp_path).ca_file
    with_password = make_url(postgres_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    strict = make_engine(f"{with_password}?sslmode=verify-full&sslrootcert={ca}", connect_timeout_s=3)
    try:
        with pytest.raises(exc.OperationalError) as refused, strict.connect():
            pass
    finally:
        strict.dispose()
    assert "SSL" in str(refused.value) or "certificate" in str(refused.value)
    assert "s3cret-pw" not in str(refused.value) and "s3cret-pw" not in redacted_url(with_password)
    plain = make_engine(f"{postgres_url}?sslmode=disable", connect_timeout_s=3)
    try:
        with plain.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        plain.dispose()

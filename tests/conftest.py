"""Shared fixtures: a real Kafka-protocol broker (tansu) and real databases (SQLite and Postgres).

Postgres is the one at 127.0.0.1:5432 (override with WATCHKEEPER_TEST_POSTGRES). Each test gets its own
fresh database, dropped afterwards. When Postgres is unreachable its tests are skipped and the run says so
loudly at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from monitor.synthetic.broker import LocalBroker, create_topic

POSTGRES_ADMIN_URL = os.environ.get(
    "WATCHKEEPER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_postgres_problem: list[str] = []


def _postgres_reachable() -> bool:
    if _postgres_problem:
        return False
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "skip loudly"
        _postgres_problem.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        return False


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    if _vllm_problem:
        terminalreporter.section("VLLM WAS UNAVAILABLE", sep="!", red=True, bold=True)
        terminalreporter.write_line(f"real-vLLM tests FAILED: {_vllm_problem[0][:500]}", red=True, bold=True)
    if _postgres_problem:
        terminalreporter.section("POSTGRES WAS UNREACHABLE", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"Postgres tests were SKIPPED: {POSTGRES_ADMIN_URL} -> {_postgres_problem[0]}", red=True, bold=True
        )


@pytest.fixture(autouse=True)
def _polling_engines_disposed() -> Iterator[None]:
    """The engines `tests.helpers.count` kept for this test's databases are closed when it ends, so that no
    connection outlives its test (``postgres_url`` closes them before it drops its database)."""
    yield
    from tests.helpers import dispose_polling_engines

    dispose_polling_engines()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """bootstrap_servers of a tansu broker that lives for the whole test session."""
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topic(kafka_broker: str) -> str:
    """A fresh 3-partition topic on the shared broker."""
    name = f"llm-logs-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker, name, partitions=3)
    return name


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'watchkeeper.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database for this test, dropped afterwards."""
    if not _postgres_reachable():
        pytest.skip(f"POSTGRES UNREACHABLE ({_postgres_problem[0]})")
    name = f"wk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from tests.helpers import dispose_polling_engines

        dispose_polling_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:  # type: ignore[no-untyped-def]
    """Both databases Watchkeeper supports; the test runs once for each."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` with the tables created straight from the schema (fast; migrations are
    exercised through ``migrated_db_url``)."""
    from monitor.storage.db import make_engine
    from monitor.storage.schema import metadata

    engine = make_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_db_url(db_url: str) -> str:
    """``db_url`` brought to head through the Alembic migrations, as `watchkeeper db upgrade` does."""
    from monitor.storage.db import upgrade

    upgrade(db_url)
    return db_url


_vllm_problem: list[str] = []


@pytest.fixture(scope="session")
def vllm_env():  # type: ignore[no-untyped-def]
    """The vLLM CPU env and model (tests/inference/vllm_server.py), built once and cached outside the checkout
    (scripts/vllm-cpu-env).

    If it cannot be built, every test that needs it FAILS with the reason: CI must not pass without having run
    real vLLM. ``WATCHKEEPER_SKIP_VLLM=1``, set on purpose, makes them skip instead."""
    from tests.inference.vllm_server import SKIP_ENV, build_env

    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: real-vLLM tests skipped on request")
    if _vllm_problem:
        pytest.fail(f"VLLM ENV UNAVAILABLE: {_vllm_problem[0]}", pytrace=False)
    try:
        env = build_env()
    except RuntimeError as exc:
        _vllm_problem.append(str(exc))
        pytest.fail(f"VLLM ENV UNAVAILABLE: {exc}", pytrace=False)
    return env


@pytest.fixture(scope="session")
def vllm_server(vllm_env, tmp_path_factory):  # type: ignore[no-untyped-def]
    """ONE real vLLM OpenAI server (SmolLM2-135M on the CPU) for the whole session; yields the `VllmServer`
    (``.url``). A test may stop and start it (same port) but must leave it running."""
    from tests.inference.vllm_server import VllmServer

    if _vllm_problem:
        pytest.fail(f"VLLM SERVER UNAVAILABLE: {_vllm_problem[0]}", pytrace=False)
    server = _early.pop("server", None)
    try:
        if server is None:
            server = VllmServer(vllm_env, log_path=tmp_path_factory.mktemp("vllm") / "server.log",
                                eager=True)
            server.launch()
        server.wait_ready()
    except RuntimeError as exc:
        _vllm_problem.append(str(exc))
        pytest.fail(f"VLLM SERVER UNAVAILABLE: {exc}", pytrace=False)
    yield server
    server.stop()


INPROCESS_TEST = "test_vllm_inprocess.py"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the group into the test ids
def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Where the real-vLLM tests run.

    Under pytest-xdist (scripts/test runs the suite with ``-n``): the tests that share the session's vLLM
    server form one group on one worker, and the in-process test (a vLLM of its own) is put first, so that
    ``--dist loadgroup``, which hands out the biggest group first and then the rest in order, starts both at
    once on two workers; their minutes of start-up overlap each other and the other workers' tests.

    Without xdist they come last, so that their start-up (launched when collection ends) overlaps the rest
    of the suite."""
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            group = "vllm-inprocess" if item.path.name == INPROCESS_TEST else "vllm"
            item.add_marker(pytest.mark.xdist_group(group))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: 0 if item.path.name == INPROCESS_TEST else 1)
    else:
        items.sort(key=lambda item: item.get_closest_marker("vllm") is not None)


_early: dict[str, Any] = {}
"""What was started ahead of the tests that need it: the vLLM server (``server``) and the in-process run
(``inprocess``: the process and its output file)."""


def _launch_early(session: pytest.Session, env: Any) -> None:
    """Launch the session's vLLM server and the in-process run for the selected real-vLLM tests, without
    waiting: minutes of torch.compile on two cores, overlapped with other work."""
    import tempfile

    from tests.inference.vllm_server import VllmServer

    wanted = {item.path.name for item in session.items if item.get_closest_marker("vllm")}
    workdir = Path(tempfile.mkdtemp(prefix="wk-vllm-"))
    if any(name != INPROCESS_TEST for name in wanted):
        server = VllmServer(env, log_path=workdir / "server.log", eager=True)
        server.launch()
        session.config.add_cleanup(server.stop)
        _early["server"] = server
    if INPROCESS_TEST in wanted:
        from tests.inference.test_vllm_inprocess import launch_inprocess

        _early["inprocess"] = launch_inprocess(env, workdir / "inprocess.out")
        session.config.add_cleanup(_early["inprocess"][0].kill)


def pytest_collection_finish(session):  # type: ignore[no-untyped-def]
    """Without xdist: when real-vLLM tests were selected, build (or reuse) the env and launch the session's vLLM
    server and the in-process run now, while the other tests run. Under xdist every worker collects every
    test, so the worker that runs a vLLM test starts what it needs when the test asks (the ``vllm_server``
    fixture, the in-process test). A failure here is left to the fixtures, which report it on the tests."""
    from tests.inference.vllm_server import SKIP_ENV, build_env

    wanted = any(item.get_closest_marker("vllm") for item in session.items)
    if (not wanted or os.environ.get(SKIP_ENV) == "1" or session.config.option.collectonly
            or os.environ.get("PYTEST_XDIST_WORKER")):
        return
    try:
        env = build_env()
    except RuntimeError:
        return
    _launch_early(session, env)

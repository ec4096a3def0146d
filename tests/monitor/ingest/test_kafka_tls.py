"""Kafka over TLS for real: tansu behind a TLS-terminating proxy (its advertised address is the proxy's), the
producer and the daemon's consumer configured through ``[kafka]``, certificates made here with `cryptography`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError
from pydantic import SecretStr

from monitor.config import ConfigError, KafkaConfig, load_config
from monitor.ingest.source import KafkaSource
from monitor.synthetic.broker import LocalBroker, free_port
from monitor.synthetic.produce import produce_to_kafka
from tests.tcp_proxy import TcpProxy
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Certs]]:
    """``localhost:<port>`` of a broker that only TLS clients reach, and the certificates it was given."""
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    plain = free_port()
    proxy = TcpProxy("127.0.0.1", plain, tls=certs.server_context())
    with LocalBroker(port=plain, advertised=f"localhost:{proxy.port}"):
        try:
            yield f"localhost:{proxy.port}", certs
        finally:
            proxy.close()


def _ssl(bootstrap: str, ca_file: Path | None, **more: object) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[bootstrap], security_protocol="SSL",
                       ssl_cafile=str(ca_file) if ca_file else None, **more)  # type: ignore[arg-type]


def test_producer_and_consumer_speak_tls_to_the_broker(tls_broker: tuple[str, Certs]) -> None:
    bootstrap, certs = tls_broker
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    sent = [f'{{"n": {i}}}'.encode() for i in range(20)]
    assert produce_to_kafka(bootstrap, topic, sent, security=_ssl(bootstrap, certs.ca_file).client_options()) == 20
    source = KafkaSource(_ssl(bootstrap, certs.ca_file, topics=[topic], group_id=f"g-{topic}",
                              session_timeout_ms=6000), max_poll_records=100)
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += [m.value for m in source.poll(100, 500)]
    finally:
        source.close(commit=False)
    assert sorted(got) == sorted(sent)


def test_a_broker_whose_certificate_is_not_trusted_is_refused(tls_broker: tuple[str, Certs]) -> None:
    bootstrap, _ = tls_broker
    with pytest.raises(KafkaError):
        produce_to_kafka(bootstrap, "never", [b"{}"], connect_timeout_s=3,
                         security=_ssl(bootstrap, None).client_options())  # the system's roots: not our CA
    with pytest.raises(KafkaError):
        produce_to_kafka(bootstrap, "never", [b"{}"], connect_timeout_s=3)  # plain TCP to a TLS port


def test_sasl_settings_reach_the_client_and_the_password_never_shows(tmp_path: Path) -> None:
    env = {"WATCHKEEPER_KAFKA_SASL_USERNAME": "monitor", "WATCHKEEPER_KAFKA_SASL_PASSWORD": "hunter2-secret"}
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n')
    config = load_config(path, env=env)
    options = config.kafka.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["sasl_plain_username"] == "monitor"
    assert options["sasl_plain_password"] == "hunter2-secret" and options["ssl_check_hostname"] is True
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())
    with pytest.raises(ConfigError, match="needs sasl_mechanism") as caught:
        load_config(path, env={"WATCHKEEPER_KAFKA_SASL_PASSWORD": "hunter2-secret"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI", sasl_username="u",  # type: ignore[arg-type]
                    sasl_password=SecretStr("p"))

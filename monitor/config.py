"""Typed configuration: the one place where `monitor.toml` and the environment are read and validated.

Every section is a pydantic model that forbids unknown keys, so a typo stops start-up with the key and the
file named. Environment variables (design contract 3) override the file for secrets and deployment.
Secrets are `SecretStr`: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

Severity = Literal["critical", "warning", "info"]
Scope = Literal["global", "model", "app"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(Section):
    url: str = "sqlite:///watchkeeper.db"
    """SQLAlchemy URL. ``postgresql+psycopg://user@host/db`` in production; SQLite is the embedded default."""
    retry_initial_s: Annotated[float, Field(gt=0)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0


class KafkaConfig(Section):
    bootstrap_servers: list[str] = ["127.0.0.1:9092"]
    topics: Annotated[list[str], Field(min_length=1)] = ["llm-logs"]
    group_id: str = "watchkeeper"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    max_poll_interval_ms: Annotated[int, Field(ge=1000)] = 300_000
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    client_id: str = "watchkeeper"


class PipelineConfig(Section):
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 2000
    """Most records per batch; one database transaction and one offset commit per batch."""
    batch_timeout_ms: Annotated[int, Field(ge=1)] = 500
    """Longest a poll waits for a batch to fill."""
    store_text: Literal["none", "redacted", "full"] = "redacted"
    """What prompt/response text reaches the database: nothing, text with findings replaced, or raw text."""


class RecordConfig(Section):
    fields: dict[str, str] = {}
    """Our field name -> the deployment's field name, e.g. ``response = "completion"``."""


class Config(Section):
    """The whole configuration. ``source`` says which file it came from, for error messages."""

    database: DatabaseConfig = DatabaseConfig()
    kafka: KafkaConfig = KafkaConfig()
    pipeline: PipelineConfig = PipelineConfig()
    record: RecordConfig = RecordConfig()
    source: str = Field(default="<defaults>", exclude=True)


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the file and the key."""


_ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "WATCHKEEPER_DATABASE_URL": ("database", "url"),
    "WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "WATCHKEEPER_KAFKA_TOPICS": ("kafka", "topics"),
    "WATCHKEEPER_KAFKA_GROUP_ID": ("kafka", "group_id"),
}
_LIST_KEYS = {("kafka", "bootstrap_servers"), ("kafka", "topics")}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    applied = []
    for var, path in _ENV_OVERRIDES.items():
        value = env.get(var)
        if not value:
            continue
        section = data.setdefault(path[0], {})
        if not isinstance(section, dict):
            continue  # validation reports the bad section
        parsed: Any = value
        if path in _LIST_KEYS:
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        section[path[1]] = parsed
        applied.append(var)
    return applied


def _format_errors(exc: ValidationError, source: str, env_keys: list[str]) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        where = key
        for var, path in _ENV_OVERRIDES.items():
            if var in env_keys and key.startswith(".".join(path)):
                where = f"{key} (from environment variable {var})"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (TOML; defaults when None), apply environment overrides, validate.

    Raises ConfigError naming the file and each offending key.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {source}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    applied = _apply_env(data, env)
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, applied)) from None

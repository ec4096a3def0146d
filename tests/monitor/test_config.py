"""Configuration: a typo or a wrong type stops start-up with the key and the file named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "monitor.toml"


def test_the_shipped_example_config_is_valid():
    config = load_config(EXAMPLE, env={})
    assert config.kafka.topics and config.database.url


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\nbootstrap_server = ["x:9092"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value)
    assert "kafka.bootstrap_server: unknown key" in str(err.value)


def test_keys_of_the_old_per_partition_topic_detector_are_accepted_with_one_warning_each(tmp_path, caplog):
    """Topic drift moved to the per-stream fold: configs that still set its old keys keep starting."""
    path = tmp_path / "monitor.toml"
    path.write_text("[drift]\ntopics = 8\ncheckpoint_every_s = 30\ntopic_sample_rate = 0.5\n")
    with caplog.at_level("WARNING"):
        config = load_config(path, env={})
    assert config.drift.topic_sample_rate == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "[drift] topics is deprecated" in warnings[0] and "[drift] checkpoint_every_s is deprecated" in warnings[1]


def test_wrong_type_and_bad_value_are_both_reported(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[pipeline]\nbatch_size = "lots"\nstore_text = "some"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert "pipeline.batch_size" in message and "pipeline.store_text" in message


def test_broken_toml_and_missing_file_are_clear(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\ntopics = ["from-file"]\ngroup_id = "file"\n')
    config = load_config(path, env={
        "WATCHKEEPER_KAFKA_TOPICS": "a, b",
        "WATCHKEEPER_KAFKA_GROUP_ID": "env-group",
        "WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "WATCHKEEPER_DATABASE_URL": "postgresql+psycopg://wk:s3cret@db/wk",
    })
    assert config.kafka.topics == ["a", "b"]
    assert config.kafka.group_id == "env-group"
    assert config.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert config.database.url.endswith("@db/wk")


@pytest.mark.parametrize(("toml", "lines"), [
    # one bad key: one line naming the file and the key, never the secret beside it
    ('[kafka]\nsasl_password = "hunter2-secret"\nretries = 3\n', ["{path}: kafka.retries: unknown key"]),
    # several: a heading and a line each, so that one run shows them all
    ('[kafka]\ntopcs = ["x"]\n[pipeline]\nbatch_size = 0\n',
     ["{path}:", "  kafka.topcs: unknown key", "  pipeline.batch_size: Input should be greater than or equal to 1"]),
])
def test_cli_exits_2_with_the_message_and_never_prints_secrets(tmp_path, toml, lines):
    path = tmp_path / "monitor.toml"
    path.write_text(toml)
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    expected = [line.format(path=path) for line in lines]
    expected[0] = f"watchkeeper: invalid configuration in {expected[0]}"
    assert proc.stderr.splitlines() == expected
    assert "hunter2-secret" not in proc.stderr + proc.stdout


def test_run_refuses_a_database_that_was_not_upgraded(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "empty.db"}"\n')
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "run `watchkeeper db upgrade`" in proc.stderr


def test_a_table_that_sets_one_rate_keeps_the_other_defaults(tmp_path):
    """The shipped example lists most risk rates; loading it must not drop the ones it leaves out."""
    path = tmp_path / "monitor.toml"
    path.write_text("[sampling.risk_rates]\ntoxicity = 0.9\n")
    rates = load_config(path, env={}).sampling.risk_rates
    assert rates["toxicity"] == 0.9
    assert rates["prompt_toxicity"] == 0.1 and rates["secrets"] == 1.0
    assert load_config(EXAMPLE, env={}).sampling.risk_rates["prompt_toxicity"] == 0.1


def test_durations_read_the_same_in_the_file_and_on_the_command_line(tmp_path):
    from datetime import timedelta

    from monitor.durations import parse_duration

    path = tmp_path / "monitor.toml"
    path.write_text('[alerts]\nrepeat_interval = "1h30m"\n[retention]\nrecords_max_age = "7d"\n')
    config = load_config(path, env={})
    assert config.alerts.repeat_interval == parse_duration("1h30m") == timedelta(minutes=90)
    assert config.retention.records_max_age == parse_duration("7d")


def test_a_review_certificate_without_its_key_or_missing_is_one_clear_line(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text(f'[review]\ncertfile = "{tmp_path / "cert.pem"}"\n')
    with pytest.raises(ConfigError, match="certfile and keyfile go together"):
        load_config(path, env={})
    path.write_text(f'[review]\ncertfile = "{tmp_path / "c.pem"}"\nkeyfile = "{tmp_path / "k.pem"}"\n')
    with pytest.raises(ConfigError, match="certfile: no such file"):
        load_config(path, env={})


def test_one_toxic_cut_off_an_old_rollups_threshold_must_agree(tmp_path):
    """`[detectors.toxicity] threshold` decides flags, counters, drift, the rule and rollups; an old file's
    `[rollups] toxic_threshold` that says something else is refused rather than silently ignored."""
    path = tmp_path / "monitor.toml"
    path.write_text("[detectors.toxicity]\nthreshold = 0.3\n[rollups]\ntoxic_threshold = 0.3\n")
    assert load_config(path, env={}).detectors.toxicity.threshold == 0.3
    path.write_text("[detectors.toxicity]\nthreshold = 0.3\n[rollups]\ntoxic_threshold = 0.5\n")
    with pytest.raises(ConfigError, match="the one toxic cut-off"):
        load_config(path, env={})


SECRET = "hunter2secret"


@pytest.mark.parametrize(("toml", "env", "says"), [
    # kafka-python raised a bare ValueError (a traceback from `run`) on a port that is no number
    ("", {"WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:abc"},
     "kafka.bootstrap_servers (from environment variable WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS): Value error, "
     "entry 2 'kafka-2:abc': the port must be a number from 1 to 65535"),
    ('[kafka]\nbootstrap_servers = ["kafka-1:99999"]\n', {}, "the port must be a number from 1 to 65535"),
    # ... and logged an entry holding credentials as written, in every "Kafka at … not answering" line
    ("", {"WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": f"wk:{SECRET}@kafka-1:9092"},
     "entry 1 is not host:port (a URL or user:password@ does not belong here"),
    # a webhook that is not a URL was accepted, then urllib's "unknown url type: '<the webhook>'" was logged
    ("", {"SLACK_WEBHOOK_URL": f"T000/B000/{SECRET}"},
     "alerts.slack_webhook_url (from environment variable SLACK_WEBHOOK_URL): Value error, this is not an "
     "http:// or https:// URL with a host"),
    ('[alerts]\nslack_ca_file = "/no/such/ca.pem"\n', {}, "alerts.slack_ca_file: Value error, no such file"),
    ('[alerts]\nreview_url = "review.example.com"\n', {}, "alerts.review_url"),
    # a reference URL that cannot be used was accepted and failed on every replay
    ("", {"WATCHKEEPER_REFERENCE_URL": f"http://wk:{SECRET}@gpu-1:80OO", "WATCHKEEPER_REFERENCE_MODEL": "m"},
     "shadow.references.0 (from environment variable WATCHKEEPER_REFERENCE_URL): Value error, url is not a URL"),
    (f'[[shadow.references]]\nmodel = "m"\nurl = "gpu-1:8000"\napi_key = "{SECRET}"\n', {},
     "url is not an http:// or https:// URL with a host"),
    ('[[shadow.references]]\nmodel = "m"\n', {}, "url is required for the http backend"),
    ('[[shadow.references]]\nmodel = "m"\nurl = "https://gpu-1:8000"\nca_file = "/no/such/ca.pem"\n', {},
     "ca_file: no such file"),
    # pydantic's ISO 8601 parser answered these with "invalid character in hour" and "day identifier …"
    ('[alerts]\nrepeat_interval = "5 minutes"\n', {}, "alerts.repeat_interval: Value error, not a duration: "
     "'5 minutes' (use e.g. 90s, 30m, 2h, 1h30m, 7d); a number of seconds and ISO 8601 (PT1H) work too"),
    ('[alerts]\nrepeat_interval = "-1s"\n', {}, "not a duration: '-1s'"),
    # an OverflowError: a traceback
    ('[scheduler]\ntick = "99999999999d"\n', {}, "scheduler.tick: Value error, too long a duration"),
])
def test_a_value_that_cannot_work_names_its_key_and_never_the_secret(tmp_path, toml, env, says):
    path = tmp_path / "monitor.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env)
    assert says in str(err.value)
    assert SECRET not in str(err.value)


def test_the_usual_forms_of_those_values_still_load(tmp_path):
    from datetime import timedelta

    path = tmp_path / "monitor.toml"
    path.write_text('[scheduler]\ntick = "90"\n[alerts]\nrepeat_interval = "PT1H"\nreview_url = "https://r:8443"\n'
                    '[[shadow.references]]\nmodel = "m"\nurl = "http://u:p@gpu-1:8000/v1?k=v"\n'
                    '[[shadow.references]]\nmodel = "local"\nbackend = "inprocess"\n')
    config = load_config(path, env={"WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": "kafka-1, kafka-2:9093, [::1]:9092",
                                    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"})
    assert config.kafka.bootstrap_servers == ["kafka-1", "kafka-2:9093", "[::1]:9092"]
    assert config.scheduler.tick == timedelta(seconds=90) and config.alerts.repeat_interval == timedelta(hours=1)


def test_a_config_file_that_is_not_utf8_or_not_readable_is_one_line(tmp_path):
    """tomllib decodes the bytes itself: a file saved as Latin-1 was a UnicodeDecodeError traceback."""
    path = tmp_path / "monitor.toml"
    path.write_bytes('[kafka]\ngroup_id = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not valid TOML: not UTF-8 text"):
        load_config(path, env={})
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "dir.toml", env={})

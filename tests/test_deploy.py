"""The deploy files (Dockerfile, deploy/compose.yaml, deploy/kubernetes, deploy/systemd) agree with the
command line and the configuration: every command they run parses, every port and probe is the one the
daemon serves, every environment variable is one Watchkeeper reads. Docker, Kubernetes and systemd are not
run here (no daemon, no cluster, no init): the image build and the compose stack are not exercised by the
tests; ``systemd-analyze verify`` checks the unit where it is installed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.config import ENV_VARS, OpsConfig, ReviewConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OPS_PORT = OpsConfig().port
ALLOWED_ENV = {*ENV_VARS, "PYTHONUNBUFFERED", "PATH"}


def assert_cli_parses(args: list[str]) -> None:
    """``watchkeeper ARGS --help`` exits 0: the command and every option it names exist."""
    done = subprocess.run([sys.executable, "-m", "monitor", *args, "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, (args, done.stderr[-2000:])


def dockerfile() -> list[tuple[str, str]]:
    lines, joined = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        joined += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = joined.strip().partition(" ")
            lines.append((word.upper(), rest))
            joined = ""
    return lines


def test_dockerfile_is_multi_stage_non_root_and_runs_the_daemon():
    import json

    instructions = dockerfile()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2 and " AS " in stages[0].upper()
    user = [rest for word, rest in instructions if word == "USER"][-1]
    assert user.split(":")[0] not in {"0", "root"}
    entry = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in instructions if word == "CMD"))
    assert entry[0] == "watchkeeper" and cmd[0] == "run"
    assert_cli_parses(entry[1:] + cmd)
    exposed = {int(p) for word, rest in instructions if word == "EXPOSE" for p in rest.split()}
    assert {OPS_PORT, ReviewConfig().port} <= exposed
    env = [rest for word, rest in instructions if word == "ENV"]
    names = {part.split("=")[0] for line in env for part in shlex.split(line)}
    assert names <= ALLOWED_ENV, names - ALLOWED_ENV
    healthcheck = next(rest for word, rest in instructions if word == "HEALTHCHECK")
    assert f"127.0.0.1:{OPS_PORT}/livez" in healthcheck


def test_compose_runs_migrations_then_the_daemon_scraped_by_prometheus_with_grafana_provisioned():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "watchkeeper", "migrate", "prometheus", "grafana"} <= set(services)
    daemon = services["watchkeeper"]
    assert_cli_parses(["--log-format", "json", *daemon["command"]])
    assert_cli_parses(services["migrate"]["command"])
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert set(daemon["environment"]) <= ALLOWED_ENV
    assert f"{OPS_PORT}:{OPS_PORT}" in daemon["ports"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"watchkeeper:{OPS_PORT}"]
    mounts = {m.split(":")[1]: (DEPLOY / m.split(":")[0]).resolve() for m in services["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/watchkeeper.yaml").read_text())
    dash_path = provider["providers"][0]["options"]["path"]
    assert mounts[dash_path] == (DEPLOY / "grafana" / "dashboards").resolve()
    datasources = (DEPLOY / "grafana/provisioning/datasources/watchkeeper.yaml").read_text()
    for var in ("PROMETHEUS_URL", "WATCHKEEPER_PG_HOST", "WATCHKEEPER_PG_USER", "WATCHKEEPER_PG_PASSWORD"):
        assert "${" + var + "}" in datasources and var in services["grafana"]["environment"]


def test_kubernetes_deployment_probes_ports_config_and_secrets_match_the_daemon(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "watchkeeper.yaml").read_text()))
    by_kind = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "Secret", "Deployment", "Service"} <= set(by_kind)
    (tmp_path / "monitor.toml").write_text(by_kind["ConfigMap"]["data"]["monitor.toml"])
    config = load_config(tmp_path / "monitor.toml", env={})  # a valid configuration
    assert config.ops.port == OPS_PORT
    secret_keys = set(by_kind["Secret"]["stringData"])
    assert secret_keys <= ALLOWED_ENV
    pod = by_kind["Deployment"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(OPS_PORT)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    init = pod["spec"]["initContainers"][0]
    assert init["args"][:2] == ["db", "upgrade"]
    assert_cli_parses(init["args"])
    container = pod["spec"]["containers"][0]
    assert_cli_parses(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == OPS_PORT
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {e["name"] for e in container["env"]} <= ALLOWED_ENV
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["args"][container["args"].index("--config") + 1] == f"{mount}/monitor.toml"


def test_systemd_unit_runs_the_cli_and_verifies(tmp_path):
    unit = (DEPLOY / "systemd" / "watchkeeper.service").read_text()
    values: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    for key in ("ExecStart", "ExecStartPre"):
        argv = shlex.split(values[key][0])
        assert argv[0] == "/opt/watchkeeper/bin/watchkeeper"
        assert_cli_parses(argv[1:])
    envs = {v.split("=")[0] for v in values["Environment"]}
    assert envs <= ALLOWED_ENV
    assert f"WATCHKEEPER_METRICS_PORT={OPS_PORT}" in values["Environment"]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit was parsed, not verified")
    fake = tmp_path / "watchkeeper"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    copy = tmp_path / "watchkeeper.service"
    copy.write_text(unit.replace("/opt/watchkeeper/bin/watchkeeper", str(fake)))  # the binary is not installed
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr

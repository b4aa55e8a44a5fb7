"""deploy/: the compose file, the committed gateway config and the systemd units are valid."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eomatch.service import gateway
from eomatch.service.gateway import DEFAULT_API_ALLOW, UPSTREAM_KEEPALIVE_S, parse_public_url
from eomatch.service.serving import APP_FACTORY

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# The exact command that produced deploy/nginx/eomatch.conf (see docs/deployment.md).
CONTAINER_GATEWAY_ARGS = [
    "--listen",
    "0.0.0.0:8080",
    "--internal",
    "api-internal:8080",
    "--external",
    "api-external:8080",
    "--run-dir",
    "/tmp",
]
SERVICES = {"db", "migrate", "api-internal", "api-external", "browser", "proxy", "backup", "worker"}


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_committed_nginx_conf_is_the_renderers_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway.main(CONTAINER_GATEWAY_ARGS) == 0
    rendered = capsys.readouterr().out
    committed = (DEPLOY / "nginx" / "eomatch.conf").read_text()
    assert committed == rendered, (
        "deploy/nginx/eomatch.conf is stale: regenerate it with "
        "`uv run python -m eomatch.service.gateway " + " ".join(CONTAINER_GATEWAY_ARGS) + "`"
    )
    assert "Bearer" not in committed
    assert "/catalogue" not in committed
    # the client's Host / X-Forwarded-* never reach the APIs (they use EOMATCH_PUBLIC_URL)
    assert "$http_host" not in committed
    assert "$http_x_forwarded" not in committed
    assert "proxy_set_header Host $proxy_host;" in committed
    for net in DEFAULT_API_ALLOW:
        assert f"        {net} 1;" in committed
    assert committed.count("if ($eomatch_api_allowed = 0)") == 4


def _keepalive(command: list[str]) -> int:
    return int(command[command.index("--timeout-keep-alive") + 1])


def test_compose_file_is_accepted_with_the_example_env() -> None:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    base = [
        *cmd,
        "-f",
        str(DEPLOY / "docker-compose.yml"),
        "--env-file",
        str(DEPLOY / ".env.example"),
    ]
    quiet = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    services = subprocess.run(
        [*base, "config", "--services"], capture_output=True, text=True, timeout=120, check=True
    )
    assert set(services.stdout.split()) == SERVICES


def test_compose_publishes_only_the_gateway_and_uses_no_superuser_for_apis() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {name for name, s in services.items() if "ports" in s} == {"proxy"}
    assert services["api-internal"]["environment"]["PGUSER"] == "eomatch_api"
    assert services["api-external"]["environment"]["PGUSER"] == "eomatch_reader"
    assert services["api-external"]["environment"]["EOMATCH_API_MODE"] == "external"
    assert "/api" in services["api-internal"]["command"]
    assert "/external" in services["api-external"]["command"]
    for name in ("api-internal", "api-external"):
        command = services[name]["command"]
        assert command[:2] == ["uvicorn", APP_FACTORY]
        assert _keepalive(command) > UPSTREAM_KEEPALIVE_S
        assert services[name]["environment"]["EOMATCH_PUBLIC_URL"].startswith(
            "${EOMATCH_PUBLIC_URL:?"
        )
    for name in ("db", "api-internal", "api-external", "proxy"):
        assert services[name]["restart"] == "unless-stopped", name
        assert "healthcheck" in services[name], name
    assert services["proxy"]["user"] != "root"
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert "PASSWORD=" not in text  # secrets only through .env


def test_env_example_has_every_variable_the_compose_file_needs() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert needed <= example, needed - example
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert parse_public_url(values["EOMATCH_PUBLIC_URL"]) == ("http", "127.0.0.1", 8000)


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_there_are_units_for_both_apis_and_the_gateway() -> None:
    assert {u.name for u in UNITS} == {
        "eomatch-api-internal.service",
        "eomatch-api-external.service",
        "eomatch-gateway.service",
        "eomatch-backup.service",
        "eomatch-worker.service",
    }


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_daily_backup_timer_and_service() -> None:
    timer = _unit(DEPLOY / "systemd" / "eomatch-backup.timer")
    assert timer["Timer"]["Unit"] == "eomatch-backup.service"
    assert timer["Timer"]["OnCalendar"].startswith("*-*-* ")  # daily
    assert timer["Timer"]["Persistent"] == "true"  # a missed run happens at the next boot
    assert timer["Install"]["WantedBy"] == "timers.target"
    text = (DEPLOY / "systemd" / "eomatch-backup.service").read_text()
    service = _unit(DEPLOY / "systemd" / "eomatch-backup.service")
    assert service["Service"]["Type"] == "oneshot"
    steps = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert [s.split()[1:] for s in steps] == [
        ["backup", "create"],
        ["backup", "prune"],
        ["backup", "verify"],
    ]
    assert "PASSWORD" not in text  # the password is in the PGPASSFILE of the EnvironmentFile
    if shutil.which("systemd-analyze"):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(DEPLOY / "systemd/eomatch-backup.timer")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and "/opt/eomatch/venv/bin/" not in line
        ]
        assert problems == [], problems


def test_compose_backup_service() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    backup = doc["services"]["backup"]
    assert backup["build"]["target"] == "backup"
    assert "FROM app AS backup" in (DEPLOY / "Dockerfile").read_text()
    loop = backup["command"][-1]
    assert "eomatch backup create && eomatch backup prune && eomatch backup verify" in loop
    assert backup["healthcheck"]["test"] == ["CMD", "eomatch", "backup", "status"]
    assert backup["environment"]["PGHOST"] == "db"
    assert backup["volumes"] == ["backups:/var/lib/eomatch"]
    assert backup["environment"]["EOMATCH_BACKUP_DIR"].startswith("/var/lib/eomatch/")
    assert "backups" in doc["volumes"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_is_valid_and_hardened(unit: Path) -> None:
    parser = _unit(unit)
    timer_driven = (unit.parent / unit.name.replace(".service", ".timer")).exists()
    # a unit a timer starts has no [Install]: enabling it would run it at every boot
    expected = {"Unit", "Service"} if timer_driven else {"Unit", "Service", "Install"}
    assert set(parser.sections()) == expected
    service = parser["Service"]
    assert service["User"] == "eomatch"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
    }.items():
        assert service[key] == value, key
    assert service["ExecStart"].split()[0].startswith("/")
    if "api" in unit.name:
        assert "--host 127.0.0.1" in service["ExecStart"]  # only the gateway faces the network
        command = service["ExecStart"].split()
        assert command[1] == APP_FACTORY
        assert _keepalive(command) > UPSTREAM_KEEPALIVE_S
        public = [v for v in unit.read_text().splitlines() if "EOMATCH_PUBLIC_URL=" in v]
        assert public == ["Environment=EOMATCH_PUBLIC_URL=http://127.0.0.1:8080"]
    if shutil.which("systemd-analyze"):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            # The install target's binaries do not exist on a test machine.
            if line.strip() and "/opt/eomatch/venv/bin/" not in line
        ]
        assert problems == [], problems


def test_job_worker_in_compose_and_systemd() -> None:
    """The job worker (issue 13): the ingest role, the jobs extra in the image, no port."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    worker = doc["services"]["worker"]
    assert worker["command"][:2] == ["eomatch", "worker"]
    assert worker["environment"]["PGUSER"] == "eomatch_ingest"
    assert worker["environment"]["PGHOST"] == "db"
    assert "ports" not in worker
    assert worker["networks"] == ["backend"]
    assert worker["restart"] == "unless-stopped"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["read_only"] is True  # the hardening anchor
    assert "objects" in doc["volumes"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    syncs = [ln for ln in dockerfile.splitlines() if "uv sync" in ln]
    assert syncs
    assert all("--extra jobs" in ln for ln in syncs), syncs  # migrate installs the queue too
    # the worker runs raster/process jobs (data, storage); the APIs serve /csw, /records
    runs = dockerfile.replace("\\\n", " ")
    app_syncs = [ln for ln in runs.split("FROM")[2].splitlines() if "uv sync" in ln]
    for extra in ("data", "storage", "records"):
        assert all(f"--extra {extra}" in ln for ln in app_syncs), app_syncs
    unit = _unit(DEPLOY / "systemd" / "eomatch-worker.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1] == "worker"
    assert service["ReadWritePaths"] == "/var/lib/eomatch"
    assert "PASSWORD" not in (DEPLOY / "systemd" / "eomatch-worker.service").read_text()

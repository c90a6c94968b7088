"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine runs here)."""

from __future__ import annotations

import re

import typer.main
import yaml

from shared.settings import Settings
from tests.conftest import ROOT
from worker.cli import cli

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INGEST_COMMANDS = set(typer.main.get_command(cli).commands)
SETTING_VARIABLES = {f"INGEST_{name.upper()}" for name in Settings.model_fields} | {"INGEST_CONFIG"}


def ingest_services() -> dict[str, dict]:
    return {name: spec for name, spec in COMPOSE["services"].items() if spec.get("build")}


def test_the_stack_has_every_promised_service():
    """Redis with persistence, PostgreSQL, a watcher, workers and one scheduler."""
    services = COMPOSE["services"]
    assert {"redis", "postgres", "watcher", "worker", "beat"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert "container_name" not in services["worker"], "a fixed name would stop --scale worker=N"


def test_every_service_runs_a_real_ingest_command():
    """Each app service's command is `ingest <command>` with a command the CLI has."""
    commands = {name: spec["command"] for name, spec in ingest_services().items()}
    assert commands, "no service is built from this repository"
    for name, command in commands.items():
        assert command[0] == "ingest" and command[1] in INGEST_COMMANDS, (name, command)
    assert {command[1] for command in commands.values()} == {"migrate", "watch", "worker", "beat"}


def test_every_role_waits_for_the_schema_migration_to_succeed():
    """`migrate` runs once and exits; watcher, workers and scheduler start only after it succeeded."""
    services = ingest_services()
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("watcher", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_every_variable_set_is_a_real_setting():
    """INGEST_* variables in the compose file and the Dockerfile all name fields of Settings."""
    for name, spec in ingest_services().items():
        for variable in spec["environment"]:
            assert variable in SETTING_VARIABLES, (name, variable)
    dockerfile_vars = set(re.findall(r"\b(INGEST_[A-Z_]+)=", (ROOT / "Dockerfile").read_text()))
    assert dockerfile_vars and dockerfile_vars <= SETTING_VARIABLES


def test_the_app_services_reach_redis_and_postgres_by_service_name():
    env = ingest_services()["worker"]["environment"]
    assert env["INGEST_REDIS_URL"].startswith("redis://redis:")
    assert env["INGEST_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:" in env["INGEST_DATABASE_URL"]


def test_the_dockerfile_copies_what_exists_and_installs_with_the_lock():
    """Every COPY source is in the repository, and pip uses constraints.txt."""
    text = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
        *sources, _destination = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert "-c constraints.txt" in text

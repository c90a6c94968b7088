"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine runs here)."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import typer.main
import yaml

from shared.settings import Settings
from tests.conftest import PG_URL, ROOT
from worker.cli import cli

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
COMPOSE_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())  # see its README
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


def test_the_compose_file_follows_the_compose_specification():
    """Validated against the specification's own JSON schema (vendored under tests/schemas; draft 7,
    which its $schema names in a spelling jsonschema does not recognise, so the validator is named)."""
    validator = jsonschema.Draft7Validator(COMPOSE_SCHEMA)
    validator.validate(COMPOSE)
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["healthcheck"]["intervall"] = "5s"  # a misspelt key, as people write them
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


ROLE_OF_COMMAND = {"watch": "watcher", "worker": "worker", "beat": "beat"}


def test_every_long_running_role_has_a_healthcheck_for_its_role():
    """`ingest doctor --role R`, R the role the service runs: depends_on service_healthy works for them."""
    from worker.doctor import ROLES

    for name, spec in ingest_services().items():
        if name == "migrate":
            assert "healthcheck" not in spec  # one-shot: it completes, it is never healthy
            continue
        role = ROLE_OF_COMMAND[spec["command"][1]]
        assert role in ROLES
        assert spec["healthcheck"]["test"] == ["CMD", "ingest", "doctor", "--role", role], name


def _queues_of(spec: dict) -> set[str]:
    command = spec["command"]
    return set(command[command.index("-Q") + 1].split(",")) if "-Q" in command else set()


def test_feeds_and_webhooks_have_workers_of_their_own_and_every_queue_a_consumer():
    from worker.app import celery_config
    from worker.broker import FEEDS_QUEUE, HOOKS_QUEUE, QUEUE

    services = ingest_services()
    workers = {name: _queues_of(services[name]) for name in ("worker", "feeds-worker", "hooks-worker")}
    assert workers == {"worker": {QUEUE}, "feeds-worker": {FEEDS_QUEUE}, "hooks-worker": {HOOKS_QUEUE}}
    every_queue = {queue.name for queue in celery_config(Settings(), None)["task_queues"]}
    assert every_queue == set().union(*workers.values())


def test_prometheus_scrapes_every_role_on_its_metrics_port_and_flower_is_a_profile():
    env = COMPOSE["x-ingest"]["environment"]
    assert env["INGEST_METRICS_HOST"] == "0.0.0.0" and env["INGEST_TASK_EVENTS"] == "true"
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [discovery] = job["dns_sd_configs"]
    roles = {name for name, spec in ingest_services().items() if name != "migrate"}
    assert set(discovery["names"]) == roles
    assert discovery["port"] == int(env["INGEST_METRICS_PORT"])
    services = COMPOSE["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["flower"]["profiles"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]


def test_every_role_waits_for_the_schema_migration_to_succeed():
    """`migrate` runs once and exits, once the store and Redis (the index it may rebuild) answer;
    watcher, workers and scheduler start only after it succeeded."""
    services = ingest_services()
    assert services["migrate"]["restart"] == "no"
    healthy = {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"] == {"postgres": healthy, "redis": healthy}
    for name in ("watcher", "worker", "feeds-worker", "hooks-worker", "beat"):
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


def _postgres_settings() -> dict[str, str]:
    command = COMPOSE["services"]["postgres"]["command"]
    assert command[0] == "postgres" and command[1::2] == ["-c"] * (len(command) // 2)
    return dict(pair.split("=", 1) for pair in command[2::2])


def test_postgres_drops_a_vanished_client_and_its_locks_within_minutes():
    """A worker host lost mid-transaction (no FIN) must not hold its row locks for the kernel's two
    hours: the server probes idle connections and ends sessions left idle inside a transaction."""
    settings = _postgres_settings()
    idle, interval, count = (int(settings[f"tcp_keepalives_{name}"]) for name in ("idle", "interval", "count"))
    assert idle + interval * count <= 300
    assert settings["idle_in_transaction_session_timeout"] == "5min"


@pytest.mark.skipif(not PG_URL, reason="INGEST_TEST_DATABASE_URL is not set")
def test_the_postgres_settings_are_ones_postgresql_takes():
    """Each `-c name=value` of the compose file set on a real server: a misspelt name or a value
    PostgreSQL cannot read would stop the container from starting."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_URL)
    try:
        with engine.connect() as connection:
            for name, value in _postgres_settings().items():
                connection.execute(text(f"SET {name} = '{value}'"))
                shown = connection.execute(text(f"SHOW {name}")).scalar_one()
                assert shown == value, (name, value, shown)
    finally:
        engine.dispose()

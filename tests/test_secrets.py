"""Passwords in the Redis, database and feed URLs never reach an output, a log line or a file under data/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from shared.redact import mask_secrets
from tests.conftest import PG_URL, _postgres_schema_url, copy_sample, wait_until

REDIS_PASSWORD = "r3dis-Pa55word"
DATABASE_PASSWORD = "pg-Pa55word"
FEED_PASSWORD = "feed-Pa55word"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:s3cret@cache.example:6380/1", "rediss://app:***@cache.example:6380/1"),
        ("redis+socket://:s3cret@/run/redis.sock?virtual_host=0", "redis+socket://:***@/run/redis.sock?virtual_host=0"),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
        ("postgresql+psycopg://ingest:p%40ss@db:5432/ingest", "postgresql+psycopg://ingest:***@db:5432/ingest"),
        ("https://reader:pa@ss@feeds.example/rss.xml", "https://reader:***@feeds.example/rss.xml"),
        (
            "cannot reach Redis at redis://:s3cret@h:1/0 (connection refused)",
            "cannot reach Redis at redis://:***@h:1/0 (connection refused)",
        ),
        (
            '{"url": "redis://u:s3cret@h/0", "store": "sqlite:///data/ingest.db"}',
            '{"url": "redis://u:***@h/0", "store": "sqlite:///data/ingest.db"}',
        ),
    ],
)
def test_a_password_in_a_url_is_masked_and_the_user_name_kept(text, shown):
    """Every URL shape that carries a password shows it as ***, in a URL alone or in a sentence."""
    assert mask_secrets(text) == shown


@pytest.mark.parametrize(
    "text", ["redis://cache:6379/0", "https://reader@feeds.example/rss.xml", "a=b and c", "redis://:***@h/0", ""]
)
def test_text_without_a_password_is_left_alone(text):
    """No password, nothing changes (and masking twice is masking once)."""
    assert mask_secrets(text) == text


def _redis_with_password(folder: Path) -> tuple[subprocess.Popen, str]:
    from worker.broker import free_port, redis_executable, wait_for_redis

    port = free_port()
    command = [redis_executable(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""]
    process = subprocess.Popen([*command, "--requirepass", REDIS_PASSWORD], stdout=subprocess.DEVNULL)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    wait_for_redis(url, 10, process)
    return process, url


def _every_output(deployment, metrics_port: int) -> list[str]:
    """What a user and an operator can see of a run: command outputs and errors, metrics, logs, data/."""
    outputs = []
    for args in (
        ["status"],
        ["status", "--json"],
        ["doctor"],
        ["feeds", "list"],
        ["feeds", "list", "--json"],
        ["export"],
        ["failures"],
        ["clusters"],
    ):
        result = deployment.run(*args, check=False)
        outputs += [result.stdout, result.stderr]
    outputs.append(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
    return outputs


def _waiting_worker_output(deployment, env: dict[str, str]) -> str:
    """A worker whose Redis does not answer waits for it, saying so: what it says while it waits."""
    log_path = deployment.folder / "waiting-worker.log"
    with open(log_path, "wb") as log_file:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            cwd=deployment.folder,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_until(lambda: log_path.read_text().count('"redis.unreachable"') >= 2, 30, "the worker's second try")
    finally:
        waiting.kill()
        waiting.wait()
    return log_path.read_text()


@pytest.mark.postgres
@pytest.mark.e2e
@pytest.mark.drill  # a whole run on PostgreSQL with every output read back: CI runs it with the drills
def test_no_password_is_printed_logged_or_kept(deployment, tmp_path):
    """A run with passwords in the Redis, database and feed URLs: none of them in any output or file."""
    if not PG_URL:
        pytest.skip("INGEST_TEST_DATABASE_URL is not set")
    from worker.broker import free_port

    redis_server, redis_url = _redis_with_password(tmp_path)
    try:
        for schema_url in _postgres_schema_url():
            # Trust auth on the test server: the password is carried, never checked, as a real one would be.
            database_url = make_url(schema_url).set(password=DATABASE_PASSWORD).render_as_string(hide_password=False)
            metrics_port = free_port()
            deployment.env |= {
                "INGEST_REDIS_URL": redis_url,
                "INGEST_DATABASE_URL": database_url,
                "INGEST_METRICS_PORT": str(metrics_port),
                "INGEST_FEEDS_ALLOW_PRIVATE": "true",
                "INGEST_LOG_FILE": str(deployment.folder / "data" / "ingest.log"),
            }
            copy_sample(deployment.seeds)
            deployment.start("--concurrency", "1")
            deployment.drain()
            deployment.run("feeds", "add", f"http://reader:{FEED_PASSWORD}@127.0.0.1:{free_port()}/rss.xml")
            wait_until(lambda: '"feed.polled"' in deployment.log_text(), 30, "the feed's failed poll")
            outputs = _every_output(deployment, metrics_port)
            unreachable = {**deployment.env, "INGEST_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"}
            for args in (["status"], ["doctor"]):
                result = subprocess.run(
                    [sys.executable, "-m", "worker.cli", *args],
                    cwd=deployment.folder,
                    env=unreachable,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert result.returncode != 0
                outputs.append(result.stdout + result.stderr)
            outputs.append(_waiting_worker_output(deployment, unreachable))
            deployment.stop()
            outputs.append(deployment.log_text())
            outputs += [
                path.read_text(errors="replace") for path in (deployment.folder / "data").rglob("*") if path.is_file()
            ]
            assert deployment.count_items() == 0  # the store is PostgreSQL: nothing was written to a SQLite file
            assert any("Putin seeks foreign volunteers" in text for text in outputs)  # the run did its work
            assert any("redis://:***@127.0.0.1" in text for text in outputs)  # the URLs are shown, masked
            for secret in (REDIS_PASSWORD, DATABASE_PASSWORD, FEED_PASSWORD):
                leaks = [
                    text[max(0, text.find(secret) - 200) : text.find(secret) + 50] for text in outputs if secret in text
                ]
                assert not leaks, f"{secret} printed: {leaks[0]!r}"
    finally:
        redis_server.terminate()
        redis_server.wait(10)

"""`ingest` as a user meets it when something is wrong: one line, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import socket
import threading

import pytest


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", [["status"], ["wait", "--timeout", "1"], ["submit", "x"], ["doctor"]])
def test_unreachable_redis_is_one_line(deployment, command):
    """The interface's own example: `error: cannot reach Redis at … (connection refused)`."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    deployment.env["INGEST_REDIS_URL"] = url
    result = deployment.run(*command, check=False, timeout=60)
    assert result.returncode == 1
    if command == ["doctor"]:
        assert f"fail  redis: cannot reach Redis at {url} (connection refused)" in result.stdout
    else:
        assert result.stderr.strip() == f"error: cannot reach Redis at {url} (connection refused)"


@pytest.mark.parametrize("role", ["worker", "watch", "beat"])
def test_a_long_running_role_waits_for_its_redis_saying_so_on_one_line(deployment, role):
    """A role started before its Redis does not exit: one `redis.unreachable` JSON line a try."""
    import json

    from tests.conftest import wait_until

    deployment.env["INGEST_REDIS_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    process = deployment.spawn(role)
    wait_until(lambda: deployment.log_text().count('"redis.unreachable"') >= 2, 30, "two tries")
    assert process.poll() is None
    [first, second] = [json.loads(line) for line in deployment.log_text().splitlines() if "redis.unreachable" in line][
        :2
    ]
    assert first["error"].endswith("(connection refused)") and second["retry_in_seconds"] > first["retry_in_seconds"]


def test_a_bad_setting_is_one_line(deployment):
    deployment.env["INGEST_MAX_FILE_BYTES"] = "lots"
    result = deployment.run("export", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid setting max_file_bytes:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_visibility_timeout_shorter_than_a_task_is_refused(deployment):
    deployment.env |= {"INGEST_VISIBILITY_TIMEOUT": "60", "INGEST_TASK_TIME_LIMIT": "120"}
    result = deployment.run("status", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: invalid setting: Value error, visibility_timeout (60s) must exceed task_time_limit (120s)"
    )


def test_an_unreachable_database_is_one_line(deployment):
    deployment.env["INGEST_DATABASE_URL"] = f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none"
    result = deployment.run("export", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: cannot use the database at postgresql+psycopg://nobody@127.0.0.1:")


def test_a_bad_since_is_a_usage_error(deployment):
    result = deployment.run("export", "--since", "yesterday", check=False)
    assert result.returncode == 2 and "not an ISO-8601 date or time" in result.stderr


def test_wait_times_out_with_exit_1_while_files_wait(deployment):
    """Nothing runs to take the file: wait gives up at its deadline and says what is pending."""
    (deployment.seeds / "a.txt").write_text("Title\n\nBody sentence.\n")
    result = deployment.run("wait", "--timeout", "1", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: still pending after 1s:")
    assert json.loads(result.stderr.split(":", 2)[2])["files_waiting"] == 1


def test_wait_polls_sooner_as_the_work_runs_out():
    """The drain rate between two readings says when the work ends; polls stay within their bounds."""
    from worker.cli_state import (
        CONFIRM_POLL_SECONDS,
        SOONEST_POLL_SECONDS,
        WAIT_POLL_SECONDS,
        _Drain,
        _next_poll_seconds,
    )

    drain = _Drain()
    assert drain.seconds_left(600) is None  # one reading: no rate yet
    drain.at -= 0.1  # the next reading 100 ms later
    assert drain.seconds_left(400) == pytest.approx(0.2, rel=0.05)  # 200 gone in 0.1 s, 400 left
    drain.at -= 0.1
    assert drain.seconds_left(400) == pytest.approx(0.4, rel=0.05)  # unchanged: the last rate, trusted half
    drain.at -= 0.1
    assert drain.seconds_left(450) is None  # more pending than before: not draining
    drain = _Drain()
    drain.seconds_left(600)
    drain.at -= 0.1
    drain.seconds_left(400)
    for _reading in range(5000):  # one long task in hand: the estimate grows, then stays put
        left = drain.seconds_left(400)
    assert left is not None and left >= WAIT_POLL_SECONDS
    running = "redis://127.0.0.1:6379/0"
    assert _next_poll_seconds(running, 0, None) == WAIT_POLL_SECONDS
    assert _next_poll_seconds(running, 0, 5.0) == WAIT_POLL_SECONDS
    assert _next_poll_seconds(running, 0, 0.03) == pytest.approx(0.03)
    assert _next_poll_seconds(running, 0, 0.0001) == SOONEST_POLL_SECONDS
    assert _next_poll_seconds(running, 1, 0.0001) == CONFIRM_POLL_SECONDS


def test_a_message_done_wakes_the_wait_only_when_nothing_else_is_left(clean_redis):
    """A worker ending a message says so on Redis; `ingest wait`, with only messages in hand, looks
    again at once instead of sleeping out its poll; word said before it listened is dropped."""
    import redis

    from shared.deliveries import Deliveries
    from worker.cli_state import _DoneMessages, only_in_hand

    deliveries = Deliveries(redis.Redis.from_url(clean_redis))
    done = _DoneMessages()
    done.listen(clean_redis)
    deliveries.end_message("said-before-the-reading")
    done.listen(clean_redis)  # the next reading: what came before it is dropped
    assert done.wait(0.05, wake_early=True) is False

    ended = threading.Timer(0.2, deliveries.end_message, args=["the-last-one"])
    ended.start()
    try:
        assert done.wait(10, wake_early=True) is True  # woken by the message, not by the 10 s
    finally:
        ended.join()
    deliveries.end_message("while-messages-still-queue")
    assert done.wait(0.05, wake_early=False) is False  # not listened for: the poll is slept out
    done.close()

    assert only_in_hand({"queued": 0, "in_flight": 2, "files_waiting": 0})
    assert not only_in_hand({"queued": 1, "in_flight": 2, "files_waiting": 0})
    assert not only_in_hand({"queued": 0, "in_flight": 1, "files_waiting": 3})
    assert not only_in_hand({"queued": 0, "in_flight": 0, "files_waiting": 0})


def test_a_command_exits_with_its_status_and_its_output_whole(deployment):
    """Commands end without Python's module teardown: the status and every line written still arrive."""
    for number in range(3):
        (deployment.seeds / f"s{number}.txt").write_text(f"Story {number}\n\nBody sentence number {number}.\n")
    assert deployment.run("wait", "--timeout", "1", check=False).returncode == 1
    result = deployment.run("nosuch", check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: No such command")
    assert deployment.run("status", "--json").stdout.rstrip().endswith("}")
    # The store's connections are closed first: SQLite folds its write-ahead log into the file, so a
    # copy of data/ingest.db made while nothing runs (the README's backup) holds every commit.
    assert deployment.run("feeds", "add", "https://news.example/feed.xml", check=False).returncode == 0
    assert (deployment.folder / "data" / "ingest.db").exists()
    assert not (deployment.folder / "data" / "ingest.db-wal").exists()


def test_empty_store_status_and_export(deployment):
    """A fresh folder: zero counts, no items, no failures."""
    status = deployment.status()
    assert {k: status[k] for k in ("items", "origins", "duplicates", "clusters", "failed", "pending")} == dict.fromkeys(
        ("items", "origins", "duplicates", "clusters", "failed", "pending"), 0
    )
    assert status["feeds"] == []
    assert deployment.run("export").stdout == ""
    assert deployment.run("failures").stdout.strip() == "no failures"
    assert json.loads(deployment.run("failures", "--json").stdout) == []

"""`ingest doctor` and `ingest logs`, run as a user runs them."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading

from tests.conftest import ROOT, wait_until

RECORDS = [
    {"timestamp": "2026-01-01T00:00:00Z", "level": "info", "event": "item.stored", "item_id": 1, "origin": "a.txt"},
    {"timestamp": "2026-01-01T00:00:01Z", "level": "warning", "event": "input.failed", "reason": "unsupported format"},
    {
        "timestamp": "2026-01-01T00:00:02Z",
        "level": "info",
        "event": "feed.polled",
        "feed": "http://x/rss",
        "status": 304,
    },
    {
        "timestamp": "2026-01-01T00:00:03Z",
        "level": "error",
        "event": "feed.polled",
        "feed": "http://y/rss",
        "status": 500,
    },
]


def write_log(path) -> None:
    path.write_text("celery banner line, not JSON\n" + "".join(json.dumps(r) + "\n" for r in RECORDS))


def test_doctor_is_all_ok_on_a_working_setup(deployment):
    result = deployment.run("doctor")
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 6, result.stdout
    assert any(line.startswith("ok    redis: redis://127.0.0.1:") for line in lines)


def test_doctor_says_what_to_fix_and_exits_1(deployment):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    deployment.env["INGEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    result = deployment.run("doctor", check=False)
    assert result.returncode == 1
    assert f"fail  redis: cannot reach Redis at redis://127.0.0.1:{port}/0 (connection refused)" in result.stdout
    assert "fix: start Redis, or correct INGEST_REDIS_URL" in result.stdout


def test_logs_filters_by_level_and_event(deployment, tmp_path):
    log = tmp_path / "ingest.jsonl"
    write_log(log)
    warnings = deployment.run("logs", str(log), "--level", "warning").stdout.splitlines()
    assert len(warnings) == 2 and "input.failed" in warnings[0] and "feed.polled" in warnings[1]
    feeds = deployment.run("logs", str(log), "--event", "feed.*").stdout.splitlines()
    assert len(feeds) == 2 and all("feed.polled" in line for line in feeds)
    everything = deployment.run("logs", str(log)).stdout.splitlines()
    assert everything[0] == "celery banner line, not JSON" and len(everything) == 5


def test_logs_reads_what_docker_compose_logs_prints():
    """`docker compose logs -f worker | ingest logs`: each line has its service's prefix."""
    from worker.logview import parsed

    line = 'worker-2  | {"event": "item.stored", "level": "info", "item_id": 7}'
    assert parsed(line) == {"event": "item.stored", "level": "info", "item_id": 7, "service": "worker-2"}
    assert parsed('{"event": "a | b", "level": "info"}') == {"event": "a | b", "level": "info"}
    assert parsed("worker-2  | Celery banner, not JSON") is None
    stamped = 'beat-1  | 2026-12-06T15:28:00.101371251Z {"event": "beat.leading", "level": "info"}'
    assert parsed(stamped) == {"event": "beat.leading", "level": "info", "service": "beat-1"}


def test_logs_reads_standard_input_and_the_configured_file(deployment, tmp_path):
    log = tmp_path / "configured.jsonl"
    write_log(log)
    piped = subprocess.run(
        [sys.executable, "-m", "worker.cli", "logs", "--event", "item.stored"],
        input=log.read_text(),
        capture_output=True,
        text=True,
        env=deployment.env,
        cwd=deployment.folder,
        timeout=60,
    )
    assert piped.returncode == 0 and "item.stored" in piped.stdout and len(piped.stdout.splitlines()) == 1
    deployment.env["INGEST_LOG_FILE"] = str(log)
    assert len(deployment.run("logs", "--level", "error").stdout.splitlines()) == 1


def test_logs_errors_are_one_line(deployment, tmp_path):
    missing = deployment.run("logs", str(tmp_path / "nope.jsonl"), check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: no such log file: {tmp_path / 'nope.jsonl'}"
    bad_level = deployment.run("logs", str(tmp_path), "--level", "loud", check=False)
    assert bad_level.returncode == 2 and bad_level.stderr.startswith("error: Invalid value for --level")


def test_logs_follow_sees_new_lines_and_a_rotation(deployment, tmp_path):
    log = tmp_path / "live.jsonl"
    log.write_text(json.dumps(RECORDS[0]) + "\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "logs", "--follow", str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env=deployment.env,
        cwd=deployment.folder,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []

    def saw(event: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(event in line for line in seen)

    try:
        wait_until(lambda: _append(log, RECORDS[1]) or saw("input.failed"), 20, "an appended line")
        log.rename(tmp_path / "live.jsonl.1")  # rotated, as RotatingFileHandler does
        log.write_text("")
        wait_until(lambda: _append(log, RECORDS[3]) or saw("status=500"), 20, "a line in the new file")
    finally:
        process.terminate()
        process.wait(10)
    assert not any("item.stored" in line for line in seen), "follow starts at the end of the file"


def _append(path, record) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def test_a_python_warning_is_one_event_on_one_line(tmp_path):
    """warnings.warn with a multi-line text: one python.warning JSON line, its text joined, its origin named."""
    script = (
        "import warnings\n"
        "from shared.logging import configure_logging\n"
        "from shared.settings import Settings\n"
        "configure_logging(Settings(log_format='json'), process='cli')\n"
        "warnings.warn('first line\\nsecond line', DeprecationWarning)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")} | {"PYTHONWARNINGS": "always"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    [line] = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert (record["event"], record["category"], record["message"]) == (
        "python.warning",
        "DeprecationWarning",
        "first line second line",
    )
    assert record["origin"].startswith("<string>:")


def test_an_idle_worker_started_alone_is_healthy_by_its_role(deployment):
    """`ingest worker` alone serves its own /metrics: before any task (no pool file yet) it says its
    role, so `doctor --role worker` (the compose healthcheck) passes; asked as another role, it fails."""
    from worker.broker import free_port

    deployment.env["INGEST_METRICS_PORT"] = str(free_port())
    deployment.spawn("worker", "--concurrency", "1", "-Q", "ingest")
    wait_until(
        lambda: deployment.run("doctor", "--role", "worker", check=False).returncode == 0, 60, "the worker healthy"
    )
    wrong = deployment.run("doctor", "--role", "beat", check=False)
    assert wrong.returncode == 1 and "answers, but not as the beat role" in wrong.stdout
    unknown = deployment.run("doctor", "--role", "painter", check=False)
    assert unknown.returncode == 2 and "'painter' is not one of watcher, worker, beat" in unknown.stderr

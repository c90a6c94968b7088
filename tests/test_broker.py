"""The private Redis of a data folder: never two at once, never one outliving its owner unnoticed."""

from __future__ import annotations

import json

import pytest
import redis

from shared.errors import ServiceError
from worker.broker import URL_FILE, EmbeddedRedis, redis_servers_in, start_redis_server


def test_a_redis_left_running_on_the_data_folder_is_stopped_before_a_new_one_starts(tmp_path):
    """An orphaned private Redis (its owner gone, the lock free) is stopped cleanly, its writes kept
    in the append-only file, and one server runs on the folder afterwards: the new owner's."""
    data = (tmp_path / "data").resolve()
    data.mkdir()
    orphan, orphan_url = start_redis_server(data, persistent=True)  # as a killed owner leaves it
    (data / URL_FILE).write_text(orphan_url + "\n")
    redis.Redis.from_url(orphan_url).set("written-before", "kept")
    embedded = EmbeddedRedis(data, announce=False)
    try:
        url = embedded.start()
        assert orphan.wait(5) == 0  # SHUTDOWN-like exit on SIGTERM, not a kill
        assert redis_servers_in(data) == [embedded._process.pid]
        assert redis.Redis.from_url(url).get("written-before") == b"kept"
    finally:
        embedded.stop()
    assert redis_servers_in(data) == []


def test_a_live_owners_redis_is_left_alone(tmp_path):
    """A second owner of the same folder is refused while the first runs; the first's server is untouched."""
    data = (tmp_path / "data").resolve()
    first = EmbeddedRedis(data, announce=False)
    url = first.start()
    try:
        with pytest.raises(ServiceError, match="another `ingest up` already runs the private Redis"):
            EmbeddedRedis(data, announce=False).start()
        assert redis.Redis.from_url(url).ping()
        assert redis_servers_in(data) == [first._process.pid]
    finally:
        first.stop()


def test_a_command_run_while_up_starts_its_redis_waits_for_that_redis(tmp_path):
    """`ingest up & ingest wait`: the command finds the folder locked and no URL yet (Redis starting,
    a killed owner's URL file left behind); it uses the owner's Redis once up, not the stale URL, no refusal."""
    import threading

    from shared.settings import Settings
    from worker.broker import broker_url

    data = (tmp_path / "data").resolve()
    data.mkdir()
    (data / URL_FILE).write_text("redis://127.0.0.1:1/0\n")  # left by an owner killed earlier
    owner = EmbeddedRedis(data, announce=False)
    owner._take_lock()
    found: list[str] = []

    def a_command() -> None:
        with broker_url(Settings(_env_file=None, data_dir=data, redis_url=None)) as url:
            found.append(url)

    command = threading.Thread(target=a_command)
    command.start()
    try:
        command.join(0.5)
        assert command.is_alive() and not found  # waiting for the owner's Redis, neither refused nor misled
        owner._serve()  # here, not in a thread: the server dies with the thread that started it
        command.join(10)
        assert found == [owner.url] and redis.Redis.from_url(owner.url).ping()
        assert redis_servers_in(data) == [owner._process.pid]
    finally:
        command.join(10)
        owner.stop()


def test_a_watcher_started_before_its_redis_waits_for_it_then_works(tmp_path):
    """Redis down at start: the watcher says so on one line a try, waits with a growing pause, and
    takes files once Redis answers; it never exits."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, wait_until
    from worker.broker import free_port, redis_executable, wait_for_redis

    port = free_port()
    (tmp_path / "seeds").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")} | {
        "INGEST_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "INGEST_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "watch.log"
    with open(log_path, "wb") as log_file:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "watch"], cwd=tmp_path, env=env, stdout=log_file, stderr=log_file
        )
    server = None
    try:
        wait_until(lambda: log_path.read_text().count('"redis.unreachable"') >= 2, 30, "two tries")
        assert watcher.poll() is None
        lines = [line for line in log_path.read_text().splitlines() if '"redis.unreachable"' in line]
        assert all(line.startswith("{") for line in lines) and "Traceback" not in log_path.read_text()
        server = subprocess.Popen(
            [redis_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        wait_for_redis(env["INGEST_REDIS_URL"], 10, server)
        wait_until(lambda: '"watcher.started"' in log_path.read_text(), 30, "the watcher to start once Redis answers")
        (tmp_path / "seeds" / "late.txt").write_text("A late story\n\nIt arrived after Redis did.\n")
        client = redis.Redis.from_url(env["INGEST_REDIS_URL"])
        wait_until(lambda: client.llen("ingest") == 1, 30, "the file on the queue")
    finally:
        watcher.terminate()
        watcher.wait(30)
        if server is not None:
            server.terminate()
            server.wait(10)


def test_up_waits_for_a_one_shot_command_holding_the_private_redis(tmp_path):
    """`ingest status` run as `ingest up` starts holds the folder's Redis for a moment: `up` waits its
    turn instead of failing as if another `up` ran."""
    import threading

    data = (tmp_path / "data").resolve()
    command = EmbeddedRedis(data, announce=False)
    command.start()
    releasing = threading.Timer(1.0, command.stop)
    releasing.start()
    up = EmbeddedRedis(data, announce=True)
    try:
        url = up.start()
        assert redis.Redis.from_url(url).ping() and redis_servers_in(data) == [up._process.pid]
    finally:
        releasing.join()
        up.stop()


CHILD_OF_A_DEAD_PARENT = """
import os, sys, time
from worker.lifetime import die_with_parent
arrange = die_with_parent()  # made in the parent, as subprocess.Popen's preexec_fn is
parent = os.getpid()
if os.fork():
    os._exit(0)  # the parent dies at once, before its child has asked to be told
with open(sys.argv[1], "w") as pid_file:
    pid_file.write(str(os.getpid()))
while os.getppid() == parent:
    time.sleep(0.01)  # the child asks only once its parent is gone: the race, made certain
arrange()
with open(sys.argv[2], "w") as survived:
    survived.write("still running")
"""


def test_a_child_whose_parent_died_before_it_asked_for_the_signal_ends_too(tmp_path):
    """The window between fork and prctl: no death signal comes then, so the child ends itself."""
    import subprocess
    import sys

    import psutil

    from tests.conftest import wait_until

    pid_file, survived = tmp_path / "pid", tmp_path / "survived"
    subprocess.run([sys.executable, "-c", CHILD_OF_A_DEAD_PARENT, str(pid_file), str(survived)], timeout=60)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child to start")
    child = int(pid_file.read_text())

    def ended() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(ended, 30, "the orphaned child to end")
    assert not survived.exists()


@pytest.mark.parametrize("body_encoding", [None, "base64"])
def test_the_oldest_pending_age_reads_a_queued_message_of_either_body_encoding(clean_redis, body_encoding):
    """`ingest_oldest_pending_seconds` sees a queued message's oldest arrival, its body JSON text (as
    this version sends it) or base64 (as senders before it did)."""
    from datetime import UTC, datetime, timedelta

    from shared.messages import Batch, RawInput
    from shared.settings import Settings
    from worker.app import create_app
    from worker.metrics_server import oldest_pending_seconds

    app = create_app(Settings(), broker_url=clean_redis)
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "body_encoding": body_encoding}
    raw = RawInput.from_bytes(b"A title\n\nA body.\n", kind="file", ref="file:old.txt")
    raw = raw.model_copy(update={"seen_at": datetime.now(UTC) - timedelta(seconds=60)})
    app.send_task("ingest.process", args=[Batch(inputs=[raw]).to_message()], queue="waiting")
    queued = json.loads(redis.Redis.from_url(clean_redis).lindex("waiting", -1))
    assert queued["properties"]["body_encoding"] == body_encoding  # the sender wrote the kind asked for
    assert 60 <= oldest_pending_seconds(redis.Redis.from_url(clean_redis), ("waiting",)) < 90

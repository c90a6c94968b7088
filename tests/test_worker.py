"""A real Celery worker on the test Redis: redelivery, and the shape of its logs."""

from __future__ import annotations

import json
import os
import signal

import pytest

from shared.messages import Batch, RawInput
from tests.conftest import SAMPLE, wait_until


@pytest.fixture
def worker(deployment):
    deployment.env["INGEST_LOG_FILE"] = str(deployment.folder / "logs" / "ingest.jsonl")
    process = deployment.spawn("worker", "--concurrency", "1")
    wait_until(lambda: "ready." in deployment.log_text(), 60, "the worker to be ready")
    yield deployment
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def send(site, message: Batch | dict) -> None:
    from shared.settings import Settings
    from worker.app import QUEUE, create_app

    app = create_app(Settings(), broker_url=site.env["INGEST_REDIS_URL"])
    body = message.to_message() if isinstance(message, Batch) else message
    app.send_task("ingest.process", args=[body], queue=QUEUE)


def json_lines(site) -> list[dict]:
    return [json.loads(line) for line in site.log_text().splitlines() if line.startswith("{")]


def test_a_message_delivered_twice_is_one_origin(worker):
    """The same arrival in two deliveries: one item, one origin, and an item.redelivered line."""
    raw = RawInput.from_bytes(SAMPLE.read_bytes(), kind="file", ref="in/sample.txt")
    send(worker, Batch(inputs=[raw]))
    send(worker, Batch(inputs=[raw]))
    wait_until(lambda: any(r["event"] == "item.redelivered" for r in json_lines(worker)), 60, "the second delivery")
    [item] = worker.export()
    assert [origin["ref"] for origin in item["origins"]] == ["in/sample.txt"]
    assert worker.status()["duplicates"] == 0


def test_worker_logs_are_one_json_shape_written_once(worker):
    """Celery's own records and ours share one handler: JSON, with the outcome fields, no doubles."""
    send(worker, Batch(inputs=[RawInput.from_bytes(SAMPLE.read_bytes(), kind="file", ref="a.txt")]))
    wait_until(lambda: any(r["event"] == "item.stored" for r in json_lines(worker)), 60, "the item")
    lines = [line for line in worker.log_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert len(lines) == len(set(lines)), "a log line was written twice"
    assert all({"timestamp", "level", "event"} <= set(record) for record in records)
    assert not [record["event"] for record in records if "\n" in record["event"]], "a multi-line event"
    assert any(record.get("logger", "").startswith("celery") for record in records)
    # Celery's warning about root concerns pickle, which is refused: documented once, never logged.
    assert not [r for r in records if r.get("category") == "SecurityWarning"]
    assert os.geteuid() != 0 or "superuser privileges" not in worker.log_text()
    [stored] = [record for record in records if record["event"] == "item.stored"]
    assert {"task_id", "item_id", "origin", "duration_ms", "outcome"} <= set(stored)
    assert stored["outcome"] == "stored" and stored["origin"] == "a.txt"
    log_file = worker.folder / "logs" / "ingest.jsonl"
    assert any(json.loads(line)["event"] == "item.stored" for line in log_file.read_text().splitlines())


def test_an_invalid_message_is_logged_and_does_not_stop_the_worker(worker):
    """A message that is not our wire format is one error line; the next message still lands."""
    send(worker, {"inputs": "nonsense"})
    send(worker, Batch(inputs=[RawInput.from_bytes(SAMPLE.read_bytes(), kind="file", ref="b.txt")]))
    wait_until(lambda: any(r["event"] == "item.stored" for r in json_lines(worker)), 60, "the good message")
    assert any(r["event"] == "message.invalid" for r in json_lines(worker))


def test_messages_wait_in_redis_as_json_text_and_base64_ones_are_read_too(worker):
    """A queued message's body is its JSON text in kombu's envelope, not base64 of it (a third fewer
    bytes); a body in base64, as senders before this change wrote it, is read all the same."""
    import redis

    from shared.settings import Settings
    from worker.app import QUEUE, create_app

    client = redis.Redis.from_url(worker.env["INGEST_REDIS_URL"])

    def queued_envelope(app, raw: RawInput) -> dict:
        app.send_task("ingest.process", args=[Batch(inputs=[raw]).to_message()], queue="nobody-reads-this")
        return json.loads(client.rpop("nobody-reads-this"))

    plain = RawInput.from_bytes(SAMPLE.read_bytes(), kind="file", ref="in/plain.txt")
    envelope = queued_envelope(create_app(Settings(), broker_url=worker.env["INGEST_REDIS_URL"]), plain)
    assert envelope["properties"]["body_encoding"] is None and '"ref": "in/plain.txt"' in envelope["body"]

    older_sender = create_app(Settings(), broker_url=worker.env["INGEST_REDIS_URL"])
    older_sender.conf.broker_transport_options = {
        **older_sender.conf.broker_transport_options,
        "body_encoding": "base64",
    }
    older = RawInput.from_bytes(SAMPLE.read_bytes().replace(b"Putin", b"Mr Putin"), kind="file", ref="in/older.txt")
    assert queued_envelope(older_sender, older)["properties"]["body_encoding"] == "base64"
    older_sender.send_task("ingest.process", args=[Batch(inputs=[older]).to_message()], queue=QUEUE)
    wait_until(lambda: worker.count_items() == 1, 60, "the base64 message's item")
    assert [origin["ref"] for item in worker.export() for origin in item["origins"]] == ["in/older.txt"]

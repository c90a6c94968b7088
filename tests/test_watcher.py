"""The watcher in-process, on a real folder, store and Redis: what it does when the kernel drops events."""

from __future__ import annotations

import logging
import threading

import redis

from shared.settings import Settings
from tests.conftest import wait_until
from worker import broker
from worker.cli_common import send, sending_app
from worker.watcher import OVERFLOW_LOGGER, Watcher


def test_an_inotify_overflow_starts_a_walk_of_the_folder_at_once(tmp_path, clean_redis):
    """watchdog's only word of an overflow is a warning from its inotify module. The watcher takes it
    as lost events and walks the folder at once, not at the next periodic re-scan an hour away; the
    state says a walk is on until a walk begun after the overflow has ended, so `ingest wait` never
    calls the folder settled meanwhile. The warning becomes the watcher's own line, not watchdog's."""
    from shared.schema import upgrade_schema

    (tmp_path / "seeds").mkdir()
    settings = Settings(
        _env_file=None,
        seeds_dir=tmp_path / "seeds",
        data_dir=tmp_path / "data",
        redis_url=clean_redis,
        watch_rescan_seconds=3600,
    )
    upgrade_schema(settings.store_url)
    client = redis.Redis.from_url(clean_redis)
    app = sending_app(clean_redis)
    states: list[tuple[int, bool]] = []
    watcher = Watcher(
        settings,
        send=lambda batch: send(app, batch),
        queue_idle=lambda: True,
        report=lambda waiting, walking: states.append((waiting, walking)),
        acknowledge=lambda name, waiting, walking: broker.acknowledge_barrier(client, name, waiting, walking),
    )
    stop = threading.Event()
    running = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    running.start()
    passed_on: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = passed_on.append
    logging.getLogger(OVERFLOW_LOGGER).addHandler(catcher)
    try:
        wait_until(lambda: states and states[-1] == (0, False), 30, "the first walk to end")
        assert watcher.overflows_walked == 0
        logging.getLogger(OVERFLOW_LOGGER).warning("Inotify queue overflowed; filesystem events were lost")
        wait_until(lambda: watcher.overflows == 1, 10, "the overflow to be heard")
        wait_until(lambda: watcher.overflows_walked == 1, 10, "a walk begun after it to end")
        wait_until(lambda: states[-1] == (0, False), 10, "the state to say the folder is settled again")
        assert not passed_on
    finally:
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(catcher)
        stop.set()
        running.join(10)

"""The private Redis of a data folder: never two at once, never one outliving its owner unnoticed."""

from __future__ import annotations

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

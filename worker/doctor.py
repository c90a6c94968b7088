"""`ingest doctor`: each check says what it found and, when something is wrong, what to do about it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy.exc import SQLAlchemyError

from shared.dedup import COMPACT_HASH_ENTRIES
from shared.index_layout import LAYOUT, index_layout
from shared.errors import ServiceError
from shared.redact import mask_secrets
from shared.schema import schema_state
from shared.settings import Settings, config_file
from worker import broker

INOTIFY = Path("/proc/sys/fs/inotify")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n      fix: {self.fix}" if self.fix else ""
        # One mask over the whole line: a URL may sit in the detail, the fix or an error text.
        return mask_secrets(f"{self.status:<4}  {self.name}: {self.detail}{fix}")


def check_settings(settings: Settings) -> Check:
    source = config_file()
    where = f"{source}" if source.exists() else f"built-in defaults ({source} not found)"
    return Check("settings", "ok", f"loaded from {where} and INGEST_* variables")


def check_redis(settings: Settings) -> Check:
    url = broker.running_redis_url(settings)
    if url is None:
        return Check(
            "redis", "ok", f"INGEST_REDIS_URL is unset: `ingest up` runs a private Redis under {settings.data_dir}"
        )
    try:
        client = broker.connect(url)
        info = client.info("server")
        entries = int(client.config_get("hash-max-ziplist-entries").get("hash-max-ziplist-entries", 0))
    except broker.ServiceError as exc:
        return Check("redis", "fail", str(exc), "start Redis, or correct INGEST_REDIS_URL")
    except redis.exceptions.ResponseError:
        return Check("redis", "ok", f"{url} answers (CONFIG is not allowed: memory settings unknown)")
    if entries < COMPACT_HASH_ENTRIES:
        return Check(
            "redis",
            "warn",
            f"{url} answers (Redis {info.get('redis_version')}), but hash-max-ziplist-entries is {entries}",
            f"set it to {COMPACT_HASH_ENTRIES} so the near-duplicate index stays compact",
        )
    layout = index_layout(client)
    if layout < LAYOUT:
        return Check(
            "redis",
            "warn",
            f"{url} answers, but the near-duplicate index is in layout {layout}, slower past 100,000 items",
            f"run `ingest migrate` (or `ingest up`, which does it in the background) to rebuild it in layout {LAYOUT}",
        )
    return Check("redis", "ok", f"{url} answers (Redis {info.get('redis_version')})")


def check_database(settings: Settings) -> Check:
    url = settings.store_url
    shown = mask_secrets(url)
    try:
        state = schema_state(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check(
            "database", "fail", f"cannot use {shown} ({reason})", "start the database or correct INGEST_DATABASE_URL"
        )
    except ServiceError as exc:
        return Check("database", "fail", f"{shown}: {exc}", "point INGEST_DATABASE_URL at an ingest store")
    if state.revision is None:
        return Check("database", "ok", f"{shown} reachable; its tables are created at the first start")
    if state.behind:
        return Check(
            "database",
            "fail",
            f"{shown} is at schema revision {state.revision}, behind this ingest's {state.head}",
            "run `ingest migrate` (or `ingest up`, which migrates at start)",
        )
    if not state.current:
        return Check(
            "database",
            "fail",
            f"{shown} is at schema revision {state.revision}, newer than this ingest knows ({state.head})",
            "upgrade ingest, or point it at a store of its own version",
        )
    return Check("database", "ok", f"{shown}, schema revision {state.revision} (current)")


def check_seeds(settings: Settings) -> Check:
    folder = settings.seeds_dir
    if not folder.exists():
        return Check("seeds folder", "warn", f"{folder} does not exist yet", "it is created at the first start")
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        return Check("seeds folder", "fail", f"{folder} is not a readable folder", f"chmod u+rx {folder}")
    return Check("seeds folder", "ok", f"{folder.resolve()} is readable")


def _folders(root: Path) -> int:
    return sum(1 for _ in os.walk(root)) if root.is_dir() else 0


def check_inotify(settings: Settings) -> Check:
    if settings.watch_polling:
        return Check("inotify", "ok", "not used: the watcher polls (watch_polling)")
    watches_file = INOTIFY / "max_user_watches"
    if not watches_file.exists():
        return Check("inotify", "warn", "no inotify on this system", "set INGEST_WATCH_POLLING=true")
    limit = int(watches_file.read_text())
    needed = _folders(settings.seeds_dir)
    if needed > limit * 0.8:
        return Check(
            "inotify",
            "warn",
            f"{needed} folders to watch, max_user_watches is {limit}",
            f"sysctl fs.inotify.max_user_watches={max(needed * 2, 524288)}, or INGEST_WATCH_POLLING=true",
        )
    return Check("inotify", "ok", f"{needed} folders to watch, max_user_watches {limit}")


def check_data_dir(settings: Settings) -> Check:
    folder = settings.data_dir
    probe = folder if folder.exists() else folder.parent if folder.parent.exists() else None
    if probe is None or not os.access(probe, os.W_OK):
        return Check("data folder", "fail", f"{folder} cannot be written", f"mkdir -p {folder} and make it writable")
    return Check("data folder", "ok", f"{folder.resolve()} is writable")


def check_alive(settings: Settings, role: str) -> Check:
    """The role's process in this container (or on this host) answers on its own metrics port, with
    metrics labelled as that role: alive, and serving, not merely started."""
    import httpx

    if settings.metrics_port is None:
        return Check(f"{role} process", "warn", "cannot tell: INGEST_METRICS_PORT is not set", "set it for every role")
    host = settings.metrics_host if settings.metrics_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    url = f"http://{host}:{settings.metrics_port}/metrics"
    try:
        answer = httpx.get(url, timeout=3)
    except httpx.HTTPError as exc:
        return Check(f"{role} process", "fail", f"no answer at {url} ({type(exc).__name__})", f"start `ingest {role}`")
    if answer.status_code != 200 or f'ingest_role{{role="{role}"}} 1.0' not in answer.text:
        return Check(f"{role} process", "fail", f"{url} answers, but not as the {role} role", "check the port")
    return Check(f"{role} process", "ok", f"answers at {url}")


CHECKS = (check_settings, check_redis, check_database, check_seeds, check_inotify, check_data_dir)
# What each role started alone needs, for `ingest doctor --role`: a container's healthcheck.
ROLE_CHECKS = {
    "watcher": (check_redis, check_database, check_seeds, check_inotify),
    "worker": (check_redis, check_database, check_data_dir),
    "beat": (check_redis, check_database),
}
ROLES = tuple(ROLE_CHECKS)


def run_checks(settings: Settings, role: str | None = None) -> list[Check]:
    if role is None:
        return [check(settings) for check in CHECKS]
    return [check(settings) for check in ROLE_CHECKS[role]] + [check_alive(settings, role)]

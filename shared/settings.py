"""The one settings object: built-in defaults < config/settings.toml (or $INGEST_CONFIG) < INGEST_* variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from shared.durations import parse_duration
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/settings.toml")
MIB = 1024 * 1024

# JSON keys for each field, in order of preference; `json_field_aliases` in the settings adds to these.
DEFAULT_JSON_ALIASES = {
    "title": ["title", "headline", "name", "subject"],
    "body": ["body", "content", "text", "article", "content_text", "content_html", "description", "summary"],
    "source": ["source", "publisher", "site", "site_name", "outlet"],
    "original_source": ["original_source"],
    "author": ["author", "authors", "byline", "creator", "writer"],
    "published_at": [
        "published_at",
        "date",
        "published",
        "pubDate",
        "pub_date",
        "date_published",
        "datePublished",
        "created_at",
        "timestamp",
    ],
    "updated_at": ["updated_at", "updated", "modified", "date_modified", "dateModified", "last_modified", "lastmod"],
    "url": ["url", "link", "href", "canonical_url", "permalink"],
    "language": ["language", "lang", "locale"],
    "entry_id": ["entry_id", "id", "guid", "uuid"],
}

# Whole lines (matched case-insensitively, surrounding white space ignored) that are never body.
DEFAULT_BOILERPLATE = [
    r"(enjoyed|liked|loved) (this|the) (post|article|story)\??\s*share it!?",
    r"share (this|it)( (post|article|story))?( on [\w ,]+)?[.!]?",
    r"(read|see) more( stories| news)?( here| at .{1,60})?[.:]?",
    r"click here to (read|see|subscribe|share).{0,80}",
    r"(sign up|subscribe) (for|to) (our|the) newsletter.{0,80}",
    r"(this (site|website) uses|we use) cookies.{0,200}",
    r"follow us on .{1,80}",
    r"advertisement",
    # Closing credit and rights lines of wire and newspaper copy.
    r"\((?:additional )?(?:reporting|writing|editing|compiled|translated)\s+by\b[^()]{1,300}\)",
    r"(?:additional )?reporting by [^.;]{1,120}; editing by [^.;]{1,120}\.?",
    r"(?:©|\(c\)|copyright\s+(?:©\s*)?(?:\d{4}|\(c\)))[^\n]{0,150}",
    r"[^\n]{0,150}\ball rights reserved\.?",
]


def config_file() -> Path:
    """The TOML file to read: $INGEST_CONFIG names it, else config/settings.toml."""
    return Path(os.environ.get("INGEST_CONFIG") or DEFAULT_CONFIG_FILE)


class FeedPolicy(BaseModel):
    """How often feeds are polled, in seconds."""

    default_interval: float
    backoff_max: float
    hint_max: float


class FeedSeed(BaseModel):
    """A subscription listed in the settings file: added at start if missing, never removed."""

    url: str
    every: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        None, description="Broker and shared-state Redis; unset: `ingest up` runs a private one"
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; unset: SQLite at <data_dir>/ingest.db"
    )
    data_dir: Path = Field(Path("data"), description="Where the embedded store, Redis and runtime files live")
    seeds_dir: Path = Field(Path("seeds"), description="The folder to watch")
    log_format: Literal["json", "console"] | None = Field(
        None, description="Unset: console on a terminal, json otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged")
    log_file: Path | None = Field(None, description="Also write JSON log lines to this file, rotated")
    max_file_bytes: int = Field(20 * MIB, gt=0, description="Larger inputs (as dropped or decompressed) are failures")
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve Prometheus metrics on HOST:PORT/metrics from `ingest up`, or from each role started alone",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoint binds to (containers: 0.0.0.0, for Prometheus)"
    )
    api_port: int | None = Field(
        None, ge=1, le=65535, description="Serve the HTTP API on this port (`ingest api`, `ingest up`)"
    )
    api_host: str = Field(
        "127.0.0.1", description="Address the HTTP API binds to; anything but loopback needs api_token"
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token every API endpoint but /healthz and /readyz asks for"
    )
    api_max_request_bytes: int = Field(
        64 * MIB, gt=0, description="Largest request body the API reads (a POST of several documents); larger: 413"
    )
    task_events: bool = Field(
        False, description="Workers send Celery task events (Flower shows them); costs a few Redis messages a task"
    )
    keep_raw: bool = Field(True, description="Keep every input's original bytes, compressed, in the store")
    watch_polling: bool = Field(
        False, description="Poll the seeds folder instead of inotify (network and container mounts)"
    )
    watch_settle_seconds: float = Field(1.0, gt=0, description="A file unchanged this long is complete")
    watch_rescan_seconds: float = Field(
        60.0, gt=0, description="Full re-scan period; recovers events the kernel dropped"
    )
    watch_batch_files: int = Field(
        100, ge=1, description="Most files the watcher (and `ingest submit`) packs into one message"
    )
    watch_batch_bytes: int = Field(
        4 * MIB, ge=1, description="Most bytes (as read) packed into one message; a larger file goes alone"
    )
    watch_batch_wait_ms: float = Field(
        3.0, ge=0, description="How long the watcher waits for more events after one, to pack a burst"
    )
    task_time_limit: int = Field(300, gt=0, description="Hard limit of one task, in seconds")
    visibility_timeout: int = Field(
        600, gt=0, description="Seconds before an unacknowledged message is delivered again"
    )
    events_maxlen: int = Field(
        100_000, ge=1, description="Events the `ingest:events` stream keeps, about (MAXLEN ~): the newest"
    )
    worker_kills_max: int = Field(
        3, ge=1, description="Times an input may kill a worker process before it is recorded as a failure"
    )
    boilerplate_patterns: list[str] = Field(
        DEFAULT_BOILERPLATE, description="Regexes of whole lines that are never body"
    )
    json_field_aliases: dict[str, list[str]] = Field(
        default_factory=dict, description="More JSON keys per field, tried after the built-in ones"
    )
    attribution_max_words: int = Field(
        6, gt=0, description="Longest closing attribution (`— Outlet`) taken as original_source"
    )
    language_min_confidence: float = Field(0.8, ge=0, le=1, description="Below this the language is left null")
    near_duplicate_threshold: float = Field(
        0.4, gt=0, le=1, description="Estimated Jaccard of word 3-shingles above which two items share a cluster"
    )
    feeds: list[FeedSeed] = Field(
        default_factory=list, description="Subscriptions to add at start ([[feeds]] in the TOML)"
    )
    feeds_allow_private: bool = Field(False, description="Let feeds live on loopback, private and link-local addresses")
    feeds_default_every: str = Field("15m", description="Poll interval of a feed added without --every")
    feeds_tick_seconds: float = Field(1.0, gt=0, description="How often the scheduler looks for feeds that are due")
    feeds_timeout_seconds: float = Field(20.0, gt=0, description="Connect and read timeout of one fetch")
    feeds_max_bytes: int = Field(10 * MIB, gt=0, description="Larger feed responses (decompressed) are a failed poll")
    feeds_backoff_max: str = Field("1d", description="Longest wait between polls of a failing feed")
    feeds_hint_max: str = Field("1d", description="A feed's own ttl, max-age or Expires is honoured up to this")
    feeds_user_agent: str = Field(
        "ingest/0.1 (feed fetcher; +https://github.com/ingest)", description="User-Agent header"
    )
    hooks_tick_seconds: float = Field(
        1.0, gt=0, description="How often the scheduler hands new events to the webhooks and starts their deliveries"
    )
    hooks_timeout_seconds: float = Field(10.0, gt=0, description="Connect and read timeout of one webhook POST")
    hooks_backoff_base_seconds: float = Field(
        1.0, gt=0, description="First wait after a failed webhook delivery; doubled at each failure after"
    )
    hooks_backoff_max_seconds: float = Field(600.0, gt=0, description="Longest wait between tries of a failing webhook")
    hooks_max_pending: int = Field(
        10_000, ge=1, description="Events kept waiting for one webhook; past it the oldest are dropped, counted"
    )
    worker_concurrency: int | None = Field(
        None, gt=0, description="Worker processes for `ingest up`; unset: one per core"
    )

    @field_validator(
        "log_format", "log_file", "redis_url", "database_url", "metrics_port", "api_port", "api_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty string in TOML or the environment means "not set", not "the empty URL".
        return None if value == "" else value

    @model_validator(mode="after")
    def _redelivery_after_the_longest_task(self) -> Settings:
        # A message is delivered again after the visibility timeout: were that shorter than a task
        # may run, slow tasks would be run twice.
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}s) must exceed task_time_limit ({self.task_time_limit}s)"
            )
        return self

    @field_validator("feeds_default_every", "feeds_backoff_max", "feeds_hint_max")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def feed_policy(self) -> FeedPolicy:
        return FeedPolicy(
            default_interval=parse_duration(self.feeds_default_every),
            backoff_max=parse_duration(self.feeds_backoff_max),
            hint_max=parse_duration(self.feeds_hint_max),
        )

    @property
    def json_aliases(self) -> dict[str, list[str]]:
        """The built-in JSON key aliases with the configured ones appended."""
        merged = {name: list(keys) for name, keys in DEFAULT_JSON_ALIASES.items()}
        for name, keys in self.json_field_aliases.items():
            merged.setdefault(name, []).extend(k for k in keys if k not in merged[name])
        return merged

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ingest.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

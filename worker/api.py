"""The HTTP API (`ingest api`, and `ingest up` when INGEST_API_PORT is set): FastAPI on uvicorn.

Documents POSTed here go through exactly what `ingest submit` does: recorded in the outbox, then
packed into messages for the workers; the answer (202, each input's arrival id) never waits for a
worker. Reads come from the store. With INGEST_API_TOKEN set every endpoint but /healthz and
/readyz asks for `Authorization: Bearer <token>`; without one the API serves loopback only.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Annotated, Any

import redis
import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from shared import store
from shared.db import session_scope
from shared.errors import InputError, ServiceError
from shared.messages import RawInput
from shared.parsers import format_for
from shared.redact import mask_secrets
from shared.schema import schema_state
from shared.settings import Settings
from worker import broker

log = structlog.get_logger(__name__)

PAGE_DEFAULT = 100
PAGE_MAX = 1000


class Accepted(BaseModel):
    name: str
    arrival_id: str
    size: int


class AcceptedDocuments(BaseModel):
    arrivals: list[Accepted]


class ItemPage(BaseModel):
    items: list[dict[str, Any]]
    next: int | None  # pass as `after` for the next page; None: no more items now


class Problem(BaseModel):
    error: str


class Subscription(BaseModel):
    url: str
    every: str | None = None  # 30s, 15m, 2h, 1d; unset: feeds_default_every


def refuse_open_binding(settings: Settings) -> None:
    """Without a token the API may only listen where nobody but this machine can reach it."""
    if settings.api_token is None and not _is_loopback(settings.api_host):
        raise ServiceError(
            f"refusing to serve the API on {settings.api_host} without INGEST_API_TOKEN: "
            "set a token, or leave INGEST_API_HOST at 127.0.0.1"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_api(settings: Settings, redis_url: str) -> FastAPI:
    api = FastAPI(title="ingest", summary="Documents in, structured items out: the ingestion service's HTTP API.")
    state = ApiState(settings, redis_url)
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not authorization or not authorization.startswith("Bearer ") or not hmac.compare_digest(given, token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @api.exception_handler(HTTPException)
    async def _problem(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(OperationalError)
    async def _store_away(_request: Request, exc: OperationalError) -> JSONResponse:
        reason = mask_secrets(str(exc.orig or exc).strip().splitlines()[0])
        return JSONResponse({"error": f"the store is not available now ({reason})"}, status_code=503)

    guarded = [Depends(authorised)]

    @api.get("/healthz", summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", summary="Redis and the database answer and the schema is current (503 otherwise)")
    def readyz() -> JSONResponse:
        reason = state.not_ready()
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True})

    @api.post(
        "/documents",
        status_code=202,
        dependencies=guarded,
        responses={413: {"model": Problem}, 415: {"model": Problem}},
    )
    async def post_documents(
        request: Request,
        name: Annotated[str | None, Query(description="The file name (its extension picks the format)")] = None,
        x_filename: Annotated[str | None, Header()] = None,
    ) -> AcceptedDocuments:
        """One document as the raw body (its name as `?name=` or `X-Filename`), or several as multipart."""
        body = await capped_body(request, settings.api_max_request_bytes)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            documents = await multipart_documents(request, body)
        else:
            documents = [(name or x_filename or "", body)]
        inputs = [state.input_of(document_name, data) for document_name, data in documents]
        await run_in_threadpool(state.submit, inputs)  # the store and Redis block: not on the event loop
        return AcceptedDocuments(arrivals=[Accepted(name=i.ref, arrival_id=i.arrival_id, size=i.size) for i in inputs])

    @api.get("/arrivals/{arrival_id}", dependencies=guarded, responses={404: {"model": Problem}})
    def get_arrival(arrival_id: str) -> dict[str, Any]:
        """pending, stored or duplicate (with the item id), failed (with the reason); per part for a
        document of many entries."""
        with session_scope(settings.store_url) as session:
            found = store.arrival_state(session, arrival_id)
        if found is None:
            raise HTTPException(404, f"no arrival {arrival_id}")
        return found

    @api.get("/items", dependencies=guarded)
    def get_items(
        after: Annotated[int, Query(ge=0, description="The `next` of the page before: items above this id")] = 0,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT,
        since: Annotated[datetime | None, Query(description="Ingested at or after (ISO 8601)")] = None,
        source: str | None = None,
        language: str | None = None,
        cluster: Annotated[int | None, Query(description="Items of this cluster id")] = None,
        format: Annotated[str | None, Query(description="text, html, markdown, json, jsonl, feed")] = None,
    ) -> ItemPage:
        """Items in id order, a page at a time: stable while new items arrive (they get higher ids)."""
        where = store.ItemFilter(since, source, language, cluster, format)
        with session_scope(settings.store_url) as session:
            items = store.item_page(session, after, limit, where)
        return ItemPage(items=items, next=items[-1]["id"] if len(items) == limit else None)

    @api.get("/items/{item_id}", dependencies=guarded, responses={404: {"model": Problem}})
    def get_item(item_id: int) -> dict[str, Any]:
        with session_scope(settings.store_url) as session:
            found = store.one_item(session, item_id)
        if found is None:
            raise HTTPException(404, f"no item {item_id}")
        return found

    @api.get("/clusters", dependencies=guarded)
    def get_clusters() -> list[dict[str, Any]]:
        """Near-duplicate groups of two or more items, largest first."""
        with session_scope(settings.store_url) as session:
            return store.cluster_records(session)

    @api.get("/clusters/{cluster_id}", dependencies=guarded, responses={404: {"model": Problem}})
    def get_cluster(cluster_id: int) -> dict[str, Any]:
        with session_scope(settings.store_url) as session:
            found = store.cluster_records(session, cluster_id)
        if not found:
            raise HTTPException(404, f"no cluster {cluster_id} of two or more items")
        return found[0]

    @api.get("/feeds", dependencies=guarded)
    def get_feeds() -> list[dict[str, Any]]:
        """The subscriptions, as `ingest feeds list --json` shows them (passwords masked)."""
        from worker.cli_feeds import feed_records

        return feed_records(settings.store_url)

    @api.post("/feeds", status_code=201, dependencies=guarded, responses={422: {"model": Problem}})
    def post_feed(subscription: Subscription) -> dict[str, Any]:
        """Subscribe (or change the interval of) a feed; it is polled at once."""
        from shared import subscriptions
        from shared.durations import parse_duration
        from worker.cli_feeds import feed_records

        try:
            interval = parse_duration(subscription.every or settings.feeds_default_every)
            with session_scope(settings.store_url) as session:
                feed, _new = subscriptions.add_feed(session, subscription.url, interval)
                feed_id = feed.id
        except (ValueError, ServiceError) as exc:
            raise HTTPException(422, str(exc)) from None
        return next(record for record in feed_records(settings.store_url) if record["id"] == feed_id)

    @api.delete("/feeds/{feed_id}", status_code=204, dependencies=guarded, responses={404: {"model": Problem}})
    def delete_feed(feed_id: int) -> None:
        """Unsubscribe; the items already stored stay."""
        from shared import subscriptions

        with session_scope(settings.store_url) as session:
            if not subscriptions.remove_feed_by_id(session, feed_id):
                raise HTTPException(404, f"no feed {feed_id}")

    @api.get("/metrics", dependencies=guarded, response_class=Response, responses={404: {"model": Problem}})
    def get_metrics() -> Response:
        """The Prometheus text of every process of `ingest up`, summed: as its own /metrics serves it."""
        import os
        from pathlib import Path

        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from worker.broker import QUEUES
        from worker.metrics_server import role_registry

        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            raise HTTPException(404, "metrics are off: set INGEST_METRICS_PORT for `ingest up`")
        registry = role_registry("up", Path(folder), redis_url, QUEUES)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/failures", dependencies=guarded)
    def get_failures() -> list[dict[str, Any]]:
        with session_scope(settings.store_url) as session:
            return store.failure_records(session)

    @api.get("/status", dependencies=guarded)
    def get_status() -> dict[str, Any]:
        """The body of `ingest status --json`."""
        from worker.cli_state import status_record

        return status_record(settings, settings.store_url, redis_url)

    return api


class ApiState:
    """What the endpoints share: the settings, the broker, an app that sends tasks by name."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self._sender = None
        self.packer = Packer(self.send_packed, settings.watch_batch_wait_ms / 1000)

    def sender(self):
        """An app that sends tasks by name, made at the first POST (the pipeline stays unimported)."""
        if self._sender is None:
            from worker.cli_common import sending_app

            self._sender = sending_app(self.redis_url)
        return self._sender

    def input_of(self, name: str, data: bytes) -> RawInput:
        """A posted document as the pipeline takes it, or the HTTP error that refuses it."""
        if not name:
            raise HTTPException(415, "no file name: give ?name=, an X-Filename header, or a multipart file name")
        try:
            format_for(name)
        except InputError as exc:
            raise HTTPException(415, f"{exc}: {name}") from None
        if len(data) > self.settings.max_file_bytes:
            raise HTTPException(
                413, f"too large: {len(data)} bytes exceeds the {self.settings.max_file_bytes} byte limit"
            )
        return RawInput.from_bytes(data, kind="file", ref=name)

    def submit(self, inputs: list[RawInput]) -> None:
        """Queue a request's inputs, packed with those of the requests that come within a few
        milliseconds of it (one outbox transaction and one message a pack, as a burst of files)."""
        self.packer.submit(inputs)

    def send_packed(self, inputs: list[RawInput]) -> None:
        """As `ingest submit`. A message the broker refuses is not an error here: the outbox holds it
        and the watcher sends it again."""
        from worker.cli_common import queue_packed

        queue_packed(self.settings, self.sender(), inputs, on_refused=_log_refused)

    def not_ready(self) -> str | None:
        try:
            broker.connect(self.redis_url).ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ServiceError) as exc:
            return (
                f"Redis does not answer ({mask_secrets(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)})"
            )
        try:
            schema = schema_state(self.settings.store_url)
        except Exception as exc:  # any driver's refusal: the reason is the answer, the probe must not fail
            return f"the database does not answer ({mask_secrets(str(exc).splitlines()[0])})"
        if not schema.current:
            return f"the store is at schema revision {schema.revision}, this ingest needs {schema.head}"
        return None


def _log_refused(pack: list[RawInput], exc: Exception) -> None:
    log.warning("api.send_failed", files=len(pack), error=mask_secrets(str(exc).splitlines()[0]))


class Packer:
    """Group commit for concurrent requests: the first to come waits `linger` seconds for others, then
    sends what has gathered in one go, and again while more came meanwhile; each request returns
    when its own inputs are queued (or raises what queueing them raised)."""

    def __init__(self, send: Callable[[list[RawInput]], None], linger: float) -> None:
        self.send = send
        self.linger = linger
        self.lock = threading.Lock()
        self.waiting: list[tuple[list[RawInput], Future]] = []
        self.sending = False

    def submit(self, inputs: list[RawInput]) -> None:
        done: Future = Future()
        with self.lock:
            self.waiting.append((inputs, done))
            leads, self.sending = not self.sending, True
        if leads:
            time.sleep(self.linger)
            self._send_until_none_wait()
        done.result()

    def _send_until_none_wait(self) -> None:
        while True:
            with self.lock:
                gathered, self.waiting = self.waiting, []
                if not gathered:
                    self.sending = False
                    return
            try:
                self.send([raw for inputs, _done in gathered for raw in inputs])
            except BaseException as exc:  # every request of this pack hears it (503 for a store that is away)
                for _inputs, done in gathered:
                    done.set_exception(exc)
                if not isinstance(exc, Exception):
                    with self.lock:
                        self.sending = False
                    raise
            else:
                for _inputs, done in gathered:
                    done.set_result(None)


async def capped_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit`: never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the {limit} byte limit")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HTTPException(413, f"request body exceeds the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def multipart_documents(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    """Every file of a multipart body as (its file name, its bytes)."""

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1000, max_fields=1000).parse()
    except Exception as exc:  # python-multipart's errors for a malformed body: the client's mistake
        raise HTTPException(400, f"unreadable multipart body ({exc})") from None
    documents = []
    for _field, value in form.multi_items():
        if hasattr(value, "read"):
            documents.append((value.filename or "", await value.read()))
    if not documents:
        raise HTTPException(400, "a multipart body without a file")
    return documents

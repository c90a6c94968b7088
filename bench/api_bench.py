"""(h) the HTTP API: `--docs` distinct seed-style articles POSTed to /documents by 8 clients at once.

`ingest up` runs with INGEST_API_PORT set (the API as one more child, on loopback). Articles are
generated in memory before the clock starts. Two rates: documents accepted a second (first POST to
the last 202) and end to end (first POST to `ingest wait` returning). Each run checks that every
document became an item and that the `ingest:events` stream holds one `item.stored` per document.

A webhook receiver on loopback (`ingest hooks add … --events item.stored`) must get every item's
`item.stored`, each signed with the hook's secret: a third figure, first POST to the last of them.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench.corpus import Writer, seed_article
from bench.site import BenchError, Site, flush_redis, wait_for
from bench.stats import Section, median, ratio, runs_text, say
from bench.suite import Context
from shared.events import STREAM, read
from shared.hooks import verify
from tests.hookserver import HookReceiver
from worker.broker import free_port

CLIENTS = 8
HOOK_SECRET = "bench-secret"


@dataclass
class ApiRun:
    docs: int
    accepted_seconds: float
    end_to_end_seconds: float
    hooked_seconds: float  # first POST to the last item.stored received by the webhook


def _documents(count: int, seed: int) -> list[tuple[str, bytes]]:
    writer = Writer(seed)
    return [(f"api-{seed}-{n:06d}.txt", seed_article(writer.story(n)).encode()) for n in range(count)]


def _post_all(base: str, documents: list[tuple[str, bytes]]) -> None:
    """Every document POSTed once, CLIENTS connections at a time; any answer but 202 fails the run."""
    shares = [documents[n::CLIENTS] for n in range(CLIENTS)]

    def client(share: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=base, timeout=60) as session:
            for name, data in share:
                answer = session.post("/documents", params={"name": name}, content=data)
                if answer.status_code != 202:
                    raise BenchError(f"POST /documents answered {answer.status_code}: {answer.text[:200]}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, shares))


def _signed_items(receiver: HookReceiver) -> tuple[set[str], int, float]:
    """Items whose item.stored reached the hook signed, deliveries not signed, when the last came."""
    accepted = receiver.accepted()
    signed = [one for one in accepted if verify(HOOK_SECRET, one.body, one.headers.get("X-Ingest-Signature"))]
    items = {one.payload["data"]["item_id"] for one in signed}
    return items, len(accepted) - len(signed), max((one.at for one in signed), default=0.0)


def _stored_events(redis_url: str) -> int:
    client, after, count = redis.Redis.from_url(redis_url), "0", 0
    while batch := read(client, after):
        count += sum(fields["event"] == "item.stored" for _id, fields in batch)
        after = batch[-1][0]
    return count


def api_once(context: Context, docs: int, seed: int) -> ApiRun:
    flush_redis(context.redis_url)
    port = free_port()
    env = {"INGEST_API_PORT": str(port), "INGEST_FEEDS_ALLOW_PRIVATE": "true"}
    with (
        HookReceiver() as receiver,
        tempfile.TemporaryDirectory(dir=context.scratch) as folder,
        Site(Path(folder), context.redis_url, env=env) as site,
    ):
        documents = _documents(docs, seed)
        site.ingest("hooks", "add", receiver.url, "--events", "item.stored", "--secret", HOOK_SECRET)
        site.start(context.options.concurrency)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base), 60, "the API to answer")
        stored_before = _stored_events(context.redis_url)
        started = time.time()
        _post_all(base, documents)
        accepted = time.time()
        finished = site.wait_idle(context.options.timeout)
        items = site.counts()["items"] - 1  # the readiness probe is an item too
        events = _stored_events(context.redis_url) - stored_before
        if items != docs or events < docs:
            raise BenchError(f"{docs} documents POSTed: {items} items, {events} item.stored events in {STREAM}")
        # Every item, the readiness probe's included, reaches the hook, signed.
        wait_for(
            lambda: len(_signed_items(receiver)[0]) >= items + 1,
            context.options.timeout,
            "every item.stored at the webhook",
        )
        _items, unsigned, last_at = _signed_items(receiver)
        if unsigned:
            raise BenchError(f"{unsigned} webhook deliveries without a valid signature")
        return ApiRun(docs, accepted - started, finished - started, last_at - started)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def run(context: Context) -> Section:
    docs = context.options.docs
    section = Section(f"(h) HTTP API: {docs:,} seed-style articles POSTed to /documents by {CLIENTS} clients")
    runs = []
    for number in range(context.options.runs):
        result = api_once(context, docs, 200 + number)
        say(
            f"api run {number + 1}: {docs / result.accepted_seconds:,.0f} docs/s accepted, "
            f"{docs / result.end_to_end_seconds:,.0f} end to end, "
            f"{docs / result.hooked_seconds:,.0f} to the webhook"
        )
        runs.append(result)
    base = context.baseline.rate if context.baseline else None
    accepted = [r.docs / r.accepted_seconds for r in runs]
    end_to_end = [r.docs / r.end_to_end_seconds for r in runs]
    hooked = [r.docs / r.hooked_seconds for r in runs]
    section.lines += [
        f"`ingest up --concurrency {context.options.concurrency}` with INGEST_API_PORT set; SQLite; one document a "
        f"request (the raw body, `?name=`), {CLIENTS} client threads with a connection each. Every document must "
        f"end as an item with an `item.stored` event in the stream, and reach a webhook receiver on loopback "
        f"signed (`hooks add … --events item.stored`). Median of {len(runs)} runs.",
        "",
    ]
    section.table(
        ["figure", "median", "vs no-op baseline", "runs"],
        [
            ["docs/s accepted (202)", f"{median(accepted):,.0f}", ratio(median(accepted), base), runs_text(accepted)],
            [
                "docs/s end to end (to `ingest wait`)",
                f"{median(end_to_end):,.0f}",
                ratio(median(end_to_end), base),
                runs_text(end_to_end),
            ],
            [
                "docs/s to the webhook (signed item.stored received)",
                f"{median(hooked):,.0f}",
                ratio(median(hooked), base),
                runs_text(hooked),
            ],
        ],
    )
    return section

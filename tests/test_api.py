"""The HTTP API (issue 12) against a real uvicorn on loopback, with httpx: `ingest up` serving it
beside real workers, and `ingest api` alone with a token and a Redis that goes away."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE, wait_until
from worker.broker import free_port, redis_executable

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden" / "000_adca40b1d62e3161.json").read_text())


def _serving(base: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(f"{base}/healthz", headers=headers, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _article(number: int) -> bytes:
    return (
        f"Harbour plan number {number} approved\n\nCoast Herald\n\n"
        f"The harbour board approved plan {number} after a long meeting about berths, cranes and tides.\n"
    ).encode()


@pytest.fixture
def api_site(deployment):
    port = free_port()
    deployment.env |= {"INGEST_API_PORT": str(port), "INGEST_MAX_FILE_BYTES": "200000"}
    deployment.start("--concurrency", "1")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _serving(base), 90, "the API to answer")
    yield deployment, base


def _arrival(base: str, arrival_id: str) -> dict:
    return httpx.get(f"{base}/arrivals/{arrival_id}", timeout=10).json()


def test_a_document_posted_is_stored_and_read_back(api_site):
    """POST the sample (202 at once, its arrival id), follow the arrival, read the item back with its golden fields."""
    deployment, base = api_site
    accepted = httpx.post(f"{base}/documents", params={"name": "sample.txt"}, content=SAMPLE.read_bytes(), timeout=10)
    assert accepted.status_code == 202
    [arrival] = accepted.json()["arrivals"]
    assert (arrival["name"], arrival["size"]) == ("sample.txt", len(SAMPLE.read_bytes()))
    wait_until(lambda: _arrival(base, arrival["arrival_id"])["state"] == "stored", 60, "the sample to be stored")
    item_id = _arrival(base, arrival["arrival_id"])["parts"][0]["item_id"]

    item = httpx.get(f"{base}/items/{item_id}", timeout=10).json()
    assert {key: item[key] for key in ("title", "source", "original_source", "language", "content_hash")} == {
        key: GOLDEN[key] for key in ("title", "source", "original_source", "language", "content_hash")
    }
    assert [origin["ref"] for origin in item["origins"]] == ["sample.txt"]
    page = httpx.get(f"{base}/items", params={"source": "The Chronicle"}, timeout=10).json()
    assert [one["id"] for one in page["items"]] == [item_id] and page["next"] is None
    assert httpx.get(f"{base}/items/999999", timeout=10).status_code == 404
    assert httpx.get(f"{base}/readyz", timeout=10).json() == {"ready": True}
    assert httpx.get(f"{base}/docs", timeout=10).status_code == 200
    assert "/documents" in httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]

    # The same bytes from 20 clients at once: one item with 20 more origins.
    article = _article(1)

    def post(number: int) -> int:
        return httpx.post(f"{base}/documents", headers={"X-Filename": f"c{number}.txt"}, content=article).status_code

    with ThreadPoolExecutor(20) as pool:
        assert set(pool.map(post, range(20))) == {202}
    deployment.drain()
    harbour = httpx.get(f"{base}/items", params={"source": "Coast Herald"}, timeout=10).json()["items"]
    assert len(harbour) == 1 and len(harbour[0]["origins"]) == 20

    # Several documents as multipart; a page at a time.
    files = [("files", ("a.txt", _article(2))), ("files", ("b.md", b"# Plan B\n\nThe board approved plan B today."))]
    multi = httpx.post(f"{base}/documents", files=files, timeout=10)
    assert multi.status_code == 202 and [a["name"] for a in multi.json()["arrivals"]] == ["a.txt", "b.md"]
    deployment.drain()
    first = httpx.get(f"{base}/items", params={"limit": 2}, timeout=10).json()
    second = httpx.get(f"{base}/items", params={"limit": 2, "after": first["next"]}, timeout=10).json()
    assert len(first["items"]) == 2 and first["next"] == first["items"][-1]["id"]
    assert [one["id"] for one in second["items"]] == [max(one["id"] for one in first["items"]) + 1, first["next"] + 2]
    assert httpx.get(f"{base}/status", timeout=10).json()["items"] == 4


def test_refusals_feeds_and_clusters(api_site):
    """Too large (413), an unsupported or missing name (415), an unknown arrival (404), metrics off
    (404); POST /feeds subscribes (201), GET /feeds lists, DELETE /feeds/{id} unsubscribes (204, then
    404); a near-copy of a stored article shows as a cluster of two."""
    deployment, base = api_site
    too_large = httpx.post(f"{base}/documents", params={"name": "big.txt"}, content=b"x" * 200_001, timeout=10)
    assert too_large.status_code == 413 and "exceeds the 200000 byte limit" in too_large.json()["error"]
    pdf = httpx.post(f"{base}/documents", params={"name": "report.pdf"}, content=b"%PDF-1.4", timeout=10)
    assert pdf.status_code == 415 and pdf.json() == {"error": "unsupported format: report.pdf"}
    nameless = httpx.post(f"{base}/documents", content=b"text", timeout=10)
    assert nameless.status_code == 415 and "no file name" in nameless.json()["error"]
    assert httpx.get(f"{base}/arrivals/nothing-like-it", timeout=10).status_code == 404
    assert httpx.get(f"{base}/failures", timeout=10).json() == []
    off = httpx.get(f"{base}/metrics", timeout=10)
    assert off.status_code == 404 and "INGEST_METRICS_PORT" in off.json()["error"]
    added = httpx.post(f"{base}/feeds", json={"url": "http://feeds.example/news.xml", "every": "2h"}, timeout=10)
    assert added.status_code == 201 and (added.json()["url"], added.json()["every_seconds"]) == (
        "http://feeds.example/news.xml",
        7200,
    )
    assert [feed["id"] for feed in httpx.get(f"{base}/feeds", timeout=10).json()] == [added.json()["id"]]
    assert httpx.post(f"{base}/feeds", json={"url": "ftp://x.example/a"}, timeout=10).status_code == 422
    assert (
        httpx.post(f"{base}/feeds", json={"url": "http://x.example/a", "every": "soon"}, timeout=10).status_code == 422
    )
    assert httpx.delete(f"{base}/feeds/{added.json()['id']}", timeout=10).status_code == 204
    assert httpx.delete(f"{base}/feeds/{added.json()['id']}", timeout=10).status_code == 404
    assert httpx.get(f"{base}/feeds", timeout=10).json() == []

    sample = SAMPLE.read_bytes()
    near_copy = sample.replace(b"Speaking at a Russian", b"Addressing a Russian")
    for name, data in (("one.txt", sample), ("two.txt", near_copy)):
        assert httpx.post(f"{base}/documents", params={"name": name}, content=data, timeout=10).status_code == 202
        deployment.drain()
    [group] = httpx.get(f"{base}/clusters", timeout=10).json()
    assert group["size"] == 2 and httpx.get(f"{base}/clusters/{group['cluster_id']}", timeout=10).json() == group
    assert httpx.get(f"{base}/clusters/999999", timeout=10).status_code == 404


def _redis_on(port: int, folder: Path) -> subprocess.Popen:
    """A redis-server of the test's own on a fixed port, answering when this returns (so it can come back)."""
    process = subprocess.Popen(
        [redis_executable(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _pings(f"redis://127.0.0.1:{port}/0"), 10, "the test's Redis")
    return process


def test_a_token_guards_everything_but_the_probes_and_readyz_follows_redis(deployment, tmp_path):
    """`ingest api` alone: 401 without the token, 200 with it; /readyz is 503 with the reason while
    Redis is down and 200 once it is back."""
    import redis as redis_client

    redis_port, api_port = free_port(), free_port()
    server = _redis_on(redis_port, tmp_path)
    url = f"redis://127.0.0.1:{redis_port}/0"
    deployment.env |= {"INGEST_REDIS_URL": url, "INGEST_API_PORT": str(api_port), "INGEST_API_TOKEN": "s3cret-token"}
    api = deployment.spawn("api")
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: _serving(base), 60, "the API to answer")
        assert httpx.get(f"{base}/items", timeout=10).status_code == 401
        assert httpx.get(f"{base}/items", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        authorised = httpx.get(f"{base}/items", headers={"Authorization": "Bearer s3cret-token"}, timeout=10)
        assert authorised.status_code == 200 and authorised.json() == {"items": [], "next": None}
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200

        server.terminate()
        server.wait(10)
        down = httpx.get(f"{base}/readyz", timeout=10)
        assert down.status_code == 503 and down.json()["reason"].startswith("Redis does not answer")
        server = _redis_on(redis_port, tmp_path)
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 30, "ready again")
        assert redis_client.Redis.from_url(url).ping()
    finally:
        api.terminate()
        api.wait(30)
        server.terminate()
        server.wait(10)


def _pings(url: str) -> bool:
    import redis as redis_client

    try:
        return bool(redis_client.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis_client.exceptions.ConnectionError:
        return False


def test_without_a_token_the_api_serves_loopback_only(deployment):
    deployment.env |= {"INGEST_API_PORT": str(free_port()), "INGEST_API_HOST": "0.0.0.0"}
    refused = deployment.run("api", check=False, timeout=60)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: refusing to serve the API on 0.0.0.0 without INGEST_API_TOKEN")


def test_concurrent_requests_are_packed_and_each_hears_a_failure():
    """The Packer: requests that come together leave as one send; a send that fails fails each of them."""
    import threading

    from shared.messages import RawInput
    from worker.api import Packer

    sent: list[list[str]] = []
    release = threading.Event()

    def send(inputs):
        release.wait(10)  # the first send holds: everything submitted meanwhile waits for the next
        sent.append([raw.ref for raw in inputs])

    packer = Packer(send, linger=0.01)
    raws = [RawInput.from_bytes(b"x", kind="file", ref=f"{n}.txt") for n in range(6)]
    threads = [threading.Thread(target=packer.submit, args=([raw],)) for raw in raws]
    threads[0].start()
    wait_until(lambda: packer.sending and not packer.waiting, 5, "the first send to start")
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(packer.waiting) == 5, 5, "five requests to wait")
    release.set()
    for thread in threads:
        thread.join(10)
    assert sent[0] == ["0.txt"] and sorted(sent[1]) == ["1.txt", "2.txt", "3.txt", "4.txt", "5.txt"] and len(sent) == 2

    def refuse(_inputs):
        raise OSError("the store is away")

    failing = Packer(refuse, linger=0.01)
    with pytest.raises(OSError, match="the store is away"):
        failing.submit(raws[:1])
    assert not failing.sending

"""A real HTTP server on loopback that serves feeds the way publishers do, for the feed tests.

Each route answers with its status, body and headers, honours If-None-Match / If-Modified-Since
with 304, can be slow, and records every request it was sent.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml"
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gzip: bool = False


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.time)  # when it was answered


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.requests if seen.path == path]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                route = server.routes.get(self.path)
                if route is None:
                    self._answer(404, b"not found", {}, "text/plain")
                    return
                if route.delay:
                    time.sleep(route.delay)  # the server being slow is what is under test
                if route.status == 200 and self._not_modified(route):
                    self._answer(304, b"", self._validators(route), None)
                    return
                body = gzip.compress(route.body) if route.gzip else route.body
                headers = {**self._validators(route), **route.headers}
                if route.gzip:
                    headers["Content-Encoding"] = "gzip"
                self._answer(route.status, body, headers, route.content_type)

            def _not_modified(self, route: Route) -> bool:
                etag_match = route.etag and self.headers.get("If-None-Match") == route.etag
                date_match = route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
                return bool(etag_match or (not route.etag and date_match))

            def _validators(self, route: Route) -> dict[str, str]:
                found = {"ETag": route.etag, "Last-Modified": route.last_modified}
                return {name: value for name, value in found.items() if value}

            def _answer(self, status: int, body: bytes, headers: dict, content_type: str | None) -> None:
                with server.lock:
                    server.requests.append(Seen(self.path, dict(self.headers), status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def rss(title: str, entries: list[tuple[str, str, str]], ttl: int | None = None) -> bytes:
    """An RSS 2.0 document; entries are (guid, title, text)."""
    items = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{headline}</title>"
        f"<link>https://news.example/{guid}</link><description>{text}</description>"
        f"<pubDate>Mon, 06 Mar 2023 10:00:00 GMT</pubDate></item>"
        for guid, headline, text in entries
    )
    ttl_element = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://news.example/</link><description>d</description>{ttl_element}{items}</channel></rss>"
    ).encode()

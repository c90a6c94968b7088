"""A real webhook receiver on loopback for the webhook tests: it records every POST (headers and
body) and answers a chosen status to the first few, then 200."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # time.time() when it came

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class HookReceiver:
    def __init__(self, fail_first: int = 0, failure_status: int = 500, redirect_to: str | None = None) -> None:
        self.fail_first = fail_first
        self.failure_status = failure_status
        self.redirect_to = redirect_to
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def accepted(self) -> list[Received]:
        with self.lock:
            return [one for one in self.received if one.answered == 200]

    def _answer_for(self) -> int:
        with self.lock:
            if self.redirect_to is not None:
                return 302
            return self.failure_status if len(self.received) < self.fail_first else 200

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._answer_for()
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body, status, time.time()))
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def __enter__(self) -> HookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

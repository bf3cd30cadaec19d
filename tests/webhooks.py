"""A real HTTP webhook receiver on 127.0.0.1 (http.server in a thread) for the reminder tests.

It verifies `X-Examctl-Signature` the way a receiver would, and can answer 5xx, hang (to make
the sender time out) or run a hook before answering (to kill the sender mid-delivery).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.servers import LOOPBACK


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    signature_ok: bool | None  # None: the server has no secret to check against

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    def __init__(
        self,
        *,
        status: int = 200,
        secret: str | None = None,
        hang: bool = False,
        broken_body: bool = False,
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        self.status = status
        self.broken_body = broken_body
        self.secret = secret
        self.hang = hang
        self.on_request = on_request
        self.received: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.httpd.server_address[1]}/hooks/examctl?token=s3cr3t-path"

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.released.set()  # let hanging handlers go
        self.httpd.shutdown()
        self.httpd.server_close()

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json() for r in self.received]

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool | None:
        if self.secret is None:
            return None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("X-Examctl-Signature", ""))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                received = Received(body, headers, server._verify(body, headers))
                with server._lock:
                    server.received.append(received)
                if server.hang:
                    server.released.wait(60)
                    return
                if server.on_request is not None:
                    server.on_request(received)
                if server.broken_body:  # a chunked body cut short: IncompleteRead for the sender
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"10\r\ncut sh")
                    self.close_connection = True
                    return
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed by on_request)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

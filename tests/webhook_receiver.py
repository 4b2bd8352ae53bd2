"""A real HTTP webhook receiver on loopback for the tests: a threaded http.server that
records every request (path, headers, body, when) and answers as its path says.

The path is `/<tag>/<mode>`: each test uses its own tag, and the mode is
- `ok`: 200 at once;
- `fail`: 500 with a short body;
- `sleep-<seconds>`: 200 after sleeping (a slow receiver);
- `hang`: no answer until the receiver is stopped or `release()` is called (at most 60 s);
- `fail-<n>`: 500 for the first n requests of that path, then 200.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    seen = sum(1 for r in receiver.requests if r.path == self.path)
                mode = self.path.rstrip("/").rsplit("/", 1)[-1]
                status = 200
                if mode == "fail":
                    status = 500
                elif mode.startswith("fail-"):
                    status = 500 if seen <= int(mode.removeprefix("fail-")) else 200
                elif mode.startswith("sleep-"):
                    time.sleep(float(mode.removeprefix("sleep-")))
                elif mode == "hang":
                    receiver._released.wait(60)
                answer = b"received" if status == 200 else b"receiver error: try again"
                try:
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender gave up (timeout) or was killed

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # hanging requests must not hold the test's end
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let every hanging request answer."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def received(self, tag: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(f"/{tag}/")]

    def wait_for(self, tag: str, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(found := self.received(tag)) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} requests to /{tag}/"
            time.sleep(0.02)
        return found

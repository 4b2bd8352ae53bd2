"""Transient failures are retried here, so the client does not see them (issue 14).

Some database failures abort a request's transaction for a reason a second attempt may
not meet: a lock wait past the api role's lock_timeout, a serialization failure, a
deadlock, and on Citus a statement planned for a shard that a split or move has just
replaced (`db.errors.transient` decides, in one place; the error mapping in api/errors.py
marks such an answer in the WSGI environ). Nothing of that transaction persisted (it
ended before COMMIT, or its COMMIT failed), its Idempotency-Key's row included, so
running the whole request again is safe, and it is what a well-behaved client would do
with the Retry-After we answer. Doing it here turns a tenant isolation, whose split blocks
the writes of a shard group for a few seconds (docs/citus.md, fact 31), into requests
that wait instead of failing.

`RetryTransient` wraps the WSGI app: it runs the app, and while the answer is marked
retryable it discards it and runs the app again, after a jittered pause, until an
attempt answers otherwise, `transient_retry_attempts` attempts have run, or another one
would end past `transient_retry_seconds`; then it returns the last answer (503 with
Retry-After: the registry's sentence, never a trace).

The body. The first attempt reads it from the server, as always (api/pipeline.py, within
its deadline, after authentication), through a recorder that keeps what it read; a retry
replays those bytes. Only a body of declared length (Content-Length, at most
`max_body_bytes`, which the pipeline keeps whole in memory anyway) that the first attempt
read to the end is replayed; a chunked body is not retried, nor is a body the app did not
read (the answer stands). Nothing reaches the server before the decision: the status,
headers and body of an attempt are held until it is known to be the answer, so no retry
ever follows a response that started.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from io import BytesIO
from typing import Any

import falcon
from prometheus_client import Counter

from api.errors import RETRYABLE
from db.settings import Settings

log = logging.getLogger("tenantry.api")

RETRIES = Counter("tenantry_transient_retries_total", "Requests run again after a transient database failure")
EXHAUSTED = Counter(
    "tenantry_transient_retries_exhausted_total",
    "Requests answered with a transient failure after every attempt the retry budget allowed",
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: the pause before attempt n+1 grows from about 50 ms to at most 1 s (jittered: parallel
#: requests that failed together do not come back together)
FIRST_PAUSE, MAX_PAUSE = 0.1, 1.0


class _Recorder:
    """The server's `wsgi.input`, read through: keeps what the app read, for a replay."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pieces: list[bytes] = []
        self.size = 0

    def _keep(self, data: bytes) -> bytes:
        self._pieces.append(data)
        self.size += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._keep(self._stream.read(size) if size is not None and size >= 0 else self._stream.read())

    def readline(self, size: int | None = -1) -> bytes:
        return self._keep(self._stream.readline(size) if size is not None and size >= 0 else self._stream.readline())

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = self._stream.readlines(hint) if hint is not None and hint >= 0 else self._stream.readlines()
        return [self._keep(line) for line in lines]

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def recorded(self) -> bytes:
        return b"".join(self._pieces)


class RetryTransient:
    """WSGI middleware: run `app` again while it answers a transient failure (module doc)."""

    def __init__(self, app: WSGIApp, settings: Settings) -> None:
        self.app = app
        self.attempts = settings.transient_retry_attempts
        self.budget = settings.transient_retry_seconds
        self.max_body = settings.max_body_bytes

    def _declared_length(self, environ: dict[str, Any]) -> int | None:
        """The body's declared length when a retry could replay it, else None (chunked, too
        large for the pipeline, malformed: the request runs once, as it would without us)."""
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit() or int(declared) > self.max_body:
            return None
        return int(declared)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = self._declared_length(environ)
        if length is None or self.attempts <= 1:
            return self.app(environ, start_response)
        started = time.monotonic()
        body = _Recorder(environ["wsgi.input"]) if length else None
        replay: bytes | None = None
        attempt, attempt_started = 1, started
        while True:
            env = dict(environ)  # each attempt gets its own: Falcon and the error mapping write to it
            if length:
                env["wsgi.input"] = body if replay is None else BytesIO(replay)
            held: list[tuple[str, list[tuple[str, str]], Any]] = []

            def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None, held=held) -> Callable:
                held[:] = [(status, headers, exc_info)]
                return _no_write

            answer = self.app(env, hold)
            now = time.monotonic()
            if not env.get(RETRYABLE) or not held:
                return self._send(held, answer, start_response)
            if body is not None and replay is None:
                if body.size != length:  # the app did not read the whole body: nothing to replay
                    return self._send(held, answer, start_response)
                replay = body.recorded()
            pause = random.uniform(0.5, 1.0) * min(MAX_PAUSE, FIRST_PAUSE * 2 ** (attempt - 1))
            # another attempt, taking as long as this one did, must end within the budget
            if attempt >= self.attempts or (now - started) + pause + (now - attempt_started) > self.budget:
                EXHAUSTED.inc()
                log.warning(
                    "transient failure, retry budget spent",
                    extra={"status": held[0][0][:3], "attempts": attempt, "ms": round((now - started) * 1000, 2)},
                )
                return self._send(held, answer, start_response)
            _close(answer)
            RETRIES.inc()
            # the attempts of one request share its request id (logs, the answer's X-Request-ID)
            request_id = next((v for k, v in held[0][1] if k.lower() == "x-request-id"), None)
            if request_id:
                environ["HTTP_X_REQUEST_ID"] = request_id
            time.sleep(pause)
            attempt, attempt_started = attempt + 1, time.monotonic()

    @staticmethod
    def _send(
        held: list[tuple[str, list[tuple[str, str]], Any]], answer: Iterable[bytes], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Hand the chosen attempt's answer to the server."""
        if held:
            status, headers, exc_info = held[0]
            start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
        return answer


def _no_write(data: bytes) -> None:
    """WSGI's legacy `write`: the app answers through its iterable (Falcon never writes)."""
    raise RuntimeError("write() is not supported: return the body")


def _close(answer: Iterable[bytes]) -> None:
    close = getattr(answer, "close", None)
    if close is not None:
        close()


class RetryingApp(falcon.App):
    """A falcon.App whose WSGI entry point is `RetryTransient` around Falcon's own, so that
    `create_app` still returns a falcon.App (tests inspect its routes; api/server.py serves
    whatever it returns) and in-process test clients get the retries too."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self._retrying = RetryTransient(partial(falcon.App.__call__, self), settings)

    def __call__(self, env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self._retrying(env, start_response)

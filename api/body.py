"""Reading a request body within a deadline and a size limit (api/pipeline.py uses it).

Server-specific (gunicorn's client socket), so kept apart. Bodies up to 64 KiB of declared
length never get here slowly: api/server.py reads them with the head, in the event loop.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Any


class _Watchdog:
    """One thread per process that shuts the read side of a socket when its deadline
    passes (see `read_body`); cheaper than a timer thread per request (~300 µs each)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, list]] = []  # (deadline, tie-breaker, [socket or None, fired])
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, sock: socket.socket) -> list:
        """Shut `sock`'s read side at `deadline` (monotonic); `cancel` the returned entry when done."""
        entry: list = [sock, False]
        with self._wake:
            if self._thread is None:  # started in the worker process that uses it (gunicorn forks first)
                self._thread = threading.Thread(target=self._run, name="body-read-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._due, (deadline, next(self._order), entry))
            self._wake.notify()
        return entry

    def cancel(self, entry: list) -> bool:
        """Stop watching; True if the deadline had already fired."""
        with self._wake:
            entry[0] = None
            return entry[1]

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, _, entry = heapq.heappop(self._due)
                    if entry[0] is not None:
                        entry[1] = True
                        with contextlib.suppress(OSError):  # the client is gone already
                            entry[0].shutdown(socket.SHUT_RD)
                self._wake.wait(self._due[0][0] - now if self._due else None)


_WATCHDOG = _Watchdog()


class BodyTimeout(Exception):
    """The client did not send the whole body in time."""


class BodyIncomplete(Exception):
    """The client closed the connection (or broke the chunked encoding) before the body ended."""


def read_body(env: dict[str, Any], length: int | None, limit: int, timeout: float) -> bytes:
    """The request body from the WSGI input: `length` bytes, or a chunked body up to its
    end, but never more than `limit` + 1 bytes (so the caller sees it is too large), and
    within `timeout` seconds for the WHOLE body.

    Server-specific, kept in this one function (gunicorn: api/server.py says why): a WSGI
    stream has no deadline of its own, and a socket timeout bounds each recv(), not the
    body: gunicorn's reader loops until it has the bytes asked for, so a client sending
    a byte every few seconds would hold the thread for ever. So at the deadline the
    watchdog shuts the read side of gunicorn's client socket (`gunicorn.socket`): a
    blocked read returns at once with no data, the answer can still be written, and the
    connection is not reused (gunicorn finds it at EOF and closes it). Raises BodyTimeout
    after the deadline, BodyIncomplete when the client closed (or sent a broken chunked
    body) before the end.
    """
    stream = env["wsgi.input"]
    wanted = min(length, limit + 1) if length is not None else limit + 1
    sock = env.get("gunicorn.socket")
    watch = _WATCHDOG.watch(time.monotonic() + timeout, sock) if sock is not None else None
    pieces: list[bytes] = []
    received = 0
    try:
        while received < wanted:
            piece = stream.read(min(64 * 1024, wanted - received))
            if not piece:
                break
            pieces.append(piece)
            received += len(piece)
    except Exception as exc:  # a reset connection, gunicorn's NoMoreData or a bad chunk: the client's fault
        fired = watch is not None and _WATCHDOG.cancel(watch)
        raise (BodyTimeout() if fired else BodyIncomplete()) from exc
    fired = watch is not None and _WATCHDOG.cancel(watch)
    if length is not None and received < length:
        raise BodyTimeout() if fired else BodyIncomplete()
    return b"".join(pieces)

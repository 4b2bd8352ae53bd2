"""`tenantry serve`: the API under gunicorn (WSGI, threaded workers), hardened.

Why gunicorn and not granian, measured for issue 10 on the quiet 2-core machine: the same
app and database behind each, wrk -t2 -c16, 5 s blocks, 3 interleaved rounds; gunicorn as
served here (2 workers x 8 threads, this module's worker), granian 2.8 WSGI (2 workers x 8
blocking threads; it ran without prometheus' multiprocess files, which favours it a little):

    GET /v1/projects/{id}, JWT  gunicorn   705 /   873 /   921 req/s, 1,700 / 1,320 / 1,172 us CPU per request
                                granian  1,139 / 1,119 / 1,080 req/s,   922 /   913 /   944 us
                                medians: 1.28x the requests, 30% less CPU per request
    GET /health                 gunicorn 2,908 / 2,913 / 2,599 req/s,   573 /   573 /   611 us
                                granian  7,814 / 6,821 / 7,839 req/s,   215 /   241 /   210 us: 2.7x

(An earlier run on the machine loaded by other work, load average 9-11, had found them
equal on the GET: 287 vs 292 req/s.) granian is faster, and the issue's serving rules are
why it is not used: its hyper answers a malformed, oversized or long-URI request itself
with an empty body (not a problem document, and no hook to change it), and its WSGI input
blocks in Rust: a body read cannot be given a deadline, so a client trickling a login body
would hold a Python thread for as long as it likes. gunicorn is plain Python we can harden
where it matters, which this module does with a worker subclass:

* request heads are read by the worker's event loop (non-blocking, with a deadline and a
  size cap), not by a pool thread, and so are small bodies of declared length (up to
  64 KiB: logins, sign-ups, most JSON): slow or idle clients cost a socket, not a thread;
  a thread is taken only once the head (and such a body) is there (`_Worker`);
* a cap on open connections per worker (`max_connections_per_worker`);
* a larger or chunked body is read by the app after authentication (api/pipeline.py),
  within `body_read_timeout` for the whole body (api/body.py), and a body the app refused
  unread (401, 413) closes the connection rather than being waited for;
* every answer the server writes itself (a malformed request line, an oversized head or
  URI, a head that timed out) is an `application/problem+json` document with the
  security headers (`_Worker.handle_error`), not gunicorn's HTML page;
* SIGTERM drains: /ready answers 503 at once, requests are served for
  `shutdown_drain_seconds`, then the listener closes, in-flight requests finish and the
  process exits 0 (`_Arbiter`);
* /metrics sums every worker (prometheus_client multiprocess mode in a folder per server
  under the state folder, made at start, removed at exit; a dead worker's live gauges go
  with it).

With TLS terminated by gunicorn itself (`tls_cert_file`) the head is read by a thread as
gunicorn does (the event loop would see TLS records): put a proxy in front for slow clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import time
import uuid
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from api.headers import SECURITY_HEADERS
from api.logs import server_logconfig
from db.settings import Settings

#: A request line longer than this is 414 (gunicorn's own ceiling for the setting).
MAX_REQUEST_LINE = 8190

#: gunicorn's request errors, as the problem each one is: (status, code, detail).
_SERVER_PROBLEMS: list[tuple[type[Exception], int, str, str]] = [
    (http_errors.LimitRequestLine, 414, "uri_too_long", f"The request line is longer than {MAX_REQUEST_LINE} bytes."),
    (http_errors.LimitRequestHeaders, 431, "headers_too_large", "The request has too many or too large headers."),
    (http_errors.UnsupportedTransferCoding, 501, "not_implemented", "This Transfer-Encoding is not supported."),
    (http_errors.ExpectationFailed, 417, "expectation_failed", "Only `Expect: 100-continue` is supported."),
    # the app's or the configuration's fault, not the client's
    (http_errors.InvalidResponseHeader, 500, "internal_error", "The server could not complete the request."),
    (http_errors.InvalidResponseHeaderName, 500, "internal_error", "The server could not complete the request."),
    (http_errors.ConfigurationProblem, 500, "internal_error", "The server could not complete the request."),
    (http_errors.ParseException, 400, "bad_request", "The request is not valid HTTP/1.1."),
]


def problem_response(status: int, code: str, detail: str, path: str = "") -> bytes:
    """A whole HTTP/1.1 answer written by the server, not the app: the same problem
    document and security headers as the app's errors (api/errors.py), and the
    connection closes (where the next request would start is unknown)."""
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "type": f"/problems/{code}",
            "title": _REASONS.get(status, "Error"),
            "status": status,
            "code": code,
            "detail": detail,
            "instance": path,
            "request_id": request_id,
        }
    ).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/problem+json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"X-Request-ID: {request_id}",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}


class _Worker(ThreadWorker):
    """gunicorn's gthread worker with the request head read by its event loop.

    gthread hands a connection to a pool thread as soon as its first byte arrives, and
    that thread then blocks until the whole head is in: a few dozen clients sending a
    header byte a second hold every thread (issue 10). Here the main loop collects each
    head with non-blocking reads (new connections and kept-alive ones alike) until the
    blank line that ends it, within `header_read_timeout` and `max_header_bytes`, then puts
    the bytes back in front of gunicorn's parser and hands the connection to a thread."""

    def init_process(self) -> None:
        settings: Settings = self.app.settings
        self.head_timeout = settings.header_read_timeout
        self.head_limit = settings.max_header_bytes
        self.body_timeout = settings.body_read_timeout
        self.small_body = min(SMALL_BODY, settings.max_body_bytes)
        self.heads: deque[Any] = deque()  # connections reading a head (or a small body), oldest first
        self.next_sweep = 0.0
        super().init_process()

    # -- connections in: read the head in the loop ------------------------------------

    def accept(self, listener) -> None:
        try:
            sock, addr = listener.accept()
        except BlockingIOError:
            return
        except OSError:
            return  # the client gave up before accept (ECONNABORTED); nothing to serve
        self.nr_conns += 1
        self._read_head(TConn(self.cfg, sock, addr, listener.getsockname()))

    def on_client_socket_readable(self, conn, client) -> None:
        # a kept-alive connection starts its next request: its head is read in the loop too
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_head(conn, readable=True)

    def _read_head(self, conn, readable: bool = False) -> None:
        if self.cfg.is_ssl:
            self.enqueue_req(conn)  # TLS records, not a head: gunicorn's own path (module doc)
            return
        conn.sock.setblocking(False)
        conn.head = b""
        conn.body_wanted = None  # bytes of body to read here, once the head is in
        conn.head_deadline = time.monotonic() + self.head_timeout
        self.heads.append(conn)
        if readable:
            # bytes are waiting (a kept-alive client's next request): read them now; a
            # whole head, the usual case, goes to a thread without a trip through the
            # poller (which cost two epoll_ctl and a loop turn per request)
            self._on_head_bytes(conn, conn.sock)
            if conn not in self.heads:
                return  # handed to a thread, or closed
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn, sock) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) before a whole head, or body
            incomplete = (400, "incomplete_body", "The connection ended before the whole body arrived.")
            self._drop_head(conn, incomplete if conn.body_wanted is not None else None)
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end >= 0:
            if conn.body_wanted is None:
                # a small body of declared length is read here too (a login's, a sign-up's:
                # calls anyone may make), from now within body_read_timeout
                conn.body_wanted = _small_body_length(conn.head[:end], self.small_body)
                conn.head_deadline = time.monotonic() + self.body_timeout
            if len(conn.head) - end - 4 >= conn.body_wanted:
                with contextlib.suppress(KeyError, ValueError):  # not registered when read at once
                    self.poller.unregister(sock)
                self.heads.remove(conn)
                conn.pending_head, conn.head = conn.head, b""
                conn.data_ready = True  # gthread must not wait for data: it is here
                self.enqueue_req(conn)
        elif len(conn.head) > self.head_limit:
            if b"\r\n" not in conn.head:
                self._drop_head(
                    conn, (414, "uri_too_long", f"The request line is longer than {MAX_REQUEST_LINE} bytes.")
                )
            else:
                self._drop_head(
                    conn, (431, "headers_too_large", f"The headers are larger than {self.head_limit} bytes.")
                )

    def _drop_head(self, conn, problem: tuple[int, str, str] | None = None) -> None:
        """Close a connection whose head did not come, answering `problem` first if given."""
        with contextlib.suppress(ValueError, KeyError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self.heads.remove(conn)
        if problem is not None:
            with contextlib.suppress(OSError):
                conn.sock.send(problem_response(*problem, path=_path_of(conn.head)))
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also close the heads past their deadline (408 if a byte came, else silently),
        and once the worker stops, the connections where no request has started; a request
        whose head or body is arriving goes on (it is in flight). A scan at most twice a
        second: deadlines are not in list order (a body's starts when its head ends)."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep and self.alive:
            return
        self.next_sweep = now + 0.5
        for conn in [c for c in self.heads if c.head_deadline <= now or (not self.alive and not c.head)]:
            if not conn.head:
                self._drop_head(conn)
            elif conn.body_wanted is None:
                self._drop_head(
                    conn, (408, "request_timeout", f"The request head did not arrive within {self.head_timeout:g} s.")
                )
            else:
                self._drop_head(
                    conn, (408, "request_timeout", f"The body did not arrive within {self.body_timeout:g} seconds.")
                )

    def handle(self, conn):
        head = getattr(conn, "pending_head", None)
        if head:
            conn.pending_head = None
            conn.sock.setblocking(True)
            conn.init()  # the parser, on a new connection
            conn.parser.unreader.unread(head)
        return super().handle(conn)

    def _keepalive_after(self, conn, keepalive):
        """Keep the connection only if the rest of an unread body (the app refused the
        request before reading it: 401, 413) is already here; gunicorn would wait up to
        5 s in this thread for a client that trickles it."""
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + 0.05))

    # -- what the server answers itself -------------------------------------------------

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's error answer (an HTML page) as a problem document instead."""
        status, code, detail = next(
            ((status, code, detail) for kind, status, code, detail in _SERVER_PROBLEMS if isinstance(exc, kind)),
            (500, "internal_error", "The server could not complete the request."),
        )
        if status < 500:
            self.log.warning("invalid request from %s: %s", (addr or ("",))[0], exc)
        else:
            self.log.exception("error handling a request")
        with contextlib.suppress(OSError):
            client.sendall(problem_response(status, code, detail, path=getattr(req, "path", "") or ""))


#: A body of declared length up to this is read by the event loop with the head (larger
#: ones by the app, after authentication: api/pipeline.py).
SMALL_BODY = 64 * 1024

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,9})[ \t]*(?=\r\n|$)", re.IGNORECASE)
_NOT_IN_LOOP = re.compile(rb"\r\n(?:transfer-encoding|expect):", re.IGNORECASE)


def _small_body_length(head: bytes, limit: int) -> int:
    """How many body bytes the loop waits for after `head`: its Content-Length when that is
    at most `limit`, else 0 (no body, a large or chunked one for the app to read, or a
    client that waits for `100 Continue`; a malformed head is gunicorn's to refuse)."""
    if _NOT_IN_LOOP.search(head):
        return 0
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) != 1 or int(lengths[0]) > limit:
        return 0
    return int(lengths[0])


def _path_of(head: bytes) -> str:
    """The path of a request line (for a problem's `instance`), or ''."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].split(b"?", 1)[0].decode("latin-1")[:200] if len(parts) == 3 else ""


class _ServerLog(Logger):
    """gunicorn's logger without its access log. A logging config (ours makes the server's
    lines JSON) turns that log on, and then every request builds the access-log fields
    although nothing prints them: 10% of a /health request's CPU (py-spy). The app logs
    each request itself (api/pipeline.py)."""

    access_log_enabled = False  # a property in gunicorn's class; plain False here


class _Arbiter(Arbiter):
    """The master: on SIGTERM, first `/ready` answers 503 (the drain flag file) while
    the server still serves for `shutdown_drain_seconds`, so a load balancer stops sending
    requests before the listener closes; then gunicorn's graceful stop (workers finish
    in-flight requests, up to graceful_timeout). A second SIGTERM skips the wait."""

    drain_seconds: float = 0.0
    drain_flag: Path
    run_dir: Path
    _drain_until: float | None = None

    def handle_term(self) -> None:
        if self._drain_until is not None or self.drain_seconds <= 0:
            raise StopIteration
        self.drain_flag.touch()
        self._drain_until = time.monotonic() + self.drain_seconds
        self.log.info("SIGTERM: /ready answers 503; stopping in %gs", self.drain_seconds)

    def murder_workers(self) -> None:  # runs every loop turn (at least once a second)
        super().murder_workers()
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            raise StopIteration  # run() stops gracefully

    def halt(self, reason=None, exit_status=0) -> None:
        try:
            super().halt(reason, exit_status)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any], run_dir: Path) -> None:
        self.settings = settings
        self.options = options
        self.run_dir = run_dir
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from api.app import create_app

        flag = self.run_dir / "draining"
        return create_app(self.settings, draining=flag.exists)

    def run(self) -> None:
        arbiter = _Arbiter(self)
        arbiter.drain_seconds = self.settings.shutdown_drain_seconds
        arbiter.drain_flag = self.run_dir / "draining"
        arbiter.run_dir = self.run_dir
        arbiter.run()


def _run_dir(state_dir: Path) -> Path:
    """This server's folder (metrics files, drain flag): <state>/serve/<master pid>, after
    removing those of servers that are gone."""
    parent = state_dir / "serve"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        try:
            os.kill(int(old.name), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's
    run_dir = parent / str(os.getpid())
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "metrics").mkdir(parents=True)
    return run_dir


def _worker_exited(server: Arbiter, worker: Any) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges leave the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    run_dir = _run_dir(settings.state_dir)
    # before any worker imports prometheus_client (it reads this when imported): the master
    # never imports the app (preload_app off), each worker does after the fork
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "metrics")
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": _Worker,
        "worker_connections": settings.max_connections_per_worker,
        "keepalive": 5,
        "accesslog": None,  # the app logs one JSON line per request itself
        "logger_class": _ServerLog,
        "logconfig_dict": server_logconfig(),  # and the server's own lines are JSON too
        "graceful_timeout": 30,  # in-flight requests after the drain
        "preload_app": False,
        # no gunicornc control socket: it would be written outside the project (~/.gunicorn/),
        # and workers are managed by the process supervisor, not at run time
        "control_socket_disable": True,
        "limit_request_line": MAX_REQUEST_LINE,
        "limit_request_field_size": settings.max_header_bytes,
        # the scheme comes from the socket only: X-Forwarded-Proto is read by the app, from
        # trusted proxies (settings), not from gunicorn's default of trusting 127.0.0.1
        "secure_scheme_headers": {},
        "child_exit": _worker_exited,
    }
    if settings.tls_cert_file:
        options |= {"certfile": str(settings.tls_cert_file), "keyfile": str(settings.tls_key_file or "")}
    _Server(settings, options, run_dir).run()


def spawn(
    env: dict[str, str],
    port: int,
    log_path,
    *,
    workers: int = 1,
    threads: int = 8,
    ready_path: str = "/health",
    timeout: float = 30.0,
):
    """Start `tenantry serve` in a subprocess on 127.0.0.1:`port` and wait until it answers.

    For the demo and the tests, which drive the API as a client would. Returns the
    process and its base URL; the caller terminates it (at once: no drain on SIGTERM,
    unless `env` sets TENANTRY_SHUTDOWN_DRAIN_SECONDS).
    """
    import subprocess
    import sys

    import httpx

    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenantry",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            env=os.environ | {"TENANTRY_SHUTDOWN_DRAIN_SECONDS": "0"} | env,
            stdout=log,
            stderr=log,
        )
    tls = bool(env.get("TENANTRY_TLS_CERT_FILE"))  # a test's self-signed certificate: not verified
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + ready_path, timeout=1, verify=not tls).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API did not start: see {log_path}")
        time.sleep(0.1)

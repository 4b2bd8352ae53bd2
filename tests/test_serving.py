"""The HTTP server itself (api/server.py, issue 10 "Serving"), on a real `tenantry serve`
with 2 workers and real sockets: slow clients do not starve it, the answers it writes
itself are problem documents, SIGTERM drains, /metrics covers every worker, and every
response carries the security headers (HSTS over TLS only) and CORS for listed origins."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Account, SignUp, bearer, problem, start_api

ORIGIN = "https://app.example.test"


@pytest.fixture(scope="module")
def served(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of 2 workers × 4 threads (few threads: starving them is what slow clients
    try), behind a trusted proxy on 127.0.0.1, with one allowed CORS origin and a body
    limit of 100 kB (a body over 64 KiB is read by the app, after authentication)."""
    process, url = start_api(
        owner_url,
        redis_url,
        tmp_path_factory.mktemp("serving"),
        workers=2,
        threads=4,
        TENANTRY_HEADER_READ_TIMEOUT="30",
        TENANTRY_BODY_READ_TIMEOUT="30",
        TENANTRY_MAX_BODY_BYTES="100000",
        TENANTRY_TRUSTED_PROXIES="127.0.0.1",
        TENANTRY_CORS_ALLOWED_ORIGINS=ORIGIN,
    )
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def stoppable(
    owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen, str]]:
    """One worker holding at most 16 connections, a 1-second head timeout and a 1.5-second
    drain on SIGTERM; the SIGTERM test stops it."""
    process, url = start_api(
        owner_url,
        redis_url,
        tmp_path_factory.mktemp("stoppable"),
        TENANTRY_HEADER_READ_TIMEOUT="1",
        TENANTRY_SHUTDOWN_DRAIN_SECONDS="1.5",
        TENANTRY_MAX_CONNECTIONS_PER_WORKER="16",
    )
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def account(sign_up: SignUp) -> Account:
    return sign_up()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw(url: str, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `data` on a new socket; the status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), headers, body


def assert_security_headers(headers: httpx.Headers | dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert headers["referrer-policy"] == "no-referrer"
    assert not re.search(r"\d", headers.get("server", "")), headers.get("server")  # no version


# -- slow clients ------------------------------------------------------------------------------


def test_slow_clients_do_not_starve_the_server(served: str, account: Account) -> None:
    """200 sockets, half sending their headers a byte at a time, half a login body a byte at
    a time, are held open while normal requests (a JWT GET, on new connections) still come
    back within a second or two. Before the fix each slow socket held a thread: 8 of them
    took the whole server down."""
    project = httpx.post(
        served + "/v1/projects", json={"name": "slow clients", "description": ""}, headers=bearer(account.access_token)
    ).json()["project_id"]
    slow: list[tuple[socket.socket, bytes]] = []
    for n in range(200):
        sock = socket.create_connection(("127.0.0.1", _port(served)), timeout=5)
        if n % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            rest = b"a" * 400
        else:
            body = json.dumps({"email": "slow@tenantry.test", "password": "x" * 100}).encode()
            sock.sendall(
                b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            rest = body
        slow.append((sock, rest))

    stop = threading.Event()

    def trickle() -> None:  # one byte per socket per round
        i = 0
        while not stop.wait(0.3):
            for sock, rest in slow:
                if i < len(rest) - 1:  # never the last byte: they stay open
                    try:
                        sock.send(rest[i : i + 1])
                    except OSError as exc:
                        raise AssertionError("the server closed a slow socket early") from exc
            i += 1

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1)  # every slow socket has sent something since connecting
        worst = 0.0
        for _ in range(20):
            started = time.monotonic()
            resp = httpx.get(f"{served}/v1/projects/{project}", headers=bearer(account.access_token), timeout=10)
            worst = max(worst, time.monotonic() - started)
            assert resp.status_code == 200, resp.text
        assert worst < 3.0, f"a normal request took {worst:.2f} s beside 200 slow sockets"
        assert trickler.is_alive()
    finally:
        stop.set()
        trickler.join()
        for sock, _ in slow:
            sock.close()


def test_an_unauthenticated_body_is_refused_before_it_is_read(served: str) -> None:
    """A body too large for the event loop to read (over 64 KiB, within the limit) to a
    call that needs credentials: 401 at once, not after the body (the client has sent only
    its head), and the connection closes instead of waiting for it."""
    started = time.monotonic()
    status, _, body = raw(
        served,
        b"POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 90000\r\n\r\n",
    )
    assert status == 401 and json.loads(body)["code"] == "missing_credentials"
    assert time.monotonic() - started < 5  # `raw` reads to the end: the server closed at once


def test_a_head_that_does_not_come_is_408(stoppable: tuple[subprocess.Popen, str]) -> None:
    _, url = stoppable
    started = time.monotonic()
    status, headers, body = raw(url, b"GET /health HTTP/1.1\r\nHo")
    assert status == 408 and json.loads(body)["code"] == "request_timeout"
    assert headers["content-type"] == "application/problem+json"
    assert 0.9 < time.monotonic() - started < 4


def test_a_worker_holds_at_most_its_connection_cap(stoppable: tuple[subprocess.Popen, str]) -> None:
    """16 connections with half a head each fill the worker's cap: a 17th request waits in
    the listen queue until they time out (408), then is served."""
    _, url = stoppable
    held = [socket.create_connection(("127.0.0.1", _port(url)), timeout=10) for _ in range(16)]
    try:
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        status, _, _ = raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        waited = time.monotonic() - started
        assert status == 200
        assert waited > 0.5, f"served after {waited:.2f} s: the cap did not hold it back"
        assert all(sock.recv(100).startswith(b"HTTP/1.1 408") for sock in held)
    finally:
        for sock in held:
            sock.close()


# -- answers the server writes itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431, "headers_too_large"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % n for n in range(150)) + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", 400, "bad_request"),
    ],
    ids=["header-too-large", "too-many-headers", "long-uri", "garbage", "http-version", "bad-header"],
)
def test_server_errors_are_problems(served: str, request_bytes: bytes, status: int, code: str) -> None:
    got, headers, body = raw(served, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body)
    assert document["status"] == status and document["code"] == code and document["type"] == f"/problems/{code}"
    assert document["request_id"] == headers["x-request-id"]
    assert b"<html" not in body.lower()
    assert_security_headers(headers)


def test_a_chunked_body_is_read_and_limited(served: str, account: Account) -> None:
    def chunks(data: bytes) -> Iterator[bytes]:
        for at in range(0, len(data), 7):
            yield data[at : at + 7]

    name = "chunked " + "x" * 20
    resp = httpx.post(
        served + "/v1/projects",
        content=chunks(json.dumps({"name": name, "description": ""}).encode()),
        headers=bearer(account.access_token) | {"Content-Type": "application/json"},
    )
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == name

    big = json.dumps({"name": "big", "description": "d" * 120_000}).encode()  # over the 100 kB limit
    resp = httpx.post(
        served + "/v1/projects",
        content=chunks(big),
        headers=bearer(account.access_token) | {"Content-Type": "application/json"},
    )
    problem(resp, 413, "body_too_large")


# -- graceful stop ------------------------------------------------------------------------------


def test_sigterm_drains_then_exits(stoppable: tuple[subprocess.Popen, str], account: Account) -> None:
    """SIGTERM while a request is in flight (its body half sent): /ready answers 503 at
    once, the request still completes, then the process exits 0. (The last test of
    `stoppable`: it stops it.)"""
    process, url = stoppable
    try:
        body = json.dumps({"name": "in flight", "description": ""}).encode()
        sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=20)
        sock.sendall(
            f"POST /v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.access_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.3)
        sent_term = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(url + "/ready", timeout=5)
        assert ready.status_code == 503, ready.text
        assert process.poll() is None
        time.sleep(2.0)  # past the drain: the listener is closed, the request is still in flight
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"name"' in answer:
                break
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - sent_term < 15
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- metrics across workers ------------------------------------------------------------------


def _health_count(text: str) -> float:
    found = re.search(r'^tenantry_http_requests_total\{method="GET",route="/health",status="200"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_every_worker(served: str) -> None:
    """Requests on new connections land on either worker; whichever worker answers
    /metrics reports them all."""
    before = _health_count(httpx.get(served + "/metrics").text)
    for _ in range(40):
        assert httpx.get(served + "/health").status_code == 200  # a new connection each
    seen = {_health_count(httpx.get(served + "/metrics").text) for _ in range(10)}
    assert seen == {before + 40}, seen


# -- security headers, HSTS, CORS ------------------------------------------------------------


def test_security_headers_on_every_response(served: str, account: Account) -> None:
    with httpx.Client(base_url=served) as client:
        for resp in (
            client.get("/health"),
            client.get("/v1/openapi.json"),
            client.get("/v1/nowhere"),
            client.get("/v1/projects"),  # 401
            client.get("/v1/projects", headers=bearer(account.access_token)),
            client.post("/v1/projects", content=b"{", headers=bearer(account.access_token)),  # 400
        ):
            assert_security_headers(resp.headers)
            assert "strict-transport-security" not in resp.headers  # plain HTTP


def test_hsts_only_over_tls_from_a_trusted_proxy(served: str) -> None:
    trusted = httpx.get(served + "/health", headers={"X-Forwarded-Proto": "https"})
    assert trusted.headers["strict-transport-security"].startswith("max-age=31536000")
    # the same header from a peer that is not a trusted proxy (127.0.0.2 is this host too)
    untrusted = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with untrusted:
        resp = untrusted.get(served + "/health", headers={"X-Forwarded-Proto": "https"})
    assert resp.status_code == 200
    assert "strict-transport-security" not in resp.headers


def test_hsts_when_the_server_terminates_tls(owner_url: str, redis_url: str, tmp_path: Path) -> None:
    """With a certificate, `tenantry serve` speaks TLS itself and sends HSTS."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run([*make, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    process, url = start_api(
        owner_url, redis_url, tmp_path, TENANTRY_TLS_CERT_FILE=str(cert), TENANTRY_TLS_KEY_FILE=str(key)
    )
    try:
        assert url.startswith("https://")
        resp = httpx.get(url + "/v1/nowhere", verify=False)
        assert resp.status_code == 404
        assert resp.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert_security_headers(resp.headers)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cors_preflight_and_answers_for_listed_origins(served: str, account: Account) -> None:
    preflight = httpx.options(
        served + "/v1/projects",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "if-match"} <= allowed
    assert "origin" in preflight.headers["vary"].lower()
    assert_security_headers(preflight.headers)

    answer = httpx.get(served + "/v1/projects", headers=bearer(account.access_token) | {"Origin": ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "location", "retry-after", "ratelimit-remaining"} <= exposed
    assert "origin" in answer.headers["vary"].lower()


def test_cors_nothing_for_other_origins(served: str, account: Account) -> None:
    other = "https://evil.example.test"
    preflight = httpx.options(
        served + "/v1/projects", headers={"Origin": other, "Access-Control-Request-Method": "DELETE"}
    )
    assert preflight.status_code != 204
    answer = httpx.get(served + "/v1/projects", headers=bearer(account.access_token) | {"Origin": other})
    for resp in (preflight, answer):
        assert not [name for name in resp.headers if name.lower().startswith("access-control-")], resp.headers

"""bench/api_throughput: what the HTTP API costs on top of the SQL function it calls.

Two sides run the same tenant-scoped work, in the same run, at the same concurrency:

* API    - C client threads, each with its own keep-alive httpx.Client, call
           `GET /v1/projects/{id}` and `POST /v1/projects` on a real `tenantry serve`
           (gunicorn gthread workers, the Falcon app) with a tenant user's access token;
* direct - C client threads share a pool of C `tenantry_api` connections and call the
           same SQL function the resource calls - `api.get_project(tenant, id)` and
           `api.create_project(tenant, name, description)` - in the transaction shape the
           API uses (db.context.transaction: BEGIN; SET LOCAL app.tenant_id,
           app.actor_id, app.actor_type, app.request_id; the call; COMMIT).

So the difference is what the API does around that one call: HTTP parsing and writing
(gunicorn, Falcon), JWT verification, auth.check_session (one more statement in the
transaction), the Redis token-bucket rate limit (one EVALSHA), JSON decoding and pydantic
validation of the body, JSON encoding of the response, the request id, one JSON log line
and the Prometheus metrics - plus, on the client side, httpx building the request and
decoding the JSON. With --direct-session-check the direct side also runs
auth.check_session, so the ratio leaves out the session check.

The benchmark starts everything it talks to on free loopback ports, in a temporary state
folder: its own redis-server and its own API server (`python -m tenantry serve`); it stops
both when it ends, also on Ctrl-C. Client and server share this machine's cores.

Measurement: rounds of fixed-length blocks. In a block, the C threads run one kind (GET
or POST) on one side as fast as they can until the block's time is up; a block gives
requests/s, the latency of every request (p50, p99) and us/req = block wall time /
requests (1 / throughput, the machine's cost of one request at that concurrency). Within
a round every kind runs on both sides back to back, the side going first alternating
(API direct, direct API, ...), so load from elsewhere on the machine falls equally on
both. Figures are medians over rounds. The rate-limit bucket is removed between blocks
(untimed), so the plan's limit never refuses a request; the limiter still runs on every
request.

As every benchmark here, the last line is `ratio <x>`: x = API us/req / direct us/req,
GET and POST weighted equally (per round, the two kinds' us/req summed on each side and
divided; the median over rounds).

Run from the repository root:  python bench/api_throughput.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api import security
from db import PROJECT_ROOT, migrate
from db.context import Context, Database, transaction
from db.dsn import redacted, role_environment
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from db.local.services import ensure_database
from db.settings import API_ROLE, Settings, get_settings

REPRODUCE = "python bench/api_throughput.py"
PLAN = "enterprise"
PLAN_REQUESTS_PER_MINUTE = 6000  # the enterprise plan's api_requests_per_minute (sql/repeatable/900_seeds.sql)

# The statements the resources run (api/resources/work.py), and the pipeline's session check.
GET_SQL = "SELECT * FROM api.get_project(%s, %s)"
POST_SQL = "SELECT * FROM api.create_project(%s, %s, %s)"
# the session of the transaction's context (direct_transaction sets it, as the API does)
CHECK_SESSION_SQL = "SELECT role, scopes, is_platform_admin, requests_per_minute FROM auth.check_session()"
RATE_LIMIT_KEY = "tenantry:rl:user:{}"  # api/ratelimit.py prefix + the pipeline's key for a user


class BenchError(RuntimeError):
    """A request did not do what it should: the comparison would not be fair."""


@dataclass(frozen=True)
class Config:
    concurrency: int
    seconds: float
    rounds: int
    workers: int
    threads: int
    projects: int
    seed: int
    direct_session_check: bool


@dataclass(frozen=True)
class Account:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    access_token: str


# ---------------------------------------------------------------------------------------
# the services: Redis and the API server, ours alone, stopped whatever happens
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def own_redis(home: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(home, free_port())
    try:
        server.start()
        yield server
    finally:
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int((home / "redis.pid").read_text().strip())
        with contextlib.suppress(Exception):
            server.stop()
        # if it did not go with SHUTDOWN, end it by its pid - only if that is still our server
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
            if pid and b"redis-server" in command and f":{server.port}".encode() in command:
                os.kill(pid, signal.SIGKILL)


def process_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far (from /proc, 10 ms ticks)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen
    workers: list[int]  # pids of the gunicorn workers
    log: Path


@contextlib.contextmanager
def api_server(owner_url: str, redis_url: str, state_dir: Path, jwt_secret: str, config: Config) -> Iterator[ApiServer]:
    """`tenantry serve` (gunicorn, real HTTP) in a subprocess, on a free port."""
    port = free_port()
    # the role DSNs explicitly: their generated passwords are in our state folder, not its
    environment = (
        os.environ
        | role_environment(Settings(database_url=owner_url))
        | {
            "TENANTRY_DATABASE_URL": owner_url,
            "TENANTRY_REDIS_URL": redis_url,
            "TENANTRY_JWT_SECRET": jwt_secret,
            "TENANTRY_STATE_DIR": str(state_dir),
            "TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE": "100000",  # sign-up only
            "TENANTRY_ACCESS_TOKEN_SECONDS": "86400",  # never expires during a run
            "TENANTRY_POOL_MAX_SIZE": str(max(config.threads, 1)),  # a connection for every thread
        }
    )
    log = state_dir / "api.log"
    command = [
        sys.executable,
        "-m",
        "tenantry",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(config.workers),
        "--threads",
        str(config.threads),
    ]
    with open(log, "w") as log_file:
        # a session of its own: Ctrl-C reaches only us, and we stop it in order
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (
                    httpx.get(f"{url}/health", timeout=1).status_code == 200
                    and len(process_children(process.pid)) >= config.workers
                ):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the API did not start: see {log}")
            time.sleep(0.1)
        yield ApiServer(url, process, sorted(process_children(process.pid)), log)
    finally:
        if process.poll() is None:
            process.terminate()  # gunicorn: graceful stop of the workers
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


# ---------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------


def sign_up(api_url: str, owner_url: str, jwt_secret: str, run_tag: str) -> Account:
    """A new tenant on the enterprise plan, its owner signed up (and logged in) over HTTP.

    Sign-up always gives the free plan (paid plans come from billing or a platform
    administrator): the database owner then moves the tenant to PLAN."""
    password = "bench-password-" + run_tag
    resp = httpx.post(
        f"{api_url}/v1/signup",
        timeout=30,
        json={
            "email": f"bench-{run_tag}@tenantry.test",
            "name": "Benchmark owner",
            "password": password,
            "tenant_slug": f"bench-{run_tag}",
            "tenant_name": f"Benchmark {run_tag}",
        },
    )
    if resp.status_code != 201:
        sys.exit(f"sign-up failed ({resp.status_code}): {resp.text}")
    body = resp.json()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (PLAN, body["tenant_id"]))
    claims = security.verify_access_token(jwt_secret, body["access_token"])
    return Account(uuid.UUID(body["tenant_id"]), uuid.UUID(body["user_id"]), claims.session_id, body["access_token"])


def direct_transaction(pool: ConnectionPool, account: Account):
    """The transaction the API opens for a request of this user (a fresh request id each)."""
    return transaction(
        pool,
        Context(
            account.tenant_id,
            actor_id=account.user_id,
            actor_type="user",
            request_id=uuid.uuid4().hex,
            session_id=account.session_id,
        ),
    )


def create_projects(
    pool: ConnectionPool, owner_url: str, account: Account, count: int, run_tag: str
) -> list[uuid.UUID]:
    """The projects the GETs read (through the same api.create_project)."""
    with direct_transaction(pool, account) as conn:
        cur = conn.cursor(row_factory=dict_row)
        ids = [
            cur.execute(POST_SQL, (account.tenant_id, f"{run_tag} target {n}", "benchmark project")).fetchone()[
                "project_id"
            ]
            for n in range(count)
        ]
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("ANALYZE core.projects")
    return ids


def count_projects(pool: ConnectionPool, account: Account) -> int:
    with direct_transaction(pool, account) as conn:
        return conn.execute("SELECT count(*) FROM core.projects WHERE deleted_at IS NULL").fetchone()[0]


def check_sides(api: ApiServer, pool: ConnectionPool, account: Account, project_id: uuid.UUID, config: Config) -> str:
    """Refuse to measure unless both sides do the same thing. Returns the plan's limit line."""
    with direct_transaction(pool, account) as conn:
        user, rls = conn.execute("SELECT current_user, row_security_active('core.projects')").fetchone()
        row = conn.cursor(row_factory=dict_row).execute(GET_SQL, (account.tenant_id, project_id)).fetchone()
        session = conn.execute(CHECK_SESSION_SQL).fetchone()
    if user != API_ROLE or not rls:
        sys.exit(f"direct side: connected as {user} (RLS active: {rls}), not {API_ROLE} under RLS; not measuring")
    if session[3] != PLAN_REQUESTS_PER_MINUTE:
        sys.exit(
            f"the tenant's plan allows {session[3]} requests/min, expected {PLAN_REQUESTS_PER_MINUTE}; not measuring"
        )
    resp = httpx.get(
        f"{api.url}/v1/projects/{project_id}", timeout=30, headers={"Authorization": f"Bearer {account.access_token}"}
    )
    if resp.status_code != 200:
        sys.exit(f"API side: GET /v1/projects/{{id}} answered {resp.status_code}: {resp.text}; not measuring")
    body = resp.json()
    same = {k: str(row[k]) for k in ("project_id", "name", "description", "created_by")}
    if {k: str(body[k]) for k in same} != same:
        sys.exit(f"API and direct call disagree about the project: {body} vs {row}; not measuring")
    if resp.headers.get("RateLimit-Limit") != str(PLAN_REQUESTS_PER_MINUTE):
        sys.exit(f"API side: no RateLimit headers, so the Redis rate limit did not run (see {api.log}); not measuring")
    if len(api.workers) != config.workers:
        sys.exit(f"the API runs {len(api.workers)} workers, not {config.workers}; not measuring")
    return f"{PLAN} plan, {PLAN_REQUESTS_PER_MINUTE} requests/min per user"


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------

Job = Callable[[int], None]  # one request or call; the argument is its serial number in the thread


@dataclass
class ThreadResult:
    requests: int = 0
    started: float = 0.0
    ended: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class Block:
    """One side running one kind for one block of time, all threads together."""

    requests: int
    wall: float  # first request started .. last one ended, over all threads
    latencies: list[float]  # seconds, every request
    client_cpu: float  # CPU seconds of this process (the client threads)
    server_cpu: float  # CPU seconds of the API's gunicorn processes

    @property
    def per_request(self) -> float:
        return self.wall / self.requests

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Crew:
    """C client threads, each with its own httpx.Client, running jobs in lock step.

    A block: every thread sets up its job (untimed; API threads refresh their keep-alive
    connection, which gunicorn closes after 2 s idle), then all start together and run
    requests back to back until the block's time is up.
    """

    def __init__(self, size: int, api: ApiServer, account: Account) -> None:
        self.size = size
        self.clients = [
            httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {account.access_token}"})
            for _ in range(size)
        ]
        self.seconds = 0.0
        self.deadline = 0.0
        self.make_job: Callable[[int, httpx.Client], tuple[Job, bool]] | None = None
        self.results: list[ThreadResult] = []
        self.ready = threading.Barrier(size + 1)
        self.start = threading.Barrier(size + 1, action=self._set_deadline)
        self.done = threading.Barrier(size + 1)
        self.threads = [
            threading.Thread(target=self._work, args=(n,), daemon=True, name=f"client-{n}") for n in range(size)
        ]
        for thread in self.threads:
            thread.start()

    def _set_deadline(self) -> None:
        self.deadline = time.perf_counter() + self.seconds

    def _work(self, n: int) -> None:
        clock = time.perf_counter
        client = self.clients[n]
        try:
            while True:
                self.ready.wait()
                result = self.results[n]
                job, ping = None, False
                try:
                    job, ping = self.make_job(n, client)
                    if ping:
                        client.get("/health")
                except Exception as exc:
                    result.error = f"{type(exc).__name__}: {exc}"
                self.start.wait()
                if job is not None and result.error is None:
                    latencies = result.latencies
                    deadline = self.deadline
                    serial = 0
                    result.started = now = clock()
                    try:
                        while now < deadline:
                            job(serial)
                            serial += 1
                            ended = clock()
                            latencies.append(ended - now)
                            now = ended
                    except Exception as exc:
                        result.error = f"{type(exc).__name__}: {exc}"
                    result.requests = serial
                    result.ended = now
                self.done.wait()
        except threading.BrokenBarrierError:
            return  # the crew is closing

    def run(
        self, make_job: Callable[[int, httpx.Client], tuple[Job, bool]], seconds: float, server_pids: Sequence[int]
    ) -> Block:
        self.make_job = make_job
        self.seconds = seconds
        self.results = [ThreadResult() for _ in range(self.size)]
        self.ready.wait()
        self.start.wait()
        client_cpu, server_cpu = time.process_time(), cpu_seconds(server_pids)
        self.done.wait()
        client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(server_pids) - server_cpu
        errors = [r.error for r in self.results if r.error]
        if errors:
            raise BenchError(errors[0])
        requests = sum(r.requests for r in self.results)
        if requests == 0:
            raise BenchError("no request completed in the block; raise --seconds")
        return Block(
            requests=requests,
            wall=max(r.ended for r in self.results) - min(r.started for r in self.results),
            latencies=[x for r in self.results for x in r.latencies],
            client_cpu=client_cpu,
            server_cpu=server_cpu,
        )

    def close(self) -> None:
        for barrier in (self.ready, self.start, self.done):
            barrier.abort()
        for thread in self.threads:
            thread.join(timeout=5)
        for client in self.clients:
            client.close()


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # what runs, for the output


KINDS = [
    Kind("GET", "GET /v1/projects/{id}  vs  api.get_project"),
    Kind("POST", "POST /v1/projects  vs  api.create_project"),
]
SIDES = ("API", "direct")


def job_factory(
    kind: str,
    side: str,
    round_no: int,
    targets: Sequence[uuid.UUID],
    pool: ConnectionPool,
    account: Account,
    config: Config,
    run_tag: str,
):
    """What each thread runs in one block: (job, refresh the HTTP connection first)."""
    tenant_id = account.tenant_id
    expected_limit = str(PLAN_REQUESTS_PER_MINUTE)

    def make(n: int, client: httpx.Client) -> tuple[Job, bool]:
        # the same target sequence on both sides, per round and thread
        choose = random.Random(f"{config.seed}-{round_no}-{n}").choice
        name_prefix = f"{run_tag} {side} r{round_no} t{n} #"

        def api_response(resp: httpx.Response, status: int) -> dict:
            if resp.status_code != status:
                raise BenchError(
                    f"{resp.request.method} {resp.request.url.path} answered {resp.status_code}: {resp.text[:300]}"
                )
            if resp.headers.get("RateLimit-Limit") != expected_limit:
                raise BenchError("a response without RateLimit headers: the Redis rate limit did not run")
            return resp.json()

        if side == "API" and kind == "GET":

            def job(serial: int) -> None:
                project_id = str(choose(targets))
                if api_response(client.get(f"/v1/projects/{project_id}"), 200)["project_id"] != project_id:
                    raise BenchError("GET returned another project")
        elif side == "API":

            def job(serial: int) -> None:
                name = f"{name_prefix}{serial}"
                if (
                    api_response(client.post("/v1/projects", json={"name": name, "description": ""}), 201)["name"]
                    != name
                ):
                    raise BenchError("POST returned another project")
        elif kind == "GET":

            def job(serial: int) -> None:
                project_id = choose(targets)
                with direct_transaction(pool, account) as conn:
                    if config.direct_session_check:
                        conn.execute(CHECK_SESSION_SQL).fetchone()
                    row = conn.cursor(row_factory=dict_row).execute(GET_SQL, (tenant_id, project_id)).fetchone()
                if row is None or row["project_id"] != project_id:
                    raise BenchError("api.get_project returned another project")
        else:

            def job(serial: int) -> None:
                name = f"{name_prefix}{serial}"
                with direct_transaction(pool, account) as conn:
                    if config.direct_session_check:
                        conn.execute(CHECK_SESSION_SQL).fetchone()
                    row = conn.cursor(row_factory=dict_row).execute(POST_SQL, (tenant_id, name, "")).fetchone()
                if row is None or row["name"] != name:
                    raise BenchError("api.create_project returned another project")

        return job, side == "API"

    return make


Results = dict[tuple[str, str], list[Block]]  # (kind, side) -> blocks in round order


def measure(
    crew: Crew,
    api: ApiServer,
    redis_client: redis.Redis,
    pool: ConnectionPool,
    account: Account,
    targets: Sequence[uuid.UUID],
    config: Config,
    run_tag: str,
) -> tuple[Results, int]:
    """One warm-up round, then `rounds` measured rounds; returns the blocks and the POSTs made."""
    results: Results = {}
    posted = 0
    gc.collect()
    gc.disable()  # no collector pauses inside timed code; collected between blocks
    try:
        for round_no in range(config.rounds + 1):  # round 0 warms up connections, caches, plans
            for k, kind in enumerate(KINDS):
                order = SIDES if (round_no + k) % 2 == 0 else SIDES[::-1]
                for side in order:
                    redis_client.delete(RATE_LIMIT_KEY.format(account.user_id))  # a full bucket, untimed
                    gc.collect()
                    make = job_factory(kind.name, side, round_no, targets, pool, account, config, run_tag)
                    try:
                        block = crew.run(make, config.seconds, api.workers)
                    except BenchError as exc:
                        sys.exit(f"{side} {kind.name}: {exc}; not a fair comparison, not measuring")
                    if kind.name == "POST":
                        posted += block.requests
                    if round_no > 0:
                        results.setdefault((kind.name, side), []).append(block)
    finally:
        gc.enable()
    return results, posted


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------


def report(results: Results, rounds: int) -> float:
    """Print the table; return the overall ratio (median over rounds of the paired ratio)."""
    med = statistics.median

    def summed(side: str) -> list[float]:
        """Per round, the kinds' us/req summed (each kind weighted equally)."""
        return [
            sum(blocks)
            for blocks in zip(*([b.per_request for b in results[(k.name, side)]] for k in KINDS), strict=True)
        ]

    header = (
        f"{'kind':<5} {'side':<7} {'req/s':>7} {'us/req':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'bench cpu us/req':>16} {'API cpu us/req':>14} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for kind in KINDS:
        api, direct = results[(kind.name, "API")], results[(kind.name, "direct")]
        kind_ratio = med(a.per_request / d.per_request for a, d in zip(api, direct, strict=True))
        for side, blocks in (("API", api), ("direct", direct)):
            print(
                f"{kind.name:<5} {side:<7} {med(b.requests / b.wall for b in blocks):>7.0f} "
                f"{med(b.per_request for b in blocks) * 1e6:>8.1f} "
                f"{med(b.percentile(50) for b in blocks) * 1e3:>7.2f} "
                f"{med(b.percentile(99) for b in blocks) * 1e3:>7.2f} "
                f"{med(b.client_cpu / b.requests for b in blocks) * 1e6:>16.0f} "
                f"{med(b.server_cpu / b.requests for b in blocks) * 1e6:>14.0f} "
                + (f"{kind_ratio:>6.3f}" if side == "API" else f"{'':>6}")
            )
    api_all, direct_all = summed("API"), summed("direct")
    per_round = [a / d for a, d in zip(api_all, direct_all, strict=True)]
    ratio = med(per_round)
    for side, sums in (("API", api_all), ("direct", direct_all)):
        print(
            f"{'all':<5} {side:<7} {len(KINDS) / med(sums):>7.0f} {med(sums) / len(KINDS) * 1e6:>8.1f} "
            f"{'':>7} {'':>7} {'':>16} {'':>14} " + (f"{ratio:>6.3f}" if side == "API" else "")
        )
    ordered = sorted(per_round)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else ordered * 3
    print(
        f"spread of the overall ratio over {len(ordered)} rounds: min {ordered[0]:.3f}, "
        f"quartiles {quartiles[0]:.3f} / {quartiles[1]:.3f} / {quartiles[2]:.3f}, max {ordered[-1]:.3f}"
    )
    requests = {side: sum(b.requests for k in KINDS for b in results[(k.name, side)]) for side in SIDES}
    print(
        f"requests measured: API {requests['API']}, direct {requests['direct']} "
        f"(+ the warm-up round); figures are medians over {rounds} rounds"
    )
    return ratio


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smoke test; noisy figures)")
    parser.add_argument("--concurrency", type=int, help="client threads on each side (default 8; quick 4)")
    parser.add_argument(
        "--seconds", type=float, help="length of one block: one side, one kind (default 1.25; quick 0.4)"
    )
    parser.add_argument("--rounds", type=int, help="measured rounds, after one warm-up (default 12; quick 3)")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (default 2, as `tenantry serve`)")
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per API worker (default 8, as `tenantry serve`)"
    )
    parser.add_argument("--projects", type=int, help="projects the GETs pick from (default 200; quick 50)")
    parser.add_argument(
        "--direct-session-check",
        action="store_true",
        help="the direct side also runs auth.check_session (the ratio then leaves it out)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the GET targets (default 1)")
    args = parser.parse_args(argv)
    defaults = (4, 0.4, 3, 50) if args.quick else (8, 1.25, 12, 200)
    config = Config(
        concurrency=args.concurrency or defaults[0],
        seconds=args.seconds or defaults[1],
        rounds=args.rounds or defaults[2],
        workers=args.workers,
        threads=args.threads,
        projects=args.projects or defaults[3],
        seed=args.seed,
        direct_session_check=args.direct_session_check,
    )
    if min(config.concurrency, config.rounds, config.workers, config.threads, config.projects) < 1:
        parser.error("--concurrency, --rounds, --workers, --threads and --projects must be at least 1")
    if config.seconds <= 0:
        parser.error("--seconds must be positive")
    return config


def describe_server(owner_url: str) -> str:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        citus = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    return f"PostgreSQL {version}, {'Citus ' + citus[0] if citus else 'no Citus'}"


def _terminate(signum, frame) -> None:  # SIGTERM: unwind like Ctrl-C, so everything is stopped
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    print(f"reproduce: {' '.join([REPRODUCE, *map(shlex.quote, given)])}")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _terminate)
    settings: Settings = get_settings()
    run_tag = secrets.token_hex(4)
    jwt_secret = secrets.token_urlsafe(48)

    setup_start = time.perf_counter()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    print(f"database: {redacted(owner_url)} - {describe_server(owner_url)}")
    direct_settings = settings.model_copy(
        update={"database_url": owner_url, "pool_min_size": config.concurrency, "pool_max_size": config.concurrency}
    )

    with contextlib.ExitStack() as stack:
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tenantry-bench-")))
        local_redis = stack.enter_context(own_redis(state_dir / "redis"))
        redis_client = redis.Redis.from_url(local_redis.url())
        stack.callback(redis_client.close)
        api = stack.enter_context(api_server(owner_url, local_redis.url(), state_dir, jwt_secret, config))
        pool = Database(direct_settings, name="bench-direct").pool(API_ROLE)
        stack.callback(pool.close)

        account = sign_up(api.url, owner_url, jwt_secret, run_tag)
        targets = create_projects(pool, owner_url, account, config.projects, run_tag)
        plan = check_sides(api, pool, account, targets[0], config)
        before = count_projects(pool, account)
        cpus = len(os.sched_getaffinity(0))
        print(
            f"setup: tenant bench-{run_tag} ({plan}) signed up over HTTP, {config.projects} projects to GET; "
            f"migrate, Redis, API server and data in {time.perf_counter() - setup_start:.1f} s"
        )
        print(
            f"API server: tenantry serve, gunicorn gthread, workers x threads = {config.workers} x {config.threads} "
            f"(api pool up to {config.threads} connections per worker), on {api.url} with its own "
            f"redis-server on {local_redis.url()}"
        )
        print(
            f"machine: {cpus} cores, shared by the client threads (this process), the API workers, Redis "
            f"and PostgreSQL; load average at start {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(
            f"concurrency: {config.concurrency} client threads per side - API: each its own keep-alive "
            f"httpx.Client; direct: a pool of {config.concurrency} {API_ROLE} connections"
        )
        print(
            "direct side: "
            + (
                "BEGIN; SET LOCAL app.*; auth.check_session; the api.* function; COMMIT - "
                "the ratio leaves out the session check too"
                if config.direct_session_check
                else "BEGIN; SET LOCAL app.*; the api.* function; COMMIT - exactly the function call, "
                "in the API's transaction shape; no session check (it is part of what the API adds)"
            )
        )
        print(
            "the API adds: HTTP parsing and writing (gunicorn, Falcon), JWT verification, "
            + ("" if config.direct_session_check else "auth.check_session, ")
            + "the Redis rate limit (EVALSHA), JSON and pydantic for the body, JSON for the response, "
            "request id, a JSON log line, metrics; and httpx on the client side"
        )
        for kind in KINDS:
            print(f"  {kind.name:<5} {kind.label}")
        print(
            f"{config.rounds} rounds (+1 warm-up) x {config.seconds:g} s blocks per kind and side; in a round each "
            "kind runs on both sides back to back, alternating which goes first; medians over rounds; "
            "us/req = block wall time / requests (1 / throughput); p50/p99 = latency of one request "
            "as the client sees it; ratio = API us/req / direct us/req, paired per round; "
            "bench cpu = this process (the clients), API cpu = the gunicorn processes"
        )

        crew = Crew(config.concurrency, api, account)
        stack.callback(crew.close)
        measure_start = time.perf_counter()
        results, posted = measure(crew, api, redis_client, pool, account, targets, config, run_tag)
        print(
            f"measured in {time.perf_counter() - measure_start:.1f} s; load average at end "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )

        after = count_projects(pool, account)
        if after - before != posted:
            sys.exit(f"{posted} POSTs and calls succeeded but {after - before} projects were created; not reporting")
        if api.process.poll() is not None or sorted(process_children(api.process.pid)) != api.workers:
            sys.exit(f"API workers died or were restarted during the run (see {api.log}); not reporting")
        print()
        ratio = report(results, config.rounds)
    print()
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the benchmark's API server and Redis were stopped")

"""bench/api_throughput: what the HTTP API serves, and what it costs on top of its SQL.

Two sides run the same tenant-scoped work, in the same run, at the same concurrency:

* API    - `wrk` (a C load generator, so the client does not eat the cores the server
           needs: 2 threads, 16 keep-alive connections) against a real `tenantry serve`,
           whatever server that runs (workers and threads as asked), with its own Redis;
* direct - `pgbench -M prepared` (16 clients, 2 threads) as `tenantry_api`, under RLS,
           running the SQL the request runs, in the transaction shape the API used to
           send it: BEGIN; SET LOCAL app.*; the api.* call(s); COMMIT, one statement each.

Four kinds of request:

* get      - `GET /v1/projects/{id}` with a user's access token (JWT)  vs  api.get_project
* list     - `GET /v1/tasks?project_id=..&limit=20` (one page)          vs  api.list_tasks (21 rows)
* create   - `POST /v1/tasks` with a new Idempotency-Key each (wrk Lua)  vs  api.idempotency_begin,
             api.create_task, api.idempotency_finish
* get_key  - the `get` with an API key (`X-API-Key`) instead of a JWT    vs  auth.authenticate_api_key
             (its own transaction, as the API runs it), then the `get` transaction

The direct side leaves out what only the API does: the session check (with
--direct-session-check it runs auth.check_session too), the Redis rate limit and
metering, HTTP, JSON. The tenant is on a plan made for the benchmark, the enterprise plan
with a request limit no run reaches, so no request is refused; the limiter still runs on
each one (checked: the RateLimit headers).

Measurement: rounds of blocks of --seconds; in a round each kind runs on both sides back
to back, the side going first alternating, so load from elsewhere on the machine falls on
both alike. Figures are medians over rounds (after a warm-up round), with the spread
(min..max). `API/direct` is API req/s / direct transactions/s (the issue's goal: >= 0.4
for `get`, and `get` >= 3,100 req/s on 2 cores). As every benchmark here, the last line is
`ratio <x>`: x = cost per request through the API / cost per direct transaction
(= direct tps / API req/s), the median over rounds of `get`, `list`, `create` and
`get_key` summed on each side.

Run from the repository root:  python bench/api_throughput.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from db import PROJECT_ROOT, migrate
from db.dsn import redacted, role_environment, role_url
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from db.local.services import ensure_database
from db.settings import API_ROLE, Settings, get_settings

REPRODUCE = "python bench/api_throughput.py"
PLAN = "bench_unlimited"  # the enterprise plan, with a request limit no run reaches
PLAN_REQUESTS_PER_MINUTE = 100_000_000
PAGE = 20  # the list's page size (the API asks for one row more: 21)
CONNECTIONS, WRK_THREADS = 16, 2


class BenchError(RuntimeError):
    """A side did not do what it should: the comparison would not be fair."""


@dataclass(frozen=True)
class Config:
    seconds: int
    rounds: int
    workers: int
    threads: int
    direct_session_check: bool
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Fixture:
    """What the requests use: the tenant, its owner's token and session, a key, targets."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    access_token: str
    key: str
    key_id: uuid.UUID
    project_id: uuid.UUID  # the project GET reads, and whose tasks are listed and created


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
        with contextlib.suppress(Exception):
            server.stop()


def descendants(pid: int) -> list[int]:
    """The process tree under `pid` (the API's workers, whichever server forks them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far (from /proc)."""
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
    log: Path

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]


@contextlib.contextmanager
def api_server(owner_url: str, redis_url: str, state_dir: Path, jwt_secret: str, config: Config) -> Iterator[ApiServer]:
    """`tenantry serve` in a subprocess of its own session, on a free port."""
    port = free_port()
    environment = (
        os.environ
        | role_environment(Settings(database_url=owner_url))  # the roles' passwords are in our state folder
        | {
            "TENANTRY_DATABASE_URL": owner_url,
            "TENANTRY_REDIS_URL": redis_url,
            "TENANTRY_JWT_SECRET": jwt_secret,
            "TENANTRY_STATE_DIR": str(state_dir),
            "TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE": "100000",  # sign-up only
            "TENANTRY_ACCESS_TOKEN_SECONDS": "86400",  # never expires during a run
            "TENANTRY_POOL_MAX_SIZE": str(max(config.threads, 1)),
        }
    )
    log = state_dir / "api.log"
    command = [sys.executable, "-m", "tenantry", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(config.workers), "--threads", str(config.threads)]
    with open(log, "w") as log_file:
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
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the API did not start: see {log}")
            time.sleep(0.1)
        time.sleep(1.0)  # every worker up, not just the first to answer
        yield ApiServer(url, process, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


# ---------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------


def require_tools() -> None:
    """wrk and pgbench, installed from the OS packages when missing (as root), else a clear message."""
    missing = [tool for tool in ("wrk", "pgbench") if shutil.which(tool) is None]
    if not missing:
        return
    packages = {"wrk": "wrk", "pgbench": "postgresql-contrib"}
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} (apt-get install -y {' '.join(packages[m] for m in missing)})")
        subprocess.run(["apt-get", "install", "-y", *(packages[m] for m in missing)], check=False)
    still = [tool for tool in missing if shutil.which(tool) is None]
    if still:
        sys.exit(
            f"{', '.join(still)} not found: install {' '.join(packages[m] for m in still)} from your OS packages "
            "(e.g. `apt-get install -y wrk postgresql-contrib`, `brew install wrk`) and run again"
        )


def make_fixture(api_url: str, owner_url: str, run_tag: str) -> Fixture:
    """A tenant signed up over HTTP, moved to the benchmark's plan; a project with a page
    of tasks; an API key. All through the API, as a user would."""
    password = "bench-password-" + run_tag
    signup = {
        "email": f"bench-{run_tag}@tenantry.test",
        "name": "Benchmark owner",
        "password": password,
        "tenant_slug": f"bench-{run_tag}",
        "tenant_name": f"Benchmark {run_tag}",
    }
    resp = httpx.post(f"{api_url}/v1/signup", timeout=30, json=signup)
    if resp.status_code != 201:
        sys.exit(f"sign-up failed ({resp.status_code}): {resp.text}")
    body = resp.json()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO core.plans (plan_id, name, price_cents, currency, limits, features, overage)"
            " SELECT %s, 'Benchmark', price_cents, currency,"
            " limits || jsonb_build_object('api_requests_per_minute', %s::int), features, overage"
            " FROM core.plans WHERE plan_id = 'enterprise' ON CONFLICT (plan_id) DO NOTHING",
            (PLAN, PLAN_REQUESTS_PER_MINUTE),
        )
        conn.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (PLAN, body["tenant_id"]))
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        me = http.get("/v1/auth/me")
        project = http.post("/v1/projects", json={"name": f"bench {run_tag}", "description": "benchmark project"})
        if project.status_code != 201:
            sys.exit(f"could not create the project ({project.status_code}): {project.text}")
        project_id = project.json()["project_id"]
        for n in range(PAGE + 5):
            http.post("/v1/tasks", json={"project_id": project_id, "title": f"task {n}"}).raise_for_status()
        key = http.post("/v1/api-keys", json={"name": "bench", "scopes": ["projects:read"]})
        if key.status_code != 201:
            sys.exit(f"could not create the API key ({key.status_code}): {key.text}")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("ANALYZE core.projects")
        conn.execute("ANALYZE core.tasks")
        session_id = conn.execute(
            "SELECT session_id FROM core.sessions WHERE tenant_id = %s AND user_id = %s AND revoked_at IS NULL",
            (body["tenant_id"], body["user_id"]),
        ).fetchone()
    if me.status_code != 200 or session_id is None:
        sys.exit(f"the new user cannot call the API ({me.status_code}): {me.text}")
    return Fixture(
        uuid.UUID(body["tenant_id"]),
        uuid.UUID(body["user_id"]),
        session_id[0],
        body["access_token"],
        key.json()["key"],
        uuid.UUID(key.json()["key_id"]),
        uuid.UUID(project_id),
    )


def _lua_string(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:/?=&%+ -]*", value):
        raise ValueError(f"not a plain value for a Lua literal: {value!r}")
    return f'"{value}"'


def wrk_scripts(fixture: Fixture, run_tag: str) -> dict[str, str]:
    """Each kind's wrk Lua script: a fixed request, or (create) a new Idempotency-Key each."""
    bearer = _lua_string(f"Bearer {fixture.access_token}")
    key = _lua_string(fixture.key)
    project = fixture.project_id

    def fixed(path: str, header: str, value: str) -> str:
        return f'wrk.method = "GET"\nwrk.path = {_lua_string(path)}\nwrk.headers[{_lua_string(header)}] = {value}\n'

    create = f"""
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
local counter = 0
local body = '{{"project_id": "{project}", "title": "bench task"}}'
function request()
  counter = counter + 1
  local headers = {{}}
  headers["Authorization"] = {bearer}
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = "{run_tag}-" .. ROUND .. "-" .. tostring(tid) .. "-" .. counter
  return wrk.format("POST", "/v1/tasks", headers, body)
end
"""
    return {
        "get": fixed(f"/v1/projects/{project}", "Authorization", bearer),
        "list": fixed(f"/v1/tasks?project_id={project}&limit={PAGE}", "Authorization", bearer),
        "create": create,
        "get_key": fixed(f"/v1/projects/{project}", "X-API-Key", key),
    }


def pgbench_scripts(fixture: Fixture, config: Config) -> dict[str, str]:
    """Each kind's pgbench script: the request's SQL in the API's former transaction shape,
    values as literals (SET takes no parameters, and -M prepared would make them ones)."""
    tenant, project = fixture.tenant_id, fixture.project_id

    def opening(actor: uuid.UUID, actor_type: str, session: uuid.UUID | None) -> str:
        lines = [
            "BEGIN;",
            f"SET LOCAL app.tenant_id = '{tenant}';",
            f"SET LOCAL app.actor_id = '{actor}';",
            f"SET LOCAL app.actor_type = '{actor_type}';",
            "SET LOCAL app.request_id = 'pgbench';",
        ]
        if session is not None:
            lines.append(f"SET LOCAL app.session_id = '{session}';")
            if config.direct_session_check:
                lines.append(
                    "SELECT role, scopes, is_platform_admin, requests_per_minute, touch_due FROM auth.check_session();"
                )
        return "\n".join(lines) + "\n"

    user = opening(fixture.user_id, "user", fixture.session_id)
    get = f"SELECT * FROM api.get_project('{tenant}', '{project}');\nCOMMIT;\n"
    prefix = fixture.key.split("_")[1]
    key_hash = hashlib.sha256(fixture.key.encode()).hexdigest()
    return {
        "get": user + get,
        "list": user
        + (
            f"SELECT * FROM api.list_tasks(p_tenant_id => '{tenant}', p_limit => {PAGE + 1}, "
            "p_after_created_at => NULL, p_after_id => NULL, "
            f"p_project_id => '{project}', p_status => NULL, p_assignee_id => NULL, p_include_deleted => false);\n"
            "COMMIT;\n"
        ),
        "create": (
            "\\set r random(1, 9000000000000000)\n"
            + user
            + f"SELECT state, status, response FROM api.idempotency_begin('{tenant}', 'pg-' || :client_id || '-' || :r,"
            " sha256(convert_to('POST /v1/tasks ' || :r, 'UTF8')), 'POST', '/v1/tasks');\n"
            f"SELECT * FROM api.create_task(p_tenant_id => '{tenant}', p_project_id => '{project}', "
            "p_title => 'bench task', p_description => '', p_status => 'todo', p_priority => 'normal', "
            "p_assignee_id => NULL, p_due_date => NULL);\n"
            f"SELECT api.idempotency_finish('{tenant}', 'pg-' || :client_id || '-' || :r, 201, "
            '\'{"title": "bench task"}\'::jsonb);\n'
            "COMMIT;\n"
        ),
        "get_key": (
            f"SELECT * FROM auth.authenticate_api_key('{prefix}', '\\x{key_hash}'::bytea, '127.0.0.1');\n"
            + opening(fixture.key_id, "api_key", None)
            + get
        ),
    }


def check_sides(api: ApiServer, direct_url: str, fixture: Fixture) -> None:
    """Refuse to measure unless both sides do what they should."""
    with psycopg.connect(direct_url, autocommit=True) as conn:
        user, rls = conn.execute("SELECT current_user, row_security_active('core.projects')").fetchone()
    if user != API_ROLE or not rls:
        sys.exit(f"direct side: connected as {user} (RLS active: {rls}), not {API_ROLE} under RLS; not measuring")
    for header in ({"Authorization": f"Bearer {fixture.access_token}"}, {"X-API-Key": fixture.key}):
        resp = httpx.get(f"{api.url}/v1/projects/{fixture.project_id}", timeout=30, headers=header)
        if resp.status_code != 200 or resp.json()["project_id"] != str(fixture.project_id):
            sys.exit(f"API side: GET /v1/projects/{{id}} answered {resp.status_code}: {resp.text}; not measuring")
        if resp.headers.get("RateLimit-Limit") != str(PLAN_REQUESTS_PER_MINUTE):
            sys.exit(f"API side: no RateLimit headers, so the Redis rate limit did not run (see {api.log})")


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    rate: float  # requests or transactions per second
    p50: float  # ms
    p99: float  # ms
    count: int
    server_cpu_us: float | None = None  # the API processes' CPU per request


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise BenchError(f"wrk printed no {label} latency:\n{text}")
    return float(match[1]) * _WRK_UNITS[match[2]]


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"no {pattern!r} in the output:\n{text}")
    return match[1]


def run_wrk(api: ApiServer, script: Path, seconds: int) -> Block:
    before = cpu_seconds(api.pids())
    done = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), api.url],
        capture_output=True,
        text=True,
        check=False,
    )
    cpu = cpu_seconds(api.pids()) - before
    out = done.stdout
    if done.returncode != 0:
        raise BenchError(f"wrk failed: {done.stderr or out}")
    count = int(_found(r"(\d+) requests in", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise BenchError(f"the API refused requests: {bad[0]}\n{out}")
    # a connection the server closed (a keep-alive limit, a restarted worker) is a socket
    # error for wrk; a few are tolerated, more mean the figures are not the API's
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and sum(int(x) for x in errors.groups()) > max(2, count // 100):
        raise BenchError(f"the API dropped connections: {errors[0]}\n{out}")
    rate = float(_found(r"Requests/sec:\s+([\d.]+)", out))
    return Block(rate, _wrk_ms(out, "50%"), _wrk_ms(out, "99%"), count, cpu / max(count, 1) * 1e6)


def run_pgbench(url: str, script: Path, seconds: int, logs: Path) -> Block:
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    command = ["pgbench", "-n", "-M", "prepared", f"-c{CONNECTIONS}", f"-j{WRK_THREADS}", f"-T{seconds}"]
    command += ["-f", str(script), "-l", f"--log-prefix={logs / 'tx'}", url]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=logs)
    if done.returncode != 0:
        raise BenchError(f"pgbench failed: {done.stderr[-2000:] or done.stdout[-2000:]}")
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if match is None or (failed and int(failed[1])):
        raise BenchError(f"pgbench: {done.stdout[-2000:]}")
    latencies = sorted(
        int(line.split()[2]) for log in logs.glob("tx*") for line in log.read_text().splitlines() if line.strip()
    )
    if not latencies:
        raise BenchError("pgbench logged no transaction")

    def at(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1000

    return Block(float(match[1]), at(50), at(99), len(latencies))


Results = dict[tuple[str, str], list[Block]]  # (kind, side) -> blocks, round order


def measure(api: ApiServer, direct_url: str, fixture: Fixture, config: Config, work: Path, run_tag: str) -> Results:
    lua, sql = wrk_scripts(fixture, run_tag), pgbench_scripts(fixture, config)
    for kind in config.kinds:
        (work / f"{kind}.sql").write_text(sql[kind])
    results: Results = {}
    for round_no in range(config.rounds + 1):  # round 0 warms up connections, caches and plans
        for k, kind in enumerate(config.kinds):
            sides = ("API", "direct") if (round_no + k) % 2 == 0 else ("direct", "API")
            for side in sides:
                seconds = max(1, config.seconds // 2) if round_no == 0 else config.seconds
                try:
                    if side == "API":
                        script = work / f"{kind}.lua"
                        script.write_text(f'ROUND = "{round_no}"\n' + lua[kind])
                        block = run_wrk(api, script, seconds)
                    else:
                        block = run_pgbench(direct_url, work / f"{kind}.sql", seconds, work / "pgbench-logs")
                except BenchError as exc:
                    sys.exit(f"{side} {kind}: {exc}\nnot a fair comparison, not measuring")
                if round_no > 0:
                    results.setdefault((kind, side), []).append(block)
        if round_no > 0:
            print(f"  round {round_no}/{config.rounds} done", flush=True)
    return results


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------


def report(results: Results, config: Config) -> float:
    med = statistics.median
    header = (
        f"{'kind':<8} {'API req/s':>9} {'(min..max)':>13} {'p50 ms':>7} {'p99 ms':>7} {'API cpu us':>10} "
        f"{'direct tps':>10} {'(min..max)':>13} {'p50 ms':>7} {'p99 ms':>7} {'API/direct':>10} {'(min..max)':>11}"
    )
    print(header)
    print("-" * len(header))
    for kind in config.kinds:
        api, direct = results[(kind, "API")], results[(kind, "direct")]
        shares = [a.rate / d.rate for a, d in zip(api, direct, strict=True)]
        cpu = med(b.server_cpu_us for b in api if b.server_cpu_us is not None)
        print(
            f"{kind:<8} {med(b.rate for b in api):>9.0f} "
            f"{f'({min(b.rate for b in api):.0f}..{max(b.rate for b in api):.0f})':>13} "
            f"{med(b.p50 for b in api):>7.2f} {med(b.p99 for b in api):>7.2f} {cpu:>10.0f} "
            f"{med(b.rate for b in direct):>10.0f} "
            f"{f'({min(b.rate for b in direct):.0f}..{max(b.rate for b in direct):.0f})':>13} "
            f"{med(b.p50 for b in direct):>7.2f} {med(b.p99 for b in direct):>7.2f} "
            f"{med(shares):>10.3f} {f'({min(shares):.2f}..{max(shares):.2f})':>11}"
        )
    per_round = []
    for n in range(config.rounds):
        api_cost = sum(1 / results[(k, "API")][n].rate for k in config.kinds)
        direct_cost = sum(1 / results[(k, "direct")][n].rate for k in config.kinds)
        per_round.append(api_cost / direct_cost)
    ordered = sorted(per_round)
    print(
        f"cost ratio (API / direct, the kinds summed) over {len(ordered)} rounds: median {med(ordered):.3f}, "
        f"min {ordered[0]:.3f}, max {ordered[-1]:.3f}"
    )
    get = med(b.rate for b in results[("get", "API")]) if ("get", "API") in results else None
    if get is not None:
        share = med(a.rate / d.rate for a, d in zip(results[("get", "API")], results[("get", "direct")], strict=True))
        print(
            f"goal (issue 10, 2 cores): get >= 3100 req/s and API/direct >= 0.4 -- reached {get:.0f} req/s, "
            f"{share:.2f}" + (f"; this machine has {len(os.sched_getaffinity(0))} cores" if get else "")
        )
    return med(ordered)


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

KINDS = ("get", "list", "create", "get_key")


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smoke test; noisy figures)")
    parser.add_argument("--seconds", type=int, help="length of one block, whole seconds (default 2; quick 1)")
    parser.add_argument("--rounds", type=int, help="measured rounds, after one warm-up (default 5; quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per API worker (default 8)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"which kinds, comma-separated ({','.join(KINDS)})")
    parser.add_argument(
        "--direct-session-check",
        action="store_true",
        help="the direct side also runs auth.check_session (the comparison then leaves it out)",
    )
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {', '.join(KINDS)}")
    config = Config(
        seconds=args.seconds or (1 if args.quick else 2),
        rounds=args.rounds or (1 if args.quick else 5),
        workers=args.workers,
        threads=args.threads,
        direct_session_check=args.direct_session_check,
        kinds=kinds,
    )
    if min(config.seconds, config.rounds, config.workers, config.threads) < 1:
        parser.error("--seconds, --rounds, --workers and --threads must be at least 1")
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
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    require_tools()
    settings: Settings = get_settings()
    run_tag = secrets.token_hex(4)
    setup_start = time.perf_counter()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    direct_url = role_url(settings.model_copy(update={"database_url": owner_url}), API_ROLE)
    print(f"database: {redacted(owner_url)} - {describe_server(owner_url)}")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tenantry-bench-")))
        local_redis = stack.enter_context(own_redis(work / "redis"))
        api = stack.enter_context(api_server(owner_url, local_redis.url(), work, secrets.token_urlsafe(48), config))
        fixture = make_fixture(api.url, owner_url, run_tag)
        check_sides(api, direct_url, fixture)
        print(
            f"setup in {time.perf_counter() - setup_start:.1f} s: tenant bench-{run_tag} (plan {PLAN}: "
            f"{PLAN_REQUESTS_PER_MINUTE} requests/min, the limiter runs on every request), "
            f"a project with {PAGE + 5} tasks, an API key"
        )
        print(
            f"API: tenantry serve --workers {config.workers} --threads {config.threads} on {api.url} "
            f"({len(api.pids())} processes), own Redis; client: wrk -t{WRK_THREADS} -c{CONNECTIONS}"
        )
        print(
            f"direct: pgbench -M prepared -c{CONNECTIONS} -j{WRK_THREADS} as {API_ROLE} under RLS; BEGIN; "
            "SET LOCAL app.*; "
            + ("auth.check_session; " if config.direct_session_check else "")
            + "the call(s); COMMIT (one statement each)"
        )
        print(
            f"machine: {len(os.sched_getaffinity(0))} cores shared by wrk/pgbench, the API, Redis and PostgreSQL; "
            f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(
            f"{config.rounds} rounds (+1 warm-up) x {config.seconds} s blocks per kind and side, interleaved, "
            "the side going first alternating; medians over rounds (min..max)"
        )
        started = time.perf_counter()
        results = measure(api, direct_url, fixture, config, work, run_tag)
        print(
            f"measured in {time.perf_counter() - started:.1f} s; load average at end "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        if api.process.poll() is not None:
            sys.exit(f"the API stopped during the run (see {api.log}); not reporting")
        print()
        ratio = report(results, config)
    print()
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the benchmark's API server and Redis were stopped")

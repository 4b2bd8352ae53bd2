"""The job runner's plumbing: the Dramatiq broker on the project's Redis, the worker
role's database, one JSON log line and metrics per run, and the Redis eviction check.

Every actor is declared with `@job(...)` (below), which gives it the project's defaults:
the queue, retries with exponential backoff (Dramatiq's Retries middleware: `max_retries`,
`min_backoff`, `max_backoff`), a time limit (Dramatiq's TimeLimit, which cannot interrupt
a blocking call, so the same limit is also the database's `statement_timeout` for the
actor's SQL), and no retry for a missing ops.* function (a database that needs
`tenantry db migrate` would fail the same way on every retry; the next scheduled run
tries again). Actors call ONE ops.* function each through `call_ops`, as the worker role:
the rules are in SQL.

Actors bind to the broker when they are declared, so `configure()` comes first: the
worker's entry module (jobs/worker.py) configures, then imports the actor modules. Code
that only enqueues (the scheduler, tests) needs no actor: `enqueue()` sends a message by
actor name.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Middleware, default_middleware
from prometheus_client import Counter, Histogram
from psycopg import sql
from psycopg.rows import dict_row
from pythonjsonlogger.orjson import OrjsonFormatter

from db.context import Context, Database
from db.settings import WORKER_ROLE, Settings

log = logging.getLogger("tenantry.jobs")

#: the one queue of the project's actors (Redis keys dramatiq:tenantry, dramatiq:tenantry.DQ, ...)
QUEUE = "tenantry"
WORKER = Context(actor_type="system", role=WORKER_ROLE)

#: Redis policies that never drop a key: queues and API-call counts must not be evicted
SAFE_POLICIES = frozenset({"noeviction"})

RUNS = Counter("tenantry_job_runs_total", "Job runs, by actor and outcome (ok, retry, failed)", ["actor", "outcome"])
DURATION = Histogram(
    "tenantry_job_duration_seconds",
    "How long a job run took",
    ["actor"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, float("inf")),
)
LAG = Histogram(
    "tenantry_job_lag_seconds",
    "From when a job was due (enqueued, or its retry's delay ended) to when it started",
    ["actor"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 3600, float("inf")),
)


class JobError(RuntimeError):
    """A job cannot run; the message says what to do."""


class MissingFunction(JobError):
    """The ops.* function an actor calls is not in the database (not migrated yet)."""


class RedisPolicyError(JobError):
    """Redis may evict keys, which would lose queued jobs and API-call counts."""


# -- logging ---------------------------------------------------------------------------------


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object per line on stderr for the `tenantry.jobs` logger (as the API's
    logs); in a Dramatiq worker process stderr is its log pipe to the main process."""
    logger = logging.getLogger("tenantry.jobs")
    if any(getattr(h, "_tenantry", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        OrjsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time", "levelname": "level"}
        )
    )
    handler._tenantry = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class RunLog(Middleware):
    """One JSON line and the metrics per run: actor, message, attempt, duration, lag,
    the actor's result (its counts) and the outcome: `ok`, `retry` (it failed and is
    retried after a backoff) or `failed` (not retried: retries exhausted, or an error
    that retrying cannot fix)."""

    def __init__(self) -> None:
        self._started: dict[str, tuple[float, int]] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # the Retries middleware counts the failed attempts so far in "retries"
        self._started[message.message_id] = (time.time(), message.options.get("retries", 0) + 1)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        ended = time.time()
        started, attempt = self._started.pop(message.message_id, (ended, 0))
        # due: when it was enqueued, or for a delayed retry when its delay ended
        due_ms = message.options.get("eta", message.message_timestamp)
        lag = max(0.0, started - due_ms / 1000)
        if exception is None:
            outcome = "ok"
        elif message.failed:  # set by the Retries middleware, whose hook ran before this one
            outcome = "failed"
        else:
            outcome = "retry"
        RUNS.labels(message.actor_name, outcome).inc()
        DURATION.labels(message.actor_name).observe(ended - started)
        LAG.labels(message.actor_name).observe(lag)
        record: dict[str, Any] = {
            "actor": message.actor_name,
            "message_id": message.message_id,
            "attempt": attempt,
            "outcome": outcome,
            "ms": round((ended - started) * 1000, 2),
            "lag_ms": round(lag * 1000, 2),
            "result": result if isinstance(result, dict) else None,
        }
        if "scheduled_tick" in message.options:
            record["tick"] = message.options["scheduled_tick"]
        if exception is not None:
            record["error"] = f"{type(exception).__name__}: {exception}".strip()
        (log.info if outcome == "ok" else log.warning)("job run", extra=record)

    after_skip_message = after_process_message


# -- the broker ------------------------------------------------------------------------------

_broker: RedisBroker | None = None
_settings: Settings | None = None


def make_broker(redis_url: str, *, metrics: bool = False) -> RedisBroker:
    """A Redis broker with Dramatiq's default middleware (time limit, retries, ...), our
    run log first (Dramatiq calls after-hooks in reverse order: it sees the retry
    decision), and Dramatiq's Prometheus middleware when `metrics`."""
    middleware: list[Middleware] = [RunLog(), *(m() for m in default_middleware), CurrentMessage()]
    if metrics:
        # imported only here: the module reads its folder and port from the environment
        # (`tenantry worker` sets them) and creates the folder as it is imported
        from dramatiq.middleware.prometheus import Prometheus

        middleware.append(Prometheus())
    return RedisBroker(url=redis_url, middleware=middleware)


def configure(settings: Settings) -> RedisBroker:
    """The process's broker on settings.redis_url, made current for @job actors."""
    global _broker, _settings
    if not settings.redis_url:
        raise JobError("the job runner needs TENANTRY_REDIS_URL (tenantry worker sets it)")
    configure_logging()
    _settings = settings
    _broker = make_broker(settings.redis_url, metrics=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
    dramatiq.set_broker(_broker)
    return _broker


def settings() -> Settings:
    if _settings is None:
        raise JobError("jobs.runtime.configure(settings) was not called")
    return _settings


def broker() -> RedisBroker:
    if _broker is None:
        raise JobError("jobs.runtime.configure(settings) must run before the actor modules are imported")
    return _broker


def enqueue(
    target: dramatiq.Broker, actor_name: str, *args: Any, options: dict[str, Any] | None = None
) -> dramatiq.Message:
    """Send a message to the actor named `actor_name` (on the project's queue), without
    importing it: the scheduler and the tests enqueue by name."""
    message: dramatiq.Message = dramatiq.Message(
        queue_name=QUEUE, actor_name=actor_name, args=args, kwargs={}, options=dict(options or {})
    )
    return target.enqueue(message)


# -- actors ------------------------------------------------------------------------------------

#: the running actor's time limit, for call_ops's statement_timeout
_time_limit_ms: contextvars.ContextVar[int] = contextvars.ContextVar("time_limit_ms", default=60_000)

F = TypeVar("F", bound=Callable[..., Any])


def job(
    *,
    time_limit_s: float = 120,
    max_retries: int = 5,
    min_backoff_s: float = 5,
    max_backoff_s: float = 300,
) -> Callable[[F], dramatiq.Actor]:
    """Declare an actor with the project's defaults: retried up to `max_retries` times
    with exponential backoff from `min_backoff_s` doubling to at most `max_backoff_s`
    (with jitter), stopped after `time_limit_s`. The function returns its counts (a
    dict), which the run's log line carries."""
    limit_ms = int(time_limit_s * 1000)

    def declare(fn: F) -> dramatiq.Actor:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            # a message may carry its own limit (send_with_options(time_limit=...)): it bounds
            # the SQL as well as the run
            message = CurrentMessage.get_current_message()
            token = _time_limit_ms.set(int(message.options.get("time_limit", limit_ms)) if message else limit_ms)
            try:
                return fn(*args, **kwargs)
            finally:
                _time_limit_ms.reset(token)

        return dramatiq.actor(
            actor_name=fn.__name__,
            queue_name=QUEUE,
            broker=broker(),
            time_limit=limit_ms,
            max_retries=max_retries,
            min_backoff=int(min_backoff_s * 1000),
            max_backoff=int(max_backoff_s * 1000),
            throws=(MissingFunction,),
        )(run)

    return declare


_db: Database | None = None
_db_lock = threading.Lock()


def database() -> Database:
    """The worker process's pools (one per role, opened on first use; worker role only)."""
    global _db
    with _db_lock:
        if _db is None:
            _db = Database(settings(), name="worker")
        return _db


def call_ops(function: str, *args: Any, **named: Any) -> list[dict[str, Any]]:
    """`SELECT * FROM ops.<function>(args..., name => value...)` in one transaction as the
    worker role, bounded by the running actor's time limit; its rows.

    A function the database lacks raises MissingFunction, naming it: the database is
    not migrated to a version that has it."""
    arguments = [sql.Placeholder()] * len(args) + [
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder()) for name in named
    ]
    statement = sql.SQL("SELECT * FROM {}({})").format(sql.Identifier("ops", function), sql.SQL(", ").join(arguments))
    # a little under the actor's limit, so the database ends the statement first and
    # the run fails with its error (Dramatiq's limit cannot interrupt a blocking call)
    timeout_ms = max(1000, _time_limit_ms.get() - 2000)
    with database().transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{timeout_ms}ms")))
        try:
            cur.execute(statement, (*args, *named.values()))
        except psycopg.errors.UndefinedFunction as exc:
            if (exc.diag.message_primary or "").startswith(f"function ops.{function}("):
                raise MissingFunction(
                    f"ops.{function} is not in the database ({exc.diag.message_primary}): "
                    "migrate it (`tenantry db migrate`) to a version that has it"
                ) from None
            raise
        return cur.fetchall()


def scalar(rows: list[dict[str, Any]]) -> Any:
    """The one value of a one-row, one-column result (a count)."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return next(iter(rows[0].values()))
    return len(rows)


# -- Redis must not evict ----------------------------------------------------------------------


def check_redis_policy(client: redis.Redis, *, allow_evicting: bool, warn: Callable[[str], None]) -> str:
    """The server's maxmemory-policy; RedisPolicyError if it may evict keys (any policy
    but noeviction: queued jobs and API-call counts would vanish under memory pressure),
    unless `allow_evicting`, then a loud warning. A server that hides its configuration
    (managed Redis without CONFIG) is warned about, not refused: it cannot be checked."""
    try:
        found: Any = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        warn(
            f"WARNING: cannot read Redis's maxmemory-policy ({exc}); make sure it is `noeviction`, or "
            "queued jobs and API-call counts may be evicted"
        )
        return "unknown"
    policy = str(found.get("maxmemory-policy") or found.get(b"maxmemory-policy") or "unknown")
    if policy in SAFE_POLICIES:
        return policy
    message = (
        f"Redis's maxmemory-policy is {policy!r}: under memory pressure Redis would evict queued jobs "
        "and API-call counts. Set `maxmemory-policy noeviction` (redis.conf, or CONFIG SET)"
    )
    if not allow_evicting:
        raise RedisPolicyError(message + ", or pass --allow-evicting-redis to run anyway.")
    warn(f"WARNING: {message}. Running anyway (--allow-evicting-redis).")
    return policy


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

"""`tenantry scheduler`: enqueues the periodic jobs, each once per tick, even when
several schedulers run (for availability, or by mistake).

No scheduler library: periodiq and APScheduler keep their schedule in one process and
have no lock across processes, so two of them would enqueue every job twice; the rule
needed here is a few lines on the Redis that holds the queues anyway:

- time is Redis's clock (TIME), so schedulers on several hosts agree on the ticks;
- a job due every N seconds has tick `floor(now / N)`; a scheduler that sees a new tick
  claims it with `SET tenantry:scheduler:<actor>:<tick> NX EX` and only the one that
  wins enqueues it (the message carries the tick in its options: the run's log line
  shows it). A scheduler that restarts within a tick finds it claimed.

Claim, then enqueue: a scheduler that dies between the two leaves that tick out, and the
next tick covers it (every job catches up on what is due when it runs, and all are
idempotent). The schedule is SCHEDULES below; `--speed` divides every interval (the demo
and the tests run minutes in seconds).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis

from jobs import runtime

log = logging.getLogger("tenantry.jobs")

LOCK_PREFIX = "tenantry:scheduler:"


@dataclass(frozen=True)
class Schedule:
    actor: str
    every_seconds: float


#: the periodic jobs and how often each is due
SCHEDULES = (
    Schedule("deliver_mail", 10),  # mail waits at most this long (plus delivery)
    Schedule("flush_api_calls", 60),  # API-call windows are one minute
    Schedule("rollup_usage", 60),
    Schedule("expire_quota_reservations", 60),
    Schedule("maintain_usage_partitions", 3600),
    Schedule("seal_audit", 300),  # audit rows wait at most this long for their seal
    Schedule("maintain_audit_partitions", 3600),  # next months' partitions; whole months past retention go
    Schedule("reconcile_quotas", 3600),
    Schedule("refresh_analytics", 900),  # analysts' rollups and summaries: at most 15 min old
    Schedule("sweep_sessions", 900),
    Schedule("sweep_invitations", 3600),
    Schedule("sweep_idempotency_keys", 900),
    Schedule("purge_login_failures", 3600),
    Schedule("export_billing", 3600),  # last month, once per format: a no-op once exported
    Schedule("advance_subscriptions", 300),
    Schedule("suspend_past_due", 3600),
    Schedule("fan_out_webhook_events", 5),  # an event waits at most this long for its deliveries
    Schedule("deliver_webhooks", 5),  # fans out too, then sends what is due
)


def redis_now(client: redis.Redis) -> float:
    seconds, micro = client.time()
    return int(seconds) + int(micro) / 1_000_000


class Scheduler:
    def __init__(
        self,
        client: redis.Redis,
        broker: dramatiq.Broker,
        schedules: tuple[Schedule, ...] = SCHEDULES,
        *,
        speed: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.client = client
        self.broker = broker
        self.schedules = schedules
        self.speed = speed
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._seen: dict[str, int] = {}

    def interval(self, schedule: Schedule) -> float:
        return schedule.every_seconds / self.speed

    def tick(self, now: float | None = None) -> list[tuple[str, int]]:
        """Enqueue every job whose tick is new to this scheduler and unclaimed; what it enqueued."""
        now = redis_now(self.client) if now is None else now
        enqueued = []
        for schedule in self.schedules:
            every = self.interval(schedule)
            tick = math.floor(now / every)
            if self._seen.get(schedule.actor) == tick:
                continue
            self._seen[schedule.actor] = tick
            # kept two intervals (at least a minute): long enough that no scheduler still sees it as new
            ttl = max(60, math.ceil(2 * every))
            if not self.client.set(f"{LOCK_PREFIX}{schedule.actor}:{tick}", self.name, nx=True, ex=ttl):
                continue  # another scheduler has it
            message = runtime.enqueue(self.broker, schedule.actor, options={"scheduled_tick": tick})
            enqueued.append((schedule.actor, tick))
            log.info(
                "job enqueued",
                extra={"actor": schedule.actor, "tick": tick, "message_id": message.message_id, "scheduler": self.name},
            )
        return enqueued

    def seconds_to_next(self, now: float) -> float:
        return min(self.interval(s) - (now % self.interval(s)) for s in self.schedules)

    def run(self, *, stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], Any] = time.sleep) -> None:
        """Tick until `stop()`; a Redis error is logged and retried a second later."""
        while not stop():
            try:
                self.tick()
                wait = self.seconds_to_next(redis_now(self.client))
            except redis.RedisError as exc:
                log.warning("scheduler: Redis unavailable, retrying", extra={"error": str(exc)})
                wait = 1.0
            sleep(min(max(wait, 0.01), 1.0))

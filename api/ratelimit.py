"""Rate limits: an atomic token bucket per principal in Redis, one Lua script.

Each API key, user or (for anonymous calls) client IP has a bucket holding up to
`capacity` tokens, refilled continuously at `refill_per_second`; a request takes one.
The script reads, refills, takes and writes in one EVALSHA, so concurrent requests on
several API hosts cannot overdraw a bucket, and it uses Redis's clock (TIME), so the
hosts' clocks do not matter. Idle buckets expire once full again.

When Redis is down the limiter FAILS OPEN: the request is allowed, marked `degraded`
and counted in tenantry_ratelimit_degraded_total. The outage itself is logged once, when
Redis stops answering (a warning), and once when it answers again (recovered); the gauge
tenantry_redis_up and /ready's `checks.redis` say which it is now (per API process). Rate limits protect capacity;
losing them for a while is better than refusing every request. What must never be
exceeded (quotas that are billed) is enforced in PostgreSQL, not here. Pass
fail_open=False to raise RateLimiterUnavailable instead.

A sick Redis must not slow every request either: give the client a short socket timeout
(0.05-0.2 s) AND few retries. redis-py 8 retries a failed command 10 times with backoff
by default, so a Redis that is down costs each request about 3 s (refused connections)
or over 2 s plus the backoff (timeouts) before the limiter can fail open. `connect()`
builds a client with the settings this module expects.

A local token cache per worker (issue 10: most requests should not wait for Redis):

* Batches. A key that is busy in this worker (at least 20 requests in the last second)
  takes several tokens in one EVALSHA, `batch` = min(32, capacity / 100, that rate / 10),
  and spends them locally for at most `HOLD_SECONDS` (1 s). The tokens are taken from the
  shared bucket atomically, so all workers together never admit more than the bucket
  allows (no over-admission). The cost is the other way: a worker holds at most batch - 1
  taken tokens that others cannot use, and drops what it has not used after a second,
  so near the limit a client may be refused up to (batch - 1) x workers requests a second
  early, and RateLimit-Remaining counts the held tokens as remaining. Plans under 200
  requests a minute (free 60) and keys under 20 requests a second are never batched:
  there every request is one EVALSHA, exact.
* Known empty. After Redis refuses a key's request, this worker refuses that key's next
  requests itself (`known_empty`, 429 with the same headers) until the time Redis said a
  token comes back, without asking Redis, and before the API opens a transaction. Exact:
  no token can appear earlier (only an operator deleting the bucket would make one).
  `hit` itself always asks Redis, so an outage still fails open.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace

import redis
from prometheus_client import Counter, Gauge
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("tenantry.api")

DEGRADED = Counter("tenantry_ratelimit_degraded_total", "Requests allowed because Redis was unavailable")
# under `tenantry serve` the workers' values are summed from files (api/server.py): the
# gauge is the most recent value any live worker set, one series as without workers
REDIS_UP = Gauge(
    "tenantry_redis_up",
    "1 while the rate limiter reaches Redis, 0 while it fails open",
    multiprocess_mode="livemostrecent",
)

#: what "Redis is not usable" looks like: unreachable, slow, or something that is not Redis
#: answering on its port (a wrong URL, a port reused by another server)
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse)

# KEYS[1] bucket; ARGV: capacity, refill per second, cost, and up to how many tokens to
# take when `cost` are there (a worker's batch, >= cost; api/ratelimit.py's local cache).
# Returns {allowed 0/1, tokens left (floor), ms until full, ms until `cost` tokens, taken}.
_TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local want = math.max(cost, tonumber(ARGV[4] or ARGV[3]))
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local taken = 0
if tokens >= cost then
  taken = math.max(cost, math.min(want, math.floor(tokens)))
  tokens = tokens - taken
  allowed = 1
end
local full_ms = 0
local wait_ms = 0
if rate > 0 then
  full_ms = math.ceil((capacity - tokens) * 1000 / rate)
  if allowed == 0 then wait_ms = math.ceil((cost - tokens) * 1000 / rate) end
else
  -- no refill: "never", reported as a day (a full bucket is full now, though)
  if tokens < capacity then full_ms = 86400000 end
  if allowed == 0 then wait_ms = 86400000 end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.max(1000, full_ms))
return {allowed, math.floor(tokens), full_ms, wait_ms, taken}
"""

#: how long a worker spends a batch of tokens before it drops what is left
HOLD_SECONDS = 1.0
#: the most tokens a worker takes at once, and the smallest rate batched (requests a second)
MAX_BATCH = 32
MIN_BATCHED_RATE = 20
#: local entries kept before expired ones are swept
MAX_LOCAL_KEYS = 10_000


class RateLimiterUnavailable(RuntimeError):
    """Redis could not be reached and the limiter is configured to fail closed."""


def connect(url: str, *, timeout: float = 0.1) -> redis.Redis:
    """A client for the limiter: short timeouts and one immediate retry (which replaces
    a pooled connection that went stale, e.g. after Redis restarted), no backoff."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1)
    )


@dataclass(frozen=True)
class Limit:
    capacity: int
    refill_per_second: float

    def __post_init__(self) -> None:
        # a negative rate or capacity would make the script hand out tokens, not take them
        if self.capacity < 0 or self.refill_per_second < 0:
            raise ValueError(f"a limit needs capacity >= 0 and refill_per_second >= 0: {self}")

    @classmethod
    def per_minute(cls, requests: int) -> Limit:
        return cls(capacity=requests, refill_per_second=requests / 60)


def limit_for_plan(requests_per_minute: int | None) -> Limit | None:
    """The limit of a plan's api_requests_per_minute (None: unlimited)."""
    return None if requests_per_minute is None else Limit.per_minute(requests_per_minute)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int | None
    degraded: bool = False

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields (draft), and Retry-After when refused."""
        if self.degraded:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w=60",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after or 1)
        return headers


@dataclass
class _Local:
    """What this worker knows of one key: held tokens, its recent rate, a known-empty time."""

    limit: Limit
    held: int = 0
    held_until: float = 0.0
    remaining: int = 0  # the bucket's own count when the batch was taken
    reset_seconds: int = 0
    window_start: float = 0.0
    in_window: int = 0  # requests in the current second
    last_rate: int = 0  # requests in the previous second
    empty_until: float = 0.0
    refusal: Decision | None = None


class RateLimiter:
    def __init__(
        self, client: redis.Redis, *, prefix: str = "tenantry:rl:", fail_open: bool = True, local: bool = True
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.fail_open = fail_open
        self.local = local  # the per-worker token cache (module docstring); False: every hit asks Redis
        self._local: dict[str, _Local] = {}
        self._local_lock = threading.Lock()
        self._script = client.register_script(_TOKEN_BUCKET)
        # Redis's state as the last command saw it, shared by the worker's threads: the
        # lock makes exactly one of them log each change
        self._up = True
        self._lock = threading.Lock()
        REDIS_UP.set(1)

    @property
    def available(self) -> bool:
        """Whether Redis answered the last command (False: limits fail open now)."""
        return self._up

    def _seen(self, up: bool, error: Exception | None = None) -> None:
        """Record whether Redis answered; log the change from up to down and back, once each."""
        if self._up == up:  # the usual case, without the lock (a change is re-checked under it)
            return
        with self._lock:
            if self._up == up:
                return
            self._up = up
            REDIS_UP.set(1 if up else 0)
        if up:
            log.info("rate limiter recovered: Redis answers again, rate limits apply")
        else:
            log.warning(
                "rate limiter unavailable: requests are allowed without rate limits until Redis answers again",
                extra={"error": f"{type(error).__name__}: {error}"},
            )

    def ping(self) -> bool:
        """Whether Redis answers now (for /ready); the answer counts as any command's."""
        try:
            self.client.ping()
        except UNAVAILABLE as exc:
            self._seen(False, exc)
            return False
        self._seen(True)
        return True

    def known_empty(self, key: str) -> Decision | None:
        """The refusal of `key`'s next request if this worker knows its bucket is empty
        (Redis refused it and said when a token comes back); None otherwise. No Redis."""
        entry = self._local.get(key)
        if entry is None or entry.refusal is None:
            return None
        left = entry.empty_until - time.monotonic()
        if left <= 0:
            return None
        return replace(entry.refusal, retry_after=max(1, math.ceil(left)))

    def _entry(self, key: str, limit: Limit, now: float) -> _Local:
        """The key's local entry (under the lock), its rate window moved on to `now`."""
        entry = self._local.get(key)
        if entry is None or entry.limit != limit:
            if len(self._local) >= MAX_LOCAL_KEYS:
                self._local = {k: e for k, e in self._local.items() if e.held_until > now or e.empty_until > now}
            entry = self._local[key] = _Local(limit, window_start=now)
        if now - entry.window_start >= 1.0:
            entry.last_rate = entry.in_window if now - entry.window_start < 2.0 else 0
            entry.window_start, entry.in_window = now, 0
        entry.in_window += 1
        return entry

    def hit(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """Take `cost` tokens from the bucket `key` if it has them (one atomic EVALSHA,
        or a token of this worker's batch: see the module's docstring)."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0 (a negative cost would add tokens): {cost}")
        want = cost
        if self.local and cost == 1:
            now = time.monotonic()
            with self._local_lock:
                entry = self._entry(key, limit, now)
                if entry.held > 0 and now < entry.held_until:
                    entry.held -= 1
                    return Decision(True, limit.capacity, entry.remaining + entry.held, entry.reset_seconds, None)
                entry.held = 0
                if entry.last_rate >= MIN_BATCHED_RATE:
                    want = max(1, min(MAX_BATCH, limit.capacity // 100, entry.last_rate // 10))
        try:
            allowed, remaining, full_ms, wait_ms, taken = self._script(
                keys=[self.prefix + key], args=[limit.capacity, limit.refill_per_second, cost, want]
            )
        except UNAVAILABLE as exc:  # all mean "no limiter right now"
            self._seen(False, exc)
            if not self.fail_open:
                raise RateLimiterUnavailable(str(exc)) from exc
            DEGRADED.inc()
            return Decision(True, limit.capacity, limit.capacity, 0, None, degraded=True)
        self._seen(True)
        extra = int(taken) - cost if allowed else 0  # this worker's batch, beyond this request
        decision = Decision(
            allowed=bool(allowed),
            limit=limit.capacity,
            remaining=int(remaining) + extra,
            reset_seconds=math.ceil(int(full_ms) / 1000),
            retry_after=max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else None,
        )
        if self.local and cost == 1 and (extra > 0 or not allowed):
            now = time.monotonic()
            with self._local_lock:
                entry = self._entry(key, limit, now)
                entry.in_window -= 1  # counted when the hit began
                if allowed:
                    entry.held, entry.held_until = extra, now + HOLD_SECONDS
                    entry.remaining, entry.reset_seconds = int(remaining), decision.reset_seconds
                else:
                    entry.empty_until, entry.refusal = now + int(wait_ms) / 1000, decision
        return decision

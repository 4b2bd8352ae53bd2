"""API calls counted in Redis: the key format shared by the API that counts them
(api/metering.py) and the job that flushes them into usage events (jobs/api_calls.py).

api/ and jobs/ may not import each other (tests/test_architecture.py), yet both must
agree exactly on where a count lives, so the contract is here, in db/, which both
import. It is Redis-only (no database access): the counting script, the key names, the
hash field of a caller, and the flush's reading and deleting of closed windows.

- `tenantry:api_calls:w:<window start, epoch seconds>`: one hash per window (a minute by
  default: settings.api_call_window_seconds);
  field `<tenant id>|key:<key id>` or `<tenant id>|user:<user id>`, value the calls.
- `tenantry:api_calls:windows`: a sorted set of the windows that hold counts (score and
  member: the window start), so the flush finds them without SCAN.

The window is chosen by Redis's clock (TIME, inside the counting script), not by the API
host's, and the flush closes a window only once Redis's clock has passed its end: the
script runs atomically, so no count can land in a window after the flush read it. A
flushed window is deleted only after ops.record_api_calls committed; a crash in between
re-flushes the same counts, which the function's deterministic event ids
(`api_calls:<key>:<window start>`) make harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis

#: the default window; settings.api_call_window_seconds is the one in force (API and worker alike)
WINDOW_SECONDS = 60
PREFIX = "tenantry:api_calls:"
WINDOWS_KEY = PREFIX + "windows"
#: a window's hash outlives an idle flusher this long, then Redis drops it (and the
#: flush forgets its entry): without a flusher the counts cannot grow Redis forever
KEEP_SECONDS = 7 * 24 * 3600

# KEYS[1] the windows set; ARGV: field, window seconds, window key prefix, keep seconds,
# calls (how many to add: an API worker sends its calls of the last second at once).
# Returns the window start (epoch seconds, by Redis's clock).
COUNT_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
local window = now - (now % tonumber(ARGV[2]))
local key = ARGV[3] .. window
redis.call('HINCRBY', key, ARGV[1], tonumber(ARGV[5] or '1'))
redis.call('EXPIRE', key, tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], 'NX', window, window)
return window
"""


def window_key(start: int) -> str:
    return f"{PREFIX}w:{start}"


def caller_field(tenant_id: uuid.UUID, kind: str, actor_id: uuid.UUID) -> str:
    """The hash field of a caller: an API key (`kind` 'api_key') or a user ('user')."""
    return f"{tenant_id}|{'key' if kind == 'api_key' else 'user'}:{actor_id}"


def count_args(
    tenant_id: uuid.UUID, kind: str, actor_id: uuid.UUID, window_seconds: int = WINDOW_SECONDS, calls: int = 1
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of COUNT_SCRIPT for `calls` calls of this caller."""
    field = caller_field(tenant_id, kind, actor_id)
    return [WINDOWS_KEY], [field, window_seconds, f"{PREFIX}w:", KEEP_SECONDS, calls]


@dataclass(frozen=True)
class Window:
    start: int  # epoch seconds
    counts: list[dict[str, Any]]  # ops.record_api_calls' p_counts: [{"tenant_id", "key", "calls"}]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def closed_windows(client: redis.Redis, limit: int = 60, window_seconds: int = WINDOW_SECONDS) -> list[Window]:
    """The oldest `limit` windows that Redis's clock has passed, with their counts."""
    seconds, _micro = client.time()  # the sync client: (seconds, microseconds)
    now = int(seconds)
    current = now - now % window_seconds
    starts: Any = client.zrangebyscore(WINDOWS_KEY, "-inf", f"({current}", start=0, num=limit)
    windows = []
    for raw in starts:
        start = int(_text(raw))
        fields: Any = client.hgetall(window_key(start))
        counts = []
        for name, calls in sorted((_text(k), int(_text(v))) for k, v in fields.items()):
            tenant_id, _, key = name.partition("|")
            counts.append({"tenant_id": tenant_id, "key": key, "calls": calls})
        windows.append(Window(start, counts))
    return windows


def forget_window(client: redis.Redis, start: int) -> None:
    """Delete a flushed window (its hash and its entry), in one MULTI."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(window_key(start))
        pipe.zrem(WINDOWS_KEY, start)
        pipe.execute()

"""Sweeps: rows whose life ended, deleted by the worker in bounded batches.

Each actor calls one ops.* function (the rules of what has ended are in SQL, beside
the feature's other rules: 140_sessions.sql, 120_invitations.sql, 150_idempotency.sql);
a call deletes at most one batch, and a run calls again while full batches go, up to
MAX_BATCHES, so that one run stays short and a backlog is worked off over a few runs.
Idempotent: what is gone stays gone, and a second run finds nothing.
"""

from __future__ import annotations

from jobs.runtime import call_ops, job, scalar

BATCH = 1000
MAX_BATCHES = 20


def _batches(function: str) -> dict[str, int]:
    deleted = batches = 0
    while batches < MAX_BATCHES:
        count = int(scalar(call_ops(function, p_batch=BATCH)))
        deleted += count
        batches += 1
        if count < BATCH:
            break
    return {"deleted": deleted, "batches": batches}


@job(time_limit_s=120)
def sweep_sessions() -> dict[str, int]:
    """Sessions that ended more than a week ago, with their refresh tokens."""
    return _batches("sweep_sessions")


@job(time_limit_s=120)
def sweep_invitations() -> dict[str, int]:
    """Invitations never accepted that expired or were revoked more than 30 days ago."""
    return _batches("sweep_invitations")


@job(time_limit_s=120)
def sweep_idempotency_keys() -> dict[str, int]:
    """Idempotency keys whose replay window ended."""
    return _batches("sweep_idempotency_keys")


@job(time_limit_s=60)
def purge_login_failures() -> dict[str, int]:
    """Login failures (lockout counters) nobody has added to for a day."""
    return {"deleted": int(scalar(call_ops("purge_login_failures")))}

"""Mail delivery as a job: one pass over the outbox (jobs/mail.py: claim, send, mark;
the same path as `tenantry mail deliver --once`). Delivery is at least once, so a run
that is retried, or two runs at once (claims are SKIP LOCKED), send nothing twice on
purpose; a message that failed is retried by the outbox's own backoff, not by the job."""

from __future__ import annotations

from jobs import mail
from jobs.runtime import database, job, settings


@job(time_limit_s=300, max_retries=0)
def deliver_mail() -> dict[str, int]:
    report = mail.deliver(database(), settings())
    return {"sent": report.sent, "failed": report.failed, "given_up": report.given_up}

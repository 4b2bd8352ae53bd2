"""The module a Dramatiq worker process loads (`tenantry worker` runs
`dramatiq jobs.worker:broker`): the broker from the settings, then every actor module.

A new actor module is added to ACTOR_MODULES, and its periodic schedule, if it has one,
to jobs/scheduler.py.
"""

from __future__ import annotations

import importlib

from db.settings import get_settings
from jobs import runtime

ACTOR_MODULES = (
    "jobs.sweeps",
    "jobs.usage",
    "jobs.quotas",
    "jobs.api_calls",
    "jobs.outbox",
    "jobs.analytics",
    "jobs.webhooks",
    "jobs.audit",
    "jobs.billing",
)

broker = runtime.configure(get_settings())
for _module in ACTOR_MODULES:
    importlib.import_module(_module)

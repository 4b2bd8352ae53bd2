"""Jobs: work done outside a request, by the worker role through ops.* functions.

Now: mail delivery (jobs/mail.py, `tenantry mail deliver`). Later: the Dramatiq actors
and the scheduler (rollups, exports, audit sealing, webhooks, retention), of which mail
delivery becomes one.
"""

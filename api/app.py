"""The Falcon app: `create_app(settings)` wires the database, Redis, the pipeline and routes."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import falcon

from api import encoding, errors, headers, logs, openapi, ratelimit
from api.metering import Meter
from api.pipeline import Pipeline, RequestIdAndMetrics
from api.ratelimit import RateLimiter
from api.resources import access, account, admin, audit, auth, billing, ops, quotas, usage, webhooks, work
from api.resources.base import UUIDConverter
from api.retry import RetryingApp
from db.context import Database
from db.settings import API_ROLE, Settings, get_settings


def _json_handler() -> falcon.media.JSONHandler:
    return falcon.media.JSONHandler(dumps=encoding.dumps)


def routes(
    db: Database, limiter: RateLimiter | None, settings: Settings, draining: Callable[[], bool] | None = None
) -> list[tuple[str, Any]]:
    """Every path the API serves, with its resource."""
    sessions = auth.Sessions(db, settings)
    return [
        ("/health", ops.HealthResource()),
        ("/ready", ops.ReadyResource(db, limiter, draining)),
        ("/metrics", ops.MetricsResource(settings.metrics_token)),
        ("/v1/signup", auth.SignUpResource(sessions)),
        ("/v1/auth/login", auth.LoginResource(sessions)),
        ("/v1/auth/refresh", auth.RefreshResource(sessions)),
        ("/v1/auth/logout", auth.LogoutResource()),
        ("/v1/auth/me", account.MeResource()),  # GET: who am I; PATCH: the profile
        ("/v1/auth/password", account.PasswordChangeResource()),
        ("/v1/auth/password-reset", account.PasswordResetResource(db, settings)),
        ("/v1/auth/password-reset/confirm", account.PasswordResetConfirmResource(db)),
        ("/v1/auth/sessions", auth.SessionsResource()),
        ("/v1/auth/sessions/{tenant_id:uuid}/{session_id:uuid}", auth.SessionResource()),
        ("/v1/auth/switch-tenant", auth.SwitchTenantResource(sessions)),
        ("/v1/auth/verify-email", auth.VerifyEmailResource(db)),
        ("/v1/auth/verify-email/resend", auth.VerificationResendResource(db)),
        ("/v1/tenant", account.TenantResource()),  # GET: the tenant; PATCH: name and settings
        ("/v1/members", access.MembersResource()),
        ("/v1/members/{user_id:uuid}", access.MemberResource()),
        ("/v1/invitations", access.InvitationsResource()),
        ("/v1/invitations/accept", access.InvitationAcceptResource(db)),
        ("/v1/invitations/{invitation_id:uuid}", access.InvitationResource()),
        ("/v1/invitations/{invitation_id:uuid}/resend", access.InvitationResendResource()),
        ("/v1/api-keys", access.ApiKeysResource()),
        ("/v1/api-keys/{key_id:uuid}", access.ApiKeyResource()),
        ("/v1/api-keys/{key_id:uuid}/rotate", access.ApiKeyRotateResource()),
        ("/v1/projects", work.ProjectsResource()),
        ("/v1/projects/{project_id:uuid}", work.ProjectResource()),
        ("/v1/tasks", work.TasksResource()),
        ("/v1/tasks/{task_id:uuid}", work.TaskResource()),
        ("/v1/usage", usage.UsageResource()),  # the current billing period vs limits
        ("/v1/usage/events", usage.UsageEventsResource()),
        ("/v1/usage/history", usage.UsageHistoryResource()),
        ("/v1/usage/metrics", usage.UsageMetricsResource()),
        ("/v1/admin/tenants", admin.AdminTenantsResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}", admin.AdminTenantResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/suspend", admin.AdminTenantSuspendResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/reactivate", admin.AdminTenantReactivateResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/actions", admin.AdminTenantActionsResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/plan", quotas.AdminTenantPlanResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/quotas", quotas.AdminTenantQuotasResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/quotas/{resource}", quotas.AdminTenantQuotaResource()),
        ("/v1/quotas", quotas.QuotasResource()),
        ("/v1/quotas/reservations", quotas.ReservationsResource()),
        ("/v1/quotas/reservations/{key}/confirm", quotas.ReservationConfirmResource()),
        ("/v1/quotas/reservations/{key}/release", quotas.ReservationReleaseResource()),
        ("/v1/projects/{project_id:uuid}/restore", quotas.ProjectRestoreResource()),
        ("/v1/tasks/{task_id:uuid}/restore", quotas.TaskRestoreResource()),
        ("/v1/webhooks", webhooks.WebhooksResource(settings)),
        ("/v1/webhooks/{endpoint_id:uuid}", webhooks.WebhookResource(settings)),
        ("/v1/webhooks/{endpoint_id:uuid}/deliveries", webhooks.WebhookDeliveriesResource()),
        ("/v1/webhooks/{endpoint_id:uuid}/deliveries/{delivery_id:uuid}", webhooks.WebhookDeliveryResource()),
        (
            "/v1/webhooks/{endpoint_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
            webhooks.WebhookRedeliverResource(),
        ),
        ("/v1/webhooks/{endpoint_id:uuid}/test", webhooks.WebhookTestResource()),
        ("/v1/audit", audit.AuditResource()),
        ("/v1/audit/export", audit.AuditExportResource(db)),
        ("/v1/billing/subscription", billing.SubscriptionResource()),
        ("/v1/billing/subscription/upgrade", billing.SubscriptionUpgradeResource()),
        ("/v1/billing/subscription/downgrade", billing.SubscriptionDowngradeResource()),
        ("/v1/billing/subscription/cancel", billing.SubscriptionCancelResource()),
        ("/v1/billing/usage", billing.UsageCostResource()),  # the current month and its projected cost
        ("/v1/billing/invoices", billing.InvoicesResource()),
        ("/v1/billing/invoices/{period}", billing.InvoiceResource()),
        ("/v1/billing/provider-events", billing.ProviderEventsResource(db, settings)),
        ("/v1/admin/tenants/{tenant_id:uuid}/subscription", billing.AdminSubscriptionResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/subscription/plan", billing.AdminSubscriptionPlanResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/subscription/cancel", billing.AdminSubscriptionCancelResource()),
        ("/v1/admin/tenants/{tenant_id:uuid}/subscription/payment-method", billing.AdminPaymentMethodResource()),
        ("/v1/openapi.json", ops.OpenApiResource()),  # its document is set once built
    ]


def create_app(
    settings: Settings | None = None, db: Database | None = None, draining: Callable[[], bool] | None = None
) -> falcon.App:
    """The WSGI app. Opens its pools and Redis client here: call it once per process.

    `db` must use dict rows; by default one is made from the settings (the caller may
    pass its own to close it later, as tests do). `draining` says when the server is
    stopping (api/server.py): /ready answers 503 from then on."""
    settings = settings or get_settings()
    logs.configure()
    db = db or Database(settings, dict_rows=True, name="api")
    db.pool(API_ROLE)  # open now: a wrong DSN fails at start, not on the first request
    redis_client = None
    limiter = None
    if settings.redis_url:
        # short timeouts, no retry storm: a sick Redis must not slow the API (the limiter fails open)
        redis_client = ratelimit.connect(settings.redis_url, timeout=0.2)
        limiter = RateLimiter(redis_client)

    # API calls counted in Redis (api/metering.py)
    meter = (
        Meter(redis_client, settings.api_call_window_seconds, settings.metering_flush_seconds) if redis_client else None
    )
    middleware: list[Any] = [
        # first, so its process_response runs last: every answer gets the headers, errors included
        headers.SecurityHeaders(settings.trusted_proxy_list(), settings.hsts_max_age),
        RequestIdAndMetrics(settings.trusted_proxy_list()),
        headers.Cors(settings.cors_origin_list()),  # answers preflights before authentication
        Pipeline(settings, db, limiter, meter),
    ]
    # transient database failures are run again before the client sees them (api/retry.py)
    app = RetryingApp(settings, middleware=middleware)
    handler = _json_handler()
    app.req_options.media_handlers.update({falcon.MEDIA_JSON: handler})
    app.resp_options.media_handlers.update({falcon.MEDIA_JSON: handler, errors.PROBLEM_JSON: handler})
    app.req_options.strip_url_path_trailing_slash = True
    # `{x:uuid}` in a route accepts ids in the canonical 8-4-4-4-12 form only (Falcon's own
    # converter also takes braces, urn:uuid: and undashed forms)
    app.router_options.converters["uuid"] = UUIDConverter
    errors.install(app)

    table = routes(db, limiter, settings, draining)
    try:
        release = version("tenantry")
    except PackageNotFoundError:  # pragma: no cover
        release = "0"
    document = openapi.build(table, release)
    for path, resource in table:
        if isinstance(resource, ops.OpenApiResource):
            resource.document = document
        app.add_route(path, resource)
    return app

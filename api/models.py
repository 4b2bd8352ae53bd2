"""Request and response bodies: validated at the edge (transport), documented in OpenAPI.

Only the shape is checked here (types, required fields, sizes that protect the server).
The rules (name uniqueness, allowed statuses, scopes, owners) are the database's; its
errors come back as problems naming the field.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["owner", "admin", "developer", "member", "billing", "viewer"]
TaskStatus = Literal["todo", "in_progress", "done", "cancelled"]
Priority = Literal["low", "normal", "high", "urgent"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    """One page of a list: keyset pagination, `next_cursor` null on the last page."""

    items: list[Item]
    next_cursor: str | None


# -- auth ---------------------------------------------------------------------------------


class SignUp(Body):
    email: str = Field(max_length=254)
    name: str = Field(max_length=200)
    password: str = Field(min_length=10, max_length=200)
    tenant_slug: str = Field(max_length=63)
    tenant_name: str = Field(max_length=200)
    # no plan: a new tenant starts on the free plan; paid plans come from billing or a
    # platform administrator


class VerifyEmail(Body):
    token: str = Field(max_length=200, description="The token of the verify_email mail.")


class VerificationResend(Body):
    email: str = Field(max_length=254)


class EmailVerified(BaseModel):
    user_id: uuid.UUID
    email: str
    email_verified_at: dt.datetime


class Login(Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)
    tenant_id: uuid.UUID | None = None


class Refresh(Body):
    refresh_token: str = Field(max_length=200)


class SwitchTenant(Body):
    tenant_id: uuid.UUID


class Tokens(BaseModel):
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str
    expires_in: int
    refresh_token: str
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    scopes: list[str]


class SignedUp(Tokens):
    email_verified: bool = Field(
        description="False: a verify_email mail was sent. Until verified the account uses its own tenant "
        "but joins no other, and a verified sign-up of the same address replaces it."
    )


class Me(BaseModel):
    actor_type: str
    actor_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str | None
    name: str | None
    role: str | None
    scopes: list[str]
    is_platform_admin: bool | None


class Session(BaseModel):
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    created_at: dt.datetime
    last_refreshed_at: dt.datetime
    expires_at: dt.datetime
    user_agent: str | None
    ip: str | None


class Sessions(BaseModel):
    items: list[Session]


class Revoked(BaseModel):
    revoked: int


# -- members and invitations ------------------------------------------------------------


class Member(BaseModel):
    user_id: uuid.UUID
    email: str | None  # None: an account waiting to verify the address it claimed
    name: str
    role: str
    created_at: dt.datetime


class MemberPage(Page[Member]):
    pass


class MemberChange(Body):
    role: Role


class Membership(BaseModel):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str


class InvitationCreate(Body):
    email: str = Field(max_length=254)
    role: Role = "member"


class Invitation(BaseModel):
    invitation_id: uuid.UUID
    email: str
    role: str
    invited_by: uuid.UUID | None
    created_at: dt.datetime
    sent_at: dt.datetime
    expires_at: dt.datetime
    accepted_at: dt.datetime | None
    revoked_at: dt.datetime | None
    status: Literal["pending", "accepted", "revoked", "expired"]


class InvitationPage(Page[Invitation]):
    pass


class InvitationAccept(Body):
    token: str = Field(max_length=200, description="The token of the invitation mail.")
    name: str | None = Field(default=None, max_length=200, description="For a new account only.")
    password: str | None = Field(default=None, min_length=10, max_length=200, description="For a new account only.")


class Accepted(BaseModel):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    created_user: bool


# -- API keys ------------------------------------------------------------------------------


class ApiKeyCreate(Body):
    name: str = Field(max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=20)
    expires_at: dt.datetime | None = None


class ApiKeyRotate(Body):
    grace_seconds: int = Field(default=0, ge=0, le=30 * 86400)


class ApiKey(BaseModel):
    key_id: uuid.UUID
    prefix: str
    name: str
    scopes: list[str]
    created_by: uuid.UUID
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    rotated_to: uuid.UUID | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None
    use_count: int


class ApiKeyWithSecret(ApiKey):
    key: str = Field(description="The full key, tnt_<prefix>_<secret>. Shown once; only its hash is kept.")


class ApiKeys(BaseModel):
    items: list[ApiKey]


# -- projects and tasks ------------------------------------------------------------------


class ProjectCreate(Body):
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=10000)


class ProjectChange(Body):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10000)


class Project(BaseModel):
    project_id: uuid.UUID
    name: str
    description: str
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


class ProjectPage(Page[Project]):
    pass


class TaskCreate(Body):
    project_id: uuid.UUID
    title: str = Field(max_length=500)
    description: str = Field(default="", max_length=10000)
    status: TaskStatus = "todo"
    priority: Priority = "normal"
    assignee_id: uuid.UUID | None = None
    due_date: dt.date | None = None


class TaskChange(Body):
    project_id: uuid.UUID | None = None
    title: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=10000)
    status: TaskStatus | None = None
    priority: Priority | None = None
    assignee_id: uuid.UUID | None = None
    due_date: dt.date | None = None


class Task(BaseModel):
    task_id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str
    status: str
    priority: str
    assignee_id: uuid.UUID | None
    due_date: dt.date | None
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


class TaskPage(Page[Task]):
    pass


# -- tenants -------------------------------------------------------------------------------


class Tenant(BaseModel):
    tenant_id: uuid.UUID
    slug: str
    name: str
    plan_id: str
    status: str
    settings: dict
    created_at: dt.datetime
    updated_at: dt.datetime
    suspended_at: dt.datetime | None
    deleted_at: dt.datetime | None


class TenantPage(Page[Tenant]):
    pass


class TenantCreate(Body):
    slug: str = Field(max_length=63)
    name: str = Field(max_length=200)
    plan: str = Field(default="free", max_length=31)
    owner_user_id: uuid.UUID


class AdminAction(BaseModel):
    action_id: uuid.UUID
    admin_user_id: uuid.UUID
    action: str
    request_id: str | None
    at: dt.datetime
    details: dict[str, Any] | None = Field(
        default=None, description="What it was about: a plan, a quota's resource and limit."
    )


class AdminActions(BaseModel):
    items: list[AdminAction]


# -- accounts: password reset and change, profile, tenant settings ------------------------


class PasswordResetRequest(Body):
    email: str = Field(max_length=254)


class PasswordResetRequested(BaseModel):
    detail: str = Field(description="The same sentence whether or not the email belongs to an account.")


class PasswordResetConfirm(Body):
    token: str = Field(max_length=200, description="The token of the password_reset mail.")
    password: str = Field(min_length=10, max_length=200, description="The new password.")


class PasswordChange(Body):
    current_password: str = Field(max_length=200)
    new_password: str = Field(min_length=10, max_length=200)


class ProfileChange(Body):
    name: str = Field(max_length=200)


class TenantChange(Body):
    name: str | None = Field(default=None, max_length=200)
    settings: dict[str, str | None] | None = Field(
        default=None,
        max_length=20,
        description="Merged into the tenant's settings; a key set to null is removed. Keys: timezone "
        "(e.g. Europe/Berlin), locale (e.g. de-DE), week_start (monday, sunday, saturday), "
        "default_task_priority (low, normal, high, urgent).",
    )


# -- usage metering (sql/repeatable/400_usage.sql) -------------------------------------------
# The shape only: the database checks metrics, quantities, times and properties against
# the catalog and the lateness window, and names the first bad event (events[i].field).


class UsageEvent(Body):
    event_id: str = Field(
        min_length=1, max_length=200, description="The client's id of the event: a retry with the same id counts once."
    )
    metric: str = Field(max_length=63, description="A metric of GET /v1/usage/metrics.")
    quantity: float = Field(default=1, ge=0, description="How much (default 1); count metrics ignore it.")
    occurred_at: dt.datetime | None = Field(
        default=None, description="When it happened, with a UTC offset; at most 7 days ago. Default: now."
    )
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Free properties; a unique_count metric needs its property (user_id)."
    )


class UsageBatch(Body):
    events: list[UsageEvent] = Field(min_length=1, max_length=1000)


class UsageIngested(BaseModel):
    accepted: int = Field(description="Events stored and counted now.")
    duplicates: int = Field(description="Events whose id was seen before (in an earlier batch or this one).")


class Metric(BaseModel):
    metric: str
    unit: str
    aggregation: Literal["sum", "count", "max", "unique_count", "latest"]
    property: str | None
    description: str


class Metrics(BaseModel):
    items: list[Metric]


class UsageBucket(BaseModel):
    metric: str
    granularity: Literal["hour", "day", "period"]
    bucket_start: dt.datetime
    value: str = Field(description='The exact decimal value, as a string (e.g. "12.5").')
    events: int
    updated_at: dt.datetime


class UsagePage(Page[UsageBucket]):
    pass


class UsageNow(BaseModel):
    metric: str
    unit: str
    aggregation: str
    value: str = Field(description="The exact decimal value so far this period, as a string.")
    events: int
    limit: str | None = Field(description="The plan's limit for the period, if it sets one (a decimal string).")
    updated_at: dt.datetime | None = Field(description="When the last rollup changed the value (it lags by one run).")


class UsageSummary(BaseModel):
    period_start: dt.datetime
    items: list[UsageNow]


# -- quotas (api/resources/quotas.py) ------------------------------------------------------


class Quota(BaseModel):
    resource: str
    kind: Literal["counted", "metered"]
    unit: str
    used: float = Field(description="Counted: live now. Metered: used in the current billing period.")
    reserved: float = Field(description="Metered: units held by open reservations (0 for counted resources).")
    limit: float | None = Field(description="The limit in force (null: unlimited).")
    remaining: float | None = Field(description="limit - used - reserved, at least 0 (null: unlimited).")
    warning: bool = Field(description="used + reserved reached warn_at_percent of the limit.")
    warn_at_percent: int
    over_limit: bool = Field(description="More in use than the limit: after a downgrade, or billed overage.")
    source: Literal["plan", "override"]
    overage: Literal["block", "bill"] | None = Field(
        description="Metered: whether units beyond the limit are refused or billed."
    )
    period_start: dt.datetime | None
    period_end: dt.datetime | None


class Quotas(BaseModel):
    plan: str
    plan_name: str
    features: list[str]
    resources: list[Quota]


class ReservationCreate(Body):
    key: str = Field(
        min_length=1, max_length=255, description="Idempotency: the same key returns the same reservation."
    )
    resource: str = Field(max_length=63)
    units: decimal.Decimal = Field(gt=0, max_digits=30)
    ttl_seconds: int = Field(default=900, ge=1, le=86400)


class ReservationConfirm(Body):
    actual_units: decimal.Decimal = Field(ge=0, max_digits=30)


class Reservation(BaseModel):
    key: str
    resource: str
    units: str = Field(description="Units held (a decimal string).")
    status: Literal["held", "confirmed", "released", "expired"]
    actual_units: str | None = Field(description="Units really used, once confirmed (a decimal string).")
    created_at: dt.datetime
    expires_at: dt.datetime
    settled_at: dt.datetime | None


class QuotaOverride(Body):
    limit: decimal.Decimal | None = Field(
        ge=0, max_digits=30, description="The tenant's limit for the resource (null: unlimited)."
    )


class PlanChange(Body):
    plan: str = Field(max_length=31)

"""The error registry: every SQLSTATE the project raises or maps, declared once.

The rules live in SQL and refuse with documented SQLSTATEs; clients see an HTTP status
and a stable problem `code`. This table is the single source for both sides: api/errors.py
maps database errors with it, the OpenAPI document lists its codes per status, and the
"Error contract" section of sql/README.md is generated from it (`python -m db.errors --write`).
tests/test_error_registry.py fails when a SQL file raises a SQLSTATE missing here.

The status is plain data: db/ does not import the API.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from db import PROJECT_ROOT

#: Problem codes are snake_case words: `not_found`, `tenant_suspended`, `missing_scope`.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


@dataclass(frozen=True)
class SqlState:
    """One SQLSTATE of the contract: what the client gets, and what it means (for the docs)."""

    sqlstate: str
    status: int
    code: str
    title: str
    meaning: str
    #: codes by constraint name, for a SQLSTATE shared by several constraints (23505)
    by_constraint: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: the error's DETAIL is a JSON object whose members the problem carries (TQ001: the
    #: resource, current, limit...): DETAIL survives Citus where COLUMN does not
    detail_members: bool = False
    #: seconds for a Retry-After header: the condition is transient (a timeout, the database
    #: restarting), and the client's own message is not the server's (it names hosts or relations)
    retry_after: int | None = None
    #: the failure aborted the transaction before anything of it persisted, and a second
    #: attempt may well not meet it (a lock, a deadlock, a shard a split replaced): the API
    #: runs the request again, within a budget, before answering (api/retry.py)
    transient: bool = False
    #: the entry covers only the errors of its SQLSTATE whose message matches this (Citus's
    #: XX000 for a shard a split or move replaced); the other errors of that SQLSTATE stay
    #: outside the contract (`lookup`)
    message_pattern: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_constraint", MappingProxyType(dict(self.by_constraint)))

    def code_for(self, constraint: str | None) -> str:
        """The code for an error naming `constraint` (the entry's own code when it has none of its own)."""
        return self.by_constraint.get(constraint or "", self.code)

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code this SQLSTATE can answer with (for the docs)."""
        return (self.code, *self.by_constraint.values())


# fmt: off
# The table. Standard SQLSTATEs are named as PostgreSQL names the condition, the project's
# own (TNxxx tenancy, TAxxx access) by their code.
#                                       SQLSTATE HTTP code                       title
# -- standard SQLSTATEs --------------------------------------------------------------------------------------------
INSUFFICIENT_PRIVILEGE = SqlState(      "42501", 403, "forbidden",               "Forbidden",
    "tenant argument is not the transaction's tenant; a row for another tenant (RLS); no privilege")
NO_DATA_FOUND = SqlState(               "P0002", 404, "not_found",               "Not found",
    "not found — including another tenant's object (no existence leak)")
UNIQUE_VIOLATION = SqlState(            "23505", 409, "conflict",                "Conflict",
    "duplicate value; the constraint (and `COLUMN`) say which", {
        "projects_live_name_key": "duplicate_name",
        "tenant_slugs_pkey": "slug_taken",
        "users_email_key": "email_taken",
        "invitations_open_email_key": "invitation_open",
    })
FOREIGN_KEY_VIOLATION = SqlState(       "23503", 422, "unknown_reference",       "Unknown reference",
    "a reference to something that does not exist (an unknown plan, role, user)")
NOT_NULL_VIOLATION = SqlState(          "23502", 422, "missing_value",           "Missing value",
    "a required value is missing; `COLUMN` names it")
CHECK_VIOLATION = SqlState(             "23514", 422, "invalid_value",           "Invalid value",
    "a value out of range (a check constraint: status, priority, a blank name)")
# a field of the body that the function refuses is `invalid_body`, as the API's own checks of
# the body answer; `invalid_parameter` is the query's (400, TP001): one code, one status
INVALID_PARAMETER_VALUE = SqlState(     "22023", 422, "invalid_body",            "Invalid field",
    "a field the function refuses: an unknown field, a value it cannot use (an unknown scope or setting, "
    "a past expiry); `COLUMN` names it")
INVALID_TEXT_REPRESENTATION = SqlState( "22P02", 422, "invalid_input",           "Invalid input",
    "a value that does not parse as its type (a UUID, a number, an enum)")
UNTRANSLATABLE_CHARACTER = SqlState(    "22P05", 422, "invalid_input",           "Invalid input",
    "a character that cannot be stored, e.g. a NUL character in a jsonb string")
INVALID_DATETIME_FORMAT = SqlState(     "22007", 422, "invalid_input",           "Invalid input",
    "a date or time that does not parse")
DATETIME_FIELD_OVERFLOW = SqlState(     "22008", 422, "invalid_input",           "Invalid input",
    "a date or time out of range")
STRING_DATA_RIGHT_TRUNCATION = SqlState("22001", 422, "value_too_long",          "Value too long",
    "a value longer than its column allows")
# transient: the request may be sent again as it is (Retry-After; docs/operations.md). Those
# marked `transient=True` the API has already run again until its budget ran out (api/retry.py)
LOCK_NOT_AVAILABLE = SqlState(          "55P03", 503, "lock_timeout",            "Lock timeout",
    "another transaction held a lock on the same rows longer than the role's lock_timeout, on every attempt "
    "within the API's retry budget: retry shortly", retry_after=1, transient=True)
SERIALIZATION_FAILURE = SqlState(       "40001", 503, "serialization_failure",   "Serialization failure",
    "the transaction could not be serialized with a concurrent one, on every attempt within the API's retry "
    "budget: retry shortly", retry_after=1, transient=True)
DEADLOCK_DETECTED = SqlState(           "40P01", 503, "deadlock_detected",       "Deadlock",
    "the transaction deadlocked with a concurrent one, on every attempt within the API's retry budget: "
    "retry shortly", retry_after=1, transient=True)
SHARD_MOVING = SqlState(                "XX000", 503, "shard_moving",            "Shard moving",
    "Citus: the statement met a shard that a split or move replaced (`could not find valid entry for shard`, "
    "...), on every attempt within the API's retry budget: retry shortly; any other XX000 is a 500",
    retry_after=1, transient=True, message_pattern=r"^could not find valid entry for shard \d+")
QUERY_CANCELED = SqlState(              "57014", 503, "statement_timeout",       "Statement timeout",
    "the statement ran longer than the role's statement_timeout (or was cancelled): retry later", retry_after=5)
IDLE_IN_TRANSACTION_TIMEOUT = SqlState( "25P03", 503, "idle_in_transaction_timeout", "Transaction timeout",
    "the transaction stayed idle longer than the role's idle_in_transaction_session_timeout: retry",
    retry_after=1)
CONNECTION_EXCEPTION = SqlState(        "08000", 503, "database_unavailable",    "Database unavailable",
    "the database cannot be reached (also: a lost connection, no pooled connection in time): retry shortly",
    retry_after=2)
CONNECTION_DOES_NOT_EXIST = SqlState(   "08003", 503, "database_unavailable",    "Database unavailable",
    "the connection to the database is gone: retry shortly", retry_after=2)
CONNECTION_FAILURE = SqlState(          "08006", 503, "database_unavailable",    "Database unavailable",
    "the connection to the database failed: retry shortly", retry_after=2)
CANNOT_CONNECT = SqlState(              "08001", 503, "database_unavailable",    "Database unavailable",
    "the database refused the connection: retry shortly", retry_after=2)
CONNECTION_REJECTED = SqlState(         "08004", 503, "database_unavailable",    "Database unavailable",
    "the database rejected the connection: retry shortly", retry_after=2)
ADMIN_SHUTDOWN = SqlState(              "57P01", 503, "database_unavailable",    "Database unavailable",
    "the database is shutting down (or an operator ended the connection): retry shortly", retry_after=2)
CRASH_SHUTDOWN = SqlState(              "57P02", 503, "database_unavailable",    "Database unavailable",
    "the database is recovering from a crash: retry shortly", retry_after=2)
CANNOT_CONNECT_NOW = SqlState(          "57P03", 503, "database_unavailable",    "Database unavailable",
    "the database is starting up: retry shortly", retry_after=2)
# -- TNxxx: tenancy ------------------------------------------------------------------------------------------------
TENANT_SUSPENDED = SqlState(            "TN001", 403, "tenant_suspended",        "Tenant suspended",
    "tenant is suspended: reads work, writes are refused")
TENANT_DELETED = SqlState(              "TN002", 403, "tenant_deleted",          "Tenant deleted",
    "tenant is deleted: neither reads nor writes")
TENANT_DELETED_FINAL = SqlState(        "TN003", 409, "tenant_deleted_final",    "Tenant deleted for good",
    "a deleted tenant cannot change status")
TENANT_NOT_ERASABLE = SqlState(         "TN004", 409, "tenant_not_erasable",     "Tenant not erasable",
    "`tenantry tenant erase` refuses a tenant that is not deleted, was deleted within the grace period (the "
    "message says when it can be erased), or was erased already")
PROJECT_DELETED = SqlState(             "TN010", 409, "project_deleted",         "Project deleted",
    "a live task cannot belong to a deleted project")
PRECONDITION_FAILED = SqlState(         "TN020", 412, "precondition_failed",     "Precondition failed",
    "the row changed since the version the client sent (If-Match, If-Unmodified-Since): read it again")
# -- TAxxx: identity and access ------------------------------------------------------------------------------------
ACCOUNT_UNAVAILABLE = SqlState(         "TA001", 403, "account_unavailable",     "Account unavailable",
    "the account cannot log in (disabled or locked)")
NOT_A_MEMBER = SqlState(                "TA002", 403, "not_a_member",            "Not a member",
    "the user is not a member of that tenant")
EMAIL_UNVERIFIED = SqlState(            "TA003", 403, "email_unverified",        "Email not verified",
    "the account has not verified its email address, so it cannot join a tenant by invitation")
SESSION_REVOKED = SqlState(             "TA005", 401, "session_revoked",         "Session revoked",
    "the session has ended (logout, revoked, refresh reuse, expired)")
MISSING_SCOPE = SqlState(               "TA010", 403, "missing_scope",           "Missing scope",
    "the actor lacks the scope the call needs")
ALREADY_MEMBER = SqlState(              "TA020", 409, "already_member",          "Already a member",
    "already a member")
INVITATION_NOT_FOUND = SqlState(        "TA030", 404, "invitation_not_found",    "Invitation not found",
    "no such invitation")
INVITATION_EXPIRED = SqlState(          "TA031", 410, "invitation_expired",      "Invitation expired",
    "the invitation has expired")
INVITATION_USED = SqlState(             "TA032", 409, "invitation_used",         "Invitation used",
    "the invitation was already used")
INVITATION_REVOKED = SqlState(          "TA033", 410, "invitation_revoked",      "Invitation revoked",
    "the invitation was revoked")
LOGIN_REQUIRED = SqlState(              "TA034", 401, "login_required",          "Login required",
    "a verified account has the invitation's email: accept logged in as that account")
INVITATION_EMAIL_MISMATCH = SqlState(   "TA035", 403, "invitation_email_mismatch", "Invitation for another email",
    "the invitation is for another email than the logged-in account's")
LAST_OWNER = SqlState(                  "TA040", 409, "last_owner",              "Last owner",
    "a tenant must keep one owner")
OWNER_REQUIRED = SqlState(              "TA041", 403, "owner_required",          "Owner required",
    "only owners grant or remove the owner role")
SCOPE_ESCALATION = SqlState(            "TA050", 403, "scope_escalation",        "Scope escalation",
    "an API key cannot have scopes its creator (or rotator) lacks")
EXPIRY_ESCALATION = SqlState(           "TA051", 403, "expiry_escalation",       "Expiry escalation",
    "a key made (or rotated) by a key cannot expire later than that key")
KEY_BEYOND_YOUR_SCOPES = SqlState(      "TA052", 403, "key_beyond_your_scopes",  "Key beyond your scopes",
    "revoking another member's API key needs every scope that key has")
PLATFORM_ADMIN_REQUIRED = SqlState(     "TA060", 403, "platform_admin_required", "Platform administrator required",
    "only a platform administrator may do this")
VERIFICATION_INVALID = SqlState(        "TA070", 404, "verification_invalid",    "Verification token not found",
    "no such email verification token, or it was used (or replaced by a newer one)")
VERIFICATION_EXPIRED = SqlState(        "TA071", 410, "verification_expired",    "Verification token expired",
    "the email verification token has expired: ask for a new one")
RESET_TOKEN_INVALID = SqlState(         "TA080", 404, "reset_token_invalid",     "Reset token not found",
    "no such password reset token, or it was used (a reset spends every open token of the account)")
RESET_TOKEN_EXPIRED = SqlState(         "TA081", 410, "reset_token_expired",     "Reset token expired",
    "the password reset token has expired: ask for a new one")
# -- TPxxx: query parameters (api/README.md, "Query parameters": 400 naming the parameter) ---------------------------
INVALID_QUERY_PARAMETER = SqlState(     "TP001", 400, "invalid_parameter",       "Invalid query parameter",
    "a query parameter's value the function cannot use, e.g. a status filter no row can have "
    "(`core.assert_column_allows`); `COLUMN` names the parameter")
# -- TQxxx: quotas and plan features (sql/repeatable/070_quotas.sql; DETAIL is JSON) --------------------------------
QUOTA_EXCEEDED = SqlState(              "TQ001", 403, "quota_exceeded",          "Quota exceeded",
    "the plan's (or the tenant's override's) limit for a resource is reached; the problem names the resource, "
    "`current`, `limit`, `plan` and an upgrade (`upgrade_plan`, `upgrade_limit`)", detail_members=True)
FEATURE_NOT_IN_PLAN = SqlState(         "TQ002", 403, "feature_not_in_plan",     "Feature not in plan",
    "the tenant's plan does not include the feature; the problem names `feature`, `plan` and `upgrade_plan`",
    detail_members=True)
RESERVATION_KEY_REUSED = SqlState(      "TQ003", 409, "reservation_key_reused",  "Reservation key reused",
    "the reservation key names another reservation (resource or units), or a confirmation with another amount")
RESERVATION_SETTLED = SqlState(         "TQ004", 409, "reservation_settled",     "Reservation settled",
    "the reservation was released (it cannot be confirmed) or confirmed (it cannot be released)")
# -- TUxxx: usage metering (sql/repeatable/400_usage.sql; `COLUMN` names the event: events[i].field) ------------
UNKNOWN_METRIC = SqlState(              "TU001", 422, "unknown_metric",          "Unknown metric",
    "a usage event names a metric the catalog does not have (GET /v1/usage/metrics); nothing of the batch is stored")
USAGE_EVENT_TOO_LATE = SqlState(        "TU002", 422, "usage_event_too_late",    "Usage event too late",
    "a usage event is older than the lateness window (7 days); nothing of the batch is stored")
USAGE_EVENT_IN_FUTURE = SqlState(       "TU003", 422, "usage_event_in_future",   "Usage event in the future",
    "a usage event's occurred_at is ahead of the server's clock by more than the skew (5 minutes)")
USAGE_PARTITION_MISSING = SqlState(     "TU005", 503, "usage_partition_missing", "Usage storage not ready",
    "no time partition takes the event yet: partition maintenance is behind (retry later)", retry_after=60)
# -- TBxxx: billing (sql/repeatable/600_billing.sql, 610_subscriptions.sql) -----------------------------------------
PAYMENT_METHOD_REQUIRED = SqlState(     "TB001", 409, "payment_method_required", "Payment method required",
    "a paid plan needs a payment method on file (the payment provider's customer)")
INVALID_PLAN_CHANGE = SqlState(         "TB002", 409, "invalid_plan_change",     "Invalid plan change",
    "an upgrade must go to a dearer plan and a downgrade to a cheaper one (or the subscription is canceled)")
BILLING_PERIOD_OPEN = SqlState(         "TB010", 409, "billing_period_open",     "Billing period not closed",
    "the calendar month has not ended (it cannot be closed), or is not closed yet (it cannot be exported)")
# -- TLxxx: the audit log (sql/repeatable/500_audit.sql) ------------------------------------------------------
AUDIT_LOG_IMMUTABLE = SqlState(         "TL001", 403, "audit_log_immutable",     "Audit log immutable",
    "audit rows and seals are never updated, deleted or truncated (only retention drops whole months)")
# fmt: on

#: Every entry, in declaration order (read from this module: nothing is listed twice).
REGISTRY: tuple[SqlState, ...] = tuple(value for value in list(globals().values()) if isinstance(value, SqlState))
BY_SQLSTATE: dict[str, SqlState] = {entry.sqlstate: entry for entry in REGISTRY if entry.message_pattern is None}
#: The entries that cover only some messages of their SQLSTATE (`lookup` tries them first).
_BY_MESSAGE: tuple[tuple[SqlState, re.Pattern[str]], ...] = tuple(
    (entry, re.compile(entry.message_pattern)) for entry in REGISTRY if entry.message_pattern is not None
)


# -- constraint violations: what the client is told --------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintMessage:
    """The field at fault (the request's name for it) and a sentence for the client."""

    field: str | None
    message: str


#: The SQLSTATEs of constraint violations. Their server message names tables, shards and
#: constraints ("new row for relation "projects_102008" violates check constraint ..."), so
#: the API never passes it on: the client gets the constraint's entry below, or a
#: sentence for the SQLSTATE. (The project's own SQLSTATEs and P0002/22023 messages are
#: written for clients and pass as they are.)
CONSTRAINT_SQLSTATES = (
    CHECK_VIOLATION.sqlstate,
    NOT_NULL_VIOLATION.sqlstate,
    FOREIGN_KEY_VIOLATION.sqlstate,
    UNIQUE_VIOLATION.sqlstate,
)

#: A constraint without an entry: one sentence per SQLSTATE.
CONSTRAINT_FALLBACK: Mapping[str, str] = MappingProxyType(
    {
        CHECK_VIOLATION.sqlstate: "A value is out of range.",
        NOT_NULL_VIOLATION.sqlstate: "A required value is missing.",
        FOREIGN_KEY_VIOLATION.sqlstate: "A value refers to something that does not exist.",
        UNIQUE_VIOLATION.sqlstate: "This value is taken.",
    }
)

#: Constraints a client's values can hit, by name (as the migrations name them; the
#: PostgreSQL defaults <table>_<column>_check and <table>_<columns>_fkey included).
CONSTRAINT_MESSAGES: Mapping[str, ConstraintMessage] = MappingProxyType(
    {
        # tenants and plans
        "tenants_slug_check": ConstraintMessage(
            "slug", "A slug is 3 to 63 lower-case letters, digits and inner single hyphens."
        ),
        "tenants_name_check": ConstraintMessage("name", "A tenant name is 1 to 200 characters, not only spaces."),
        "tenants_status_check": ConstraintMessage("status", "A tenant's status is active, suspended or deleted."),
        "tenants_settings_check": ConstraintMessage("settings", "Settings are a JSON object."),
        "tenants_plan_id_fkey": ConstraintMessage("plan", "There is no such plan."),
        "subscriptions_plan_id_fkey": ConstraintMessage("plan", "There is no such plan."),
        "tenant_slugs_pkey": ConstraintMessage("slug", "This slug is taken."),
        # people and membership
        "users_email_check": ConstraintMessage("email", "This is not an email address (at most 254 characters)."),
        "users_name_check": ConstraintMessage("name", "A name is 1 to 200 characters, not only spaces."),
        "users_email_key": ConstraintMessage("email", "An account with this email exists."),
        "memberships_user_id_fkey": ConstraintMessage("user_id", "There is no such user."),
        "memberships_role_fkey": ConstraintMessage("role", "There is no such role."),
        "invitations_email_check": ConstraintMessage("email", "This is not an email address (at most 254 characters)."),
        "invitations_role_fkey": ConstraintMessage("role", "There is no such role."),
        "invitations_open_email_key": ConstraintMessage("email", "An open invitation for this email exists."),
        # API keys
        "api_keys_name_check": ConstraintMessage("name", "A key name is 1 to 200 characters, not only spaces."),
        "api_keys_scopes_check": ConstraintMessage("scopes", "A key needs at least one scope."),
        # projects and tasks
        "projects_name_check": ConstraintMessage("name", "A project name is 1 to 200 characters, not only spaces."),
        "projects_description_check": ConstraintMessage("description", "A description is at most 10000 characters."),
        "projects_live_name_key": ConstraintMessage(
            "name", "A live project with this name exists (names are unique, ignoring case)."
        ),
        "tasks_title_check": ConstraintMessage("title", "A task title is 1 to 500 characters, not only spaces."),
        "tasks_description_check": ConstraintMessage("description", "A description is at most 10000 characters."),
        "tasks_status_check": ConstraintMessage("status", "A task's status is todo, in_progress, done or cancelled."),
        "tasks_priority_check": ConstraintMessage("priority", "A task's priority is low, normal, high or urgent."),
        "tasks_tenant_id_project_id_fkey": ConstraintMessage("project_id", "There is no such project."),
        "tasks_assignee_member_fkey": ConstraintMessage("assignee_id", "The assignee must be a member of this tenant."),
        # quotas
        "quota_overrides_resource_fkey": ConstraintMessage("resource", "There is no such quota resource."),
        # webhooks
        "webhook_endpoints_url_check": ConstraintMessage(
            "url", "A webhook URL is https://host/path: at most 2000 characters, no user name, password or spaces."
        ),
        "webhook_endpoints_event_types_check": ConstraintMessage(
            "event_types", "An endpoint has 1 to 100 event types."
        ),
        "webhook_endpoints_description_check": ConstraintMessage(
            "description", "A description is at most 1000 characters."
        ),
    }
)

_SHARD_SUFFIX = re.compile(r"_\d+$")


def constraint_message(sqlstate: str, constraint: str | None) -> ConstraintMessage:
    """What to tell the client about a violation of `constraint` (a Citus shard's copy
    of a constraint, `name_102008`, is the constraint `name`)."""
    for name in (constraint, _SHARD_SUFFIX.sub("", constraint or "")):
        if name and name in CONSTRAINT_MESSAGES:
            return CONSTRAINT_MESSAGES[name]
    return ConstraintMessage(None, CONSTRAINT_FALLBACK.get(sqlstate, "A value cannot be stored."))


def known_constraint(constraint: str | None) -> str | None:
    """`constraint` without a Citus shard suffix when that names a constraint we know."""
    stripped = _SHARD_SUFFIX.sub("", constraint or "")
    if constraint and constraint not in CONSTRAINT_MESSAGES and stripped in CONSTRAINT_MESSAGES:
        return stripped
    return constraint


def lookup(sqlstate: str | None, message: str | None = None) -> SqlState | None:
    """The entry for a SQLSTATE (and, for the entries that cover only some of its
    messages, the error's primary message), or None when it is outside the contract."""
    for entry, pattern in _BY_MESSAGE:
        if entry.sqlstate == sqlstate and message is not None and pattern.search(message):
            return entry
    return BY_SQLSTATE.get(sqlstate or "")


def transient(exc: BaseException) -> bool:
    """Whether a database error aborted its transaction for a reason that a second attempt
    may not meet: a lock wait past lock_timeout, a serialization failure, a deadlock, and on
    Citus a statement planned for a shard that a split or move has just replaced. The one
    place this is decided: the API's error mapping marks these answers for api/retry.py,
    which runs the whole request again. (A lost connection is not one: whether its COMMIT
    happened is unknown; `db.context.unavailable` tells those.)"""
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    entry = lookup(getattr(exc, "sqlstate", None), message)
    return entry is not None and entry.transient


def label(sqlstate: str | None) -> str:
    """`TN001 tenant_suspended` for a registered SQLSTATE, the bare SQLSTATE otherwise (for one-line messages)."""
    entry = lookup(sqlstate)
    return f"{entry.sqlstate} {entry.code}" if entry else sqlstate or ""


def codes_by_status() -> dict[int, list[str]]:
    """The codes each HTTP status can come with, constraint codes included (each once, in table order)."""
    found: dict[int, list[str]] = {}
    for entry in REGISTRY:
        codes = found.setdefault(entry.status, [])
        codes += [code for code in entry.codes if code not in codes]
    return dict(sorted(found.items()))


# -- sql/README.md's "Error contract" section ----------------------------------------------------------------------

README = PROJECT_ROOT / "sql" / "README.md"
BEGIN, END = "<!-- errors:begin (generated by `python -m db.errors --write`) -->", "<!-- errors:end -->"


def markdown_table() -> str:
    """The generated body of the README's error contract section (between the markers)."""
    lines = [
        "Generated from the registry `db/errors.py` (do not edit here: edit it, then run",
        "`python -m db.errors --write`). The API maps these to HTTP statuses and stable problem",
        "codes (`type` is `/problems/<code>`); anything else is a 500 `internal_error`.",
        "",
        "| SQLSTATE | title | meaning | HTTP | code |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{e.sqlstate}` | {e.title} | {e.meaning} | {e.status} | `{e.code}` |" for e in REGISTRY]
    lines += [
        "",
        "Codes by constraint, for a SQLSTATE several constraints share:",
        "",
        "| SQLSTATE | constraint | HTTP | code |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{e.sqlstate}` | `{constraint}` | {e.status} | `{code}` |"
        for e in REGISTRY
        for constraint, code in e.by_constraint.items()
    ]
    lines += [
        "",
        "Constraint violations (" + ", ".join(f"`{s}`" for s in CONSTRAINT_SQLSTATES) + ") never pass the",
        "server's message on (it names tables and constraints): the API answers with the",
        "constraint's field and sentence below, or with the sentence for its SQLSTATE",
        "(" + "; ".join(f"`{s}`: {m}" for s, m in CONSTRAINT_FALLBACK.items()) + ").",
        "",
        "| constraint | field | message |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{name}` | `{entry.field}` | {entry.message} |" if entry.field else f"| `{name}` | | {entry.message} |"
        for name, entry in CONSTRAINT_MESSAGES.items()
    ]
    return "\n".join(lines)


def readme_section(text: str) -> str:
    """What stands between the markers in `text` (ValueError when they are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return text[start + len(BEGIN) : end].strip("\n")


def write_readme(path: Path = README) -> bool:
    """Regenerate the section between the markers only (the rest of the file is hand-written); True if changed."""
    text = path.read_text()
    current = readme_section(text)
    if current == markdown_table():
        return False
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    path.write_text(f"{text[:start]}\n{markdown_table()}\n{text[end:]}")
    return True


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print(f"{README}: {'rewritten' if write_readme() else 'already up to date'}")
    elif sys.argv[1:]:
        sys.exit("usage: python -m db.errors [--write]   (prints the README section, or rewrites it in place)")
    else:
        print(markdown_table())

"""All of tenantry's settings, read from TENANTRY_* environment variables.

This class is the one place settings are documented: the README's settings table is
generated from it (`python -m db.settings`), and a test fails when the two differ.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db import PROJECT_ROOT

#: Login roles the application uses; created by policies/00_roles.sql.
API_ROLE = "tenantry_api"
WORKER_ROLE = "tenantry_worker"
ANALYST_ROLE = "tenantry_analyst"
PLATFORM_ADMIN_ROLE = "tenantry_platform_admin"
APP_ROLES = (API_ROLE, WORKER_ROLE, ANALYST_ROLE, PLATFORM_ADMIN_ROLE)
#: The NOLOGIN, NOSUPERUSER role that owns every object of the project's schemas
#: (policies/00_roles.sql creates it, policies/90_ownership.sql hands it everything).
OWNER_ROLE = "tenantry_owner"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENANTRY_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="Owner DSN of an external PostgreSQL or Citus coordinator. "
        "Unset: tenantry starts and uses its embedded PostgreSQL.",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".tenantry",
        description="Project-local folder for the embedded server's data, logs and the dev cluster.",
    )
    embedded_port: int = Field(default=54329, ge=1, le=65535, description="Loopback port of the embedded server.")
    database_name: str = Field(default="tenantry", description="Database created on the embedded server.")

    api_database_url: str | None = Field(default=None, description="DSN for the api role (default: derived).")
    worker_database_url: str | None = Field(default=None, description="DSN for the worker role (default: derived).")
    analyst_database_url: str | None = Field(default=None, description="DSN for the analyst role (default: derived).")
    admin_database_url: str | None = Field(
        default=None, description="DSN for the platform-admin role (default: derived)."
    )
    app_role_password: SecretStr | None = Field(
        default=None,
        description="Password that `tenantry db migrate` sets on the app login roles and that derived "
        "role DSNs use. Unset: on the embedded server each role gets a generated password of its own, "
        "kept in <state_dir>/secrets/<role> (mode 0600; `tenantry db dsn` prints the DSNs); on another "
        "server the roles keep the passwords they have.",
    )

    pool_min_size: int = Field(default=1, ge=0, description="Connections each pool keeps open (per role, per process).")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections a pool opens (per role, per process).")
    pool_timeout: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Seconds a request waits for a pooled connection (also the connect timeout, at least 2 s, "
        "and how long the pool retries a failed connection before it lets a new attempt start). Past it the API "
        "answers 503 `database_unavailable` with Retry-After (docs/operations.md).",
    )

    # -- the API ------------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key for access tokens (at least 32 bytes). Unset: one is generated "
        "once into <state_dir>/jwt_secret (fine for one machine; set it for several API hosts).",
    )
    access_token_seconds: int = Field(default=900, ge=30, le=86400, description="Access token lifetime.")
    # a session ends at the first of its three limits (sql/versions/0005_accounts.up.sql)
    session_idle_minutes: int = Field(
        default=30,
        ge=1,
        le=7 * 24 * 60,
        description="Idle timeout: a session ends after this many minutes without a request or a refresh.",
    )
    session_max_hours: int = Field(
        default=10,
        ge=1,
        le=366 * 24,
        description="Absolute session maximum: a session ends this many hours after login, however "
        "active (then log in again).",
    )
    refresh_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="Refresh token lifetime: a session also ends this many days after its last refresh "
        "(only binding when the two limits above are raised past it).",
    )
    password_reset_minutes: int = Field(
        default=30, ge=5, le=24 * 60, description="How long a password reset token (sent by mail) works."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate limits. Unset: `tenantry serve` starts a local redis-server "
        "on 127.0.0.1:<redis_port> in the state folder.",
    )
    redis_port: int = Field(default=56379, ge=1, le=65535, description="Port of the local redis-server.")
    api_call_window_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="API calls are counted in Redis per caller in windows this long (no database write per "
        "request); the worker's flush job records each closed window as usage events. The API and the worker "
        "must use the same value.",
    )
    metering_flush_seconds: float = Field(
        default=1.0,
        ge=0.05,
        le=60,
        description="Each API worker adds up its API calls in memory and sends them to Redis this often (one "
        "pipelined call per caller, not one per request); a call counts in the window current when it is sent, "
        "and a killed worker loses at most this long of its counts.",
    )
    anonymous_requests_per_minute: int = Field(
        default=30,
        ge=1,
        description="Rate limit per client IP for unauthenticated calls (login, sign-up) and for "
        "requests whose token or API key is refused (a guess costs the guesser).",
    )
    trusted_proxies: str | None = Field(
        default=None,
        description="Comma-separated IPs or CIDRs of the reverse proxies in front of the API. Only a "
        "request whose peer is one of them has its `X-Forwarded-For` read (the right-most address that "
        "is not a trusted proxy is the client, for rate limits, lockout, logs and key usage). Unset: the "
        "socket's peer is the client and `X-Forwarded-For` is ignored.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that `/metrics` requires (`Authorization: Bearer <token>`). Unset: "
        "`/metrics` answers loopback clients only.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `tenantry serve` binds.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port `tenantry serve` binds.")
    # hostile input: what a request body may be (api/pipeline.py reads it, api/encoding.py parses it)
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body in bytes: a larger declared Content-Length is `413 body_too_large` "
        "before a byte is read, and a chunked body is cut off there.",
    )
    max_json_depth: int = Field(
        default=32,
        ge=2,
        le=512,
        description="Deepest nesting of arrays and objects a JSON body may have; deeper is `400 json_too_deep` "
        "(checked by a scan before the body is parsed).",
    )
    body_read_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send the whole request body (not per read); then "
        "`408 request_timeout` and the connection is closed.",
    )
    # transient database failures, run again before answering (api/retry.py)
    transient_retry_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Most times the API runs a request whose transaction failed transiently (lock timeout, "
        "serialization failure, deadlock, a Citus shard being split or moved) before it answers that failure "
        "(503 with Retry-After); 1 turns the retries off. Only requests without a body or with a body of "
        "declared length are run again.",
    )
    transient_retry_seconds: float = Field(
        default=8.0,
        ge=0,
        le=60,
        description="Time budget of those attempts: no attempt starts that, taking as long as the previous one, "
        "would end later than this after the request arrived.",
    )
    # serving (api/server.py): slow clients, connection caps, graceful stop, TLS, CORS
    header_read_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send the request line and headers (from the connection's first "
        "byte, or the end of its previous request); then `408 request_timeout` and the connection is closed. "
        "Heads are read by each worker's event loop, so a slow one holds no thread.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest request line plus headers in bytes: more is `431 headers_too_large` (a request "
        "line alone over 8 KiB is `414 uri_too_long`).",
    )
    max_connections_per_worker: int = Field(
        default=1000,
        ge=16,
        description="Open client connections each worker process holds at most (idle keep-alive and slow "
        "ones included); past it the worker stops accepting until one closes.",
    )
    shutdown_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="On SIGTERM, `/ready` answers 503 for this long while requests are still served (the load "
        "balancer takes the instance out), then the server stops accepting, finishes in-flight requests and "
        "exits.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) for `tenantry serve` to terminate TLS itself (with "
        "`TENANTRY_TLS_KEY_FILE`). Unset: plain HTTP, TLS at the proxy.",
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of `TENANTRY_TLS_CERT_FILE`.")
    hsts_max_age: int = Field(
        default=31536000,
        ge=0,
        description="`Strict-Transport-Security` max-age sent on responses served over TLS (the request's scheme "
        "is https, or a trusted proxy says `X-Forwarded-Proto: https`); 0 sends none.",
    )
    cors_allowed_origins: str | None = Field(
        default=None,
        description="Comma-separated origins (`https://app.example.com`) whose browser pages may call the API, "
        "with credentials. Unset: no CORS headers (browsers allow same-origin pages only).",
    )

    # -- usage metering (sql/repeatable/400_usage.sql) -------------------------------------
    usage_retention_days: int = Field(
        default=400,
        ge=38,
        le=3660,
        description="How long raw usage events (and their ids, which make a retry count once) are kept: the "
        "partition maintenance job drops whole monthly partitions that ended longer ago. At least the 7-day "
        "lateness window and a month. Rollups are kept.",
    )

    # -- billing (jobs/billing.py, jobs/billing_export.py, sql/repeatable/600_billing.sql) --
    billing_export_dir: Path | None = Field(
        default=None,
        description="Folder the scheduled `export_billing` job writes each closed month's invoice lines to "
        "(exactly once per month, format and folder; `tenantry billing export --dest` names its own). "
        "Unset: the job exports nothing.",
    )
    billing_export_formats: str = Field(
        default="parquet",
        pattern=r"^(csv|json|parquet)(,(csv|json|parquet))*$",
        description="Comma-separated formats the `export_billing` job writes: csv, json (JSON lines), parquet.",
    )
    billing_export_pause_after_rows: int | None = Field(
        default=None,
        ge=1,
        description="Tests only: the exporter stops for good after writing this many rows to its temporary "
        "file (so a test can kill it mid-write). Never set it in production.",
    )
    billing_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The payment provider's webhook signing secret (Stripe's `whsec_...`): POST "
        "/v1/billing/provider-events verifies `Stripe-Signature` with it. Unset: the endpoint refuses every event.",
    )
    billing_webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="How old (or how far ahead) a provider event's signed timestamp may be (replay window).",
    )
    billing_past_due_grace_days: int = Field(
        default=7,
        ge=0,
        le=90,
        description="Days a subscription may stay past_due (a failed payment) before the `suspend_past_due` job "
        "suspends its tenant (writes refused, reads kept); a successful payment reactivates it.",
    )
    tenant_erase_grace_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="Days a deleted tenant is kept before `tenantry tenant erase` may hard-delete its rows "
        '(`--grace-days` overrides it for one run; docs/operations.md, "Tenant lifecycle").',
    )

    # -- mail (jobs/mail.py: `tenantry mail deliver`) ------------------------------------
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for outgoing mail (email verification, invitations, password resets). "
        "Unset: each message is written as an .eml file into <state_dir>/mail/ instead (the local default; "
        "the demo reads them).",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_user: str | None = Field(default=None, description="SMTP login user (unset: no login).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP login password.")
    smtp_tls: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="How the SMTP connection is encrypted: `starttls` (upgrade a plain connection, port 587), "
        "`ssl` (TLS from the start, port 465) or `none` (a relay on loopback only).",
    )
    mail_from: str = Field(
        default="tenantry <no-reply@tenantry.localhost>", description="The From address of outgoing mail."
    )
    mail_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Delivery attempts of a message before it is given up (with backoff)."
    )
    app_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL of the application that links in mail point to (e.g. <app_url>/reset-password?token=…).",
    )

    # -- webhooks (jobs/webhook_delivery.py, sql/repeatable/520_webhooks.sql) -----------------
    webhook_encryption_keys: SecretStr | None = Field(
        default=None,
        description="AES-256-GCM keys for the webhook endpoints' signing secrets at rest: comma-separated "
        "`<key id>:<base64 of 32 bytes>`; the first encrypts, every one decrypts (each ciphertext names its "
        "key: to rotate, put a new key first and keep the old ones). Unset: one key is generated once "
        "into <state_dir>/webhook_keys (one machine only: the API and the worker must share the keys).",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Time limit of one webhook delivery attempt (connect, send and read the answer, in all); "
        "a receiver slower than this is a failed attempt, retried with backoff.",
    )
    webhook_max_attempts: int = Field(
        default=10, ge=1, le=50, description="Attempts of a webhook delivery before it is dead (dead-lettered)."
    )
    webhook_backoff_base_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="Retry backoff of webhook deliveries: after attempt n the next is due in "
        "min(cap, base × 2^n) × a jitter of 0.5 to 1.0.",
    )
    webhook_backoff_cap_seconds: float = Field(
        default=6 * 3600, gt=0, le=7 * 86400, description="The longest wait between two attempts of a delivery."
    )
    webhook_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="How long a claimed delivery belongs to one sender (at least the timeout plus 5 s is used); "
        "a sender killed mid-batch leaves its deliveries to be claimed again after it (at least once).",
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=64, description="Deliveries a delivery pass sends at once (threads)."
    )
    webhooks_allow_private_addresses: bool = Field(
        default=False,
        description="Let webhook endpoints use http:// and addresses that resolve to loopback, private, "
        "link-local, multicast or reserved networks (for local development and tests). Off: such URLs are "
        "refused when registered and again when sent (SSRF).",
    )

    # -- backups (db/backup.py: `tenantry db backup`) ---------------------------------------
    backup_retention_days: int = Field(
        default=7,
        ge=1,
        le=3660,
        description="After a successful `tenantry db backup --dest DIR`, backups in DIR (files named "
        "`tenantry-<database>-<UTC time>.dump`, and their manifests) taken longer ago than this are deleted; "
        "other files are never touched.",
    )

    citus_pg_bin: Path | None = Field(
        default=None,
        description="bin/ folder of a PostgreSQL installation that has the Citus extension, "
        "for `tenantry citus dev-cluster`. Unset: searched on PATH and in /usr/lib/postgresql/*/bin.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str | None) -> str | None:
        for entry in (value or "").split(","):
            if entry.strip():
                ipaddress.ip_network(entry.strip(), strict=False)  # ValueError names the entry
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins_parse(cls, value: str | None) -> str | None:
        for entry in (value or "").split(","):
            origin = entry.strip()
            if origin and (origin == "*" or "://" not in origin or origin.endswith("/")):
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port], no path, no '*'")
        return value

    def cors_origin_list(self) -> list[str]:
        """The origins CORS allows, one scheme://host[:port] each."""
        return [entry.strip() for entry in (self.cors_allowed_origins or "").split(",") if entry.strip()]

    def trusted_proxy_list(self) -> list[str]:
        """The trusted proxies, one IP or CIDR each."""
        return [entry.strip() for entry in (self.trusted_proxies or "").split(",") if entry.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default is None:
        return "unset"
    if isinstance(field.default, Path) and field.default.is_relative_to(PROJECT_ROOT):
        return f"`{field.default.relative_to(PROJECT_ROOT)}/`"  # no machine's path in the docs
    return f"`{field.default}`"


def markdown_table() -> str:
    """The README's settings table: every field of Settings, its default and its meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `TENANTRY_{name.upper()}` | {_default(name)} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def write_readme() -> bool:
    """Rewrite the README's table between its markers; True if it changed."""
    readme = PROJECT_ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
    start, stop = text.index(begin) + len(begin), text.index(end)
    if text[start:stop] == markdown_table():
        return False
    readme.write_text(text[:start] + markdown_table() + text[stop:])
    return True


if __name__ == "__main__":  # pragma: no cover - prints the README table, or rewrites it (--write)
    import sys

    if sys.argv[1:] == ["--write"]:
        print("README.md: " + ("rewritten" if write_readme() else "already up to date"))
    else:
        print(markdown_table(), end="")

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

    # -- usage metering (sql/repeatable/400_usage.sql) -------------------------------------
    usage_retention_days: int = Field(
        default=400,
        ge=38,
        le=3660,
        description="How long raw usage events (and their ids, which make a retry count once) are kept: the "
        "partition maintenance job drops whole monthly partitions that ended longer ago. At least the 7-day "
        "lateness window and a month. Rollups are kept.",
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

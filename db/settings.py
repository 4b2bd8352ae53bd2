"""All of tenantry's settings, read from TENANTRY_* environment variables.

This class is the one place settings are documented: the README's settings table is
generated from it (`python -m db.settings`), and a test fails when the two differ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from db import PROJECT_ROOT

#: Login roles the application uses; created by policies/00_roles.sql.
API_ROLE = "tenantry_api"
WORKER_ROLE = "tenantry_worker"
ANALYST_ROLE = "tenantry_analyst"
PLATFORM_ADMIN_ROLE = "tenantry_platform_admin"


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
        "role DSNs use. Unset: no password (the embedded server and dev cluster trust loopback).",
    )

    pool_min_size: int = Field(default=1, ge=0, description="Connections each pool keeps open (per role, per process).")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections a pool opens (per role, per process).")

    # -- the API ------------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key for access tokens (at least 32 bytes). Unset: one is generated "
        "once into <state_dir>/jwt_secret (fine for one machine; set it for several API hosts).",
    )
    access_token_seconds: int = Field(default=900, ge=30, le=86400, description="Access token lifetime.")
    session_days: int = Field(default=30, ge=1, le=365, description="Session (refresh) lifetime.")
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate limits. Unset: `tenantry serve` starts a local redis-server "
        "on 127.0.0.1:<redis_port> in the state folder.",
    )
    redis_port: int = Field(default=56379, ge=1, le=65535, description="Port of the local redis-server.")
    anonymous_requests_per_minute: int = Field(
        default=30, ge=1, description="Rate limit per client IP for unauthenticated calls (login, sign-up)."
    )
    api_host: str = Field(default="127.0.0.1", description="Address `tenantry serve` binds.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port `tenantry serve` binds.")

    citus_pg_bin: Path | None = Field(
        default=None,
        description="bin/ folder of a PostgreSQL installation that has the Citus extension, "
        "for `tenantry citus dev-cluster`. Unset: searched on PATH and in /usr/lib/postgresql/*/bin.",
    )


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

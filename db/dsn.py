"""DSNs: the owner's (migrations, DBA commands) and one per application role.

The owner DSN is TENANTRY_DATABASE_URL, or the embedded server's when it is unset (the
server is not started here: `db.local.services` does that); the embedded server's DSN
carries the superuser's generated password. A role's DSN is its explicit
TENANTRY_<ROLE>_DATABASE_URL, or the owner DSN with the user and password replaced: the
password is TENANTRY_APP_ROLE_PASSWORD when set, else (on the embedded server) the role's
generated password in <state_dir>/secrets/<role> (0600), which `tenantry db migrate`
creates and sets on the role. `tenantry db dsn` prints them all.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

from db.local import secrets
from db.local.embedded import embedded_server
from db.settings import ANALYST_ROLE, API_ROLE, APP_ROLES, PLATFORM_ADMIN_ROLE, WORKER_ROLE, Settings


def owner_url(settings: Settings) -> str:
    """The owner DSN: TENANTRY_DATABASE_URL, or the embedded server's (not started here)."""
    if settings.database_url:
        return settings.database_url
    return embedded_server(settings).url(settings.database_name)


def explicit_url(settings: Settings, role: str) -> str | None:
    """The role's DSN when TENANTRY_<ROLE>_DATABASE_URL sets it."""
    return {
        API_ROLE: settings.api_database_url,
        WORKER_ROLE: settings.worker_database_url,
        ANALYST_ROLE: settings.analyst_database_url,
        PLATFORM_ADMIN_ROLE: settings.admin_database_url,
    }.get(role)


def secret_file(settings: Settings, role: str) -> Path:
    """Where the generated password of an application role is kept."""
    return settings.state_dir / "secrets" / role


def is_embedded(settings: Settings, url: str) -> bool:
    """Whether `url` points at this state folder's embedded server (its loopback port)."""
    server, target = embedded_server(settings), make_url(url)
    return target.host in (server.host, "localhost") and target.port == server.port


def role_password(settings: Settings, role: str) -> str | None:
    """The password of a role whose DSN tenantry derives: TENANTRY_APP_ROLE_PASSWORD, else
    on the embedded server the generated one (None until `tenantry db migrate` made it),
    else None (another server's roles have the passwords their operator gave them)."""
    if settings.app_role_password:
        return settings.app_role_password.get_secret_value()
    if is_embedded(settings, owner_url(settings)):
        return secrets.read(secret_file(settings, role))
    return None


def role_url(settings: Settings, role: str) -> str:
    """DSN for one of the application's login roles."""
    explicit = explicit_url(settings, role)
    if explicit:
        return explicit
    # URL.create, not .set(): .set() ignores None and would keep the owner's password
    owner = make_url(owner_url(settings))
    url = URL.create(
        "postgresql",
        username=role,
        password=role_password(settings, role),
        host=owner.host,
        port=owner.port,
        database=owner.database,
        query=owner.query,
    )
    return url.render_as_string(hide_password=False)


def role_environment(settings: Settings) -> dict[str, str]:
    """TENANTRY_<ROLE>_DATABASE_URL for every role: what a child process needs to connect
    as the roles when its own state folder (and so the generated passwords) differs."""
    names = {
        API_ROLE: "TENANTRY_API_DATABASE_URL",
        WORKER_ROLE: "TENANTRY_WORKER_DATABASE_URL",
        ANALYST_ROLE: "TENANTRY_ANALYST_DATABASE_URL",
        PLATFORM_ADMIN_ROLE: "TENANTRY_ADMIN_DATABASE_URL",
    }
    return {names[role]: role_url(settings, role) for role in APP_ROLES}


def redacted(url: str) -> str:
    """A DSN for display: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)

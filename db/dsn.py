"""DSNs: the owner's (migrations, DBA commands) and one per application role.

The owner DSN is TENANTRY_DATABASE_URL, or the embedded server's when it is unset (the
server is not started here: `db.local.services` does that). A role's DSN is its explicit
TENANTRY_<ROLE>_DATABASE_URL, or the owner DSN with the user (and the app-role password,
when one is set) replaced.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from db.local.embedded import embedded_server
from db.settings import ANALYST_ROLE, API_ROLE, PLATFORM_ADMIN_ROLE, WORKER_ROLE, Settings


def owner_url(settings: Settings) -> str:
    """The owner DSN: TENANTRY_DATABASE_URL, or the embedded server's (not started here)."""
    if settings.database_url:
        return settings.database_url
    return embedded_server(settings).url(settings.database_name)


def role_url(settings: Settings, role: str) -> str:
    """DSN for one of the application's login roles."""
    explicit = {
        API_ROLE: settings.api_database_url,
        WORKER_ROLE: settings.worker_database_url,
        ANALYST_ROLE: settings.analyst_database_url,
        PLATFORM_ADMIN_ROLE: settings.admin_database_url,
    }.get(role)
    if explicit:
        return explicit
    password = settings.app_role_password.get_secret_value() if settings.app_role_password else None
    url = make_url(owner_url(settings)).set(username=role, password=password, drivername="postgresql")
    return url.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """A DSN for display: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)

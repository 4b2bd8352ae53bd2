"""Operator tasks that no API offers: who is a platform administrator.

Granting platform admin is deliberately not an API call: it is done by the database
owner (`tenantry platform-admin grant EMAIL`), and the grant is visible in core.users.
"""

from __future__ import annotations

import psycopg


class UnknownUser(LookupError):
    pass


def grant_platform_admin(owner_url: str, email: str, *, grant: bool = True) -> None:
    with psycopg.connect(owner_url) as conn:
        found = conn.execute(
            "UPDATE core.users SET is_platform_admin = %s WHERE lower(email) = lower(%s) RETURNING user_id",
            (grant, email),
        ).fetchone()
    if found is None:
        raise UnknownUser(f"no user has the email {email!r}: sign them up first")

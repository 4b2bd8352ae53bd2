"""Generated database passwords, one file each, readable by this user only (0600).

The embedded server's superuser password lives in the server's home
(`<state_dir>/embedded/superuser_password`); the application roles' passwords in
`<state_dir>/secrets/<role>`. `tenantry db dsn` prints the DSNs that carry them.

Also here: checking a password against a stored SCRAM-SHA-256 verifier (RFC 5802, as
PostgreSQL stores it in pg_authid), so that `tenantry db migrate` changes a role's
password only when it differs (roles are cluster-wide: needless writes to their rows
collide between concurrent migrations).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


def read(path: Path) -> str | None:
    """The secret stored in `path`, or None when there is none."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def read_or_create(path: Path) -> str:
    """The secret stored in `path`, generated (256 bits, URL-safe) and written 0600 if missing."""
    found = read(path)
    if found:
        return found
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # (the mode applies when it is created)
    value = secrets.token_urlsafe(32)
    # created 0600 from the start (never readable by others, not even for a moment);
    # O_EXCL: of two processes creating it at once, the loser reads the winner's
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_or_create(path)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    return value


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether `verifier` (pg_authid.rolpassword) is a SCRAM-SHA-256 verifier of `password`.

    Format: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64). The
    passwords compared here are generated ASCII, for which SASLprep changes nothing.
    """
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        _, params, keys = verifier.split("$")
        iterations, salt = params.split(":")
        stored_key, _server_key = keys.split(":")
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))

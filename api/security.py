"""Secrets: password hashing, access tokens, and the opaque tokens and keys we hand out.

Only hashes reach the database: argon2id for passwords (argon2-cffi), SHA-256 for the
high-entropy tokens and keys (a fast hash is right for random secrets). Opaque tokens
carry the tenant (and invitation) id in the clear so the database can route the lookup
to the tenant's shard; the secret part is what proves possession.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import secrets
import string
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from db.settings import Settings

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
#: verified against unknown emails, so a miss costs as much time as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

JWT_ALGORITHM = "HS256"
KEY_ALPHABET = string.ascii_lowercase + string.digits


class TokenError(ValueError):
    """A presented token or key is malformed, expired or forged: the reason says which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def sha256(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- opaque tokens ---------------------------------------------------------------------


def _opaque(token: str, prefix: str, size: int, malformed: TokenError) -> bytes:
    """The bytes of `<prefix><base64url>` if they are `size` long; `malformed` otherwise."""
    try:
        raw = _unb64(token.removeprefix(prefix)) if token.startswith(prefix) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise malformed
    return raw


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def refresh_token(tenant_id: uuid.UUID, secret: bytes) -> str:
    """rt_<base64url(tenant id + 32 random bytes)>; the database keeps sha256(secret).

    The secret is drawn before the session's tenant is known (a login may pick it), so
    the hash covers the secret alone; the tenant part only routes the lookup.
    """
    return "rt_" + _b64(tenant_id.bytes + secret)


def parse_refresh_token(token: str) -> tuple[uuid.UUID, bytes]:
    """(tenant id, secret) of a refresh token (TokenError if malformed)."""
    raw = _opaque(token, "rt_", 48, TokenError("refresh_invalid", "The refresh token is malformed."))
    return uuid.UUID(bytes=raw[:16]), raw[16:]


def new_invitation_token(tenant_id: uuid.UUID, invitation_id: uuid.UUID) -> str:
    """inv_<base64url(tenant id + invitation id + 24 random bytes)>"""
    return "inv_" + _b64(tenant_id.bytes + invitation_id.bytes + secrets.token_bytes(24))


def parse_invitation_token(token: str) -> tuple[uuid.UUID, uuid.UUID]:
    raw = _opaque(token, "inv_", 56, TokenError("invitation_invalid", "The invitation token is malformed."))
    return uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:32])


def new_verification_token() -> str:
    """vfy_<base64url(32 random bytes)>: proves a mailbox. Only mailed; the database keeps
    its SHA-256 (verification rows are global: nothing to route, so no id in it)."""
    return "vfy_" + _b64(new_secret())


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown once
    prefix: str
    key_hash: bytes


def new_api_key() -> NewApiKey:
    """tnt_<12 lowercase letters/digits>_<43 base64url characters>"""
    prefix = "".join(secrets.choice(KEY_ALPHABET) for _ in range(12))
    key = f"tnt_{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key, prefix, sha256(key))


def parse_api_key(key: str) -> str:
    """The prefix of a well-formed key (TokenError if malformed)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "tnt" or len(parts[1]) != 12 or not set(parts[1]) <= set(KEY_ALPHABET):
        raise TokenError("invalid_api_key", "The API key is malformed.")
    return parts[1]


# -- access tokens (JWT) ---------------------------------------------------------------


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    scopes: list[str]
    expires_at: int


def issue_access_token(
    key: str,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    role: str,
    scopes: list[str],
    is_platform_admin: bool,
    ttl_seconds: int,
) -> tuple[str, int]:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "tid": str(tenant_id),
        "sid": str(session_id),
        "role": role,
        "scopes": scopes,
        "adm": is_platform_admin,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM), now + ttl_seconds


def verify_access_token(key: str, token: str) -> AccessClaims:
    """The claims of a token signed with `key`; TokenError if it is forged, malformed or
    expired.

    A client sends the same access token with every request for its lifetime, so a token
    that verified once is remembered (`_verified`: the key and the token's exact text, a
    bounded LRU) and later only its expiry is checked: verifying the signature and parsing
    the token cost ~30-60 us of the worker's CPU per request (issue 10's profile). Nothing
    a token says can change, so the cache cannot go stale; a revoked session is refused by
    the database's session check on every request, cached or not."""
    claims = _verified(key, token)
    if claims.expires_at <= time.time():  # PyJWT's rule: expired at exp, no leeway
        raise TokenError("token_expired", "The access token has expired; refresh it.")
    return dataclasses.replace(claims, scopes=list(claims.scopes))  # the cached list stays the cache's


@functools.lru_cache(maxsize=4096)
def _verified(key: str, token: str) -> AccessClaims:
    """Verify a token (PyJWT). Only verified tokens are cached: an error is not."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "tid", "sid", "exp", "iat", "jti"]}
        )
        return AccessClaims(
            uuid.UUID(claims["sub"]),
            uuid.UUID(claims["tid"]),
            uuid.UUID(claims["sid"]),
            str(claims.get("role", "")),
            list(claims.get("scopes", [])),
            int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "The access token has expired; refresh it.") from None
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
        raise TokenError("invalid_token", "The access token is not valid.") from None


def jwt_key(settings: Settings) -> str:
    """The access-token key: the setting, or one generated once into the state folder."""
    if settings.jwt_secret:
        return settings.jwt_secret.get_secret_value()
    path = settings.state_dir / "jwt_secret"
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()

"""Webhooks' rules that both the API and the worker apply: signing secrets (generated,
shown to the tenant once, stored encrypted) and which URLs may be called (SSRF).

## Secrets

The secret is `whsec_` + base64 of 24 random bytes (the Standard Webhooks form). The
database keeps only its AES-256-GCM ciphertext (core.webhook_endpoints.secret_ciphertext):
the key comes from the environment (settings.webhook_encryption_keys) and never reaches
SQL, so a dump or a replica of the database does not give away the secrets. The API
encrypts (api/resources/webhooks.py), the worker decrypts (jobs/webhook_delivery.py);
both import this module, so it lives in db/.

A ciphertext is `<key id>` `:` 12-byte nonce, ciphertext and tag; the tenant id is the
associated data, so a ciphertext copied into another tenant's row does not decrypt.
Keys rotate: the first key of the setting encrypts, every listed key decrypts (each
ciphertext names its key).

## URLs (SSRF)
An endpoint's URL must be https, on a host that is a public address. With
settings.webhooks_allow_private_addresses (local development, tests) http and loopback or
private addresses are allowed. The API checks the form when an endpoint is registered
(`url_problem`: scheme, a literal address, `localhost`); the sender resolves the host
before each attempt and refuses an address that is not public (`public_address`), then
connects to that very address (no second lookup a rebinding DNS could answer otherwise).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from db.settings import Settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SecretKeyError(ValueError):
    """The key setting is malformed, or a ciphertext names a key that is not configured."""


@dataclass(frozen=True)
class Keyring:
    """The AES-256 keys by id; `current` encrypts."""

    keys: dict[str, bytes]
    current: str

    def encrypt(self, secret: str, tenant_id: uuid.UUID) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, secret.encode(), tenant_id.bytes)
        return self.current.encode() + b":" + nonce + sealed

    def decrypt(self, ciphertext: bytes, tenant_id: uuid.UUID) -> str:
        key_id, sep, rest = bytes(ciphertext).partition(b":")
        key = self.keys.get(key_id.decode(errors="replace"))
        if not sep or key is None:
            raise SecretKeyError(
                f"the secret was encrypted with key {key_id.decode(errors='replace')!r}, not configured"
            )
        try:
            return AESGCM(key).decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], tenant_id.bytes).decode()
        except InvalidTag:
            raise SecretKeyError("the secret does not decrypt with its key (wrong key or tenant)") from None


def new_secret() -> str:
    """A fresh signing secret, `whsec_<base64 of 24 random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (its base64 part decoded)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def parse_keys(raw: str) -> Keyring:
    """`id:base64key,id2:base64key2` as a keyring (the first is current)."""
    keys: dict[str, bytes] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not KEY_ID.fullmatch(key_id):
            raise SecretKeyError("each webhook key is <id>:<base64 of 32 bytes>, the id 1-32 letters, digits, - or _")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SecretKeyError(f"webhook key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise SecretKeyError(f"webhook key {key_id!r} is {len(key)} bytes, not 32 (AES-256)")
        keys[key_id] = key
    if not keys:
        raise SecretKeyError("no webhook key configured")
    return Keyring(keys, next(iter(keys)))


def new_key_entry(key_id: str = "k1") -> str:
    """A new `id:base64key` entry for the setting."""
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def keyring(settings: Settings) -> Keyring:
    """The configured keys, or a key generated once into <state_dir>/webhook_keys (one
    machine: the API and the worker of that machine share it)."""
    if settings.webhook_encryption_keys:
        return parse_keys(settings.webhook_encryption_keys.get_secret_value())
    path = settings.state_dir / "webhook_keys"
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_key_entry("local"))
    return parse_keys(path.read_text().strip())


# -- URLs ----------------------------------------------------------------------------------


class AddressRefused(ValueError):
    """The URL's host is (or resolves to) an address webhooks may not call."""


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (169.254/16,
    the cloud metadata service), shared (100.64/10), multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why an endpoint URL is refused when registered (None: accepted). The database
    checks its form too (webhook_endpoints_url_check); resolution happens at send time."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "The URL cannot be parsed."
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "A webhook URL is https://host/path."
    if parts.username or parts.password:
        return "A webhook URL carries no user name or password."
    if parts.scheme == "http" and not allow_private:
        return "A webhook URL must use https."
    if port == 0:
        return "The URL's port is not valid."
    if allow_private:
        return None
    host = parts.hostname.lower().rstrip(".")
    literal = _literal_address(host)
    if literal is not None and not is_public(literal):
        return f"{literal} is not a public address: webhooks are not sent to private, loopback or link-local addresses."
    if host == "localhost" or host.endswith(".localhost"):
        return "Webhooks are not sent to localhost."
    return None


def public_address(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for `host`: resolved now, refused (AddressRefused) when
    any address it resolves to is not public, unless private addresses are allowed."""
    literal = _literal_address(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise AddressRefused(f"{host} does not resolve: {exc.strerror}") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allow_private:
        refused = [address for address in found if not is_public(address)]
        if refused:
            raise AddressRefused(f"{host} resolves to {refused[0]}, which is not a public address")
    return str(found[0])

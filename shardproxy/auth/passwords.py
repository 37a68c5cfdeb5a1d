"""Password hashing (argon2id via argon2-cffi), API keys, and the token format pymilvus sends.

pymilvus puts ``authorization: base64(token)`` on every call, where the token is
``user:password`` or an API key (no colon). Passwords are stored as argon2id hashes; API keys
as their SHA-256 (they are long random strings, so a fast hash is enough); the proxy's cache of
verified tokens is keyed by a SHA-256 as well, so no plaintext secret stays in memory maps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for argon2id (19 MiB, 2 passes): ~20 ms per verify on one core; verified
# tokens are cached, so a call pays it once per proxy and password.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
API_KEY_PREFIX = "spk_"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_password(nbytes: int = 12) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class Token:
    """A decoded ``authorization`` header: user + password, or an API key (user empty)."""

    user: str
    password: str
    api_key: str = ""


class BadToken(ValueError):
    pass


def parse_authorization(value: str) -> Token:
    """Decode the header value (base64 of ``user:password`` or of an API key)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadToken("invalid token format") from exc
    if ":" in raw:
        user, password = raw.split(":", 1)
        return Token(user, password)
    return Token("", "", raw)


def encode_token(token: str) -> str:
    """What a client sends for ``token`` (``user:password`` or an API key)."""
    return base64.b64encode(token.encode()).decode()


def decode_b64_password(value: str) -> str:
    """CreateCredential/UpdateCredential carry the password base64-encoded (pymilvus does it)."""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadToken("password is not valid base64") from exc

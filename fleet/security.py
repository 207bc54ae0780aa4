"""Passwords (argon2id) and access tokens (JWT, HS256)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fleet.errors import Unauthorized

_hasher = PasswordHasher()
ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(subject: str, secret: str, minutes: int, **claims: Any) -> str:
    now = datetime.now(UTC)
    payload = {"sub": subject, "iat": now, "exp": now + timedelta(minutes=minutes), **claims}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> dict[str, Any]:
    """The claims of a token signed with ``secret`` that has not expired; else 401.

    The claims (not to be modified) of a token verified once are kept, by the token's whole
    text, signature included, so each request of a session does not verify its signature
    again (a tenth of a booking read's CPU); its expiry is checked every time, as PyJWT
    would (expired when ``exp`` ≤ now). Tokens that fail are never kept."""
    try:
        claims, expires = _verified(token, secret)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired: log in again") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid token") from exc
    if expires <= time.time():
        raise Unauthorized("token expired: log in again")
    return claims


@lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[dict[str, Any], float]:
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
    return claims, float(claims["exp"])


# --- MQTT terminal secrets -----------------------------------------------------------------
# Terminal secrets are stored in Mosquitto's own password-file format (PBKDF2-HMAC-SHA512,
# "$7$iterations$salt$hash", as mosquitto_passwd writes it), so `gongche mqtt-passwd` can
# write the broker's password file from the database without ever keeping the plaintext.
MQTT_PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$


def hash_mqtt_secret(secret: str, salt: bytes | None = None,
                     iterations: int = MQTT_PBKDF2_ITERATIONS) -> str:
    import base64
    import hashlib
    import os

    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def verify_mqtt_secret(secret: str, stored: str) -> bool:
    import base64
    import hmac

    try:
        _, kind, iterations, salt, _digest = stored.split("$")
        if kind != "7":
            return False
        expected = hash_mqtt_secret(secret, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, stored)

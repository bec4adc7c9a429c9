"""Password hashing with scrypt (stdlib), slow on purpose: callers run it in a thread.

Stored form: `scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>`, a per-user random salt, and the
cost parameters kept with the hash so they can be raised later without breaking old passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # ~16 MiB and some tens of milliseconds per hash
_LENGTH = 32
MAX_PASSWORD_BYTES = 1024
_DUMMY = f"scrypt${N}${R}${P}${base64.b64encode(bytes(16)).decode()}${base64.b64encode(bytes(32)).decode()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + (1 << 20), dklen=_LENGTH)


def hash_password(password: str) -> str:
    """The stored form of `password`; ValueError if it is empty or over 1024 UTF-8 bytes."""
    if not password or len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be 1 to {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`. With no stored hash (unknown user, user without a
    password) the same work is done against a dummy, so timing does not tell users apart."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        return False
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if scheme != "scrypt" or not (1 < int(n) <= 2**20 and 0 < int(r) <= 32 and 0 < int(p) <= 16):
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected) and stored is not None

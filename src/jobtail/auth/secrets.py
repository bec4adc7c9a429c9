"""Key material: the master key, access keys and their derived secret keys, tokens, private files.

A secret key is never stored anywhere: it is `SK = base32(HMAC-SHA256(master_key, "jobtail-sk:" + AK))`
cut to 40 characters, so the database holds nothing that signs requests, and whoever holds the
master key file can recompute any SK. Rotating (replacing) the master key therefore invalidates
every AK/SK pair at once; replicas must share one master key file.

Tokens are 256 random bits; only their SHA-256 digest is stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from jobtail.auth.errors import MasterKeyError

MASTER_KEY_BYTES = 32
ACCESS_KEY_LENGTH = 20  # like Huawei Cloud AKs
SECRET_KEY_LENGTH = 40  # like Huawei Cloud SKs
TOKEN_PREFIX = "jt_"  # lets secret scanners recognise a leaked token


def create_private_file(path: Path, data: bytes, *, replace: bool = False) -> bool:
    """Write `data` to `path` with mode 600 from the first byte, atomically.

    The bytes go to a temporary file created with mode 600 in the same directory (never chmod
    after writing), which is then linked into place (`replace=False`: False if `path` already
    exists, and nothing is changed) or renamed over it (`replace=True`). Readers never see a
    partial file, and two processes creating the same file at once agree on one of them.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        _fsync_directory(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_master_key(path: Path, *, create: bool = True) -> bytes:
    """The master key in `path` (hex), creating a random one (mode 600) first if `create` and absent."""
    if create and not path.exists():
        create_private_file(path, secrets.token_hex(MASTER_KEY_BYTES).encode() + b"\n")
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        raise MasterKeyError(f"master key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise MasterKeyError(f"master key file {path} does not hold a hex key") from None
    if len(key) < MASTER_KEY_BYTES:
        raise MasterKeyError(f"master key in {path} is shorter than {MASTER_KEY_BYTES} bytes")
    return key


def new_access_key() -> str:
    """20 characters of uppercase base32 (100 random bits)."""
    return base64.b32encode(secrets.token_bytes(13)).decode()[:ACCESS_KEY_LENGTH]


def secret_key_for(master_key: bytes, access_key: str) -> str:
    """The secret key of `access_key`: 40 uppercase base32 characters (200 bits) keyed by the master key."""
    digest = hmac.new(master_key, b"jobtail-sk:" + access_key.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[: SECRET_KEY_LENGTH * 5 // 8]).decode()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored of a token: the lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

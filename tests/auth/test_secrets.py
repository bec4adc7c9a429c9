"""Key material: the master key file, derived secret keys, tokens, private files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from jobtail.auth.errors import MasterKeyError
from jobtail.auth.secrets import (
    create_private_file,
    load_master_key,
    new_access_key,
    new_token,
    secret_key_for,
    token_digest,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_master_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.key"
    key = load_master_key(path)
    assert len(key) == 32 and mode(path) == 0o600
    assert load_master_key(path) == key
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_mode_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_private_file(tmp_path / "f", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_master_key(path))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 16


def test_create_without_replace_keeps_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert create_private_file(path, b"one")
    assert not create_private_file(path, b"two")
    assert path.read_bytes() == b"one"
    assert create_private_file(path, b"three", replace=True)
    assert path.read_bytes() == b"three" and mode(path) == 0o600


@pytest.mark.parametrize("content", [b"", b"not hex\n", b"abcd\n", b"\xff\xfe"])
def test_malformed_master_keys_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(content)
    with pytest.raises(MasterKeyError):
        load_master_key(path)


def test_missing_master_key_without_create(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_master_key(tmp_path / "nope", create=False)


def test_secret_keys_are_derived_from_the_access_key_and_the_master_key() -> None:
    master, other = b"m" * 32, b"o" * 32
    ak = new_access_key()
    assert len(ak) == 20 and ak.isalnum() and ak.isupper()
    sk = secret_key_for(master, ak)
    assert len(sk) == 40 and sk.isalnum()
    assert secret_key_for(master, ak) == sk
    assert secret_key_for(other, ak) != sk  # a new master key voids every SK
    assert secret_key_for(master, new_access_key()) != sk
    assert len({new_access_key() for _ in range(1000)}) == 1000


def test_tokens_are_random_and_stored_as_sha256() -> None:
    token = new_token()
    assert token.startswith("jt_") and len(token) > 40
    assert token != new_token()
    digest = token_digest(token)
    assert len(digest) == 64 and digest == token_digest(token)
    assert token_digest("\udcff") != token_digest("x")  # undecodable input still hashes

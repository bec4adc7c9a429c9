"""scrypt password hashes."""

from __future__ import annotations

import pytest

from jobtail.auth.passwords import hash_password, verify_password


def test_round_trip_and_salting() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert not verify_password("", stored)
    assert hash_password("correct horse") != stored  # per-user salt


def test_no_hash_never_verifies() -> None:
    assert not verify_password("anything", None)


def test_malformed_hashes_never_verify() -> None:
    good = hash_password("pw")
    for stored in ["", "plain", "md5$1$2$3$4$5", good.replace("scrypt", "other"), "scrypt$99999999$8$1$AA==$AA==",
                   "scrypt$16384$8$1$!!$AA==", good[:-4]]:
        assert not verify_password("pw", stored), stored


def test_empty_and_overlong_passwords_are_refused() -> None:
    for password in ("", "x" * 1025, "é" * 513):
        with pytest.raises(ValueError):
            hash_password(password)
    assert not verify_password("x" * 5000, hash_password("x" * 1024))

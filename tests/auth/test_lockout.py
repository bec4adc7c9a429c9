"""Consecutive failures lock one (key, address) pair for a while."""

from __future__ import annotations

from jobtail.auth.lockout import Lockout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_lock_for_five_minutes() -> None:
    clock = Clock()
    lockout = Lockout(clock=clock)
    for _ in range(4):
        assert not lockout.failed("AK", "1.2.3.4")
        assert not lockout.locked("AK", "1.2.3.4")
    assert lockout.failed("AK", "1.2.3.4")
    assert lockout.locked("AK", "1.2.3.4")
    assert not lockout.locked("AK", "5.6.7.8")  # another address: a guessed AK locks out nobody else
    assert not lockout.locked("AK2", "1.2.3.4")
    clock.now += 299
    assert lockout.locked("AK", "1.2.3.4")
    clock.now += 2
    assert not lockout.locked("AK", "1.2.3.4")
    assert not lockout.failed("AK", "1.2.3.4")  # the count starts again


def test_success_resets() -> None:
    lockout = Lockout(clock=Clock())
    for _ in range(3):
        for _ in range(4):
            lockout.failed("AK", "a")
        lockout.succeeded("AK", "a")
    assert not lockout.locked("AK", "a")


def test_memory_is_bounded() -> None:
    lockout = Lockout(max_entries=10, clock=Clock())
    for _ in range(5):
        lockout.failed("victim", "a")
    assert lockout.locked("victim", "a")
    for i in range(9):
        lockout.failed(f"k{i}", "a")
    assert lockout.locked("victim", "a")
    lockout.failed("k-last", "a")  # the oldest entry goes first
    assert not lockout.locked("victim", "a")
    assert len(lockout._entries) == 10

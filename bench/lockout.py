"""The shared limits' cost (jobtail.auth.shared_lockout, jobtail.auth.shared_rates) against the
per-process ones.

    .venv/bin/python bench/lockout.py

On a throwaway PostgreSQL server (tests/support/postgres.py, default durability): the success
path of a request (`locked()` then `succeeded()`, as `Authenticator.verify` calls them) for the
in-memory `Lockout` and for `SharedLockout`, interleaved, medians of 3 runs of 200,000 calls; the
cost of a failure on the request thread; and how long a fifth failure on one replica takes to
lock the key on another (median of 20). Then the rate limiter's `take` per request alone and
shared (its exchange thread writing and reading `rate_spend` every 0.1 s meanwhile), interleaved,
medians of 3 runs of 200,000 calls, and what one exchange costs the thread (median of 20).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sqlalchemy import create_engine
from support.postgres import start_postgres

from jobtail.auth.lockout import Lockout
from jobtail.auth.shared_lockout import SharedLockout
from jobtail.auth.shared_rates import SpendExchange
from jobtail.http.access import Principal
from jobtail.http.limits import RateLimiter
from jobtail.meta import open_database

CALLS = 200_000


def success_path_ns(lockout: Lockout) -> float:
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        lockout.locked("AKAKAKAKAKAKAKAKAKAK", "10.0.0.1")
        lockout.succeeded("AKAKAKAKAKAKAKAKAKAK", "10.0.0.1")
    return (time.perf_counter_ns() - started) / CALLS


def take_ns(limiter: RateLimiter) -> float:
    caller = Principal("alice", kind="project")
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        limiter.take(caller)
    return (time.perf_counter_ns() - started) / CALLS


def main() -> None:
    server = start_postgres(durable=True)
    try:
        open_database(server.url).close()
        engine = create_engine(server.url.replace("postgresql://", "postgresql+psycopg://", 1))
        a, b = SharedLockout(engine), SharedLockout(engine)
        assert a.wait_live(10) and b.wait_live(10)
        local: list[float] = []
        shared: list[float] = []
        for _ in range(3):
            local.append(success_path_ns(Lockout()))
            shared.append(success_path_ns(a))
        failure_us, lock_ms = [], []
        for attempt in range(20):
            key = f"AK{attempt:018d}"
            for _ in range(4):
                a.failed(key, "10.0.0.1")
            started = time.perf_counter()
            a.failed(key, "10.0.0.1")
            failure_us.append((time.perf_counter() - started) * 1e6)
            while not b.locked(key, "10.0.0.1"):
                time.sleep(0.0002)
            lock_ms.append((time.perf_counter() - started) * 1e3)
        a.close()
        b.close()
        alone: list[float] = []
        traded: list[float] = []
        exchange = SpendExchange(engine)
        for _ in range(3):
            alone.append(take_ns(RateLimiter(1e12)))
            limiter = RateLimiter(1e12)
            limiter.share(exchange.exchange)
            traded.append(take_ns(limiter))
            limiter.close()
        exchange_ms = []
        for round_ in range(20):
            started = time.perf_counter()
            exchange.exchange({"alice": round_ + 1}, ["alice"])
            exchange_ms.append((time.perf_counter() - started) * 1e3)
        engine.dispose()
    finally:
        server.stop()
    print(f"success path (locked + succeeded), per request: Lockout {statistics.median(local):.0f} ns, "
          f"SharedLockout {statistics.median(shared):.0f} ns (medians of 3 × {CALLS})")
    print(f"a failure on the request thread: {statistics.median(failure_us):.1f} µs (median of 20; the write is queued)")
    print(f"fifth failure on replica A → locked on replica B: {statistics.median(lock_ms):.2f} ms "
          f"(median of 20; max {max(lock_ms):.2f} ms)")
    print(f"rate limit, per request: alone {statistics.median(alone):.0f} ns, shared {statistics.median(traded):.0f} ns "
          f"(medians of 3 × {CALLS}); one exchange {statistics.median(exchange_ms):.2f} ms (median of 20)")


if __name__ == "__main__":
    main()

"""Benchmark what authentication adds per request: IdentityGuard (AK/SK, token) against OpenGuard.

    .venv/bin/python bench/auth.py [--requests 400] [--rounds 7] [--database-url postgresql://…]

One jobtail app runs in-process behind httpx's ASGI transport (no sockets, so the difference is
the server's own work). The same preview request of a small log is sent with each guard in turn,
one request each (the order rotating), and each guarded request is compared with the OpenGuard
request sent beside it: the median of those paired differences is what the guard adds. Requests
are signed once up front (an X-Sdk-Date stays valid for 15 minutes), so client-side signing is
not counted. A breakdown times the pieces of the AK/SK path alone: parsing and verifying the
signature, deriving the secret key, and the database lookups (uncached: SQLite lookups always
are; on PostgreSQL the server keeps found keys in memory, kept current by LISTEN/NOTIFY, so these
run once per key and minute or after any identity change).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from jobtail.auth import manage
from jobtail.auth.secrets import load_master_key, new_token, secret_key_for, token_digest
from jobtail.auth.signing import parse_authorization, payload_hash, sign_request, verify
from jobtail.core.types import JobSpec, TaskRef
from jobtail.http.access import Guard, OpenGuard
from jobtail.http.app import create_app
from jobtail.http.guard import IdentityGuard
from jobtail.settings import Settings
from jobtail.wiring import open_identity, open_jobs, open_services

HOST = "jobtail.bench"


def micro(fn: Callable[[], object], n: int = 2000) -> float:
    """Median µs of `fn` over n calls, in batches of 100."""
    samples = []
    for _ in range(n // 100):
        start = time.perf_counter()
        for _ in range(100):
            fn()
        samples.append((time.perf_counter() - start) / 100)
    return statistics.median(samples) * 1e6


async def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    settings = Settings(data_dir=data_dir, executor="none", seal_idle_seconds=3600.0, rate_limit_per_second=0,
                        **({"database_url": args.database_url} if args.database_url else {}))
    master_key = load_master_key(Path(settings.master_key_file))
    with open_identity(settings) as admin:
        project = manage.create_project(admin, f"bench-{time.time_ns()}").id
        issued = manage.create_credential(admin, master_key, project_id=project, role="viewer")
        user = manage.create_user(admin, f"bench-{time.time_ns()}")
        manage.grant(admin, user.name, project, "viewer")
        token = new_token()
        admin.issue_token(token_digest(token), user.id, project, time.time() + 3600, time.time())
    with open_jobs(settings) as (jobs, store):
        job = jobs.create(project, JobSpec("bench"), "none").id
        store.append(TaskRef(project, job, "worker-0"), b"epoch 1 loss 0.5\n" * 20)

    path = f"/v2/{project}/training-jobs/{job}/tasks/worker-0/logs/preview"
    base = {"Host": HOST, "Content-Type": "application/json", "X-Project-Id": project,
            "User-Agent": "huaweicloud-usdk-python/3.0"}
    signed = {**base, **sign_request("GET", path, base, b"", issued.credential.access_key, issued.secret_key)}
    switch = Switch()
    app = create_app(settings, open_services, guard=switch)  # the server's services, the guard switched per request
    names = ["open", "aksk", "token"]
    times: dict[str, list[float]] = {name: [] for name in names}
    async with app.router.lifespan_context(app):
        authenticator = app.state.context.services.authenticator  # on the server's own identity store
        identity = authenticator.identity
        guards: dict[str, tuple[Guard, dict[str, str]]] = {
            "open": (OpenGuard(), base),
            "aksk": (IdentityGuard(authenticator), signed),
            "token": (IdentityGuard(authenticator), {**base, "X-Auth-Token": token}),
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as http:
            # One request per guard in turn (the order rotating), so that whatever else the
            # machine does falls on all three alike; the first round warms up and is not counted.
            for round_no in range(args.rounds + 1):
                for i in range(args.requests):
                    k = i % len(names)
                    for name in names[k:] + names[:k]:
                        switch.current, headers = guards[name]
                        start = time.perf_counter()
                        r = await http.get(path, headers=headers)
                        elapsed = time.perf_counter() - start
                        if r.status_code != 200:
                            raise SystemExit(f"{name}: {r.status_code} {r.text}")
                        if round_no:
                            times[name].append(elapsed)

        breakdown = pieces(identity, master_key, path, signed, issued.credential.access_key, project, token)
    medians = {name: statistics.median(samples) * 1e6 for name, samples in times.items()}
    # Paired: each request against the OpenGuard request sent right beside it.
    added = {name: statistics.median(a - b for a, b in zip(times[name], times["open"], strict=True)) * 1e6
             for name in names if name != "open"}
    print(f"\nper-request time, median of {args.rounds} x {args.requests} requests per guard "
          f"({settings.database_url.split(':')[0]}):")
    for name in names:
        extra = "" if name == "open" else f"   guard adds {added[name]:.0f} µs (median of paired differences)"
        print(f"  {name:6s} {medians[name]:8.0f} µs{extra}")
    print("pieces of the guard, in isolation (median µs per call):")
    for name, value in breakdown.items():
        print(f"  {name:28s} {value:8.1f}")
    return {**medians, **{f"{name} added": value for name, value in added.items()}, **breakdown}


class Switch:
    """A guard that asks `current`: one app, its guard chosen per request."""

    def __init__(self) -> None:
        self.current: Guard = OpenGuard()

    async def admit(self, request: Any, action: str, project_id: str | None) -> Any:
        return await self.current.admit(request, action, project_id)

    async def authorize(self, request: Any, action: str, project_id: str) -> Any:
        return await self.current.authorize(request, action, project_id)


def pieces(identity: Any, master_key: bytes, path: str, signed: dict[str, str], access_key: str, project: str,
           token: str) -> dict[str, float]:
    """The AK/SK path's pieces timed alone."""
    lowered = {k.lower(): v for k, v in signed.items()}
    sk = secret_key_for(master_key, access_key)
    issued_key = access_key
    return {
        "parse+verify signature": micro(lambda: verify("GET", path.encode(), b"", lowered, payload_hash(b"", None),
                                                       parse_authorization(signed["Authorization"]), sk)),  # type: ignore[arg-type]
        "derive SK from AK": micro(lambda: secret_key_for(master_key, issued_key)),
        "credential lookup, uncached": micro(lambda: identity.credential_access(issued_key, project), 500),
        "token lookup, uncached": micro(lambda: identity.token_access(token_digest(token), project), 500),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400, help="requests per guard per round")
    p.add_argument("--rounds", type=int, default=7, help="counted rounds (one more warms up)")
    p.add_argument("--database-url", default="", help="metadata database (default: SQLite in a temp dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobtail-bench-auth-") as tmp:
        asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())

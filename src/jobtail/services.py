"""The services one server process works with, as one typed bundle.

`jobtail.wiring.open_services` builds them from Settings (the one place that knows which backend a
URL names); the HTTP layer receives them in its lifespan (`jobtail.http.app.create_app`) and
reaches them through one typed helper (`jobtail.http.context.context`), never through backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from jobtail.auth.authenticator import Authenticator
from jobtail.core.jobs import JobService
from jobtail.core.store import LogStore, PreviewEncoder
from jobtail.settings import Settings


class Executor(Protocol):
    """What runs created jobs (`jobtail.runner.local.LocalExecutor`), as the API sees it."""

    def wake(self) -> None:
        """Look at the jobs now rather than at the next poll (a job was created, stopped or deleted)."""


@dataclass(frozen=True, slots=True)
class Services:
    """`store`: the task logs; `jobs`: the job rules and records; `authenticator`: AK/SK
    signatures, tokens and logins, on the same database (None: an app without an identity
    store, whose guard is given); `link_key`: signs temporary log links; `executor`: the local
    executor, when this process runs jobs; `ready`: what of the backends does not answer now
    (blocking; [] when all do), for the readiness check; `rate_exchange`: how the rate limiter
    trades what it admitted with the other replicas (`SpendExchange.exchange`; None: it limits
    alone)."""

    store: LogStore
    jobs: JobService
    link_key: bytes
    authenticator: Authenticator | None = None
    executor: Executor | None = None
    ready: Callable[[], list[str]] | None = None
    rate_exchange: Callable[[Mapping[str, int], list[str]], Mapping[tuple[str, str], int]] | None = None


# Opens the services for `settings`, the store encoding previews with the given encoder; closing
# the context closes them.
ServicesOpener = Callable[[Settings, PreviewEncoder], AbstractContextManager[Services]]

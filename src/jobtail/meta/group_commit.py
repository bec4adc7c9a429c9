"""Group commit: the commits that threads of one process wait for at the same moment, made as one
database transaction (one write lock taken, one WAL fsync) instead of one each.

A thread hands its item to `GroupCommit.submit` and waits. If no commit is under way it commits
at once, alone; otherwise it waits for the one under way to end, and the first waiter then
commits every item that queued meanwhile in one call. So one thread on its own pays exactly what
it paid before, and N threads arriving together pay about one commit instead of N serialised
ones (SQLite has one writer lock: they would queue on it and each fsync the WAL). A thread
returns only once the transaction holding its item is durable; when that transaction fails,
every item in it gets the error: none of them was committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Waiter(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Calls `commit_all(items)` (one transaction; returns one result per item, in order) for
    the items of every thread waiting at that moment; see the module docstring."""

    def __init__(self, commit_all: Callable[[Sequence[Item]], Sequence[Result]]) -> None:
        self._commit_all = commit_all
        self._changed = threading.Condition()
        self._queue: list[_Waiter[Item, Result]] = []
        self._committing = False

    def submit(self, item: Item) -> Result:
        """`item`'s result once the transaction holding it is committed; raises its error."""
        waiter: _Waiter[Item, Result] = _Waiter(item)
        with self._changed:
            self._queue.append(waiter)
            while self._committing and not waiter.done:
                self._changed.wait()
            if not waiter.done:  # the next commit is ours to make: it takes everyone queued
                batch, self._queue = self._queue, []
                self._committing = True
        if not waiter.done:
            self._commit(batch)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]  # set when done without an error

    def _commit(self, batch: list[_Waiter[Item, Result]]) -> None:
        try:
            results = self._commit_all([w.item for w in batch])
        except BaseException as exc:  # every waiter of the batch gets it
            for w in batch:
                w.error = exc
        else:
            for w, result in zip(batch, results, strict=True):
                w.result = result
        finally:
            with self._changed:
                for w in batch:
                    w.done = True
                self._committing = False
                self._changed.notify_all()

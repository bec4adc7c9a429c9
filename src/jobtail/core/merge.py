"""The task logs of one job read as one log, by arrival: pages of the merged order, positions in it.

A line *arrives* when its last byte (its newline, or the log's last byte) does: the arrival time
of the append that brought that byte (`LogStore.arrival_times`, exact to the append). The merged order
is (arrival, the task's place in the list, line number). Arrival never decreases along a log,
so the lines before any point of the merged order are, in each task, its lines up to some
number: a **cursor** is those numbers, one per task (absolute line numbers, as in line pages).
A cursor's **position** counts the retained lines before it; positions run from 0 to `total`.

- `page_after` / `page_before`: the next or previous `count` lines from a cursor (a k-way merge
  of per-task line pages), in merged order, with the cursors around them.
- `cursor_at(position)`: the cursor with exactly that many lines before it. The lines of a task
  that arrived before time t are those whose newline precedes the first append at or after t,
  so counting them costs one lookup per task; bisecting t finds the point where the count
  passes `position`, and the few lines that arrived at that very time are counted off in task order.

Everything is read from one snapshot (`LogState`) per task, fixed by `MergedLog`.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from jobtail.core.lines import Line
from jobtail.core.store import LogStore
from jobtail.core.types import LogState, TaskRef

_BISECT_STEPS = 64  # over [0, 2**40) seconds: finer than a microsecond
_LATEST = float(2**40)


@dataclass(frozen=True, slots=True)
class TaskSpan:
    """One task of a merged log, as of its snapshot."""

    task: str
    first: int  # its first retained line
    last: int  # its last line (first - 1 when it has none)
    end_offset: int
    last_arrival: float | None  # when its last byte arrived; None for an empty log


@dataclass(frozen=True, slots=True)
class MergedLine:
    task: str
    arrival: float
    line: Line


@dataclass(frozen=True, slots=True)
class MergedPage:
    lines: list[MergedLine]  # in merged order
    start: tuple[int, ...]  # the cursor before the first line
    end: tuple[int, ...]  # the cursor after the last line


class MergedLog:
    """A snapshot of the named tasks' logs, merged (see the module docstring). `collapse_cr` as
    in `LogStore.lines`. With `complete_only`, a log's last line counts only once its newline
    has arrived (for a running job: a line still being written has not arrived yet, and a reader
    past it would never see the rest of it)."""

    def __init__(self, store: LogStore, refs: Sequence[TaskRef], *, collapse_cr: bool = False,
                 complete_only: bool = False) -> None:
        self._store = store
        self._refs = list(refs)
        self._collapse = collapse_cr
        self._complete_only = complete_only
        self._states: list[LogState] = [store.state(ref) for ref in refs]
        self._finals: list[int] = []  # each log's last line, complete or not
        self.spans = [self._span(ref, state) for ref, state in zip(self._refs, self._states, strict=True)]

    def _span(self, ref: TaskRef, state: LogState) -> TaskSpan:
        first, last = self._store.line_range(state)
        self._finals.append(last)
        if self._complete_only:
            last = min(last, state.line_count)
        arrival = self._store.arrival_times(state, [state.end_offset - 1])[0] if state.end_offset else None
        return TaskSpan(ref.task_id, first, last, state.end_offset, arrival)

    @property
    def states(self) -> list[LogState]:
        """Each task's log as of the snapshot: what a follower waits past (`LogStore.follow`)."""
        return list(self._states)

    @property
    def total(self) -> int:
        """Retained lines in all the tasks."""
        return sum(span.last - span.first + 1 for span in self.spans)

    @property
    def first_cursor(self) -> tuple[int, ...]:
        return tuple(span.first - 1 for span in self.spans)

    @property
    def last_cursor(self) -> tuple[int, ...]:
        return tuple(span.last for span in self.spans)

    def clip(self, cursor: Sequence[int]) -> tuple[int, ...]:
        """`cursor` (one number per task) moved into each task's retained lines."""
        return tuple(min(max(c, span.first - 1), span.last) for c, span in zip(cursor, self.spans, strict=True))

    def position(self, cursor: Sequence[int]) -> int:
        return sum(c - span.first + 1 for c, span in zip(self.clip(cursor), self.spans, strict=True))

    # -- pages ----------------------------------------------------------------------------------

    def _run(self, index: int, cursor: int, count: int, descending: bool) -> list[MergedLine]:
        """Up to `count` lines of task `index` after (or, descending, up to) line `cursor`, in
        the direction of reading, with their arrivals."""
        span, state = self.spans[index], self._states[index]
        if span.last < span.first or (cursor < span.first if descending else cursor >= span.last):
            return []
        # One line more than needed: where a line ends is where the next begins (or the log ends).
        base = cursor + 2 if descending else cursor
        fetched = self._store.lines(state, base_line=base, count=count + 1, descending=descending,
                                    collapse_cr=self._collapse)
        ascending = fetched[::-1] if descending else fetched
        ends = [line.offset - 1 for line in ascending[1:]]
        if ascending and ascending[-1].number == self._finals[index]:
            ends.append(state.end_offset - 1)  # the log's last line: it ends where the log does
        top = cursor if descending else span.last
        kept = [(end, line) for end, line in zip(ends, ascending, strict=False) if line.number <= top]
        kept = kept[-count:] if descending else kept[:count]
        arrivals = self._store.arrival_times(state, [end for end, _ in kept])
        run = [MergedLine(span.task, t, line) for t, (_, line) in zip(arrivals, kept, strict=True)]
        return run[::-1] if descending else run

    def page_after(self, cursor: Sequence[int], count: int) -> MergedPage:
        start = self.clip(cursor)
        runs = [[(m.arrival, i, m.line.number, m) for m in self._run(i, c, count, False)] for i, c in enumerate(start)]
        taken = [entry[3] for entry in heapq.merge(*runs)][:count]
        return MergedPage(taken, start, self._advance(start, taken))

    def page_before(self, cursor: Sequence[int], count: int) -> MergedPage:
        end = self.clip(cursor)
        runs = [[(-m.arrival, -i, -m.line.number, m) for m in self._run(i, c, count, True)] for i, c in enumerate(end)]
        taken = [entry[3] for entry in heapq.merge(*runs)][:count][::-1]
        start = tuple(min([m.line.number - 1 for m in taken if m.task == span.task], default=c)
                      for c, span in zip(end, self.spans, strict=True))
        return MergedPage(taken, start, end)

    def _advance(self, start: tuple[int, ...], taken: list[MergedLine]) -> tuple[int, ...]:
        return tuple(max([m.line.number for m in taken if m.task == span.task], default=c)
                     for c, span in zip(start, self.spans, strict=True))

    # -- positions ------------------------------------------------------------------------------

    def _before(self, at: float) -> tuple[int, ...]:
        """The cursor of the lines that arrived before `at`."""
        return self.clip([
            self._store.line_at_time(state, at) - 1 if span.last >= span.first else span.last
            for state, span in zip(self._states, self.spans, strict=True)
        ])

    def cursor_at(self, position: int) -> tuple[int, ...]:
        """The cursor with exactly `position` lines before it (clipped to 0 … total)."""
        if position <= 0:
            return self.first_cursor
        if position >= self.total:
            return self.last_cursor
        low, high = 0.0, _LATEST
        low_cursor, high_cursor = self._before(low), self.last_cursor
        for _ in range(_BISECT_STEPS):
            middle = (low + high) / 2
            if middle in (low, high):
                break
            found = self._before(middle)
            if self.position(found) <= position:
                low, low_cursor = middle, found
            else:
                high, high_cursor = middle, found
        # Between low and high only lines of (about) one arrival time join: in task order.
        left = position - self.position(low_cursor)
        cursor = []
        for below, above in zip(low_cursor, high_cursor, strict=True):
            step = min(left, above - below)
            cursor.append(below + step)
            left -= step
        return tuple(cursor)

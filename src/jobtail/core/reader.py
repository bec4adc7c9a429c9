"""Snapshot-consistent reads of byte ranges from segments and head."""

from __future__ import annotations

from collections.abc import Iterator

from jobtail.core.blob_store import BlobNotFound, BlobStore
from jobtail.core.errors import StorageError
from jobtail.core.log_records import LogRecords
from jobtail.core.types import HeadChunk, Segment

STREAM_WINDOW = 4 * 1024 * 1024  # bytes fetched per step when streaming a long range


class Reader:
    """Reads `[start, end)` of a task log whose end offset the caller has already fixed.

    Bytes below a fixed end never change (the log is append-only and segments are immutable),
    so a read that is split over several metadata snapshots still returns one consistent prefix.
    Each piece asks the head first and the segments second, for what precedes the head's first
    chunk: a chunk sealed in between is recorded as a segment by then.
    """

    def __init__(self, records: LogRecords, blobs: BlobStore) -> None:
        self._records = records
        self._blobs = blobs

    def read(self, log_id: int, start: int, end: int) -> bytes:
        """The bytes `[start, end)`; the caller bounds the size."""
        if end <= start:
            return b""
        return b"".join(self._assemble(log_id, start, end))

    def stream(self, log_id: int, start: int, end: int, window: int = STREAM_WINDOW) -> Iterator[bytes]:
        """The bytes `[start, end)` in pieces of at most about `window` bytes, with bounded memory."""
        pos = start
        while pos < end:
            stop = min(end, pos + window)
            yield from self._assemble(log_id, pos, stop)
            pos = stop

    def _assemble(self, log_id: int, start: int, end: int) -> Iterator[bytes]:
        head = self._records.head_chunks(log_id, start, end)
        sealed_end = head[0].base_offset if head else end
        pieces: list[Segment | HeadChunk] = []
        if start < sealed_end:
            pieces.extend(self._records.segments_overlapping(log_id, start, sealed_end))
        pieces.extend(head)
        pos = start
        for piece in pieces:
            if piece.end_offset <= pos:
                continue
            if piece.base_offset > pos:
                break
            upto = min(piece.end_offset, end)
            lo, hi = pos - piece.base_offset, upto - piece.base_offset
            if isinstance(piece, Segment):
                yield self._read_blob(piece.blob_key, lo, hi)
            else:
                yield piece.data[lo:hi]
            pos = upto
            if pos >= end:
                return
        raise StorageError(
            f"log bytes [{pos}, {end}) are recorded nowhere",
            "the metadata database and the segment store disagree: restore the segment store from backup",
        )

    def _read_blob(self, key: str, start: int, end: int) -> bytes:
        try:
            data = self._blobs.read(key, start, end)
        except BlobNotFound:
            raise StorageError(
                f"segment blob {key} is missing",
                "the blob store lost a sealed segment; restore it from backup",
            ) from None
        if len(data) != end - start:
            raise StorageError(f"segment blob {key} is shorter than recorded", "restore it from backup")
        return data

"""Blob key layout for sealed segments.

`jobs/<job_id>/<task_id>/<base_offset:020d>-<end_offset:020d>.seg`: a listing sorts in offset
order, a job's blobs share one prefix (so deleting a job is one prefix sweep), and two sealers
that race over different extents never write the same key with different bytes.
"""

from __future__ import annotations

JOBS_PREFIX = "jobs/"


def job_prefix(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/"


def segment_key(job_id: str, task_id: str, base_offset: int, end_offset: int) -> str:
    return f"{job_prefix(job_id)}{task_id}/{base_offset:020d}-{end_offset:020d}.seg"

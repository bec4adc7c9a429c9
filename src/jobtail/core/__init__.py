"""The storage engine: task logs as offsets, head, segments and indexes, and the job rules.

Nothing in here knows about HTTP, authentication, the CLI, any other jobtail layer or any backend
library; it talks to metadata and blob storage only through its own protocols
(`core.job_records`, `core.log_records`, `core.blob_store`), which the backends implement.
"""

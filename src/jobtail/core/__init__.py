"""The storage engine: task logs as offsets, head, segments and indexes.

Nothing in here knows about HTTP, authentication, the CLI or any backend library; it talks to
metadata and blob storage only through the protocols in `jobtail.meta.base` and
`jobtail.core.blob_store`.
"""

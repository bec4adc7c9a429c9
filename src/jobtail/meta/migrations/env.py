"""Alembic's environment for the metadata database.

`jobtail.meta.migrate` hands a connection in `config.attributes["connection"]` (a server's start);
the `alembic` command line (making a new revision, see the README's "How to change the schema")
connects to `-x url=…` or `sqlalchemy.url`, or runs offline without one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode() or not url:
        context.configure(url=url or "sqlite://", literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()

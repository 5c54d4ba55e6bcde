"""Alembic's entry point: runs the migrations on the connection ``imgproc.adapters.schema`` hands it."""

from alembic import context

from imgproc.adapters.db import metadata

# The caller holds the migration lock on this connection (schema.py); env.py never opens its own.
context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    # Each revision commits with its version row, so an upgrade cut short resumes where it stopped.
    transaction_per_migration=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""The audit log: every operator action (plans, pauses, stops, bulk actions, keys, redeliveries).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")
OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL), nullable=False),
        # Who acted: an operator vendor's name, or "cli:<user>@<host>" for a command.
        sa.Column("who", sa.String(191), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        # What was acted on: a plan, vendor, queue, job or filter, as "kind:name".
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("details", sa.Text),
        # Where from: the request's address, or "cli".
        sa.Column("source", sa.String(191)),
        sa.Index("ix_audit_log_at", "at"),
        **OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("audit_log")

"""Plans: named limits, weight, cap and largest bulk; each vendor's plan, overrides and disabled flag.

A vendor's ``plan`` is NULL until an operator assigns one: every vendor kept
by the upgrade stays on the default plan (the environment's limits), enabled,
so the upgrade changes nothing for anyone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")
# Spelled out here, not taken from db.py: a revision stays what it was when db.py moves on.
NAME = sa.String(64).with_variant(mysql.VARCHAR(64, charset="utf8mb4", collation="utf8mb4_bin"), *MYSQL)
WHEN = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL)  # naive UTC, microseconds kept


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", NAME, nullable=False, unique=True),
        sa.Column("limit_all", sa.String(64)),
        sa.Column("limit_image", sa.String(64)),
        sa.Column("limit_bg_removal", sa.String(64)),
        sa.Column("limit_bulk", sa.String(64)),
        sa.Column("weight", sa.Integer),
        sa.Column("max_running", sa.Integer),
        sa.Column("max_items", sa.Integer),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    # SQLite adds a column in place (ALTER TABLE ... ADD COLUMN), MariaDB too: no table copy.
    op.add_column("vendors", sa.Column("plan", NAME))
    op.add_column("vendors", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("vendors", sa.Column("overrides", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("vendors") as batch:
        batch.drop_column("overrides")
        batch.drop_column("disabled")
        batch.drop_column("plan")
    op.drop_table("plans")

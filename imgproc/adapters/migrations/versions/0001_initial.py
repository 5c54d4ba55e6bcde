"""The schema of imgproc 0.1.0, the last release that made its tables with ``create_all``.

On an empty database this creates every table. On a database that release
made (tables, no ``alembic_version``) it creates only the tables missing and
keeps every row, after checking that the tables there have this revision's
columns. Types are spelled out here rather than taken from ``db.py``: a
revision stays what it was when ``db.py`` moves on.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from imgproc.errors import SchemaMismatch

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")
OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def key(length: int) -> sa.types.TypeEngine:
    """A case-sensitive key (MariaDB's default collation is not)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *MYSQL
    )


def timestamp() -> sa.types.TypeEngine:
    """Naive UTC with microseconds (MariaDB drops them unless asked)."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL)


def tables() -> list[tuple[str, list]]:
    """Each table's name and its columns and constraints, as 0.1.0's ``create_all`` made them."""
    return [
        (
            "vendors",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("name", key(64), nullable=False, unique=True),
                sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
                sa.Column("is_operator", sa.Boolean, nullable=False),
                sa.Column("created_at", timestamp(), nullable=False),
            ],
        ),
        (
            "records",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("vendor", key(64), nullable=False),
                sa.Column("record_id", key(191), nullable=False),
                sa.Column("original_url", sa.Text),
                sa.Column("bg_removed_url", sa.Text),
                sa.Column("face_crop_url", sa.Text),
                sa.Column("processed_url", sa.Text),
                sa.Column("processed", sa.Boolean, nullable=False),
                sa.Column("writes", sa.Integer, nullable=False, server_default="0"),
                sa.Column("created_at", timestamp(), nullable=False),
                sa.Column("updated_at", timestamp(), nullable=False),
                sa.UniqueConstraint("vendor", "record_id", name="uq_records_vendor_record"),
            ],
        ),
        (
            "webhook_secrets",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("vendor", key(64), nullable=False, index=True),
                sa.Column("secret", sa.String(100), nullable=False),
                sa.Column("created_at", timestamp(), nullable=False),
            ],
        ),
        (
            "webhook_messages",
            [
                sa.Column("id", sa.String(40), primary_key=True),
                sa.Column("vendor", key(64), nullable=False),
                sa.Column("type", sa.String(32), nullable=False),
                sa.Column("job_id", sa.String(64)),
                sa.Column("batch_id", sa.String(64)),
                sa.Column("url", sa.Text, nullable=False),
                sa.Column("body", sa.Text, nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("attempts", sa.Integer, nullable=False),
                sa.Column("last_status", sa.Integer),
                sa.Column("last_error", sa.Text),
                sa.Column("next_try_at", timestamp()),
                sa.Column("created_at", timestamp(), nullable=False),
                sa.Column("updated_at", timestamp(), nullable=False),
                sa.Index("ix_webhook_messages_state", "state", "vendor"),
            ],
        ),
        (
            "webhook_attempts",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("message_id", sa.String(40), nullable=False, index=True),
                sa.Column("attempt", sa.Integer, nullable=False),
                sa.Column("url", sa.Text, nullable=False),
                sa.Column("status_code", sa.Integer),
                sa.Column("error", sa.Text),
                sa.Column("latency_ms", sa.Integer),
                sa.Column("next_try_at", timestamp()),
                sa.Column("created_at", timestamp(), nullable=False),
            ],
        ),
    ]


def upgrade() -> None:
    present = sa.inspect(op.get_bind())
    for name, items in tables():
        if not present.has_table(name):
            op.create_table(name, *items, **OPTIONS)
            continue
        # A table of 0.1.0's create_all: adopted as it is, if it has what this revision describes.
        have = {column["name"] for column in present.get_columns(name)}
        missing = [c.name for c in items if isinstance(c, sa.Column) and c.name not in have]
        if missing:
            raise SchemaMismatch(
                f"table {name} exists without column(s) {', '.join(missing)}: "
                "it was not made by imgproc 0.1.0, so it cannot be taken as schema 0001"
            )


def downgrade() -> None:
    for name, _ in reversed(tables()):
        op.drop_table(name)

"""stable error codes on jobs; pending uploads (originals whose job row may never have been written)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `error` becomes the partner-facing message; `error_code` the stable reason (shared/failures.py).
    op.add_column("jobs", sa.Column("error_code", sa.String(32)))
    op.create_table(
        "pending_uploads",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_pending_uploads_created_at", "pending_uploads", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_pending_uploads_created_at", table_name="pending_uploads")
    op.drop_table("pending_uploads")
    op.drop_column("jobs", "error_code")

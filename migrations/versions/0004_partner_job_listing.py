"""the partner job listing's index: a partner's jobs, newest first (GET /v1/jobs, keyset pages)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # api/listing.py: WHERE partner_id = ? [AND status = ?] AND (created_at, id) < cursor
    # ORDER BY created_at DESC, id DESC LIMIT n — one index range scan, whatever the page.
    op.create_index("ix_jobs_partner_id_created_at_id", "jobs",
                    ["partner_id", sa.text("created_at DESC"), sa.text("id DESC")])


def downgrade() -> None:
    op.drop_index("ix_jobs_partner_id_created_at_id", table_name="jobs")

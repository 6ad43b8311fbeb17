"""a job's crop: the region of the original it upscales (POST /v1/jobs `crop`); NULL = the whole photo

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("crop_x", "crop_y", "crop_width", "crop_height")
# All four or none, and never an empty box: the same text as shared/models.py CROP_CHECK (copied, not
# imported: a migration must keep meaning what it meant when it was written).
CROP_CHECK = ("(crop_x IS NULL AND crop_y IS NULL AND crop_width IS NULL AND crop_height IS NULL) OR "
              "(crop_x IS NOT NULL AND crop_y IS NOT NULL AND crop_width IS NOT NULL AND crop_height IS NOT NULL"
              " AND crop_x >= 0 AND crop_y >= 0 AND crop_width > 0 AND crop_height > 0)")


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing, and every existing job means the whole photo.
    for name in COLUMNS:
        op.add_column("jobs", sa.Column(name, sa.Integer()))
    op.create_check_constraint(op.f("ck_jobs_crop"), "jobs", sa.text(CROP_CHECK))


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_crop"), "jobs", type_="check")
    for name in reversed(COLUMNS):
        op.drop_column("jobs", name)

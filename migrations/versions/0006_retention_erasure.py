"""retention and erasure: `expired` and `erased` tombstone statuses; the sweeper's indexes for them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD = ("queued", "running", "succeeded", "failed", "cancelled")
NEW = OLD + ("expired", "erased")
# (table, constraint, column): the CHECK constraints SQLAlchemy's non-native Enum created (0001, 0002).
CHECKS = (("jobs", "ck_jobs_job_status", "status"),
          ("job_events", "ck_job_events_from_status", "from_status"),
          ("job_events", "ck_job_events_to_status", "to_status"))


def _checks(values) -> None:
    for table, name, column in CHECKS:
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, sa.column(column).in_(values))


def upgrade() -> None:
    _checks(NEW)
    # shared/lifecycle.py retention_due: finished jobs past RETENTION_DAYS, oldest first. Partial, so
    # the tombstones that pile up over the years are never scanned.
    op.create_index("ix_jobs_retained_finished_at", "jobs", ["finished_at"],
                    postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"))
    # shared/lifecycle.py unpurged_tombstones: tombstones whose objects await the sweeper's last delete
    # (a handful at any time: the index stays tiny).
    op.create_index("ix_jobs_unpurged_tombstones", "jobs", ["updated_at"],
                    postgresql_where=sa.text("status IN ('expired', 'erased') AND result_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_jobs_unpurged_tombstones", table_name="jobs")
    op.drop_index("ix_jobs_retained_finished_at", table_name="jobs")
    # A tombstone has no status to go back to (its objects are gone): it goes, its history with it (CASCADE).
    op.execute("DELETE FROM jobs WHERE status IN ('expired', 'erased')")
    _checks(OLD)

"""job lifecycle: cancelled state, attempts allowance, backoff, leases, progress, job_events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD = ("queued", "running", "succeeded", "failed")
NEW = OLD + ("cancelled",)


def _status(values, name="job_status"):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    # The status CHECK constraint gains 'cancelled'.
    op.drop_constraint(op.f("ck_jobs_job_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_job_status"), "jobs", sa.column("status").in_(NEW))
    op.add_column("jobs", sa.Column("attempts_allowed", sa.Integer(), server_default="3", nullable=False))
    op.add_column("jobs", sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("enqueued_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("worker", sa.String(255)))
    op.add_column("jobs", sa.Column("progress_done", sa.Integer()))
    op.add_column("jobs", sa.Column("progress_total", sa.Integer()))
    op.add_column("jobs", sa.Column("cancel_requested", sa.Boolean(), server_default="false", nullable=False))
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("from_status", _status(NEW, "from_status")),
        sa.Column("to_status", _status(NEW, "to_status"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("error", sa.Text()),
        sa.Column("actor", sa.String(255)),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
    for column in ("cancel_requested", "progress_total", "progress_done", "worker", "lease_expires_at",
                   "enqueued_at", "next_attempt_at", "attempts_allowed"):
        op.drop_column("jobs", column)
    op.execute("DELETE FROM jobs WHERE status = 'cancelled'")
    op.drop_constraint(op.f("ck_jobs_job_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_job_status"), "jobs", sa.column("status").in_(OLD))

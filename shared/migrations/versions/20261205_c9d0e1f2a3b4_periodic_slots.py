"""periodic slots: one engine schedule table for every recurring kind of work

A project's recurrence and a sync job's slots were two schedulers, each with its own
``next_run_at`` column. They become rows of ``periodic_schedules`` (kind, owner, next
slot, last slot run), claimed by the engine's one tick; the old columns go. A sync job's
last slot run is carried over from its history, so no slot that ran runs again.

On SQLite the columns are dropped with SQLite's own ``ALTER TABLE ... DROP COLUMN``
rather than batch mode's copy of the table: dropping ``projects`` to copy it would
cascade to its queries, cached jobs and jobs (foreign keys are on).

Revision ID: c9d0e1f2a3b4
Revises: b7c8d9e0f1a2
Create Date: 2026-12-05 10:00:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = "c9d0e1f2a3b4"
down_revision: str | None = "b7c8d9e0f1a2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = shared.models.base.UTCDateTime(timezone=True)
# The kinds' names as their domains register them (shared.mentionlab.recurrence,
# shared.kb.scheduled_runs); written out here so the migration never changes with them.
RECURRENCE = "mentionlab.recurrence"
KB_SYNC = "kb_sync"

schedules = sa.table(
    "periodic_schedules",
    sa.column("id", sa.Uuid()),
    sa.column("organisation_id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("next_slot_at", WHEN),
    sa.column("last_slot_at", WHEN),
    sa.column("created_at", WHEN),
    sa.column("updated_at", WHEN),
)
projects = sa.table(
    "projects",
    sa.column("id", sa.Uuid()),
    sa.column("organisation_id", sa.Uuid()),
    sa.column("next_run_at", WHEN),
)
sync_jobs = sa.table(
    "sync_jobs",
    sa.column("id", sa.Uuid()),
    sa.column("organisation_id", sa.Uuid()),
    sa.column("next_run_at", WHEN),
)
sync_runs = sa.table("sync_runs", sa.column("sync_job_id", sa.Uuid()), sa.column("slot_at", WHEN))


def upgrade() -> None:
    op.create_table(
        "periodic_schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(80), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("next_slot_at", WHEN, nullable=True),
        sa.Column("last_slot_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_periodic_schedules_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_periodic_schedules")),
        sa.UniqueConstraint("kind", "owner_id", name=op.f("uq_periodic_schedules_kind")),
    )
    op.create_index("ix_periodic_schedules_next_slot_at", "periodic_schedules", ["next_slot_at"])
    op.create_index(
        op.f("ix_periodic_schedules_organisation_id"), "periodic_schedules", ["organisation_id"]
    )
    connection = op.get_bind()
    now = datetime.now(UTC)
    last_slots = (
        sa.select(sync_runs.c.sync_job_id, sa.func.max(sync_runs.c.slot_at).label("last"))
        .group_by(sync_runs.c.sync_job_id)
        .subquery()
    )
    scheduled = [
        *(
            (RECURRENCE, row.id, row.organisation_id, row.next_run_at, None)
            for row in connection.execute(
                sa.select(projects).where(projects.c.next_run_at.is_not(None))
            )
        ),
        *(
            (KB_SYNC, row.id, row.organisation_id, row.next_run_at, row.last)
            for row in connection.execute(
                sa.select(sync_jobs, last_slots.c.last)
                .outerjoin(last_slots, last_slots.c.sync_job_id == sync_jobs.c.id)
                .where(sync_jobs.c.next_run_at.is_not(None))
            )
        ),
    ]
    if scheduled:
        connection.execute(
            schedules.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "organisation_id": organisation_id,
                    "kind": kind,
                    "owner_id": owner_id,
                    "next_slot_at": next_slot_at,
                    "last_slot_at": last_slot_at,
                    "created_at": now,
                    "updated_at": now,
                }
                for kind, owner_id, organisation_id, next_slot_at, last_slot_at in scheduled
            ],
        )
    _drop_column("projects", "next_run_at", "ix_projects_next_run_at")
    _drop_column("sync_jobs", "next_run_at", "ix_sync_jobs_next_run_at")


def _drop_column(table: str, column: str, index: str) -> None:
    op.drop_index(index, table_name=table)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def downgrade() -> None:
    for table, kind in (("projects", RECURRENCE), ("sync_jobs", KB_SYNC)):
        op.add_column(table, sa.Column("next_run_at", WHEN, nullable=True))
        op.create_index(f"ix_{table}_next_run_at", table, ["next_run_at"])
        owners = sa.table(table, sa.column("id", sa.Uuid()), sa.column("next_run_at", WHEN))
        op.get_bind().execute(
            owners.update().values(
                next_run_at=sa.select(schedules.c.next_slot_at)
                .where(schedules.c.kind == kind, schedules.c.owner_id == owners.c.id)
                .scalar_subquery()
            )
        )
    op.drop_index(op.f("ix_periodic_schedules_organisation_id"), table_name="periodic_schedules")
    op.drop_index("ix_periodic_schedules_next_slot_at", table_name="periodic_schedules")
    op.drop_table("periodic_schedules")

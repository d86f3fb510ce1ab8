"""generic executions: the item as data, worker heartbeats, the job-finished outbox

Executions stop naming AI fields: ``query_id, model, run_number, language, country`` move
into ``item`` (JSON) and ``primary_mentioned`` into ``summary``; ``seq`` orders a job's
executions; ``lease_owner`` names the worker process holding a lease. Jobs get ``cost`` and
``last_dispatched_at``. Existing rows are carried over.

Revision ID: b7e1c2d3a4f5
Revises: fa1c02a6a95c
Create Date: 2026-11-24 21:50:47.531981
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.models.base

revision: str = "b7e1c2d3a4f5"
down_revision: str | None = "fa1c02a6a95c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ACTIVE = "status IN ('pending', 'retrying')"


def upgrade() -> None:
    op.create_table(
        "worker_processes",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("started_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_processes")),
    )
    with op.batch_alter_table("worker_processes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_worker_processes_heartbeat_at"), ["heartbeat_at"], unique=False
        )

    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("consumer", sa.String(length=80), nullable=False),
        sa.Column("topic", sa.String(length=80), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("organisation_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSON_DOCUMENT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", shared.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_outbox_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_events_consumer", ["consumer", "available_at"])
        batch_op.create_index(batch_op.f("ix_outbox_events_job_id"), ["job_id"])

    # New execution columns, nullable while the existing rows are filled in.
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("item", JSON_DOCUMENT, nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("summary", JSON_DOCUMENT, nullable=True))
        batch_op.add_column(sa.Column("cost", sa.Float(), nullable=False, server_default="0"))
    _carry_over_executions()
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("item", existing_type=JSON_DOCUMENT, nullable=False)
        batch_op.drop_index(batch_op.f("ix_executions_active"), postgresql_where=sa.text(ACTIVE))
        batch_op.drop_index(batch_op.f("ix_executions_job_status"))
        # The id is uuid5(job, item key): its primary key already makes (job, key) unique.
        batch_op.drop_constraint(batch_op.f("uq_executions_job_item"), type_="unique")
        batch_op.create_index("ix_executions_job_seq", ["job_id", "seq"])
        batch_op.create_index(
            "ix_executions_outstanding",
            ["dispatched_at"],
            postgresql_where=sa.text(f"dispatched_at IS NOT NULL AND {ACTIVE}"),
            sqlite_where=sa.text(f"dispatched_at IS NOT NULL AND {ACTIVE}"),
        )
        batch_op.create_index(
            "ix_executions_ready",
            ["job_id", "seq"],
            postgresql_where=sa.text(f"dispatched_at IS NULL AND {ACTIVE}"),
            sqlite_where=sa.text(f"dispatched_at IS NULL AND {ACTIVE}"),
        )
        for column in (
            "language",
            "query_id",
            "input_index",
            "primary_mentioned",
            "country",
            "model",
            "run_number",
        ):
            batch_op.drop_column(column)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column(
                "last_dispatched_at",
                shared.models.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            "ix_jobs_active",
            ["organisation_id", "last_dispatched_at"],
            postgresql_where=sa.text("status IN ('pending', 'processing')"),
            sqlite_where=sa.text("status IN ('pending', 'processing')"),
        )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for the claim's update to stay on it (a HOT update: no index
        # entry is written for it).
        op.execute("ALTER TABLE executions SET (fillfactor = 80)")


def _carry_over_executions() -> None:
    """Fill ``item``, ``summary`` and ``seq`` of existing rows from the old AI columns."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            UPDATE executions AS e SET
              item = jsonb_strip_nulls(jsonb_build_object(
                'queryId', e.query_id, 'model', e.model, 'run', e.run_number,
                'language', e.language, 'country', e.country, 'index', e.input_index)),
              summary = CASE WHEN e.primary_mentioned IS NULL THEN NULL
                        ELSE jsonb_build_object('mentioned', e.primary_mentioned) END,
              seq = o.seq
            FROM (SELECT id, row_number() OVER (
                    PARTITION BY job_id ORDER BY created_at, item_key) - 1 AS seq
                  FROM executions) AS o
            WHERE o.id = e.id
            """
        )
    else:
        op.execute(
            """
            UPDATE executions SET
              item = json_object('queryId', query_id, 'model', model, 'run', run_number,
                                 'language', language, 'country', country),
              summary = CASE WHEN primary_mentioned IS NULL THEN NULL
                        ELSE json_object('mentioned', json(CASE WHEN primary_mentioned
                                         THEN 'true' ELSE 'false' END)) END,
              seq = (SELECT count(*) FROM executions AS o
                     WHERE o.job_id = executions.job_id
                       AND (o.created_at < executions.created_at
                            OR (o.created_at = executions.created_at
                                AND o.item_key < executions.item_key)))
            """
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_jobs_active",
            postgresql_where=sa.text("status IN ('pending', 'processing')"),
            sqlite_where=sa.text("status IN ('pending', 'processing')"),
        )
        batch_op.drop_column("last_dispatched_at")
        batch_op.drop_column("cost")

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("model", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("country", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("primary_mentioned", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("input_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("query_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=5), nullable=True))
        batch_op.drop_index(
            "ix_executions_ready",
            postgresql_where=sa.text(f"dispatched_at IS NULL AND {ACTIVE}"),
            sqlite_where=sa.text(f"dispatched_at IS NULL AND {ACTIVE}"),
        )
        batch_op.drop_index(
            "ix_executions_outstanding",
            postgresql_where=sa.text(f"dispatched_at IS NOT NULL AND {ACTIVE}"),
            sqlite_where=sa.text(f"dispatched_at IS NOT NULL AND {ACTIVE}"),
        )
        batch_op.drop_index("ix_executions_job_seq")
        batch_op.create_unique_constraint(
            batch_op.f("uq_executions_job_item"), ["job_id", "item_key"]
        )
        batch_op.create_index(batch_op.f("ix_executions_job_status"), ["job_id", "status"])
        batch_op.create_index(
            batch_op.f("ix_executions_active"),
            ["status", "lease_expires_at"],
            postgresql_where=sa.text(ACTIVE),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            UPDATE executions SET
              query_id = (item->>'queryId')::uuid, model = item->>'model',
              run_number = (item->>'run')::int, language = item->>'language',
              country = item->>'country', input_index = (item->>'index')::int,
              primary_mentioned = (summary->>'mentioned')::boolean
            """
        )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        for column in ("cost", "summary", "lease_owner", "item", "seq"):
            batch_op.drop_column(column)

    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_events_job_id"))
        batch_op.drop_index("ix_outbox_events_consumer")
    op.drop_table("outbox_events")
    with op.batch_alter_table("worker_processes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_processes_heartbeat_at"))
    op.drop_table("worker_processes")

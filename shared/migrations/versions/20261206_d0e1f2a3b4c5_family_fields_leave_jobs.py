"""family fields leave jobs: a run's project in ai_runs, a batch's app and callback in batches

The engine's ``jobs`` row keeps what every job type has. ``jobs.project_id`` (Mentionlab's
project, or a super.AI batch's app) and ``jobs.callback_url`` (a batch's) move into the
families' own tables, keyed by the job: ``ai_runs(job_id, project_id)`` and
``batches(job_id, app_id, callback_url)``, each indexed on the project/app so that listing
a project's runs or an app's batches stays an index scan. Existing jobs keep their
project and callback; the downgrade moves them back.

On SQLite the columns are dropped with SQLite's own ``ALTER TABLE ... DROP COLUMN``
rather than batch mode's copy of the table: dropping ``jobs`` to copy it would cascade to
its executions, outbox events and messages (foreign keys are on). SQLite refuses to drop
a column that a foreign key names, so that constraint is first taken out of the table's
definition the way SQLite documents for removing a constraint (``writable_schema``, in
the same transaction, with the schema version moved on).

Revision ID: d0e1f2a3b4c5
Revises: c9d0e1f2a3b4
Create Date: 2026-12-06 08:00:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0e1f2a3b4c5"
down_revision: str | None = "c9d0e1f2a3b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The types' names as their domains register them; written out here so the migration
# never changes with them.
AI_QUERIES = "ai_queries"
BATCH = "batch"
PROJECT_FOREIGN_KEY = "fk_jobs_project_id_projects"


def upgrade() -> None:
    op.create_table(
        "ai_runs",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_ai_runs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_ai_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_ai_runs")),
    )
    op.create_index(op.f("ix_ai_runs_project_id"), "ai_runs", ["project_id"])
    op.create_table(
        "batches",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("callback_url", sa.String(length=2048), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_batches_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["projects.id"],
            name=op.f("fk_batches_app_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_app_id"), "batches", ["app_id"])

    connection = op.get_bind()
    stray = connection.execute(
        sa.text(
            "SELECT count(*) FROM jobs WHERE (project_id IS NOT NULL AND type NOT IN "
            "(:ai_queries, :batch)) OR (callback_url IS NOT NULL AND type <> :batch)"
        ),
        {"ai_queries": AI_QUERIES, "batch": BATCH},
    ).scalar_one()
    if stray:
        # Nothing wrote these; rather than drop what no table would keep, stop here.
        raise RuntimeError(
            f"{stray} job(s) of another type have a project or callback URL: nowhere to move it"
        )
    connection.execute(
        sa.text(
            "INSERT INTO ai_runs (job_id, project_id) SELECT id, project_id FROM jobs "
            "WHERE type = :ai_queries AND project_id IS NOT NULL"
        ),
        {"ai_queries": AI_QUERIES},
    )
    connection.execute(
        sa.text(
            "INSERT INTO batches (job_id, app_id, callback_url) "
            "SELECT id, project_id, callback_url FROM jobs "
            "WHERE type = :batch AND project_id IS NOT NULL"
        ),
        {"batch": BATCH},
    )

    op.drop_index(op.f("ix_jobs_project_id"), table_name="jobs")
    if connection.dialect.name == "sqlite":
        _drop_foreign_key_on_sqlite("jobs", PROJECT_FOREIGN_KEY)
        op.execute("ALTER TABLE jobs DROP COLUMN project_id")
        op.execute("ALTER TABLE jobs DROP COLUMN callback_url")
    else:
        op.drop_constraint(PROJECT_FOREIGN_KEY, "jobs", type_="foreignkey")
        op.drop_column("jobs", "project_id")
        op.drop_column("jobs", "callback_url")


def _drop_foreign_key_on_sqlite(table: str, name: str) -> None:
    """Take the named table constraint out of the table's stored definition (SQLite's
    "make other kinds of table schema changes": rows are untouched, and the constraint
    only ever checked them)."""
    connection = op.get_bind()
    definition = connection.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table},
    ).scalar_one()
    # As a table constraint (how the table was created), or as a column constraint (how
    # this migration's downgrade adds the column back).
    without, found = re.subn(
        rf",\s*CONSTRAINT {name} FOREIGN KEY\s*\([^)]*\)\s*REFERENCES\s+\w+\s*\([^)]*\)[^,)]*",
        "",
        definition,
    )
    without, found_on_column = re.subn(
        rf"\s+CONSTRAINT {name} REFERENCES\s+\w+\s*\([^)]*\)[^,)]*", "", without
    )
    found += found_on_column
    if found != 1:
        raise RuntimeError(f"{table}: constraint {name} not found once in {definition!r}")
    version = connection.execute(sa.text("PRAGMA schema_version")).scalar_one()
    connection.execute(sa.text("PRAGMA writable_schema = ON"))
    connection.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :table"),
        {"sql": without, "table": table},
    )
    connection.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    connection.execute(sa.text("PRAGMA writable_schema = OFF"))
    problems = connection.execute(sa.text("PRAGMA integrity_check")).scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"{table}: integrity check after the change: {problems}")


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        # ADD COLUMN may carry a foreign key when its default is NULL (no copy of jobs).
        op.execute(
            f"ALTER TABLE jobs ADD COLUMN project_id CHAR(32) CONSTRAINT {PROJECT_FOREIGN_KEY} "
            "REFERENCES projects (id) ON DELETE CASCADE"
        )
        op.execute("ALTER TABLE jobs ADD COLUMN callback_url VARCHAR(2048)")
    else:
        op.add_column("jobs", sa.Column("project_id", sa.Uuid(), nullable=True))
        op.add_column("jobs", sa.Column("callback_url", sa.String(length=2048), nullable=True))
        op.create_foreign_key(
            PROJECT_FOREIGN_KEY, "jobs", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
    connection.execute(
        sa.text(
            "UPDATE jobs SET project_id = "
            "(SELECT project_id FROM ai_runs WHERE ai_runs.job_id = jobs.id) "
            "WHERE id IN (SELECT job_id FROM ai_runs)"
        )
    )
    connection.execute(
        sa.text(
            "UPDATE jobs SET "
            "project_id = (SELECT app_id FROM batches WHERE batches.job_id = jobs.id), "
            "callback_url = (SELECT callback_url FROM batches WHERE batches.job_id = jobs.id) "
            "WHERE id IN (SELECT job_id FROM batches)"
        )
    )
    op.create_index(op.f("ix_jobs_project_id"), "jobs", ["project_id"])
    op.drop_index(op.f("ix_batches_app_id"), table_name="batches")
    op.drop_table("batches")
    op.drop_index(op.f("ix_ai_runs_project_id"), table_name="ai_runs")
    op.drop_table("ai_runs")

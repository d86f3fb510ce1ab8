"""The migrated schema is the models' schema, and Alembic's environment sees every table,
though each domain keeps its models in its own package (shared.migrate.load_every_model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from shared.db import get_engine
from shared.migrate import load_every_model
from shared.settings import PROJECT_ROOT

pytestmark = pytest.mark.every_database


def test_the_migrated_database_has_what_the_models_declare() -> None:
    """Autogenerate finds nothing to do: no table, column, index or type of a model that
    the migrations forgot, and no table they made that no model declares."""
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, load_every_model())
    assert differences == []


def test_a_fresh_process_loads_every_table_without_discovering_job_types() -> None:
    """What Alembic's environment does: only ``load_every_model()``, in an interpreter that
    imported no domain, and every table of the migrated database is known."""
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from shared.migrate import load_every_model; "
            "print(json.dumps(sorted(load_every_model().tables)))",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    migrated = set(inspect(get_engine()).get_table_names()) - {"alembic_version"}
    assert set(json.loads(found.stdout)) == migrated

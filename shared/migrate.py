"""Apply the Alembic migrations (the only way jobyard's schema changes)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from shared.settings import PROJECT_ROOT


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config for this project, aimed at ``database_url`` (default: settings)."""
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "shared" / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the database up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)

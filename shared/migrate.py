"""Apply the Alembic migrations (the only way jobyard's schema changes)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

import shared
from shared.models import Base
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


def load_every_model() -> MetaData:
    """The metadata of jobyard's whole schema, which its migrations create.

    ``shared.models`` holds the engine's and tenancy's tables; each domain keeps its own in
    a ``models`` module of its package (``shared/kb/models.py``...), which a process
    imports with the domain. What needs every table at once (Alembic's environment, a
    check of the migrated schema) imports each ``shared.<package>.models`` found here, so
    a new domain's tables are seen without being listed anywhere."""
    for package in pkgutil.iter_modules(shared.__path__):
        if not package.ispkg:
            continue
        name = f"shared.{package.name}.models"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return Base.metadata

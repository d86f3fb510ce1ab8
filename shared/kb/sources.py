"""Source databases: registered by name with a SQLAlchemy URL, checked by connecting once,
stored encrypted (Fernet), never echoed.

Which URLs are accepted, and which of their options: :mod:`shared.kb.source_urls` (an
allowlist per backend). A network database's host is resolved and must be a public
address, like every other URL a user gives (:mod:`shared.netguard`), unless
``JOBYARD_ALLOW_PRIVATE_URLS``; SQLite files are on the server itself, so they are
accepted only then too (development, tests). Every call to a source has a deadline
enforced on our side (:mod:`shared.kb.source_connections`), and an organisation runs at
most a few connection checks at once (:mod:`shared.kb.check_slots`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import URL, Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared.errors import Conflict, InvalidInput
from shared.kb.check_slots import check_slot
from shared.kb.models import DataSource, SyncJob
from shared.kb.source_connections import SourceFailed, engine_for, source_connection
from shared.kb.source_urls import invalid, parse_url
from shared.netguard import RefusedURL, resolve
from shared.scoping import get_named, list_named
from shared.settings import get_settings

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def derived_key(secret_key: str) -> str:
    """The Fernet key used when ``JOBYARD_DATA_SOURCE_KEY`` is unset: derived from
    ``SECRET_KEY`` (so rotating that one changes it: see deploy/README.md)."""
    digest = hashlib.sha256(b"jobyard data sources:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _fernet() -> MultiFernet:
    """Encrypts with the current key; decrypts with it or any previous one
    (``JOBYARD_DATA_SOURCE_PREVIOUS_KEYS``), so a key can be rotated without downtime."""
    settings = get_settings()
    current = settings.data_source_key or derived_key(settings.secret_key)
    previous = [k.strip() for k in settings.data_source_previous_keys.split(",") if k.strip()]
    return MultiFernet([Fernet(key.encode()) for key in (current, *previous)])


def encrypt(url: str) -> str:
    return _fernet().encrypt(url.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # the key changed since the source was registered
        raise InvalidInput("this source's URL cannot be decrypted with today's key") from exc


def rotate_keys(session: Session) -> tuple[int, list[uuid.UUID]]:
    """Re-encrypt every stored source URL with the current key (``jobyard
    rotate-source-key``). Returns how many were re-encrypted, and the ids of those no
    configured key can read (left as they are)."""
    fernet = _fernet()
    rotated, unreadable = 0, []
    for source in session.scalars(select(DataSource).order_by(DataSource.id)):
        try:
            source.url_encrypted = fernet.rotate(source.url_encrypted.encode()).decode()
        except InvalidToken:
            unreadable.append(source.id)
            continue
        rotated += 1
    return rotated, unreadable


def checked_address(url: URL) -> str | None:
    """The address to connect to: network databases on public addresses only (the checked
    address is the one connected to, see :func:`~shared.kb.source_connections.engine_for`);
    SQLite only where private
    addresses are allowed. None for SQLite."""
    allowed = get_settings().allow_private_urls
    if url.get_backend_name() == "sqlite":
        if not allowed:
            raise invalid("SQLite sources are files on the server: not accepted here", "url")
        return None
    if not url.host:
        raise invalid("url has no host", "url: host is required")
    try:
        return resolve(f"http://{url.host}:{url.port or 1}/").address
    except RefusedURL as exc:
        raise InvalidInput(
            exc.message, details=[f"url: {exc.message}"], code="INVALID_REQUEST"
        ) from exc


def check_connection(url: URL, address: str | None = None) -> None:
    """Connect once and run ``SELECT 1``, all within ``JOBYARD_SOURCE_CHECK_SECONDS``
    (InvalidInput with the reason otherwise)."""
    seconds = get_settings().source_check_seconds
    engine = engine_for(url, address, statement_timeout=seconds)
    try:
        with source_connection(engine, seconds) as connection:
            connection.execute(text("SELECT 1"))
    except SourceFailed as exc:
        raise cannot_connect(exc.reason) from exc
    except SQLAlchemyError as exc:
        raise cannot_connect(str(getattr(exc, "orig", exc))) from exc
    except Exception as exc:  # whatever else a hostile server makes a driver raise
        raise cannot_connect(f"{exc.__class__.__name__}: {exc}") from exc
    finally:
        engine.dispose()


def cannot_connect(reason: str) -> InvalidInput:
    reason = (reason.strip().splitlines() or ["no reason given"])[0][:300]
    return InvalidInput(
        f"cannot connect to the database: {reason}",
        details=[f"url: {reason}"],
        code="INVALID_REQUEST",
    )


def register(session: Session, organisation_id: uuid.UUID, name: str, raw_url: str) -> DataSource:
    """A new source, once its address is allowed, it answers and its name is free.

    The connection check comes before the session's first statement, so no database
    connection of ours is held while a tenant's server is waited on (a taken name is
    found after it: a duplicate costs one check)."""
    if not NAME.match(name):
        raise invalid(
            "name must be a letter or _ followed by up to 62 letters, digits or _",
            "name: invalid",
        )
    url = parse_url(raw_url)
    address = checked_address(url)
    with check_slot(organisation_id):
        check_connection(url, address)
    taken = session.scalar(
        select(DataSource.id).where(
            DataSource.organisation_id == organisation_id, DataSource.name == name
        )
    )
    if taken is not None:
        raise Conflict(f"a database named {name!r} exists", code="DUPLICATE_DATABASE")
    source = DataSource(
        organisation_id=organisation_id,
        name=name,
        engine=url.get_backend_name(),
        host=url.host,
        database=url.database,
        url_encrypted=encrypt(url.render_as_string(hide_password=False)),
    )
    session.add(source)
    session.flush()
    return source


def get_source(session: Session, organisation_id: uuid.UUID, name: str) -> DataSource:
    return get_named(session, DataSource, organisation_id, name, "database")


def list_sources(session: Session, organisation_id: uuid.UUID) -> list[DataSource]:
    return list_named(session, DataSource, organisation_id)


def delete_source(session: Session, organisation_id: uuid.UUID, name: str) -> None:
    source = get_source(session, organisation_id, name)
    refuse_while_synced(
        session, SyncJob.source_id, source.id, f"database {name!r}", "DATABASE_IN_USE"
    )
    session.delete(source)


def refuse_while_synced(
    session: Session, reference: Any, row_id: uuid.UUID, what: str, code: str
) -> None:
    """Conflict while sync jobs use a source database or a knowledge base (``reference``
    is the sync job's column naming it): the jobs must be deleted first."""
    users = session.scalars(select(SyncJob.name).where(reference == row_id)).all()
    if users:
        raise Conflict(
            f"{what} is used by sync job(s) {', '.join(sorted(users))}: delete them first",
            code=code,
        )


_engines: dict[tuple[uuid.UUID, str], Engine] = {}
_engines_lock = threading.Lock()


def source_engine(source: DataSource) -> Engine:
    """This process's engine on ``source`` (one per source and URL; its address checked
    again when it is made, so a source whose host became private is refused)."""
    cache_key = (source.id, source.url_encrypted)
    with _engines_lock:
        engine = _engines.get(cache_key)
    if engine is not None:
        return engine
    url = parse_url(decrypt(source.url_encrypted))
    address = checked_address(url)
    pool = {} if url.get_backend_name() == "sqlite" else {"pool_size": 2, "max_overflow": 2}
    statement_timeout = get_settings().source_statement_timeout_seconds
    engine = engine_for(url, address, statement_timeout=statement_timeout, **pool)
    with _engines_lock:
        stale = [k for k in _engines if k[0] == source.id and k != cache_key]
        for k in stale:
            _engines.pop(k).dispose()
        _engines[cache_key] = engine
    return engine

"""Source databases: registered by name with a SQLAlchemy URL, checked by connecting once,
stored encrypted (Fernet), never echoed.

Which URLs are accepted: PostgreSQL (``postgresql``, ``postgresql+psycopg``), MySQL/MariaDB
(``mysql+pymysql``, ``mariadb+pymysql``) when that driver is installed, and SQLite. A
network database's host is resolved and must be a public address, like every other URL a
user gives (:mod:`shared.netguard`), unless ``JOBYARD_ALLOW_PRIVATE_URLS``; SQLite files
are on the server itself, so they are accepted only then too (development, tests).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import threading
import uuid
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import URL, Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from shared.errors import Conflict, InvalidInput
from shared.models import DataSource, SyncJob
from shared.netguard import RefusedURL, resolve
from shared.scoping import get_named, list_named
from shared.settings import get_settings

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# SQLAlchemy backend → the driver module it needs (None: built in).
BACKENDS: dict[str, tuple[str, str | None]] = {
    "postgresql": ("postgresql+psycopg", "psycopg"),
    "sqlite": ("sqlite", None),
    "mysql": ("mysql+pymysql", "pymysql"),
    "mariadb": ("mariadb+pymysql", "pymysql"),
}


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


def invalid(message: str, detail: str) -> InvalidInput:
    return InvalidInput(message, details=[detail], code="INVALID_REQUEST")


def parse_url(raw: str) -> URL:
    """``raw`` as a URL of a supported backend, with its driver (InvalidInput otherwise)."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise invalid("url is not a SQLAlchemy URL", f"url: {exc}") from exc
    backend = url.get_backend_name()
    if backend not in BACKENDS:
        supported = ", ".join(sorted(BACKENDS))
        raise invalid(f"unsupported database {backend!r}", f"url: one of {supported}")
    drivername, module = BACKENDS[backend]
    if module is not None and importlib.util.find_spec(module) is None:
        raise invalid(f"{backend} needs the {module} driver, not installed here", "url: driver")
    return url.set(drivername=drivername)


def checked_address(url: URL) -> str | None:
    """The address to connect to: network databases on public addresses only (the checked
    address is the one connected to, see :func:`engine_for`); SQLite only where private
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


def engine_for(url: URL | str, address: str | None = None, **kwargs: Any) -> Any:
    """A small engine on a source database, with a connection timeout, connecting to the
    checked ``address`` (so a name that resolves elsewhere later is not followed)."""
    url = make_url(url) if isinstance(url, str) else url
    timeout = get_settings().source_connect_timeout_seconds
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "postgresql" or backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, round(timeout))
    if address is not None and backend == "postgresql":
        connect_args["hostaddr"] = address  # libpq: host stays the name (TLS), IP is pinned
    elif address is not None and backend in ("mysql", "mariadb"):
        url = url.set(host=address)
    elif url.get_backend_name() == "sqlite":
        connect_args["timeout"] = timeout
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)


def check_connection(url: URL, address: str | None = None) -> None:
    """Connect once and run ``SELECT 1`` (InvalidInput with the reason otherwise)."""
    engine = engine_for(url, address)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
        raise InvalidInput(
            f"cannot connect to the database: {reason}",
            details=[f"url: {reason}"],
            code="INVALID_REQUEST",
        ) from exc
    finally:
        engine.dispose()


def register(session: Session, organisation_id: uuid.UUID, name: str, raw_url: str) -> DataSource:
    """A new source, once its name is free, its address allowed and it answers."""
    if not NAME.match(name):
        raise invalid(
            "name must be a letter or _ followed by up to 62 letters, digits or _",
            "name: invalid",
        )
    url = parse_url(raw_url)
    address = checked_address(url)
    taken = session.scalar(
        select(DataSource.id).where(
            DataSource.organisation_id == organisation_id, DataSource.name == name
        )
    )
    if taken is not None:
        raise Conflict(f"a database named {name!r} exists", code="DUPLICATE_DATABASE")
    check_connection(url, address)
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
    engine = engine_for(url, address, **pool)
    with _engines_lock:
        stale = [k for k in _engines if k[0] == source.id and k != cache_key]
        for k in stale:
            _engines.pop(k).dispose()
        _engines[cache_key] = engine
    return engine

"""What a source database URL may hold: an allowlist per backend, never a blocklist.

A source URL is a tenant's, and every part of it reaches a database driver on the API and
worker hosts, so it is parsed (SQLAlchemy's ``make_url``) and only what a sync needs is
accepted:

- a backend jobyard reads (:data:`BACKENDS`), with its driver installed;
- for a network database, one host, a name or an IP literal (no list of hosts, no socket
  path), and a port from 1 to 65535;
- the query options of :data:`OPTIONS`: TLS mode and certificates, the connect timeout
  (ours caps it), the client character set. Certificate options name files on the API
  and worker hosts: only files inside ``JOBYARD_SOURCE_CERTS_DIR`` are accepted (none
  when it is unset), and PostgreSQL's ``sslrootcert=system`` (the host's CA store).

Anything else is refused with a 400 that names it: PyMySQL's ``local_infile`` (a hostile
server would ask for a file of ours), ``unix_socket``, ``read_default_file``,
``read_default_group``, ``init_command``; libpq's ``host``, ``hostaddr``, ``port``,
``service``, ``passfile``, ``options``; any option given twice; any option not listed.
The driver gets only the typed values :func:`driver_options` returns, never the raw query.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.errors import InvalidInput
from shared.settings import get_settings

# SQLAlchemy backend → the URL's driver and the module it needs (None: built in).
BACKENDS: dict[str, tuple[str, str | None]] = {
    "postgresql": ("postgresql+psycopg", "psycopg"),
    "sqlite": ("sqlite", None),
    "mysql": ("mysql+pymysql", "pymysql"),
    "mariadb": ("mariadb+pymysql", "pymysql"),
}

# Matched whole (fullmatch): a "$" would let a trailing newline through.
HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*\.?")
ENCODING_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def invalid(message: str, detail: str) -> InvalidInput:
    return InvalidInput(message, details=[detail], code="INVALID_REQUEST")


# -- option values ----------------------------------------------------------------------------
# Each reader takes the option's name and text and returns the value the driver gets
# (InvalidInput naming the option otherwise).


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def read(name: str, value: str) -> str:
        if value not in choices:
            raise invalid(f"url option {name} must be one of {', '.join(choices)}", f"url: {name}")
        return value

    return read


def _seconds(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 3600:
        raise invalid(
            f"url option {name} must be a whole number of seconds, 1 to 3600", f"url: {name}"
        )
    return int(value)


def _encoding(name: str, value: str) -> str:
    if not ENCODING_NAME.fullmatch(value):
        raise invalid(f"url option {name} must be an encoding name such as utf8", f"url: {name}")
    return value


def _flag(name: str, value: str) -> bool:
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise invalid(f"url option {name} must be true or false", f"url: {name}")


def _certificate(name: str, value: str) -> str:
    """The file a certificate option names, inside ``JOBYARD_SOURCE_CERTS_DIR``."""
    directory = get_settings().source_certs_dir
    if directory is None:
        raise invalid(
            f"url option {name} names a file, and no certificate directory is configured "
            "here (JOBYARD_SOURCE_CERTS_DIR)",
            f"url: {name}",
        )
    root = directory.resolve()
    try:
        path = (root / value).resolve()  # an absolute value stays itself; .., links resolved
        inside = path.is_relative_to(root) and path.is_file()
    except (OSError, ValueError):  # a NUL in it, a name too long
        inside = False
    if not inside:
        raise invalid(
            f"url option {name} must name a file in the certificate directory "
            "(JOBYARD_SOURCE_CERTS_DIR)",
            f"url: {name}",
        )
    return str(path)


def _root_certificate(name: str, value: str) -> str:
    """libpq's ``sslrootcert``: a file of the certificate directory, or ``system``."""
    return "system" if value == "system" else _certificate(name, value)


# The query options a source URL may carry, per backend, and how each value is read.
OPTIONS: dict[str, dict[str, Callable[[str, str], Any]]] = {
    "postgresql": {
        "sslmode": _one_of(*SSL_MODES),
        "sslrootcert": _root_certificate,
        "sslcert": _certificate,
        "sslkey": _certificate,
        "connect_timeout": _seconds,
        "client_encoding": _encoding,
    },
    "mysql": {
        "ssl_ca": _certificate,
        "ssl_cert": _certificate,
        "ssl_key": _certificate,
        "ssl_verify_cert": _flag,
        "ssl_verify_identity": _flag,
        "charset": _encoding,
        "connect_timeout": _seconds,
    },
    "sqlite": {},
}
OPTIONS["mariadb"] = OPTIONS["mysql"]


def accepted_options(backend: str) -> str:
    return ", ".join(sorted(OPTIONS[backend])) or "none"


# -- the URL ------------------------------------------------------------------------------------


def parse_url(raw: str) -> URL:
    """``raw`` as a URL of a supported backend, with its driver, one host and only the
    options :data:`OPTIONS` accepts (InvalidInput naming what is wrong otherwise)."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise invalid("url is not a SQLAlchemy URL", f"url: {exc}") from exc
    except ValueError as exc:  # what follows the last ":" of the host part is no number
        raise invalid(
            "url port is not a number (a source is one host: multi-host lists are not accepted)",
            "url: port",
        ) from exc
    backend = url.get_backend_name()
    if backend not in BACKENDS:
        supported = ", ".join(sorted(BACKENDS))
        raise invalid(f"unsupported database {backend!r}", f"url: one of {supported}")
    drivername, module = BACKENDS[backend]
    if module is not None and importlib.util.find_spec(module) is None:
        raise invalid(f"{backend} needs the {module} driver, not installed here", "url: driver")
    if backend != "sqlite":
        check_host(url)
    driver_options(url)
    return url.set(drivername=drivername)


def check_host(url: URL) -> None:
    """One host name or IP literal, and a port in range: no list of hosts (libpq would
    try each, past the address check) and no socket path."""
    host = url.host
    if not host:
        raise invalid("url has no host", "url: host is required")
    if "," in host:
        raise invalid(
            "url names several hosts: a source is one host (multi-host lists are not accepted)",
            "url: host",
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.fullmatch(host):
            raise invalid("url host must be a host name or an IP address", "url: host") from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise invalid("url port must be 1 to 65535", "url: port")


def driver_options(url: URL) -> dict[str, Any]:
    """The URL's query options as the driver takes them, each one accepted and read
    (InvalidInput naming every refused option otherwise)."""
    backend = url.get_backend_name()
    allowed = OPTIONS[backend]
    refused = sorted(name for name in url.query if name not in allowed)
    if refused:
        raise InvalidInput(
            f"url option(s) not accepted: {', '.join(refused)} (a {backend} source URL may "
            f"set only: {accepted_options(backend)})",
            details=[f"url: option {name!r} is not accepted" for name in refused],
            code="INVALID_REQUEST",
        )
    options: dict[str, Any] = {}
    for name, value in url.query.items():
        if not isinstance(value, str):
            raise invalid(f"url option {name} is given more than once", f"url: {name}")
        options[name] = allowed[name](name, value)
    return options

"""``jobyard``: the admin command line (migrations, tenants, keys, tokens, the demo seed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from datetime import timedelta
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.accounts import auth
from shared.accounts import organisations as tenancy
from shared.db import session_scope
from shared.engine import job_types
from shared.errors import DomainError
from shared.kb.demo import seed_orders_demo
from shared.mentionlab import projects
from shared.mentionlab.models import Project
from shared.migrate import upgrade_database
from shared.models import ApiKey, Membership, Organisation, User
from shared.settings import (
    DEVELOPMENT_SECRET_KEY,
    VAR_DIR,
    get_settings,
    reset_settings_cache,
)

DEMO_ENV = VAR_DIR / "demo.env"
LOCAL_ENV = VAR_DIR / "jobyard.env"  # written by `make up` (deploy/scripts/run-local.sh)


@click.group()
def cli() -> None:
    """Administer jobyard: migrate the database, create tenants, keys and tokens.

    Reads the settings `make up` wrote (var/jobyard.env: SECRET_KEY...) for what the
    environment does not set, so a fresh shell signs tokens with the API's key."""
    if load_local_env(LOCAL_ENV):
        reset_settings_cache()
    # Like every jobyard process: each installed job type (and its outbox consumers).
    job_types.discover()


def load_local_env(path: Path) -> bool:
    """Put the file's variables (``export NAME="${NAME:-value}"``, as run-local.sh writes
    them, or ``export NAME=value``) into the environment where it has none of its own.
    Returns whether anything was set."""
    changed = False
    for name, value in _read_env(path).items():
        if name not in os.environ:
            os.environ[name] = value
            changed = True
    return changed


@cli.command()
def migrate() -> None:
    """Apply every Alembic migration to DATABASE_URL."""
    settings = get_settings()
    if settings.is_sqlite:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
    upgrade_database()
    click.echo("database is at the latest migration")


@cli.command()
def sender() -> None:
    """Send webhook messages until SIGTERM (the Procfile's `sender`; run several at once
    for more throughput)."""
    from shared.webhooks.process import main

    main()


@cli.command("create-org")
@click.argument("name")
def create_org(name: str) -> None:
    """Create an organisation and print its id."""
    with session_scope() as session:
        click.echo(tenancy.create_organisation(session, name).id)


@cli.command("create-user")
@click.argument("email")
@click.option(
    "--org", "org_id", type=click.UUID, help="Make the user a member of this organisation."
)
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--role", default="member", type=click.Choice(["member", "admin"]))
def create_user(
    email: str, org_id: uuid.UUID | None, first_name: str, last_name: str, role: str
) -> None:
    """Create a user and print its id."""
    with session_scope() as session:
        user = tenancy.create_user(session, email, first_name, last_name, org_id, role)
        click.echo(user.id)


@cli.command("create-project")
@click.argument("name")
@click.option("--org", "org_id", type=click.UUID, required=True)
@click.option("--alias", "aliases", multiple=True, help="Another name of the brand (repeatable).")
@click.option("--competitor", "competitors", multiple=True, help="A competitor (repeatable).")
@click.option("--query", "queries", multiple=True, help="A query to add (repeatable).")
def create_project(
    name: str,
    org_id: uuid.UUID,
    aliases: tuple[str, ...],
    competitors: tuple[str, ...],
    queries: tuple[str, ...],
) -> None:
    """Create a project (with optional queries) and print its id."""
    with session_scope() as session:
        principal = auth.Principal(org_id, None)
        project = projects.create_project(
            session,
            principal,
            {"name": name, "name_aliases": list(aliases), "competitors": list(competitors)},
        )
        projects.create_queries(session, project, [{"query": q} for q in queries])
        click.echo(project.id)


@cli.command("create-api-key")
@click.option("--org", "org_id", type=click.UUID, required=True)
@click.option("--name", default="default")
@click.option("--user", "user_id", type=click.UUID, help="The user the key acts for (createdBy).")
def create_api_key(org_id: uuid.UUID, name: str, user_id: uuid.UUID | None) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    with session_scope() as session:
        if session.get(Organisation, org_id) is None:
            raise click.ClickException(f"organisation {org_id} not found")
        _, raw = auth.create_api_key(session, org_id, name, user_id)
        click.echo(raw)


@cli.command()
@click.argument("job_id", type=click.UUID)
@click.option(
    "--url",
    envvar="JOBYARD_URL",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The API (default: $JOBYARD_URL).",
)
def watch(job_id: uuid.UUID, url: str) -> None:
    """Follow a job live: done/total, retrying, failed, rate and ETA, until it ends.

    Uses JOBYARD_API_KEY (else JOBYARD_TOKEN) from the environment (`source
    var/demo.env`). Exits 0 when the job completed, 1 when it ended otherwise (failed,
    partial_failed, canceled), 2 when it could not be followed.
    """
    from shared import watch as watching

    try:
        headers = watching.credentials(
            os.environ.get("JOBYARD_API_KEY"), os.environ.get("JOBYARD_TOKEN")
        )
        final = watching.watch(url, str(job_id), headers)
    except watching.WatchError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
    done = final["successExecutions"] + final["failedExecutions"]
    click.echo(
        f"job {job_id} {final['status']}: {done}/{final['totalExecutions']} done, "
        f"{final['successExecutions']} succeeded, {final['failedExecutions']} failed"
    )
    raise SystemExit(0 if final["status"] == "completed" else 1)


@cli.command("create-token")
@click.option("--user", "user_id", type=click.UUID, required=True)
@click.option("--org", "org_id", type=click.UUID, required=True)
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 365))
@click.option(
    "--add-member",
    is_flag=True,
    help="Make the user a member of the organisation first (else a non-member is refused).",
)
def create_token(user_id: uuid.UUID, org_id: uuid.UUID, days: int, add_member: bool) -> None:
    """Issue a JWT (HS256) for a member of an organisation."""
    require_signing_key()
    with session_scope() as session:
        if session.get(User, user_id) is None:
            raise click.ClickException(f"user {user_id} not found")
        if session.get(Organisation, org_id) is None:
            raise click.ClickException(f"organisation {org_id} not found")
        if session.get(Membership, (user_id, org_id)) is None:
            if not add_member:
                raise click.ClickException(
                    f"user {user_id} is not a member of organisation {org_id}; "
                    "pass --add-member to make them one"
                )
            tenancy.add_member(session, org_id, user_id)
    click.echo(auth.issue_token(user_id, org_id, timedelta(days=days)))


def require_signing_key() -> None:
    """Refuse to sign with the built-in development key: the API (started by ``make up``
    with var/jobyard.env's SECRET_KEY, or deployed with its own) would answer 401."""
    if get_settings().secret_key == DEVELOPMENT_SECRET_KEY:
        raise click.ClickException(
            "SECRET_KEY is not set, and a token signed with the built-in development key "
            f"is refused by the API: export the API's SECRET_KEY (`make up` keeps it in "
            f"{LOCAL_ENV})"
        )


DEMO_QUERIES = [
    {
        "query": "What is the best product analytics tool for startups?",
        "language": "en",
        "country": "US",
    },
    {
        "query": "Which analytics platforms do data teams recommend?",
        "language": "en",
        "country": "GB",
    },
    {
        "query": "Quels outils d'analyse produit choisir en 2026 ?",
        "language": "fr",
        "country": "FR",
    },
]


# `export NAME="${NAME:-default}"`: the default, which the environment overrides.
_SHELL_DEFAULT = re.compile(r'^"\$\{(?P<name>\w+):-(?P<default>.*)\}"$')


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line.removeprefix("export ").partition("=")
                default = _SHELL_DEFAULT.match(value)
                if default and default["name"] == key:
                    values[key] = default["default"]
                else:
                    values[key] = shlex.split(value)[0] if value else ""
    return values


@cli.command("rotate-source-key")
def rotate_source_key() -> None:
    """Re-encrypt every source database's URL with JOBYARD_DATA_SOURCE_KEY.

    Set the new key as JOBYARD_DATA_SOURCE_KEY and the old one in
    JOBYARD_DATA_SOURCE_PREVIOUS_KEYS (on every process), run this, then drop the old key.
    """
    from shared.kb.sources import rotate_keys

    with session_scope() as session:
        rotated, unreadable = rotate_keys(session)
    click.echo(f"re-encrypted {rotated} source URL(s) with the current key")
    if unreadable:
        ids = ", ".join(str(i) for i in unreadable)
        raise click.ClickException(
            f"{len(unreadable)} source URL(s) no configured key can read: {ids}"
        )


@cli.command("seed-demo")
@click.option("--env-file", type=click.Path(path_type=Path), default=DEMO_ENV, show_default=True)
def seed_demo(env_file: Path) -> None:
    """Create (or refresh) the demo tenant and write its credentials to a shell file."""
    settings = get_settings()
    previous = _read_env(env_file)
    with session_scope() as session:
        org = _existing_demo_org(session, previous)
        if org is None:
            org = tenancy.create_organisation(session, "Demo Organisation")
            email = f"demo+{org.id.hex[:8]}@jobyard.local"
            user = tenancy.create_user(session, email, "Demo", "User", org.id, "admin")
            project = projects.create_project(
                session,
                auth.Principal(org.id, user.id),
                {
                    "name": "Acme Analytics",
                    "website": "https://acme-analytics.example",
                    "industry": "Software",
                    "name_aliases": ["Acme", "AcmeAnalytics"],
                    "competitors": ["Globex Insights", "Initech Metrics", "Umbrella BI"],
                    "llm_providers": ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"],
                },
            )
            projects.create_queries(session, project, DEMO_QUERIES)
            _, api_key = auth.create_api_key(session, org.id, "demo", user.id)
            ids = {"org": org.id, "user": user.id, "project": project.id}
        else:
            api_key = previous["JOBYARD_API_KEY"]
            ids = {
                "org": org.id,
                "user": uuid.UUID(previous["JOBYARD_USER_ID"]),
                "project": uuid.UUID(previous["JOBYARD_PROJECT_ID"]),
            }
    demo_kb = _seed_kb_demo(ids["org"], env_file.parent)
    token = auth.issue_token(ids["user"], ids["org"], timedelta(days=30))
    values = {
        "JOBYARD_URL": f"http://127.0.0.1:{_port()}",
        "JOBYARD_API_KEY": api_key,
        "JOBYARD_TOKEN": token,
        "JOBYARD_ORG_ID": str(ids["org"]),
        "JOBYARD_USER_ID": str(ids["user"]),
        "JOBYARD_PROJECT_ID": str(ids["project"]),
        "FLOWER_USER": settings.flower_user,
        "FLOWER_PASSWORD": settings.flower_password,
    }
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        "# jobyard demo credentials: `source var/demo.env`\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
    )
    env_file.chmod(0o600)
    click.echo(
        json.dumps(
            {"env_file": str(env_file), "project": str(ids["project"]), "knowledge_bases": demo_kb}
        )
    )


def _seed_kb_demo(organisation_id: uuid.UUID, folder: Path) -> str:
    """The Smart DB demo (orders_db, orders_kb) in the demo organisation; its sources are
    a SQLite file, which only a setup that allows private URLs accepts (``make up``)."""
    try:
        with session_scope() as session:
            created = seed_orders_demo(session, organisation_id, folder)
    except DomainError as exc:
        click.echo(f"knowledge-base demo skipped: {exc.message}", err=True)
        return "skipped"
    return ", ".join(created) or "present"


def _existing_demo_org(session: Session, previous: dict[str, str]) -> Organisation | None:
    """The demo organisation written last time, if the database and key still have it."""
    try:
        org_id = uuid.UUID(previous.get("JOBYARD_ORG_ID", ""))
        project_id = uuid.UUID(previous.get("JOBYARD_PROJECT_ID", ""))
        uuid.UUID(previous.get("JOBYARD_USER_ID", ""))
    except ValueError:
        return None
    key = session.scalar(
        select(ApiKey).where(
            ApiKey.key_hash == auth.hash_api_key(previous.get("JOBYARD_API_KEY", ""))
        )
    )
    if key is None or key.organisation_id != org_id or session.get(Project, project_id) is None:
        return None
    return session.get(Organisation, org_id)


def _port() -> str:
    return os.environ.get("PORT", "5000")


if __name__ == "__main__":
    cli()

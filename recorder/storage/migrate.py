"""Schema migrations: a thin wrapper around Alembic that works from a checkout and from a wheel.

The migrations live in the repository's top-level ``alembic/`` directory; the
wheel ships the same directory as ``recorder/_alembic``. :func:`migrations_dir`
finds whichever is present, and the Alembic configuration is built in code, so
nothing depends on ``alembic.ini`` or on the current directory.

Every function takes a SQLAlchemy URL (string or :class:`sqlalchemy.URL`); URLs are
only ever printed masked (``postgresql+psycopg://user:***@host/db``). Database
failures become :class:`~recorder.errors.StoreUnavailableError` (cannot reach /
write the database now) or :class:`~recorder.errors.StorageError` (anything else).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

import recorder
from recorder.errors import ConfigError, SchemaNotAtHeadError, StorageError, StoreUnavailableError
from recorder.storage.schema import metadata

__all__ = [
    "check",
    "current",
    "downgrade",
    "head_revision",
    "make_config",
    "mask_url",
    "migrations_dir",
    "parse_url",
    "require_head",
    "translate_db_error",
    "upgrade",
]

UPGRADE_COMMAND = "okex-recorder db upgrade"

# SQLite result codes that mean "cannot write right now" rather than "this statement is wrong".
_SQLITE_UNAVAILABLE = {
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
    "SQLITE_READONLY", "SQLITE_PROTOCOL", "SQLITE_NOMEM",
}


def parse_url(url: str | sa.URL) -> sa.URL:
    """Parse a database URL; raises ConfigError (without echoing the URL, which may hold a password)."""
    if isinstance(url, sa.URL):
        return url
    try:
        parsed = sa.make_url(url)
        parsed.port  # noqa: B018 - SQLAlchemy checks the port only when it is read
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigError("malformed database URL (expected e.g. sqlite:///data/recording.sqlite or "
                          "postgresql+psycopg://user@host:5432/db)") from None
    return parsed


def mask_url(url: str | sa.URL | sa.Engine) -> str:
    """The URL as text with its password replaced by ``***``: safe to print and log."""
    from recorder.config import mask_url as mask

    if isinstance(url, sa.Engine):
        url = url.url
    return mask(parse_url(url))


def translate_db_error(exc: Exception, url: str | sa.URL | sa.Engine, action: str) -> StorageError:
    """Map a SQLAlchemy / driver error to the project's error tree (the caller raises it ``from exc``).

    Lost or refused connections, timeouts, a locked or full SQLite file ->
    StoreUnavailableError (retryable); anything else -> StorageError.
    """
    where = mask_url(url)
    if _is_unavailable(exc):
        return StoreUnavailableError(f"database {where} unavailable while {action}: {_first_line(exc)}")
    return StorageError(f"database {where} failed while {action}: {_first_line(exc)}")


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, sqlite3.Error):
            return getattr(orig, "sqlite_errorname", "") in _SQLITE_UNAVAILABLE
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError | OSError)


def _first_line(exc: Exception) -> str:
    # SQLAlchemy appends the statement and parameters after the first line: keep them out.
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def migrations_dir() -> Path:
    """The Alembic script directory: ``recorder/_alembic`` in a wheel, ``<repo>/alembic`` in a checkout."""
    package = Path(recorder.__file__).resolve().parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise StorageError(f"migrations not found beside {package} (expected _alembic/ or ../alembic/)")


def make_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini); ``connection`` is handed to env.py."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision id of the shipped migrations."""
    head = ScriptDirectory.from_config(make_config()).get_current_head()
    if head is None:
        raise StorageError("no migrations found")
    return head


@contextmanager
def _connection(url: str | sa.URL | sa.Engine, action: str) -> Iterator[sa.Connection]:
    engine = url if isinstance(url, sa.Engine) else sa.create_engine(
        parse_url(url), poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise translate_db_error(exc, engine, action) from exc
    finally:
        if engine is not url:
            engine.dispose()


def _create_sqlite_parent(url: sa.URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _run(url: str | sa.URL, action: str, fn: Any, *args: Any) -> None:
    with _connection(url, action) as conn:
        try:
            with conn.begin():
                fn(make_config(conn), *args)
        except CommandError as exc:
            raise StorageError(f"{action} on {mask_url(url)}: {exc}") from exc


def upgrade(url: str | sa.URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (creates a missing SQLite file and its dir)."""
    parsed = parse_url(url)
    _create_sqlite_parent(parsed)
    _run(parsed, f"upgrading to {revision}", command.upgrade, revision)


def downgrade(url: str | sa.URL, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    _run(url, f"downgrading to {revision}", command.downgrade, revision)


def current(url: str | sa.URL | sa.Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with _connection(url, "reading the schema revision") as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def require_head(url: str | sa.URL | sa.Engine) -> None:
    """Raise SchemaNotAtHeadError unless the database is at the newest migration.

    The message names the command that fixes it. Raises StoreUnavailableError when
    the database cannot be reached.
    """
    at = current(url)
    head = head_revision()
    if at != head:
        masked = mask_url(url)
        state = "has no schema (empty database)" if at is None else f"is at revision {at}"
        raise SchemaNotAtHeadError(
            f"database {masked} {state}, not at head {head}; run: {UPGRADE_COMMAND} --sql-url {masked}"
        )


def check(url: str | sa.URL | sa.Engine) -> list[str]:
    """Differences between :data:`recorder.storage.schema.metadata` and the database (empty: none).

    Raises SchemaNotAtHeadError first if the database is not at head.
    """
    require_head(url)
    with _connection(url, "comparing the schema") as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"}
        )
        return [repr(diff) for diff in compare_metadata(context, metadata)]

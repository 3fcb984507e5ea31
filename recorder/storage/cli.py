"""``okex-recorder db``: database schema migrations.

``okex-recorder db upgrade|downgrade|current|check [--sql-url URL]``. The URL
defaults to ``$OKEX_SQL_URL``, else ``sqlite:///data/recording.sqlite`` (the
``./data`` directory is created if needed). URLs are printed masked.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from recorder.errors import ConfigError, SchemaNotAtHeadError
from recorder.storage import migrate

ENV_URL = "OKEX_SQL_URL"
DEFAULT_URL = "sqlite:///data/recording.sqlite"


def default_url() -> str:
    """``$OKEX_SQL_URL`` if set, else the SQLite file ``./data/recording.sqlite``."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


def _check_url(url: str) -> None:
    """The same URL rule as ``storage.sql_url`` (supported schemes, one clear line). Raises ConfigError.
    A string that is no URL at all is left to :mod:`migrate`, which says so without echoing it."""
    from recorder.config import StorageConfig

    if "://" not in url:
        return
    try:
        StorageConfig(sql_url=url)
    except ConfigError as exc:
        message = str(exc).replace("config: storage.sql_url", "db --sql-url / $OKEX_SQL_URL", 1)
        raise ConfigError(message) from None


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for PostgreSQL, in-memory or URI-style SQLite URLs)."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None  # migrate reports the malformed URL
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ACTION [REVISION] [--sql-url URL]``."""
    parser.add_argument(
        "action", choices=["upgrade", "downgrade", "current", "check"],
        help="upgrade: migrate to REVISION (default head); downgrade: migrate down to REVISION "
             "(required; 'base' drops everything); current: print the revision; "
             "check: exit 1 unless the schema is at head and matches the code",
    )
    parser.add_argument("revision", nargs="?", help="target revision (upgrade, downgrade)")
    parser.add_argument(
        "--sql-url", default=None,
        help=f"SQLAlchemy database URL (default: ${ENV_URL}, else {DEFAULT_URL})",
    )


def run(args: argparse.Namespace) -> int:
    """Run one migration action; print its outcome on stdout. Errors propagate as RecorderError."""
    if args.action == "downgrade" and not args.revision:  # checked before anything is created
        raise ConfigError("db downgrade: a target REVISION is required (e.g. 'base' or '-1')")
    url = args.sql_url or default_url()
    _check_url(url)
    masked = migrate.mask_url(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and args.action != "upgrade" and not sqlite_file.exists():
        # reading (or downgrading) a file that is not there would create an empty database
        raise ConfigError(f"db {args.action}: no SQLite database at {sqlite_file} "
                          "(`okex-recorder db upgrade` creates one; check --sql-url / $OKEX_SQL_URL)")
    if url == DEFAULT_URL:
        Path("data").mkdir(exist_ok=True)
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
        print(f"{masked}: at {migrate.current(url)}")
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision)
        print(f"{masked}: at {migrate.current(url) or 'base (no schema)'}")
    elif args.action == "current":
        at = migrate.current(url)
        head = migrate.head_revision()
        state = "head" if at == head else f"not at head {head}"
        print(f"{masked}: {at or 'base (no schema)'} ({state})")
    else:
        try:
            differences = migrate.check(url)
        except SchemaNotAtHeadError as exc:
            print(exc)
            return 1
        if differences:
            print(f"{masked}: at head, but the schema differs from the code:")
            for diff in differences:
                print(f"  {diff}")
            return 1
        print(f"{masked}: at head {migrate.head_revision()}, schema matches")
    return 0

"""Migrations: stairway on both databases, no drift against the schema, the db command, the wheel."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from recorder import cli
from recorder.cli import main
from recorder.errors import SchemaNotAtHeadError, StorageError, StoreUnavailableError
from recorder.storage import migrate, schema
from tests.fixtures.storage import sample_deal

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def only_the_db_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` imports every subcommand module; these tests need (and depend on) only ``db``."""
    monkeypatch.setattr(cli, "COMMANDS", {"db": cli.COMMANDS["db"]})


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def revisions_oldest_first() -> list[str]:
    script = ScriptDirectory.from_config(migrate.make_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_migrations_are_one_linear_history_ending_at_head() -> None:
    revisions = revisions_oldest_first()
    assert revisions[0] == "0001"
    assert revisions[-1] == migrate.head_revision()
    assert ScriptDirectory.from_config(migrate.make_config()).get_heads() == [migrate.head_revision()]


def test_stairway_every_revision_up_down_up(db_url: str) -> None:
    previous = "base"
    for revision in revisions_oldest_first():
        migrate.upgrade(db_url, revision)
        assert migrate.current(db_url) == revision
        migrate.downgrade(db_url, previous)
        assert migrate.current(db_url) == (None if previous == "base" else previous)
        migrate.upgrade(db_url, revision)
        previous = revision
    assert table_names(db_url) == set(schema.metadata.tables) | {"alembic_version"}


def test_upgrade_downgrade_base_upgrade_leaves_the_full_schema(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert table_names(db_url) == {"alembic_version"}
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head_revision()
    assert table_names(db_url) == set(schema.metadata.tables) | {"alembic_version"}


def test_autogenerate_finds_no_difference_between_schema_and_migrations(migrated_db_url: str) -> None:
    assert migrate.check(migrated_db_url) == []


def test_check_sees_a_drifted_database(migrated_sqlite_url: str) -> None:
    engine = sa.create_engine(migrated_sqlite_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_deals_venue_symbol_ts_event")
    finally:
        engine.dispose()
    differences = migrate.check(migrated_sqlite_url)
    assert len(differences) == 1 and "ix_deals_venue_symbol_ts_event" in differences[0]


def test_current_of_an_empty_database_is_none_and_require_head_names_the_command(db_url: str) -> None:
    assert migrate.current(db_url) is None
    with pytest.raises(SchemaNotAtHeadError) as info:
        migrate.require_head(db_url)
    assert "has no schema (empty database)" in str(info.value)
    assert f"run: okex-recorder db upgrade --sql-url {migrate.mask_url(db_url)}" in str(info.value)


def test_unknown_revision_is_a_storage_error(migrated_sqlite_url: str) -> None:
    with pytest.raises(StorageError, match="nonexistent"):
        migrate.upgrade(migrated_sqlite_url, "nonexistent")


def test_db_command_upgrade_then_current_then_check(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = migrate.head_revision()
    masked = migrate.mask_url(db_url)
    if db_url.startswith("sqlite"):  # an existing, empty SQLite file (a missing one is refused: next test)
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()
    assert main(["db", "current", "--sql-url", db_url]) == 0
    assert capsys.readouterr().out == f"{masked}: base (no schema) (not at head {head})\n"
    assert main(["db", "check", "--sql-url", db_url]) == 1
    assert "okex-recorder db upgrade" in capsys.readouterr().out
    assert main(["db", "upgrade", "--sql-url", db_url]) == 0
    assert capsys.readouterr().out == f"{masked}: at {head}\n"
    assert main(["db", "current", "--sql-url", db_url]) == 0
    assert capsys.readouterr().out == f"{masked}: {head} (head)\n"
    assert main(["db", "check", "--sql-url", db_url]) == 0
    assert capsys.readouterr().out == f"{masked}: at head {head}, schema matches\n"
    assert main(["db", "downgrade", "base", "--sql-url", db_url]) == 0
    assert capsys.readouterr().out == f"{masked}: at base (no schema)\n"
    assert table_names(db_url) == {"alembic_version"}


@pytest.mark.parametrize("action", ["current", "check", "downgrade"])
def test_db_command_reading_a_missing_sqlite_file_is_one_line_and_creates_nothing(
    tmp_path: Path, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.sqlite"
    assert main(["db", action, *(["base"] if action == "downgrade" else []), "--sql-url",
                 f"sqlite:///{path}"]) == 2
    err = capsys.readouterr().err
    assert err == (f"okex-recorder db: error: db {action}: no SQLite database at {path} "
                   "(`okex-recorder db upgrade` creates one; check --sql-url / $OKEX_SQL_URL)\n")
    assert not path.exists()


@pytest.mark.parametrize("url", ["postgres://me:pw-secret@127.0.0.1/db", "mysql://me@127.0.0.1/db",
                                 "postgresql+psycopg2://me@127.0.0.1/db"])
def test_db_command_refuses_an_unsupported_url_scheme_in_one_line(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "check", "--sql-url", url]) == 2
    err = capsys.readouterr().err
    scheme = url.split("://")[0]
    assert err.startswith(f"okex-recorder db: error: db --sql-url / $OKEX_SQL_URL: unsupported database URL "
                          f"scheme '{scheme}://'") and err.count("\n") == 1
    assert "pw-secret" not in err


def test_db_command_defaults_to_env_url_then_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OKEX_SQL_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "data" / "recording.sqlite").is_file()
    assert migrate.current("sqlite:///data/recording.sqlite") == migrate.head_revision()
    env_url = f"sqlite:///{tmp_path / 'elsewhere' / 'x.sqlite'}"
    monkeypatch.setenv("OKEX_SQL_URL", env_url)
    assert main(["db", "upgrade"]) == 0
    assert migrate.current(env_url) == migrate.head_revision()
    capsys.readouterr()


def test_db_command_masks_the_password_and_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://me:hunter2-secret@127.0.0.1:1/db"
    assert main(["db", "upgrade", "--sql-url", url]) == 2
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err
    assert out.err.startswith("okex-recorder db: error: database postgresql+psycopg://me:***@127.0.0.1:1/db "
                              "unavailable while upgrading to head")
    assert out.err.count("\n") == 1


def test_malformed_url_is_a_config_error_that_does_not_echo_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--sql-url", "not a url :pw@"]) == 2
    err = capsys.readouterr().err
    assert "malformed database URL" in err and ":pw@" not in err


def test_migrations_are_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert migrate.migrations_dir() == REPO / "alembic"
    migrate.upgrade(sqlite_url)
    assert migrate.current(sqlite_url) == migrate.head_revision()


def test_plain_alembic_with_alembic_ini_and_env_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.sqlite'}"
    env = {**os.environ, "OKEX_SQL_URL": url}
    alembic = Path(sys.executable).parent / "alembic"
    done = subprocess.run([str(alembic), "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert migrate.current(url) == migrate.head_revision()


def test_wheel_ships_the_migrations_and_they_run_from_the_installed_layout(
    tmp_path: Path, sqlite_url: str
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("okex_recorder-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    assert "recorder/_alembic/env.py" in names
    assert "recorder/_alembic/versions/0001_initial_schema.py" in names
    assert not any(n.startswith("alembic/") or n.endswith("_alembic/__init__.py") for n in names)
    code = (
        "import sys; from recorder.storage import migrate; "
        "print(migrate.migrations_dir()); migrate.upgrade(sys.argv[1]); print(migrate.current(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    ran = subprocess.run([sys.executable, "-c", code, sqlite_url], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [str(tmp_path / "site" / "recorder" / "_alembic"),
                                       migrate.head_revision()]


def test_0002_upgrades_a_populated_0001_database_keeping_its_rows_and_downgrades(db_url: str) -> None:
    """Rows written at 0001 survive 0002 with a NULL collector; downgrading drops only the column."""
    migrate.upgrade(db_url, "0001")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    ts = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    event = {"kind": "disconnected", "ts_start": ts, "ts_end": None, "connection": "ws-0",
             "symbols": "btc_usdt,eth_usdt", "channel": "", "detail": "reset"}
    try:
        with engine.begin() as conn:  # the 0001 columns only, through the schema's types
            conn.execute(sa.insert(schema.feed_events), [
                {**event, "event_id": "e1"},
                {**event, "event_id": "e2", "kind": "connected", "ts_end": ts, "symbols": "btc_usdt",
                 "detail": ""},
            ])
            conn.execute(sa.insert(schema.quarantine), [
                {"ts_recv": ts, "connection": "ws-0", "reason": "bad json",
                 "channel": "ok_sub_spot_btc_usdt_deals", "payload": b"\x00{not json"}])
        migrate.upgrade(db_url, "0002")
        assert migrate.current(db_url) == "0002"
        with engine.connect() as conn:
            events = conn.execute(sa.text("SELECT event_id, kind, connection, symbols, detail, collector "
                                          "FROM feed_events ORDER BY event_id")).all()
            frames = conn.execute(sa.text("SELECT connection, reason, payload, collector FROM quarantine")
                                  ).all()
            stored = conn.execute(sa.select(schema.feed_events.c.ts_start, schema.feed_events.c.ts_end)
                                  .order_by(schema.feed_events.c.event_id)).all()
        assert [tuple(r) for r in events] == [
            ("e1", "disconnected", "ws-0", "btc_usdt,eth_usdt", "reset", None),
            ("e2", "connected", "ws-0", "btc_usdt", "", None),
        ]
        assert [(c, r, bytes(p), col) for c, r, p, col in frames] == [
            ("ws-0", "bad json", b"\x00{not json", None)]
        assert [r.ts_start.isoformat() for r in stored] == ["2026-11-30T12:00:00.123456+00:00"] * 2
        assert stored[0].ts_end is None
        with engine.begin() as conn:  # the new column takes ids
            conn.execute(sa.text("UPDATE feed_events SET collector = 'tokyo-1' WHERE event_id = 'e2'"))
        migrate.downgrade(db_url, "0001")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("feed_events")}
            assert "collector" not in columns
            assert "collector" not in {c["name"] for c in sa.inspect(conn).get_columns("quarantine")}
            assert conn.execute(sa.text("SELECT count(*) FROM feed_events")).scalar() == 2
            assert conn.execute(sa.text("SELECT count(*) FROM quarantine")).scalar() == 1
            index_names = {i["name"] for i in sa.inspect(conn).get_indexes("feed_events")}
        assert {"ix_feed_events_ts_start", "ix_feed_events_kind_ts_start"} <= index_names
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    assert migrate.check(db_url) == []


def test_a_password_given_as_a_url_query_parameter_is_masked_too(capsys: pytest.CaptureFixture[str],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """libpq takes `?password=` (and `sslpassword`) in the URL; mask_url showed them."""
    from recorder.config import mask_url as config_mask
    from recorder.storage.sql import SqlStore
    from recorder.storage.sql_bulk import BulkSqlStore

    url = "postgresql+psycopg://me@127.0.0.1:1/db?password=hunter2-query&sslpassword=hunter3-key&sslmode=prefer"
    masked = "postgresql+psycopg://me@127.0.0.1:1/db?password=***&sslmode=prefer&sslpassword=***"
    assert migrate.mask_url(url) == config_mask(url) == masked
    assert main(["db", "upgrade", "--sql-url", url]) == 2
    out = capsys.readouterr()
    assert out.err.startswith(f"okex-recorder db: error: database {masked} unavailable while upgrading")
    for store_type in (SqlStore, BulkSqlStore):
        store = store_type(url)
        try:
            with pytest.raises(StoreUnavailableError) as info:
                store.write_batch([sample_deal(1)])
            assert repr(store) == f"{store_type.__name__}({masked!r})"
        finally:
            store.close()
        shown = str(info.value) + repr(store) + caplog.text + out.out + out.err
        assert "hunter2" not in shown and "hunter3" not in shown


def test_a_port_that_is_not_a_number_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`...@127.0.0.1:notaport/db` printed a traceback (SQLAlchemy checks the port only when read)."""
    assert main(["db", "current", "--sql-url", "postgresql+psycopg://me:hunter2@127.0.0.1:notaport/db"]) == 2
    err = capsys.readouterr().err
    assert err == ("okex-recorder db: error: malformed database URL (expected e.g. "
                   "sqlite:///data/recording.sqlite or postgresql+psycopg://user@host:5432/db)\n")

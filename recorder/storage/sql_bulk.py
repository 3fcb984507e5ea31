"""The bulk SQL store: the same tables and merge rules as :class:`~recorder.storage.sql.SqlStore`,
written through the Arrow-native ADBC drivers.

Per batch, in ONE transaction on one ADBC connection: each dataset's Arrow table (the one the
writer built for the batch) is bulk-ingested into a TEMP staging table
(``adbc-driver-sqlite``; ``adbc-driver-postgresql`` uses binary COPY), then
``INSERT INTO <table> SELECT ... FROM <staging> ON CONFLICT (<key>) ...`` with the dataset's
merge rule (:mod:`recorder.storage.datasets`), exactly as SqlStore:

* ``keep_first`` -- ``DO NOTHING``; duplicates inside the batch: the first one;
* ``last_seen_wins`` -- ``DO UPDATE SET`` every non-key column ``WHERE excluded.ts_recv >=
  stored.ts_recv``; duplicates inside the batch: the latest ts_recv, ties the later row.

Values are the ones SqlStore stores: decimals as the canonical plain text on SQLite and NUMERIC
(from that text, so no padded scale) on PostgreSQL; timestamps as SqlStore's UTC text on SQLite
(``YYYY-MM-DD HH:MM:SS.ffffff``) and ``timestamptz`` on PostgreSQL; NULL for absent values.

A batch holding a ``span``/``append`` dataset (feed_events, quarantine: few, small) or rows that
do not fit the Arrow schema is written by :meth:`SqlStore.write_batch` unchanged, so refused rows
raise the same StorageError and the writer isolates them the same way. SQLAlchemy/Alembic stay
in charge of the schema (the head check at open). Switch: ``[storage] sql_bulk`` (PostgreSQL
only; SQLite keeps SqlStore, see :class:`BulkSqlStore`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recorder.errors import ConfigError, StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage.datasets import Merge
from recorder.storage.migrate import mask_url, parse_url
from recorder.storage.schema import DATASETS, Batch, Dataset
from recorder.storage.sql import PG_CONNECT_TIMEOUT_S, SqlStore

__all__ = ["BulkSqlStore", "open_sql_store", "sqlite_values"]

log = logging.getLogger(__name__)

_ORDER = "_bulk_i"  # the staging column holding each row's position in the batch
_BULK = (Merge.KEEP_FIRST, Merge.LAST_SEEN_WINS)


def _decimal_texts(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """The canonical plain text of every decimal (:func:`recorder.storage.codecs.decimal_text`), in Arrow."""
    from recorder.storage.codecs import decimal_texts

    text = column.cast(pa.string())
    exponent = pc.match_substring(text, "E")
    if pc.any(exponent).as_py():  # 0 and values below 1E-6 print an exponent: the Python codec
        return pa.array(decimal_texts(column), pa.string())
    return pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")


def sqlite_values(table: pa.Table) -> pa.Table:
    """``table`` with the values SqlStore binds on SQLite: decimals as canonical plain text,
    UTC timestamps as naive ``YYYY-MM-DD HH:MM:SS.ffffff`` text; other columns unchanged."""
    arrays = []
    for col in table.columns:
        kind = col.type
        if pa.types.is_decimal(kind):
            arrays.append(_decimal_texts(col))
        elif pa.types.is_timestamp(kind):
            arrays.append(col.cast(pa.timestamp(kind.unit)).cast(pa.timestamp("us")).cast(pa.string()))
        else:
            arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names)


def _postgres_values(table: pa.Table) -> pa.Table:
    # Decimals go as canonical text and are cast to NUMERIC in the INSERT: a decimal128(38, 18)
    # would be stored with 18 fractional digits, not as SqlStore stores it.
    arrays = [_decimal_texts(c) if pa.types.is_decimal(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(arrays, names=table.column_names)


def _merge_sql(dataset: Dataset, dialect: str, stage: str) -> str:
    """``INSERT INTO <table> SELECT <one row per key> FROM <stage> ON CONFLICT ...`` for ``dataset``."""
    table = dataset.table
    names = [f.name for f in dataset.arrow_schema]
    key = list(dataset.key)
    staging = sa.table(stage, *(sa.column(n) for n in [*names, _ORDER]))
    if dataset.merge is Merge.LAST_SEEN_WINS:  # the latest ts_recv; ties: the later row
        order: list[Any] = [staging.c.ts_recv.desc(), staging.c[_ORDER].desc()]
    else:  # keep_first: the first row of the batch
        order = [staging.c[_ORDER].asc()]
    rank = sa.func.row_number().over(partition_by=[staging.c[k] for k in key], order_by=order)
    ranked = sa.select(*(staging.c[n] for n in names), rank.label("_bulk_rank")).subquery("ranked")
    columns = []
    for n in names:
        col: Any = ranked.c[n]
        if dialect == "postgresql" and pa.types.is_decimal(dataset.arrow_schema.field(n).type):
            col = sa.cast(col, sa.Numeric())  # staged as canonical text (only decimals are cast: a
            # cast to VARCHAR(n) would truncate where the INSERT's assignment refuses)
        columns.append(col)
    pick = sa.select(*columns).where(ranked.c._bulk_rank == 1)
    if dialect == "postgresql":  # key order: concurrent writers wait instead of deadlocking
        pick = pick.order_by(*(ranked.c[k] for k in key))
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).from_select(names, pick)
    if dataset.merge is Merge.LAST_SEEN_WINS:
        stmt = stmt.on_conflict_do_update(
            index_elements=key,
            set_={n: stmt.excluded[n] for n in names if n not in key},
            where=stmt.excluded.ts_recv >= table.c.ts_recv,
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    dia = postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()
    return str(stmt.compile(dialect=dia, compile_kwargs={"literal_binds": True}))


def _is_unauthorized(exc: Exception) -> bool:
    """An ADBC error for a missing privilege (libpq SQLSTATE 42501 surfaces as UNAUTHORIZED)."""
    import adbc_driver_manager

    return (getattr(exc, "status_code", None) == adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED
            or getattr(exc, "sqlstate", None) == "42501")


class _StagingRefused(Exception):
    """The role may not create the TEMP staging tables: bulk ingest is not possible here."""


class BulkSqlStore(SqlStore):
    """:class:`SqlStore` writing keep-first and last-seen-wins datasets by ADBC bulk ingest.

    Same URL, same tables, same stored values, same errors: StoreUnavailableError (retry later,
    nothing written) when the database cannot be reached, is locked or goes away;
    StorageError for rows it refuses (non-retryable: the writer bisects and quarantines).
    The connection is opened at the first write and reopened after an outage.

    PostgreSQL only in the recorder: on a SQLite URL it raises ConfigError unless
    ``sqlite_alone=True`` (tests, benches), because the ADBC SQLite driver links its own SQLite
    and two copies of SQLite in one process do not see each other's POSIX locks: a pysqlite
    connection of the same process (this store's fallback and head check, readers) is not
    excluded, and closing it can drop the ADBC connection's locks (sqlite.org/howtocorrupt.html
    2.2.1; ``test_two_sqlite_copies_in_one_process_do_not_exclude_each_other`` shows it).
    """

    name = "sql"

    def __init__(self, url: str | sa.URL, *, sqlite_alone: bool = False) -> None:
        parsed = parse_url(url)
        if parsed.get_backend_name() == "sqlite" and not sqlite_alone:
            raise ConfigError(
                f"sql_bulk is for PostgreSQL: {mask_url(parsed)} is SQLite, and adbc-driver-sqlite carries "
                "its own copy of SQLite, whose file locks do not exclude the copy SQLAlchemy uses in the "
                "same process (https://www.sqlite.org/howtocorrupt.html, 2.2.1)")
        super().__init__(url)
        self._dialect = parsed.get_backend_name()
        self._secrets = [str(v) for k, v in parsed.query.items()
                         if k.lower() in ("password", "sslpassword") and v and isinstance(v, str)]
        if parsed.password:
            self._secrets.append(str(parsed.password))
        if self._dialect == "postgresql":
            libpq = parsed.set(drivername="postgresql")  # the query: libpq parameters (sslmode, host, ...)
            if "connect_timeout" not in libpq.query:  # as SqlStore's engine: never wait minutes for a host
                libpq = libpq.update_query_dict({"connect_timeout": str(PG_CONNECT_TIMEOUT_S)})
            self._adbc_uri = libpq.render_as_string(hide_password=False)
        else:
            self._adbc_uri = parsed.database or ":memory:"
        self._conn: Any = None
        self._staged: set[str] = set()
        #: why bulk ingest is off for this store (the role may not create TEMP tables), else None:
        #: every batch then goes through SqlStore.write_batch
        self.bulk_refused: str | None = None
        self._merge = {n: _merge_sql(ds, self._dialect, f"bulk_stage_{n}")
                       for n, ds in DATASETS.items() if ds.merge in _BULK}

    def __repr__(self) -> str:
        return f"BulkSqlStore({self.url!r})"

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        try:
            if self._dialect == "postgresql":
                import adbc_driver_postgresql.dbapi as pgdb

                conn = pgdb.connect(self._adbc_uri)
            else:
                import adbc_driver_sqlite.dbapi as sqdb

                conn = sqdb.connect(self._adbc_uri, autocommit=True)
                with conn.cursor() as cur:  # the pragmas SqlStore sets (WAL is already in the file)
                    cur.execute("PRAGMA synchronous=NORMAL")
                    cur.execute("PRAGMA busy_timeout=10000")
                    cur.execute("PRAGMA foreign_keys=ON")
                conn.adbc_connection.set_autocommit(False)
        except ImportError:
            raise  # not an outage: write_batch falls back to executemany
        except Exception as exc:
            raise StoreUnavailableError(
                f"database {self.url} unavailable while connecting: {self._clean(exc)}") from None
        self._conn = conn
        self._staged = set()
        return conn

    def _clean(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if "Failed to execute query '" in text:  # libpq quotes our whole statement: keep the reason
            head, _, rest = text.partition("Failed to execute query '")
            text = head + rest.rpartition("': ")[2]
        text = text.split(" DETAIL:")[0].split("\nDETAIL:")[0]  # libpq's DETAIL quotes the row's values
        return " ".join(text.split())

    def write_batch(self, records: Sequence[Record]) -> None:
        """Write ``records`` in one transaction, idempotently (see :meth:`SqlStore.write_batch`)."""
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if not records:
            return
        try:
            batch = Batch.of(records)
        except TypeError as exc:
            raise StorageError(f"cannot store a batch for {self.url}: {exc}") from exc
        tables: list[tuple[str, pa.Table]] = []
        for name in self._order:
            if not batch.groups.get(name):
                continue
            if name not in self._merge:
                return super().write_batch(batch)
            try:
                table = batch.table(name)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
                return super().write_batch(batch)  # stores or refuses each value as SqlStore does
            table = sqlite_values(table) if self._dialect == "sqlite" else _postgres_values(table)
            tables.append((name, table.append_column(_ORDER, pa.array(range(table.num_rows), pa.int64()))))
        if not self._head_verified:
            self._verify_head()
        if self.bulk_refused is None:
            try:
                self._write(tables, len(records))
                return
            except _StagingRefused as exc:
                self.bulk_refused = str(exc)
                log.warning("sql store: %s; writing with executemany from now on (grant TEMPORARY on the "
                            "database for bulk ingest, or set [storage] sql_bulk = false)", exc)
            except ImportError as exc:  # an install without the ADBC driver (a base dependency)
                self.bulk_refused = f"the ADBC driver is not installed ({exc})"
                log.warning("sql store: %s; writing with executemany from now on (pip install "
                            "adbc-driver-postgresql for bulk ingest, or set [storage] sql_bulk = false)",
                            self.bulk_refused)
        super().write_batch(batch)

    def _write(self, tables: list[tuple[str, pa.Table]], count: int) -> None:
        import adbc_driver_manager.dbapi as dbapi

        conn = self._connect()
        try:
            with conn.cursor() as cur:
                for name, table in tables:
                    stage = f"bulk_stage_{name}"
                    mode = "append" if stage in self._staged else "create"
                    try:
                        cur.adbc_ingest(stage, table, mode=mode, temporary=True)
                    except dbapi.Error as exc:
                        if mode == "create" and _is_unauthorized(exc):
                            why = f"on {self.url}: {self._clean(exc).split(' LINE ')[0]}"
                            msg = f"no TEMPORARY privilege for the staging tables {why}"
                            raise _StagingRefused(msg) from None
                        raise
                    self._staged.add(stage)
                    cur.execute(self._merge[name])
                    cur.execute(f"DELETE FROM {stage}")  # noqa: S608 - our own table name
            conn.adbc_connection.commit()
        except _StagingRefused:
            self._abandon()
            raise
        except Exception as exc:
            self._abandon()
            # worded as SqlStore words them (migrate.translate_db_error): one message per fault
            what = f"while writing {count} records: {self._clean(exc)}"
            if isinstance(exc, dbapi.OperationalError | dbapi.InternalError | dbapi.InterfaceError):
                raise StoreUnavailableError(f"database {self.url} unavailable {what}") from None
            if isinstance(exc, dbapi.Error):
                raise StorageError(f"database {self.url} failed {what}") from None
            raise

    def _abandon(self) -> None:
        # Roll back and drop the connection: the next write reconnects (and re-creates staging).
        conn, self._conn = self._conn, None
        self._staged = set()
        if conn is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                conn.adbc_connection.rollback()
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Release every connection. Idempotent."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        super().close()


def open_sql_store(url: str | sa.URL, *, bulk: bool = False) -> SqlStore:
    """The SQL store for ``url``: :class:`BulkSqlStore` when ``bulk`` and the URL is PostgreSQL,
    else :class:`SqlStore` (SQLite always: see :class:`BulkSqlStore`). Raises as their constructors."""
    if bulk and parse_url(url).get_backend_name() == "postgresql":
        return BulkSqlStore(url)
    return SqlStore(url)

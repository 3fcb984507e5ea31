"""The SQL store: writes batches of records to SQLite or PostgreSQL through SQLAlchemy Core.

One :meth:`SqlStore.write_batch` call is one transaction with one bulk
(executemany) statement per table touched, never one statement per record.
Identity keys make every write idempotent, so replaying records (e.g. from the
journal after an outage) writes nothing twice:

The key and the merge rule of each table come from its dataset spec
(:mod:`recorder.storage.datasets`: ``key``, ``merge``):

* ``keep_first`` -- on conflict keep the stored row (tickers, book_snapshots, deals, balances,
  order_status_changes, instruments, fills);
* ``last_seen_wins`` -- update if ts_recv >= stored (klines, orders);
* ``span`` -- update; a NULL ts_end never reopens a closed span (feed_events);
* ``append`` -- always insert (quarantine, serial id).

"Update if ts_recv >= stored" makes the most recently *seen* state win, even when
an older state is replayed later. On PostgreSQL the rows of each table are written
in key order, so several processes writing overlapping batches at once wait for
each other instead of deadlocking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from operator import itemgetter
from types import TracebackType
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recorder.errors import ConfigError, StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage.codecs import decimal_texts, utc_texts
from recorder.storage.datasets import Merge
from recorder.storage.migrate import mask_url, parse_url, require_head, translate_db_error
from recorder.storage.schema import DATASETS, Batch, Dataset

__all__ = ["SqlStore"]

log = logging.getLogger(__name__)

PG_CONNECT_TIMEOUT_S = 10

Row = dict[str, Any]
_Dedup = Callable[[list[Row], Callable[[Row], Any]], list[Row]]


def _latest_seen(rows: list[Row], key: Callable[[Row], Any]) -> list[Row]:
    # One row per key, the one seen last (ties: the later in the batch), as the upsert would keep.
    best: dict[Any, Row] = {}
    for row in rows:
        k = key(row)
        old = best.get(k)
        if old is None or row["ts_recv"] >= old["ts_recv"]:
            best[k] = row
    return list(best.values())


def _merge_spans(rows: list[Row], key: Callable[[Row], Any]) -> list[Row]:
    # One row per event_id: the later write, but a closed span stays closed.
    best: dict[Any, Row] = {}
    for row in rows:
        k = key(row)
        old = best.get(k)
        if old is not None and row["ts_end"] is None and old["ts_end"] is not None:
            row = {**row, "ts_end": old["ts_end"]}
        best[k] = row
    return list(best.values())


class _Plan:
    """How one dataset is written on one dialect: the statement, and how rows are prepared."""

    __slots__ = ("dataset", "dedup", "direct_columns", "direct_sql", "key", "sort", "statement")

    def __init__(self, dataset: Dataset, dialect: str) -> None:
        table = dataset.table
        pk = list(dataset.key)
        self.dataset = dataset
        self.key: Callable[[Row], Any] | None = None
        self.dedup: _Dedup | None = None
        self.sort = dialect == "postgresql"
        self.direct_sql: str | None = None
        self.direct_columns: list[str] = []
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        merge = dataset.merge
        if merge is Merge.APPEND:
            self.statement: Any = stmt
            self.sort = False
            self._compile_direct(dialect)
            return
        self.key = itemgetter(*pk) if len(pk) > 1 else (lambda row, _c=pk[0]: row[_c])
        if merge is Merge.LAST_SEEN_WINS:
            self.dedup = _latest_seen
            self.statement = stmt.on_conflict_do_update(
                index_elements=pk,
                set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk},
                where=stmt.excluded.ts_recv >= table.c.ts_recv,
            )
        elif merge is Merge.SPAN:
            self.dedup = _merge_spans
            values = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk}
            values["ts_end"] = sa.func.coalesce(stmt.excluded.ts_end, table.c.ts_end)
            self.statement = stmt.on_conflict_do_update(index_elements=pk, set_=values)
        else:
            self.statement = stmt.on_conflict_do_nothing(index_elements=pk)
            self._compile_direct(dialect)

    def _compile_direct(self, dialect: str) -> None:
        # SQLite, tables written without dedup: the Core statement compiled once to its
        # qmark SQL, executed with tuples made from the batch's Arrow table (no per-value
        # Python type processing). The same text SQLAlchemy would send, bound the same way.
        if dialect != "sqlite":
            return
        names = [f.name for f in self.dataset.arrow_schema]
        compiled = self.statement.compile(dialect=sqlite.dialect(), column_keys=names)
        assert compiled.positiontup is not None and set(compiled.positiontup) <= set(names)
        self.direct_sql = str(compiled)
        self.direct_columns = list(compiled.positiontup)

    def prepare(self, rows: list[Row]) -> list[Row]:
        if self.dedup is not None and self.key is not None:
            rows = self.dedup(rows, self.key)
        if self.sort and self.key is not None:
            rows.sort(key=self.key)
        return rows


class SqlStore:
    """Writes record batches to one SQL database (SQLite file or PostgreSQL).

    ``url`` is a SQLAlchemy URL (``sqlite:///data/recording.sqlite``,
    ``postgresql+psycopg://user:pw@host/db``). Opening checks that the schema is at
    the newest migration and raises :class:`~recorder.errors.SchemaNotAtHeadError`
    (naming ``okex-recorder db upgrade``) otherwise; if the database cannot be
    reached yet, the check is repeated by the first :meth:`write_batch`.
    SQLite runs in WAL mode with ``synchronous=NORMAL``, a busy timeout and
    foreign keys on; PostgreSQL connections are pinged before use.
    """

    name = "sql"  # the Store seam (recorder.storage.store): its name in the writer's stats

    def __init__(self, url: str | sa.URL) -> None:
        parsed = parse_url(url)
        self.url = mask_url(parsed)
        dialect = parsed.get_backend_name()
        if dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"unsupported database {self.url}: use sqlite or postgresql")
        try:
            if dialect == "sqlite":
                self._engine = sa.create_engine(parsed)
                sa.event.listen(self._engine, "connect", _sqlite_pragmas)
            else:
                self._engine = sa.create_engine(
                    parsed, pool_pre_ping=True, pool_size=2, max_overflow=2,
                    connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
                )
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database {self.url}: {exc}") from exc
        self._plans = {name: _Plan(ds, dialect) for name, ds in DATASETS.items()}
        self._order = list(DATASETS)  # fixed table order in every transaction
        self._closed = False
        self._head_verified = False
        try:
            self._verify_head()
        except StoreUnavailableError as exc:
            log.warning("%s; the schema will be checked at the first write", exc)
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"SqlStore({self.url!r})"

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (for readers and tests; writers use :meth:`write_batch`)."""
        return self._engine

    def _verify_head(self) -> None:
        require_head(self._engine)
        self._head_verified = True

    def write_batch(self, records: Sequence[Record]) -> None:
        """Write ``records`` (any mix of record types) in one transaction, idempotently.

        Raises StoreUnavailableError when the database cannot be reached or written
        now (retry later: nothing of the batch was written), SchemaNotAtHeadError if
        the schema is not at head, StorageError for anything else (e.g. a value the
        column cannot hold, a non-record).
        """
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if not records:
            return
        try:
            batch = Batch.of(records)
        except TypeError as exc:
            raise StorageError(f"cannot store a batch for {self.url}: {exc}") from exc
        work: list[tuple[_Plan, Any, bool]] = []  # plan, parameters, direct (tuples) or not
        for name in self._order:
            group = batch.groups.get(name)
            if not group:
                continue
            plan = self._plans[name]
            params: Any = None
            if plan.direct_sql is not None:
                params = _direct_params(batch, plan)
            direct = params is not None
            if params is None:
                try:
                    params = plan.prepare(batch.rows(name))
                except (TypeError, ValueError, AttributeError) as exc:
                    raise StorageError(f"cannot store a batch for {self.url}: {exc}") from exc
            work.append((plan, params, direct))
        if not self._head_verified:
            self._verify_head()
        try:
            with self._engine.begin() as conn:
                for plan, params, direct in work:
                    if direct:
                        assert plan.direct_sql is not None
                        conn.exec_driver_sql(plan.direct_sql, params)
                    else:
                        conn.execute(plan.statement, params)
        except sa.exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, self._engine, f"writing {len(records)} records") from exc

    def close(self) -> None:
        """Release every connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _direct_params(batch: Batch, plan: _Plan) -> list[tuple[Any, ...]] | None:
    """SQLite bind tuples for one dataset of ``batch``, made column-wise from its Arrow table.

    Decimals become the canonical plain text and timestamps the UTC text SQLAlchemy
    would have bound. None when the table cannot be built (a naive datetime, a decimal
    beyond ``decimal128(38, 18)``): the caller then takes the per-row path, which stores
    or refuses the value exactly as before.
    """
    try:
        table = batch.table(plan.dataset.name)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
        return None
    columns = []
    for name in plan.direct_columns:
        column = table.column(name)
        kind = column.type
        if pa.types.is_decimal(kind):
            columns.append(decimal_texts(column))
        elif pa.types.is_timestamp(kind):
            columns.append(utc_texts(column))
        else:
            columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")  # ms
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()

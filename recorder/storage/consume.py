"""``okex-recorder store``: writers that consume the bus and write SQL and/or Parquet.

Each store has one durable JetStream pull consumer (``<durable>-sql``, ``<durable>-parquet``) on
``<subject_prefix>.>`` of the stream. A worker fetches up to ``batch`` messages, reads them as Arrow
tables (:func:`decode_fetched`: the messages of one dataset and schema as one Arrow stream, cast to
this version's schema once; no record object is built per row), hands them to its store as one
table-native ``write_batch`` and acknowledges the messages only after the store made them durable
(SQL: the transaction committed; Parquet: the journal fsync'd). A writer killed before the
acknowledgement gets its messages again after ``ack_wait`` (or another writer of the same durable
does): the stores' unique keys absorb rows written twice (Parquet readers drop copies by key).
Several processes started with the same ``--durable`` share the work.

While a store is unavailable the worker keeps its fetched messages, tells JetStream they are in
progress (no redelivery) and retries with :func:`recorder.backoff.backoff`. Nothing the stores
cannot hold is dropped: it goes to the store's ``quarantine`` dataset (``connection`` = ``bus``,
``channel`` = the message's subject, the ``reason`` ending in ``(stream <name> seq <n>)``), in the
same write as the rest of the fetch, and its message is settled only once that is durable:

* a message that cannot be read or cast to this version's schema is quarantined whole: its raw
  payload (the Arrow IPC bytes as published, at most 64 KiB like a raw frame; the reason says
  when it was longer), then *terminated* (not redelivered; with ``retention = "limits"`` it
  stays in the stream until ``max_age``);
* a row no store can hold (:func:`~recorder.storage.validate.table_problems`: text too long or
  with a NUL, a symbol or venue that is no safe path, a missing value; the same rules in both
  workers, so SQL and Parquet hold the same rows) and a row the store refuses anyway (the fetch
  is then written message by message, a refused message halved until its refused rows are
  isolated) is quarantined alone with its values as JSON (as the collector's storage writer
  does); its neighbours are stored and the message acknowledged.

If the quarantine write meets an outage, the message stays unsettled (redelivered later). A SQL
schema that is not at head stops the writer unacknowledged. :class:`WorkerStats` counts rows
stored and quarantined per dataset; each worker logs them every minute and when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pyarrow as pa
from nats.js import api

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import (
    ConfigError,
    SchemaNotAtHeadError,
    StorageError,
    StoreUnavailableError,
    SymbolError,
)
from recorder.records import QuarantinedFrame, Record, utc_now
from recorder.storage.bus import (
    HEADER_COLLECTOR,
    HEADER_DATASET,
    HEADER_ROWS,
    HEADER_VENUE,
    encode_table,
    ensure_stream,
    read_message,
)
from recorder.storage.bus_config import BusConfig
from recorder.storage.keys import check_venue
from recorder.storage.schema import DATASETS, Batch, conform
from recorder.storage.store import Store
from recorder.storage.validate import (
    PAYLOAD_MAX_BYTES,
    REASON_MAX,
    Problem,
    Screen,
    record_at,
    table_problems,
)

__all__ = ["QUARANTINE_CONNECTION", "WorkerStats", "add_arguments", "consume", "run"]

log = logging.getLogger("recorder.storage.consume")

_CAST_ERRORS = (pa.ArrowException, KeyError, ValueError)
# refused for good (the Store contract), except StoreUnavailableError / SchemaNotAtHeadError
_REFUSED = (StorageError, SymbolError, ValueError, TypeError)
_ROW_ERRORS = (pa.ArrowException, ValueError, TypeError, KeyError, OverflowError, AttributeError)
STATS_LOG_INTERVAL = 60.0  # s between two log lines of a worker's counts (when they changed)

QUARANTINE_CONNECTION = "bus"
"""``connection`` of the quarantine rows a bus writer makes (``channel``: the message's subject)."""


@dataclasses.dataclass(slots=True)
class WorkerStats:
    """Counters of one store's worker since start; per dataset by the message's ``Okex-Dataset``.

    Every message acknowledged had each of its rows stored or quarantined (durable) first;
    every message terminated had its raw payload quarantined first. So, per dataset and store,
    the rows of the readable messages = ``stored`` + ``quarantined``; ``refused`` messages could
    not be read (their rows are unknown; one quarantine row each, holding the payload).
    """

    messages: int = 0  # acknowledged: rows stored, the refused ones among them quarantined
    rows: int = 0  # rows stored (the sum of ``stored``)
    stored: Counter[str] = dataclasses.field(default_factory=Counter)  # rows stored
    quarantined: Counter[str] = dataclasses.field(default_factory=Counter)  # rows quarantined alone
    refused: int = 0  # messages quarantined whole (unreadable), then terminated
    refused_by_dataset: Counter[str] = dataclasses.field(default_factory=Counter)  # "?": none named
    repaired: int = 0  # collectors' quarantine rows repaired to fit (text escaped or cut), then stored
    unstorable: int = 0  # quarantine rows the store refused too: not stored (logged at ERROR)
    retries: int = 0  # store unavailable: batch retried
    collectors: set[str] = dataclasses.field(default_factory=set)  # Okex-Collector headers seen

    def summary(self) -> str:
        """One line: ``messages acknowledged 154, rows stored 238 (deals 93, tickers 145), rows quarantined
        1 (deals 1), unreadable messages quarantined whole 1 (tickers 1), retries 0``."""
        parts = [f"messages acknowledged {self.messages}",
                 f"rows stored {self.rows}{_by_dataset(self.stored)}",
                 f"rows quarantined {sum(self.quarantined.values())}{_by_dataset(self.quarantined)}",
                 f"unreadable messages quarantined whole {self.refused}"
                 + _by_dataset(self.refused_by_dataset)]
        if self.repaired:
            parts.append(f"quarantine rows repaired {self.repaired}")
        if self.unstorable:
            parts.append(f"quarantine rows NOT stored (refused by the store) {self.unstorable}")
        parts.append(f"retries {self.retries}")
        return ", ".join(parts)


def _by_dataset(counts: Counter[str]) -> str:
    shown = {k: n for k, n in sorted(counts.items()) if n}
    return f" ({', '.join(f'{k} {n}' for k, n in shown.items())})" if shown else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``store --bus URL [--sql-url U] [--parquet-root R] ...``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="TOML configuration file: its [bus] section (url, stream, prefix, limits)")
    parser.add_argument("--bus", default=None, metavar="nats://HOST:PORT", help="NATS server (bus.url)")
    parser.add_argument("--sql-url", default=None,
                        help="write SQL (SQLAlchemy URL; the schema must be at head)")
    parser.add_argument("--parquet-root", default=None, help="write Parquet under this root")
    parser.add_argument("--parquet-journal-dir", default=None,
                        help="the Parquet store's local journal (default <root>/_journal)")
    parser.add_argument("--durable", default="okex-writer",
                        help="consumer name prefix: <durable>-sql, <durable>-parquet (default okex-writer); "
                             "processes with the same name share the work")
    parser.add_argument("--batch", type=int, default=1000, help="messages per fetch (default 1000)")
    parser.add_argument("--ack-wait", type=float, default=60.0,
                        help="s before JetStream redelivers an unacknowledged message (default 60)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds; default: run until SIGINT/SIGTERM")


def run(args: argparse.Namespace) -> int:
    """``okex-recorder store``: exit 0 after SIGINT/SIGTERM (or ``--duration``), 2 for bad arguments."""
    from recorder.config import load_config
    from recorder.logs import setup_logging

    config = load_config(args.config)
    bus = config.bus if not args.bus else dataclasses.replace(config.bus, url=args.bus)
    if not bus.url:
        raise ConfigError("store: --bus nats://HOST:PORT (or bus.url in the config) is required")
    if not args.sql_url and not args.parquet_root:
        raise ConfigError("store: give --sql-url and/or --parquet-root")
    if args.batch < 1 or args.ack_wait <= 0:
        raise ConfigError("store: --batch and --ack-wait must be > 0")
    setup_logging(config)
    stores = open_stores(args.sql_url, args.parquet_root, args.parquet_journal_dir,
                         roll_rows=config.storage.parquet_roll_rows,
                         roll_seconds=config.storage.parquet_roll_seconds, sql_bulk=config.storage.sql_bulk)
    asyncio.run(_main(bus, stores, args))
    return 0


def open_stores(sql_url: str | None, parquet_root: str | None, journal_dir: str | None = None, *,
                roll_rows: int = 1_000_000, roll_seconds: float = 300.0,
                sql_bulk: bool = False) -> dict[str, Store]:
    """``{"sql": SqlStore, "parquet": ParquetStore}`` for the options given (Parquet files roll every
    ``roll_rows`` rows or ``roll_seconds`` s: ``[storage] parquet_roll_rows/_seconds`` of ``--config``;
    ``sql_bulk``: ``[storage] sql_bulk``, BulkSqlStore on PostgreSQL).

    Raises SchemaNotAtHeadError if the SQL schema is not at head (``okex-recorder db upgrade``).
    """
    from recorder.storage.parquet import ParquetStore
    from recorder.storage.sql_bulk import open_sql_store

    stores: dict[str, Store] = {}
    if sql_url:
        stores["sql"] = open_sql_store(sql_url, bulk=sql_bulk)
    if parquet_root:
        try:
            stores["parquet"] = ParquetStore(parquet_root, journal_dir=journal_dir, roll_rows=roll_rows,
                                             roll_seconds=roll_seconds)
        except BaseException:
            for s in stores.values():
                s.close()
            raise
    return stores


async def _main(bus: BusConfig, stores: dict[str, Store], args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    await consume(bus, stores, stop, durable=args.durable, batch=args.batch, ack_wait=args.ack_wait)


async def consume(bus: BusConfig, stores: dict[str, Store], stop: asyncio.Event, *,
                  durable: str = "okex-writer", batch: int = 1000, ack_wait: float = 60.0,
                  fetch_timeout: float = 1.0,
                  stats: dict[str, WorkerStats] | None = None, close_stores: bool = True) -> None:
    """Consume until ``stop`` is set: one worker per store (``{"sql": ..., "parquet": ...}``).

    Connects (retrying with backoff while NATS is unreachable), creates the stream if missing
    and each durable consumer, then runs the workers. ``stats`` (if given) is filled per store
    name. Closes the stores at the end (``close_stores``: ParquetStore rolls its journal).
    """
    stats = stats if stats is not None else {}
    nc = await _connect(bus, stop)
    try:
        if nc is None:
            return
        js = nc.jetstream(timeout=bus.publish_timeout)
        await _retry(lambda: ensure_stream(js, bus), stop, "stream")
        workers = []
        for name, store in stores.items():
            stats.setdefault(name, WorkerStats())
            workers.append(asyncio.create_task(
                _worker(js, nc, bus, f"{durable}-{name}", name, store, stop, batch, ack_wait, fetch_timeout,
                        stats[name]), name=f"store-{name}"))
        done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:  # one worker failed: stop the others, then report it
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        if close_stores:
            for store in stores.values():
                try:
                    await asyncio.to_thread(store.close)
                except StorageError as exc:
                    log.error("closing a store: %s", exc)


async def _connect(bus: BusConfig, stop: asyncio.Event) -> Any:
    delays = backoff(BackoffPolicy(initial=0.5, cap=10.0))
    while not stop.is_set():
        try:
            return await nats.connect(bus.url, connect_timeout=bus.connect_timeout, allow_reconnect=True,
                                      max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                      name="okex-recorder store", error_cb=_quiet)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            log.warning("NATS %s unreachable (%s); retrying", bus.url, exc)
            await _sleep(stop, next(delays))
    return None


async def _retry(fn: Callable[[], Any], stop: asyncio.Event, what: str) -> Any:
    delays = backoff(BackoffPolicy(initial=0.5, cap=10.0))
    while not stop.is_set():
        try:
            return await fn()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("NATS %s not ready (%s); retrying", what, exc)
            await _sleep(stop, next(delays))
    return None


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _worker(js: Any, nc: Any, bus: BusConfig, durable: str, name: str, store: Store,
                  stop: asyncio.Event, batch: int, ack_wait: float, fetch_timeout: float,
                  stats: WorkerStats) -> None:
    config = api.ConsumerConfig(
        durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ack_wait, max_ack_pending=max(10 * batch, 1000), filter_subject=f"{bus.subject_prefix}.>",
    )
    subject = f"{bus.subject_prefix}.>"
    sub = await _retry(lambda: js.pull_subscribe(subject, durable=durable, stream=bus.stream, config=config),
                       stop, f"consumer {durable}")
    if sub is None:
        return
    log.info("%s store consuming %s (subjects %s: every venue) as durable %s", name, bus.stream, subject,
             durable)
    roll = getattr(store, "roll_due", None)
    screen = Screen(None)  # the storage rules only: the collector applied its plausibility windows
    logged, logged_at = stats.summary(), time.monotonic()
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=fetch_timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            msgs = []
        except nats.errors.Error as exc:
            log.warning("%s: fetch failed (%s); retrying", durable, exc)
            await _sleep(stop, 1.0)
            continue
        if msgs:
            await _write_and_ack(nc, name, store, msgs, stop, stats, screen)
        if roll is not None:  # Parquet: roll journal segments that are due by age
            try:
                await asyncio.to_thread(roll)
            except StorageError as exc:
                log.error("%s: %s", name, exc)
        if time.monotonic() - logged_at >= STATS_LOG_INTERVAL:
            summary = stats.summary()
            if summary != logged:
                log.info("%s store since start: %s", name, summary)
            logged, logged_at = summary, time.monotonic()
    log.info("%s store stopping: %s", name, stats.summary())
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


@dataclasses.dataclass(slots=True)
class _Delivered:
    """One fetched message: its rows to store (in this version's Arrow schema) and what it quarantines."""

    msg: Any
    name: str  # dataset ("?" for a message refused whole whose header names none)
    table: pa.Table | None  # None: refused whole (its payload quarantined as it came)
    quarantine: list[QuarantinedFrame] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)  # of the rows set aside
    repaired: int = 0  # its quarantine rows (a collector's) repaired to fit
    unstorable: int = 0  # its quarantine rows the store refused too

    @property
    def stored_rows(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def batch(self) -> Batch:
        """Its rows and its quarantine rows, one batch."""
        parts = [] if self.table is None else [Batch.from_groups({self.name: self.table})]
        return Batch.merged([*parts, Batch(self.quarantine)])


def decode_fetched(msgs: Sequence[Any]) -> tuple[list[_Delivered], list[tuple[Any, Exception]]]:
    """The fetched messages' rows, and the messages refused for good (with why).

    The messages of one dataset and one Arrow schema (a collector version) are read as one
    Arrow IPC stream (their schema once, then each message's record batch: a one-row ticker or
    book snapshot costs more to open on its own than to read) and cast to this version's schema
    once (:func:`~recorder.storage.schema.conform`); each message keeps its slice of the result.
    Messages that do not join (not one record batch of ``Okex-Rows`` rows, an older collector's
    without the ``collector`` column) are read one by one (:func:`~recorder.storage.bus.read_message`);
    where a group cannot be read or cast, its messages are taken one by one, so only the culprits
    are refused. Order: fetch order among the messages of one dataset and schema (one collector
    version); messages of another schema follow as a group.
    """
    refused: list[tuple[Any, Exception]] = []
    joinable: dict[tuple[str, bytes], list[Any]] = {}
    single: list[Any] = []
    for msg in msgs:
        name = (msg.headers or {}).get(HEADER_DATASET)
        prefix = _schema_prefix(msg.data)
        if name in DATASETS and prefix is not None:
            joinable.setdefault((name, prefix), []).append(msg)
        else:
            single.append(msg)
    # dataset -> [(schema, [(messages with their row counts, their rows)])]
    groups: dict[str, list[tuple[pa.Schema, list[tuple[list[tuple[Any, int]], pa.Table]]]]] = {}

    def add(name: str, members: list[tuple[Any, int]], table: pa.Table) -> None:
        by_schema = groups.setdefault(name, [])
        for schema, parts in by_schema:
            if schema.equals(table.schema):
                parts.append((members, table))
                return
        by_schema.append((table.schema, [(members, table)]))

    for (name, prefix), members in joinable.items():
        joined = _read_joined(name, prefix, members)
        if joined is None:
            single.extend(members)
        else:
            add(name, [(m, int(m.headers[HEADER_ROWS])) for m in members], joined)
    for msg in single:
        try:
            dataset, table = read_message(msg.headers, msg.data)
        except StorageError as exc:
            refused.append((msg, exc))
            continue
        add(dataset.name, [(msg, table.num_rows)], table)
    out: list[_Delivered] = []
    for name, by_schema in groups.items():
        target = DATASETS[name].arrow_schema
        for _, parts in by_schema:
            try:
                whole = conform(pa.concat_tables([t for _, t in parts]).combine_chunks(), target)
            except _CAST_ERRORS:
                for members, table in parts:  # find the culprits
                    offset = 0
                    for msg, n in members:
                        try:
                            out.append(_Delivered(msg, name, conform(table.slice(offset, n), target)))
                        except _CAST_ERRORS as exc:
                            refused.append((msg, StorageError(
                                f"{name}: bus message does not fit this version's schema: {exc}")))
                        offset += n
                continue
            offset = 0
            for members, _ in parts:
                for msg, n in members:
                    out.append(_Delivered(msg, name, whole.slice(offset, n)))
                    offset += n
    return out, refused


_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # an Arrow IPC stream's end marker


def _schema_prefix(data: bytes) -> bytes | None:
    """The schema message an Arrow IPC stream starts with, if ``data`` is one ending in its end marker."""
    if len(data) < 16 or data[:4] != b"\xff\xff\xff\xff" or not data.endswith(_EOS):
        return None
    length = int.from_bytes(data[4:8], "little", signed=True)
    if length <= 0 or 8 + length > len(data) - 8:
        return None
    return data[:8 + length]


def _read_joined(name: str, prefix: bytes, msgs: list[Any]) -> pa.Table | None:
    """Messages of one schema message (``prefix``) read as one stream, or None if they do not join:
    each must be exactly one record batch of ``Okex-Rows`` rows."""
    try:
        rows = [int(m.headers[HEADER_ROWS]) for m in msgs]
        cut = len(prefix)
        stream = b"".join([prefix, *(m.data[cut:-len(_EOS)] for m in msgs), _EOS])
        batches = list(pa.ipc.open_stream(pa.py_buffer(stream)))
    except (pa.ArrowException, KeyError, ValueError, TypeError):
        return None
    if len(batches) != len(msgs) or any(b.num_rows != n for b, n in zip(batches, rows, strict=True)):
        return None
    if not batches or ("collector" in DATASETS[name].arrow_schema.names
                       and "collector" not in batches[0].schema.names):
        return None  # an older collector's: the column comes from each message's header
    return pa.Table.from_batches(batches)


async def _write_and_ack(nc: Any, name: str, store: Store, msgs: list[Any], stop: asyncio.Event,
                         stats: WorkerStats, screen: Screen) -> None:
    delivered, refused = decode_fetched(msgs)
    tables = _screen(delivered, screen)
    units = [*delivered, *(_refused_whole(msg, exc) for msg, exc in refused)]
    for d in delivered:
        collector = (d.msg.headers or {}).get(HEADER_COLLECTOR)
        if collector:
            stats.collectors.add(collector)
    quarantine = [q for d in units for q in d.quarantine]
    batch = Batch.merged([Batch.from_groups(tables), Batch(quarantine)])
    done = await _write(name, store, batch, units, stop, stats, screen)
    for d in done:
        await _settle(name, d, stats, screen)
    await nc.flush()  # the server has the acknowledgements before the next fetch


async def _settle(name: str, d: _Delivered, stats: WorkerStats, screen: Screen) -> None:
    """``d`` is durable (rows stored, quarantine rows written): acknowledge or terminate it; count it."""
    stats.unstorable += d.unstorable
    stats.repaired += d.repaired
    if d.table is None:
        await d.msg.term()  # quarantined whole: not redelivered
        if not d.unstorable:
            stats.refused += 1
            stats.refused_by_dataset[d.name] += 1
            log.warning("%s: message %s quarantined whole and terminated: %s", name, d.msg.subject,
                        d.quarantine[0].reason)
        return
    await d.msg.ack()
    stats.messages += 1
    stats.rows += d.stored_rows
    stats.stored[d.name] += d.stored_rows
    if d.problems:
        stats.quarantined[d.name] += len(d.problems) - d.unstorable  # those not stored: in unstorable
        for problem in d.problems:
            screen.log_quarantined(problem)  # one line per reason kind every 10 s


def _screen(delivered: list[_Delivered], screen: Screen) -> dict[str, pa.Table]:
    """Set aside the rows no store can hold (:func:`~recorder.storage.validate.table_problems`) into
    their message's quarantine rows; return the rows to store, one table per dataset.

    Each dataset's rows are checked as one table (a few vectorised passes); only a message with
    a problem row is taken apart. A collector's quarantine rows are repaired, never set aside.
    """
    by_name: dict[str, list[_Delivered]] = {}
    for d in delivered:
        by_name.setdefault(d.name, []).append(d)
    tables: dict[str, pa.Table] = {}
    for name, members in by_name.items():
        parts = [d.table for d in members if d.table is not None]
        whole = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
        problems = table_problems(DATASETS[name], whole)
        if not problems:
            tables[name] = whole
            continue
        offset = 0
        for d in members:
            assert d.table is not None
            n = d.table.num_rows
            mine = {j - offset: p for j, p in problems.items() if offset <= j < offset + n}
            offset += n
            if not mine:
                continue
            if name == "quarantine":
                _repair(d, mine, screen)
            else:
                _set_aside(d, mine, screen)
        tables[name] = pa.concat_tables([d.table for d in members if d.table is not None]).combine_chunks()
    return tables


def _repair(d: _Delivered, problems: dict[int, Problem], screen: Screen) -> None:
    """A collector's quarantine rows that do not fit: repaired as the storage writer does (escaped, cut)."""
    assert d.table is not None
    try:
        result = screen.screen_batch(Batch.from_groups({"quarantine": d.table}))
        table = result.batch.table("quarantine")
    except _ROW_ERRORS:  # a row no record can be made of: set aside, its bytes kept as Arrow
        _set_aside(d, problems, screen)
        return
    d.table = table
    d.repaired += result.repaired


def _set_aside(d: _Delivered, problems: dict[int, Problem], screen: Screen) -> None:
    """Move rows ``problems`` names (by index in ``d.table``) from ``d.table`` into quarantine rows."""
    assert d.table is not None
    table = d.table
    for j in sorted(problems):
        d.quarantine.append(_row_quarantine(d, table, j, problems[j], screen))
        d.problems.append(problems[j])
    keep = pa.array([j not in problems for j in range(table.num_rows)], pa.bool_())
    d.table = table.filter(keep)


def _row_quarantine(d: _Delivered, table: pa.Table, j: int, problem: Problem,
                    screen: Screen) -> QuarantinedFrame:
    """The quarantine row of row ``j`` of ``d``: its values as JSON, as the storage writer makes them
    (``{"dataset": …, "values": {…}}``, decimals as exact text); a row no record can be made of
    (a value the dataset's converters refuse) keeps its bytes: a one-row Arrow IPC stream."""
    dataset = DATASETS[d.name]
    note = ""
    try:
        q = screen.quarantine(d.name, record_at(dataset, table, j), problem)
        payload, ts_recv = q.payload, q.ts_recv
    except _ROW_ERRORS as exc:
        payload = encode_table(table.slice(j, 1))[:PAYLOAD_MAX_BYTES]
        ts_recv = _stream_time(d.msg)
        note = f"; payload: the row as an Arrow IPC stream ({type(exc).__name__})"
    return _quarantine_row(d.msg, problem.reason, payload, ts_recv, note)


def _refused_whole(msg: Any, exc: Exception) -> _Delivered:
    """A message that cannot be read or cast: one quarantine row holding its payload as received."""
    dataset = (msg.headers or {}).get(HEADER_DATASET)
    data = bytes(msg.data)
    note = f"; {len(data)} bytes, the first {PAYLOAD_MAX_BYTES} kept" if len(data) > PAYLOAD_MAX_BYTES else ""
    q = _quarantine_row(msg, str(exc), data[:PAYLOAD_MAX_BYTES], _stream_time(msg), note)
    return _Delivered(msg, dataset if dataset in DATASETS else "?", None, [q])


def _quarantine_row(msg: Any, cause: str, payload: bytes, ts_recv: datetime, note: str) -> QuarantinedFrame:
    headers = msg.headers or {}
    collector = headers.get(HEADER_COLLECTOR)
    venue = headers.get(HEADER_VENUE) or ""
    try:
        check_venue(venue)
    except SymbolError:
        venue = ""
    return QuarantinedFrame(
        ts_recv=ts_recv, connection=QUARANTINE_CONNECTION, reason=_reason(cause, msg, note),
        channel=_one_line(str(msg.subject)), payload=payload,
        collector=_one_line(collector)[:64] if isinstance(collector, str) and collector else None,
        venue=venue)


def _reason(cause: str, msg: Any, note: str = "") -> str:
    """``cause`` on one line (no NUL), cut so that ``(stream <name> seq <n><note>)`` fits ``REASON_MAX``."""
    try:
        where = f"(stream {msg.metadata.stream} seq {msg.metadata.sequence.stream}{note})"
    except Exception:  # not a JetStream message
        where = f"(stream ? seq ?{note})"
    where = _one_line(where)
    return f"{_one_line(cause)[:max(0, REASON_MAX - len(where) - 1)]} {where}"


def _one_line(text: str) -> str:
    text = " ".join(text.replace("\x00", "\\x00").split())
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _stream_time(msg: Any) -> datetime:
    """When JetStream stored the message (the same for every writer), else now."""
    try:
        ts = msg.metadata.timestamp
    except Exception:  # not a JetStream message
        return utc_now()
    return ts if isinstance(ts, datetime) and ts.utcoffset() is not None else utc_now()


async def _write(name: str, store: Store, records: Sequence[Record], units: list[_Delivered],
                 stop: asyncio.Event, stats: WorkerStats, screen: Screen) -> list[_Delivered]:
    """Write until durable (retrying while unavailable); return the messages to settle."""
    delays = backoff(BackoffPolicy(initial=0.5, cap=15.0))
    last_progress = time.monotonic()
    while True:
        try:
            await asyncio.to_thread(store.write_batch, records)
            return units
        except StoreUnavailableError as exc:
            unwritten = getattr(exc, "unwritten", None)
            if unwritten is not None:  # Parquet: some datasets journaled; retry the rest only
                records = list(unwritten)
            stats.retries += 1
            log.warning("%s store unavailable (%s); %d messages held and retried", name, exc, len(units))
        except SchemaNotAtHeadError:
            raise  # a deployment problem, not the messages': stop unacknowledged (redelivered later)
        except _REFUSED as exc:  # SymbolError: a symbol Parquet cannot hold as a path
            log.error("%s store refused a batch (%s); writing its messages one by one", name,
                      _one_line(str(exc)))
            return await _write_each(name, store, units, screen)
        if stop.is_set():
            return []  # not acknowledged: redelivered to the next writer
        if time.monotonic() - last_progress > 5:
            for d in units:  # still ours: no redelivery while we retry
                with contextlib.suppress(Exception):
                    await d.msg.in_progress()
            last_progress = time.monotonic()
        await _sleep(stop, next(delays))


async def _write_each(name: str, store: Store, units: list[_Delivered], screen: Screen) -> list[_Delivered]:
    """Each message alone; the ones written (refused rows isolated and quarantined) are returned,
    the ones met by an outage are not (not acknowledged: redelivered after ``ack_wait``)."""
    done = []
    for d in units:
        try:
            try:
                await asyncio.to_thread(store.write_batch, d.batch())
            except _REFUSED as exc:
                if isinstance(exc, StoreUnavailableError | SchemaNotAtHeadError):
                    raise
                log.error("%s store refused message %s (seq %s): %s; isolating its refused rows", name,
                          d.msg.subject, _seq(d.msg), _one_line(str(exc)))
                await _isolate(name, store, d, screen)
        except StoreUnavailableError:
            continue
        done.append(d)
    return done


async def _isolate(name: str, store: Store, d: _Delivered, screen: Screen) -> None:
    """Write ``d``'s rows in halves until the refused ones are single rows, quarantine those, then write
    its quarantine rows (one by one if refused). Raises StoreUnavailableError if the store goes down."""
    table = d.table
    if table is not None and table.num_rows:
        n = table.num_rows
        refused: dict[int, Problem] = {}
        stack = [(n // 2, n), (0, n // 2)] if n > 1 else [(0, 1)]
        while stack:
            lo, hi = stack.pop()
            if lo == hi:
                continue
            try:
                part = Batch.from_groups({d.name: table.slice(lo, hi - lo)})
                await asyncio.to_thread(store.write_batch, part)
            except _REFUSED as exc:
                if isinstance(exc, StoreUnavailableError | SchemaNotAtHeadError):
                    raise
                if hi - lo == 1:
                    refused[lo] = Problem(f"{d.name}: refused by the {name} store", _one_line(str(exc))[:300])
                else:
                    mid = (lo + hi) // 2
                    stack.extend(((mid, hi), (lo, mid)))
        if refused:
            _set_aside(d, refused, screen)
    if not d.quarantine:
        return
    try:
        await asyncio.to_thread(store.write_batch, Batch(d.quarantine))
        return
    except _REFUSED as exc:
        if isinstance(exc, StoreUnavailableError | SchemaNotAtHeadError):
            raise
    for q in d.quarantine:
        try:
            await asyncio.to_thread(store.write_batch, Batch([q]))
        except _REFUSED as exc:
            if isinstance(exc, StoreUnavailableError | SchemaNotAtHeadError):
                raise
            d.unstorable += 1
            log.error("%s store refused a quarantine row of message %s (seq %s): %s; not stored (the "
                      "message stays in the stream until max_age)", name, d.msg.subject, _seq(d.msg),
                      _one_line(str(exc)))


def _seq(msg: Any) -> object:
    try:
        return msg.metadata.sequence.stream
    except Exception:  # not a JetStream message
        return "?"


async def _quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc)

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
progress (no redelivery) and retries with :func:`recorder.backoff.backoff`. A message a store
refuses for good (a value it cannot hold, a symbol Parquet cannot hold as a path, an undecodable
message) is logged and terminated (not redelivered to this consumer; it stays in the stream until
``max_age``); the rest of its batch is written. A SQL schema that is not at head stops the writer
unacknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Sequence
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
from recorder.records import Record
from recorder.storage.bus import (
    HEADER_COLLECTOR,
    HEADER_DATASET,
    HEADER_ROWS,
    VENUE,
    ensure_stream,
    read_message,
)
from recorder.storage.bus_config import BusConfig
from recorder.storage.schema import DATASETS, Batch, conform
from recorder.storage.store import Store

__all__ = ["WorkerStats", "add_arguments", "consume", "run"]

log = logging.getLogger("recorder.storage.consume")

_CAST_ERRORS = (pa.ArrowException, KeyError, ValueError)


@dataclasses.dataclass(slots=True)
class WorkerStats:
    """Counters of one store's worker since start."""

    messages: int = 0  # acknowledged
    rows: int = 0  # written and acknowledged
    refused: int = 0  # messages terminated (refused for good)
    retries: int = 0  # store unavailable: batch retried
    collectors: set[str] = dataclasses.field(default_factory=set)  # Okex-Collector headers seen


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
    log.info("%s store consuming %s (%s.%s.>) as durable %s", name, bus.stream, bus.subject_prefix, VENUE,
             durable)
    roll = getattr(store, "roll_due", None)
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
            await _write_and_ack(nc, name, store, msgs, stop, stats)
        if roll is not None:  # Parquet: roll journal segments that are due by age
            try:
                await asyncio.to_thread(roll)
            except StorageError as exc:
                log.error("%s: %s", name, exc)
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


@dataclasses.dataclass(slots=True)
class _Delivered:
    """One fetched message and its rows in this version's Arrow schema."""

    msg: Any
    name: str  # dataset
    table: pa.Table


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
                            refused.append((msg, StorageError(f"{name}: undecodable bus message: {exc}")))
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


def batch_of(delivered: Sequence[_Delivered]) -> Batch:
    """One table-native :class:`Batch` of the messages' rows (one table per dataset, no records built)."""
    by_name: dict[str, list[pa.Table]] = {}
    for d in delivered:
        by_name.setdefault(d.name, []).append(d.table)
    return Batch.from_groups({name: pa.concat_tables(tables).combine_chunks()
                              for name, tables in by_name.items()})


async def _write_and_ack(nc: Any, name: str, store: Store, msgs: list[Any], stop: asyncio.Event,
                         stats: WorkerStats) -> None:
    delivered, refused = decode_fetched(msgs)
    for msg, exc in refused:
        log.error("%s: refused message %s (seq %s): %s", name, msg.subject, _seq(msg), exc)
        stats.refused += 1
        await msg.term()
    for d in delivered:
        collector = (d.msg.headers or {}).get(HEADER_COLLECTOR)
        if collector:
            stats.collectors.add(collector)
    if not delivered:
        if refused:
            await nc.flush()
        return
    done = await _write(name, store, batch_of(delivered), delivered, stop, stats)
    for d in done:
        await d.msg.ack()
        stats.messages += 1
        stats.rows += d.table.num_rows
    await nc.flush()  # the server has the acknowledgements before the next fetch


async def _write(name: str, store: Store, records: Sequence[Record], delivered: list[_Delivered],
                 stop: asyncio.Event, stats: WorkerStats) -> list[_Delivered]:
    """Write until durable (retrying while unavailable); return the messages to acknowledge."""
    delays = backoff(BackoffPolicy(initial=0.5, cap=15.0))
    last_progress = time.monotonic()
    while True:
        try:
            await asyncio.to_thread(store.write_batch, records)
            return delivered
        except StoreUnavailableError as exc:
            unwritten = getattr(exc, "unwritten", None)
            if unwritten is not None:  # Parquet: some datasets journaled; retry the rest only
                records = list(unwritten)
            stats.retries += 1
            log.warning("%s store unavailable (%s); %d messages held and retried", name, exc, len(delivered))
        except SchemaNotAtHeadError:
            raise  # a deployment problem, not the messages': stop unacknowledged (redelivered later)
        except (StorageError, SymbolError) as exc:  # SymbolError: a symbol Parquet cannot hold as a path
            log.error("%s store refused a batch (%s); writing its messages one by one", name, exc)
            return await _write_each(name, store, delivered, stats)
        if stop.is_set():
            return []  # not acknowledged: redelivered to the next writer
        if time.monotonic() - last_progress > 5:
            for d in delivered:  # still ours: no redelivery while we retry
                with contextlib.suppress(Exception):
                    await d.msg.in_progress()
            last_progress = time.monotonic()
        await _sleep(stop, next(delays))


async def _write_each(name: str, store: Store, delivered: list[_Delivered],
                      stats: WorkerStats) -> list[_Delivered]:
    ok = []
    for d in delivered:
        try:
            await asyncio.to_thread(store.write_batch, Batch.from_groups({d.name: d.table}))
        except StoreUnavailableError:
            continue  # not acknowledged: redelivered after ack_wait
        except SchemaNotAtHeadError:
            raise
        except (StorageError, SymbolError) as exc:
            log.error("%s: refused message %s (seq %s): %s", name, d.msg.subject, _seq(d.msg), exc)
            stats.refused += 1
            await d.msg.term()
            continue
        ok.append(d)
    return ok


def _seq(msg: Any) -> object:
    try:
        return msg.metadata.sequence.stream
    except Exception:  # not a JetStream message
        return "?"


async def _quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc)

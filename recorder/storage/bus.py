"""The bus store: the storage writer publishes record batches to NATS JetStream.

:class:`BusStore` is a :class:`~recorder.storage.writer.Store`: ``StorageWriter(bus=BusStore(...))``
publishes instead of writing SQL and Parquet, and ``okex-recorder store``
(:mod:`recorder.storage.consume`) writes the stores from the stream. See ``docs/scale-out.md``.

Messages (one JetStream message = one Arrow IPC stream of rows of one dataset and one key):

* subject ``<prefix>.<venue>.<dataset>.<key>``, e.g. ``okex.okex_v1.tickers.btc_usdt``; ``<key>``
  is the dataset's partition key (symbol; currency for balances; connection for feed events and
  quarantined frames) with anything but ``[A-Za-z0-9_-]`` replaced by ``_``;
* payload: an Arrow IPC *stream* in the dataset's Arrow schema (:data:`~recorder.storage.schema.DATASETS`,
  converted once per batch by :func:`~recorder.storage.arrow.batch_to_table`);
* headers: ``Okex-Dataset`` (name), ``Okex-Schema`` (the Alembic head revision the rows fit),
  ``Okex-Venue``, ``Okex-Collector`` (the publishing collector's id), ``Okex-Rows``, and
  ``Nats-Msg-Id``, the de-duplication id (below).

De-duplication across redundant collectors: two collectors recording the same symbols receive
the same rows but flush them in different batches, and stamp them with their own ``ts_recv``.
A row's *identity* is the hash of every column except ``ts_recv`` (what the exchange sent) for
the datasets stamped with exchange time (see :func:`row_identities`), so both collectors compute
the same identity for the same row. For the datasets whose stored
unique key contains ``ts_recv`` (tickers, book snapshots, balances: the stores could not tell
the two copies apart) every row is its own message whose ``Nats-Msg-Id`` is that identity, so
JetStream keeps one copy within ``duplicate_window``, whatever the batching (unless
``bus.dedupe_across_collectors`` is false: then they are batched like the rest). Every other
dataset's rows travel as one message per (dataset, key) and flush, ``Nats-Msg-Id`` being the
hash of its rows' identities (equal for equal batches, e.g. a batch re-published after an
outage); copies from the other collector are caught by the stores' unique keys (deals by
``tid``, klines and orders upserted, feed events by ``event_id``).

Durability: :meth:`BusStore.write_batch` returns when JetStream acknowledged every message
(stored in the stream). While NATS is unreachable it raises
:class:`~recorder.errors.StoreUnavailableError` quickly (bounded by ``connect_timeout`` /
``publish_timeout``): the storage writer then keeps the rows pending and spills them to its
durable local journal, and publishes them when NATS is back. nats-py is asyncio; the store
runs a private event loop in a daemon thread and calls it with bounded waits.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import pyarrow as pa
from nats.js import api

from recorder.errors import StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage.arrow import PartialWriteError, batch_to_table
from recorder.storage.bus_config import BusConfig
from recorder.storage.schema import DATASETS, Batch, Dataset, conform

__all__ = [
    "HEADER_COLLECTOR",
    "HEADER_DATASET",
    "HEADER_ROWS",
    "HEADER_SCHEMA",
    "HEADER_VENUE",
    "PER_ROW_DATASETS",
    "VENUE",
    "BusStore",
    "collector_id",
    "decode_message",
    "encode_table",
    "ensure_stream",
    "open_bus_writer",
    "read_message",
    "row_identities",
    "schema_version",
    "subject_for",
]

log = logging.getLogger("recorder.storage.bus")

VENUE = "okex_v1"
HEADER_DATASET = "Okex-Dataset"
HEADER_SCHEMA = "Okex-Schema"
HEADER_VENUE = "Okex-Venue"
HEADER_COLLECTOR = "Okex-Collector"
HEADER_ROWS = "Okex-Rows"
MSG_ID = "Nats-Msg-Id"

PER_ROW_DATASETS = frozenset(
    name for name, d in DATASETS.items()
    if "ts_recv" in {c.name for c in d.table.primary_key.columns}
)
"""Datasets published one row per message: their stored unique key holds the collector's ``ts_recv``."""

_MAX_MESSAGE_BYTES = 512 * 1024  # below NATS's default max_payload (1 MiB)
_IN_FLIGHT = 512  # publishes awaiting their acknowledgement at once
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
T = TypeVar("T")


@lru_cache(maxsize=1)
def schema_version() -> str:
    """The schema revision the published rows fit (the Alembic head of this package)."""
    from recorder.storage.migrate import head_revision

    return head_revision()


def subject_for(prefix: str, dataset: str, key: object, venue: str = VENUE) -> str:
    """``<prefix>.<venue>.<dataset>.<key token>``; the key made a safe subject token."""
    token = _TOKEN.sub("_", str(key)) or "_"
    return f"{prefix}.{venue}.{dataset}.{token}"


def row_identities(dataset: Dataset, table: pa.Table) -> list[bytes]:
    """Per row, a 16-byte hash of its values (as text: decimals keep their digits, times in µs UTC).

    For datasets stamped with the exchange's time (``ts_event``: tickers, books, deals, klines,
    orders) ``ts_recv`` is left out, so the same exchange row received by different collectors
    has one identity; for the others (balances, order status changes, feed events, quarantined
    frames) the receive time is part of what the row says, and stays in.
    """
    names = [n for n in table.column_names if not (n == "ts_recv" and "ts_event" in table.column_names)]
    columns = [table.column(n).to_pylist() for n in names]
    prefix = dataset.name.encode() + b"\x1f"
    out = []
    for values in zip(*columns, strict=True):
        text = "\x1f".join("\x00" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
                           for v in values)
        out.append(hashlib.blake2b(prefix + text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    return out


def encode_table(table: pa.Table) -> bytes:
    """An Arrow IPC stream of ``table`` (schema first: self-describing)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_message(headers: dict[str, str] | None, data: bytes) -> tuple[Dataset, pa.Table]:
    """The dataset and rows of a bus message (cast to this version's Arrow schema).

    A message from a collector older than the ``collector`` column (schema revision 0002) gets
    its ``Okex-Collector`` header as that column.

    Raises :class:`StorageError` for a message that is not a bus batch of a known dataset or
    whose columns cannot be cast (refused for good: retrying cannot help).
    """
    dataset, table = read_message(headers, data)
    try:
        table = conform(table, dataset.arrow_schema)
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise StorageError(f"{dataset.name}: bus message does not fit this version's schema: {exc}") from exc
    return dataset, table


def read_message(headers: dict[str, str] | None, data: bytes) -> tuple[Dataset, pa.Table]:
    """:func:`decode_message` without the cast to this version's schema: the rows as they were sent
    (plus the ``collector`` column from the header for a message older than that column).

    For a writer that casts many messages of one schema at once (``okex-recorder store``): the
    cast (:func:`~recorder.storage.schema.conform`) costs more than reading a one-row message.
    Raises :class:`StorageError` like :func:`decode_message` (the cast's own errors excepted).
    """
    name = (headers or {}).get(HEADER_DATASET)
    if name not in DATASETS:
        what = repr(name[:64]) if isinstance(name, str) else "missing"
        raise StorageError(f"not a recorder bus message: dataset header {what}")
    dataset = DATASETS[name]
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        sender = (headers or {}).get(HEADER_COLLECTOR)
        if "collector" in dataset.arrow_schema.names and "collector" not in table.column_names and sender:
            table = table.append_column("collector", pa.array([sender[:64]] * table.num_rows, pa.string()))
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise StorageError(f"{name}: undecodable bus message: {exc}") from exc
    return dataset, table


@dataclass(frozen=True, slots=True)
class _Message:
    subject: str
    payload: bytes
    headers: dict[str, str]
    rows: list[int]  # indices of its rows in the dataset's group of the batch


def stream_config(bus: BusConfig) -> api.StreamConfig:
    """The JetStream stream ``bus`` asks for (used when it does not exist yet)."""
    return api.StreamConfig(
        name=bus.stream,
        subjects=[f"{bus.subject_prefix}.>"],
        retention=api.RetentionPolicy.INTEREST if bus.retention == "interest" else api.RetentionPolicy.LIMITS,
        max_age=bus.max_age or None,
        max_bytes=bus.max_bytes or -1,
        duplicate_window=bus.duplicate_window,
        num_replicas=bus.replicas,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
    )


async def ensure_stream(js: Any, bus: BusConfig) -> None:
    """Create the stream if it does not exist; an existing one is used as it is (its limits win)."""
    try:
        info = await js.stream_info(bus.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(stream_config(bus))
        log.info("created JetStream stream %s for %s.> (max_age %s s, max_bytes %s, dedup window %s s)",
                 bus.stream, bus.subject_prefix, bus.max_age or "unlimited", bus.max_bytes or "unlimited",
                 bus.duplicate_window)
        return
    have = info.config
    if (have.duplicate_window or 0) < bus.duplicate_window:
        log.warning("stream %s remembers message ids for %s s, less than bus.duplicate_window %s s",
                    bus.stream, have.duplicate_window, bus.duplicate_window)


class _LoopThread:
    """A private asyncio loop in a daemon thread; :meth:`call` runs a coroutine with a bounded wait."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class BusStore:
    """Publishes record batches to the JetStream stream of ``bus`` (a ``[bus]`` section).

    ``collector_id`` goes into every message's ``Okex-Collector`` header. Connecting is lazy:
    constructing never fails for an unreachable server, the first :meth:`write_batch` connects.
    ``write_batch`` raises :class:`StoreUnavailableError` while NATS (or the stream) is
    unreachable or does not acknowledge within ``bus.publish_timeout`` s (nothing, or -
    :class:`~recorder.storage.arrow.PartialWriteError` - only part of the batch was stored:
    re-publishing the rest, or all of it, is safe thanks to the message ids), and
    :class:`StorageError` for rows the Arrow schema cannot hold.
    """

    name = "bus"  # the Store seam (recorder.storage.store): its name in the writer's stats

    def __init__(self, bus: BusConfig, *, collector_id: str, venue: str = VENUE) -> None:
        if not bus.url:
            raise StorageError("the bus store needs bus.url (nats://HOST:PORT)")
        self.bus = bus
        self.collector_id = collector_id
        self.venue = venue
        self._loop = _LoopThread("bus-publisher")
        self._nc: Any = None
        self._js: Any = None
        self._closed = False
        self._stream_ready = False
        self.published_messages = 0
        self.duplicate_messages = 0  # acknowledged as already stored (another collector, a retry)

    def __repr__(self) -> str:
        return f"BusStore({_mask(self.bus.url)!r}, stream={self.bus.stream!r})"

    @property
    def healthy(self) -> bool:
        """False while the connection to NATS is down (reconnecting). True once closed: a store closed
        at the end of a run is finished, not down (a publish that failed before is still reported by
        the storage writer, which tracks the outcome of every write)."""
        return self._closed or self._nc is None or bool(self._nc.is_connected)

    # -- the Store interface ---------------------------------------------------------------------

    def write_batch(self, records: Sequence[Record]) -> None:
        """Publish ``records`` and return once JetStream acknowledged all of them (see the class)."""
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if not records:
            return
        try:
            batch = Batch.of(records)
        except TypeError as exc:
            raise StorageError(f"cannot publish a batch: {exc}") from exc
        messages: list[tuple[_Message, list[Record]]] = []
        for name, group in batch.groups.items():
            dataset = DATASETS[name]
            table = batch_to_table(batch, dataset)
            messages.extend((m, group) for m in self._messages(dataset, table))
        timeout = self.bus.connect_timeout + self.bus.publish_timeout * (1 + len(messages) / _IN_FLIGHT) + 5
        try:
            failures = self._loop.call(self._publish_all([m for m, _ in messages]), timeout)
        except concurrent.futures.TimeoutError as exc:
            raise StoreUnavailableError(f"NATS {_mask(self.bus.url)}: publish timed out") from exc
        if failures is None:
            raise StoreUnavailableError(f"NATS {_mask(self.bus.url)} unreachable")
        if not failures:
            return
        first = next(iter(failures.values()))
        cause = StoreUnavailableError(f"NATS {_mask(self.bus.url)}: {len(failures)} of {len(messages)} "
                                      f"messages not acknowledged: {first}")
        if len(failures) == len(messages):
            raise cause
        unwritten = [group[i] for k, (m, group) in enumerate(messages) if k in failures for i in m.rows]
        raise PartialWriteError(cause, unwritten)

    def close(self) -> None:
        """Close the NATS connection, stop the private loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self._loop.call(self._nc.close(), self.bus.connect_timeout + 5)
        self._loop.stop()

    # -- internals -------------------------------------------------------------------------------

    def _messages(self, dataset: Dataset, table: pa.Table) -> list[_Message]:
        ids = row_identities(dataset, table)
        keys = table.column(dataset.key_column).to_pylist()
        # the row's own venue (a writer may carry several); "" (an event of no one venue): this store's
        venues = table.column("venue").to_pylist() if "venue" in table.column_names else [""] * len(keys)
        by_key: dict[tuple[str, str], list[int]] = {}
        for i, (venue, key) in enumerate(zip(venues, keys, strict=True)):
            by_key.setdefault((venue or self.venue, str(key)), []).append(i)
        out: list[_Message] = []
        per_row = self.bus.dedupe_across_collectors and dataset.name in PER_ROW_DATASETS
        for (venue, key), rows in by_key.items():
            subject = subject_for(self.bus.subject_prefix, dataset.name, key, venue)
            chunks = [[i] for i in rows] if per_row else self._chunks(table, rows)
            for chunk in chunks:
                part = _take(table, chunk)
                digest = ids[chunk[0]] if per_row else hashlib.blake2b(
                    b"".join(ids[i] for i in chunk), digest_size=16).digest()
                headers = {
                    MSG_ID: f"{dataset.name}:{digest.hex()}",
                    HEADER_DATASET: dataset.name,
                    HEADER_SCHEMA: schema_version(),
                    HEADER_VENUE: venue,
                    HEADER_COLLECTOR: self.collector_id,
                    HEADER_ROWS: str(len(chunk)),
                }
                out.append(_Message(subject, encode_table(part), headers, chunk))
        return out

    @staticmethod
    def _chunks(table: pa.Table, rows: list[int]) -> list[list[int]]:
        # Messages below the size bound: split by estimated bytes per row.
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        step = max(1, _MAX_MESSAGE_BYTES // per_row)
        return [rows[i:i + step] for i in range(0, len(rows), step)]

    async def _connect(self) -> bool:
        if self._nc is not None and not self._nc.is_closed:
            # Reconnecting in the background: give it up to connect_timeout, then report unavailable.
            deadline = asyncio.get_running_loop().time() + self.bus.connect_timeout
            while not self._nc.is_connected and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            return bool(self._nc.is_connected)
        try:
            nc = await nats.connect(
                self.bus.url, connect_timeout=self.bus.connect_timeout, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, name=f"okex-recorder {self.collector_id}",
                error_cb=_quiet, disconnected_cb=self._disconnected, reconnected_cb=_reconnected,
                pending_size=8 * 1024 * 1024,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            log.debug("NATS connect failed: %s", exc)
            return False
        self._nc = nc
        self._js = nc.jetstream(timeout=self.bus.publish_timeout, publish_async_max_pending=_IN_FLIGHT)
        return True

    async def _ensure_stream(self) -> None:
        if self._stream_ready:
            return
        try:
            await ensure_stream(self._js, self.bus)
            self._stream_ready = True
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("JetStream stream %s not ready: %s", self.bus.stream, exc)

    async def _disconnected(self) -> None:
        if not self._closed:
            log.warning("NATS disconnected; reconnecting (the writer keeps the rows meanwhile)")

    async def _publish_all(self, messages: list[_Message]) -> dict[int, str] | None:
        """Publish with up to ``_IN_FLIGHT`` acknowledgements outstanding (``publish_async``: no round
        trip per message); ``{index: error}`` of those not acknowledged (None: no connection).

        A message waits at most ``publish_timeout`` s for room (no acknowledgement arriving at
        all) and the last ones ``publish_timeout`` s for their acknowledgements."""
        if not await self._connect():
            return None
        await self._ensure_stream()
        failures: dict[int, str] = {}
        futures: dict[int, asyncio.Future[Any]] = {}
        timeout = self.bus.publish_timeout
        window: collections.deque[asyncio.Future[Any]] = collections.deque()  # in publishing order
        stalled = False
        for k, m in enumerate(messages):
            if stalled or not self._nc.is_connected:
                failures[k] = "not connected" if not stalled else "TimeoutError: acknowledgements stalled"
                continue
            while self._js.publish_async_pending() >= _IN_FLIGHT:  # wait for room here, not in
                while window and window[0].done():  # publish_async (its wait yields per message)
                    window.popleft()
                if not window:  # all acknowledged: their done callbacks free the slots
                    await asyncio.sleep(0)
                    continue
                done, _ = await asyncio.wait([window[0]], timeout=timeout)
                if not done:
                    stalled = True
                    break
            if stalled:
                failures[k] = "TimeoutError: acknowledgements stalled"
                continue
            try:
                futures[k] = await self._js.publish_async(m.subject, m.payload, stream=self.bus.stream,
                                                          headers=dict(m.headers))
                window.append(futures[k])
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                failures[k] = f"{type(exc).__name__}: {exc}"
        if futures:
            await asyncio.wait(futures.values(), timeout=timeout)
        for k, future in futures.items():
            if not future.done() or future.cancelled():
                future.cancel()  # frees its slot; the message may still be stored: its id makes a retry safe
                failures[k] = "TimeoutError: no acknowledgement"
                continue
            error = future.exception()
            if error is not None:
                failures[k] = f"{type(error).__name__}: {error}"
                if isinstance(error, nats.errors.NoRespondersError | nats.js.errors.NotFoundError
                              | nats.js.errors.NoStreamResponseError):
                    self._stream_ready = False  # the stream went away: create it again next time
                continue
            self.published_messages += 1
            if future.result().duplicate:
                self.duplicate_messages += 1
        return failures


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    if len(rows) == rows[-1] - rows[0] + 1:
        return table.slice(rows[0], len(rows))
    return table.take(pa.array(rows, pa.int64()))


def _mask(url: str) -> str:
    # nats://user:password@host -> nats://***@host
    return re.sub(r"://[^@/]*@", "://***@", url)


async def _quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc)


async def _reconnected() -> None:
    log.warning("NATS reconnected")


def collector_id(config: Any) -> str:
    """``collector.id`` of ``config``, or ``<hostname>-<pid>`` when it is empty."""
    from recorder.storage.bus_config import default_collector_id

    return config.collector.id or default_collector_id()


def _venues_text(config: Any) -> str:
    """``okx_v5`` / ``okex_v1 and okx_v5``: the venues ``config`` records (its enabled venues)."""
    from recorder.config import venue_settings

    names = [venue.name for venue, _ in venue_settings(config)]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "no venue's"


def open_bus_writer(config: Any) -> Any:
    """The storage writer of a collector on the bus: a :class:`BusStore` with the durable spill journal
    (``storage.spill_dir``) behind it, so rows survive a NATS outage and a restart."""
    from recorder.storage.writer import StorageWriter

    s = config.storage
    store = BusStore(config.bus, collector_id=collector_id(config))
    log.info("publishing %s rows to NATS %s, stream %s, subjects %s.> as collector %s",
             _venues_text(config), _mask(config.bus.url), config.bus.stream, config.bus.subject_prefix,
             store.collector_id)
    return StorageWriter(None, None, bus=store, max_pending_rows=s.max_pending_rows,
                         plausibility=config.plausibility,
                         spill_dir=str(s.spill_dir), collector=store.collector_id)

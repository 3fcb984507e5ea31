"""The one writer the collector and the poller call: fans batches out to SQL and Parquet.

:class:`StorageWriter` is synchronous and single-threaded: ``write(records)``
buffers, ``flush()`` hands the buffer to every store, ``close()`` flushes and closes.

A store raising :class:`~recorder.errors.StoreUnavailableError` keeps its rows
*pending* (in memory, in order) and is retried with :func:`recorder.backoff.backoff`
only once its delay has passed, so a flush never waits on a store that is down; the
other store keeps going. Pending rows beyond ``max_pending_rows`` (oldest first), and
any rows that no store has written durably, *spill* to a local :class:`Journal`
(``<spill_dir>/<store>.<dataset>/``). Spilled rows are replayed before newer pending
rows when the store is back, and at the next start if the process stopped first.
Replay into SQL is idempotent (unique keys / upserts), so a crash between a replayed
write and the deletion of its journal segment writes nothing twice.

Every flush is *screened* once (:class:`~recorder.storage.validate.Screen`) before any
store sees it: a record a store cannot hold, or whose exchange time is implausible, is
replaced by a ``quarantine`` row saying why (counted per reason in :meth:`stats`), and
its neighbours are written. A store that still refuses a batch for a reason retrying
cannot fix (a :class:`StorageError` that is not :class:`StoreUnavailableError`) has the
batch split in halves until the refused rows are isolated: those are quarantined (and
counted as ``refused`` for that store), the rest is written.

A store that goes down (its writes fail, or it reports itself unhealthy, e.g. the Parquet
root is full) opens a ``store_outage`` feed-event span (``connection`` = the store's name);
the span is closed when the store is back. Both rows go to both stores: to the failed one
when it is back (they wait with its other pending rows).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from recorder.backoff import BackoffPolicy, backoff
from recorder.config import PlausibilityConfig
from recorder.errors import RecorderError, StorageError, StoreUnavailableError
from recorder.records import FeedEvent, FeedEventKind, QuarantinedFrame, Record, utc_now
from recorder.storage.arrow import PartialWriteError, batch_to_table
from recorder.storage.journal import Journal, Segment, iter_segment, segment_rows
from recorder.storage.schema import DATASETS, Batch, Dataset, dataset_for
from recorder.storage.store import Store, store_name
from recorder.storage.validate import Problem, Screen

_STAMPED = (FeedEvent, QuarantinedFrame)  # record types with a ``collector`` column
_STAMPED_DATASETS = ("feed_events", "quarantine")

__all__ = ["DatasetCounts", "StorageWriter", "Store", "StoreStatus"]

_REPLAY_CHUNK = 20_000
REFUSAL_HOLD = 60.0  # s a store that refused rows is reported unhealthy afterwards

log = logging.getLogger("recorder.storage")


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    """Rows of one dataset for one store since start: written, waiting in memory, spilled to disk."""

    written: int = 0
    pending: int = 0
    spilled: int = 0
    refused: int = 0  # rows this store refused for good (isolated, quarantined)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """One store's health for the status line."""

    name: str
    healthy: bool
    last_error: str | None
    datasets: dict[str, DatasetCounts]
    outage_since: str | None = None  # ISO UTC start of the open store_outage span
    outages: int = 0  # store_outage spans opened since start


@dataclass(slots=True)
class _Batch:
    records: Batch
    counts: Counter[str]


@dataclass(slots=True)
class _StoreState:
    name: str
    store: Store
    pending: deque[_Batch] = field(default_factory=deque)
    pending_rows: int = 0
    spilled: list[Segment] = field(default_factory=list)
    written: Counter[str] = field(default_factory=Counter)
    pending_counts: Counter[str] = field(default_factory=Counter)
    spilled_counts: Counter[str] = field(default_factory=Counter)
    segment_counts: dict[str, int] = field(default_factory=dict)  # rows per spilled segment path
    refused: Counter[str] = field(default_factory=Counter)
    delays: Iterator[float] | None = None
    retry_at: float = 0.0
    last_error: str | None = None
    refused_at: float | None = None  # clock() of the last refusal
    refusal_error: str | None = None
    outage: FeedEvent | None = None  # the open store_outage span
    outages: int = 0

    @property
    def healthy(self) -> bool:
        return self.delays is None

    @property
    def down(self) -> bool:
        """Writes failing, or the store itself says it is not keeping up (e.g. Parquet root full)."""
        return self.delays is not None or getattr(self.store, "healthy", True) is False


def _batch(records: Sequence[Record]) -> _Batch:
    # One Batch per flush, shared by every store: each dataset is converted once.
    batch = Batch.of(records)
    return _Batch(batch, Counter(batch.counts()))


class StorageWriter:
    """Writes typed records to a sequence of stores (:class:`~recorder.storage.store.Store`).

    ``stores`` are the stores in write order; ``sql``, ``parquet`` and ``bus`` are the same
    for the usual three (positional ``sql``/``parquet`` kept for callers of earlier releases),
    written first. Each store is named by its ``name`` attribute (``sql``, ``parquet``, ``bus``)
    and must have a name of its own.
    ``max_pending_rows`` bounds the rows kept in memory per store while it is down;
    ``spill_dir`` (a local directory) holds what goes beyond, and rows no store could
    write. ``bus`` is a third store (``recorder.storage.bus.BusStore``; usually the only one).
    ``policy`` is the retry backoff; ``clock`` returns monotonic seconds.
    ``plausibility`` (``[plausibility]``) turns on the exchange-time windows of the
    screen; None checks only what the stores can hold. Spilled rows of an earlier run
    are replayed on the first flush. ``collector`` (the collector's ``collector.id``) is
    stamped on every feed event and quarantine row passing through that has none yet
    (including the ones this writer makes: ``store_outage`` spans, quarantined records).
    """

    def __init__(
        self,
        sql: Store | None = None,
        parquet: Store | None = None,
        *,
        stores: Sequence[Store] = (),
        max_pending_rows: int = 200_000,
        spill_dir: str | None = None,
        policy: BackoffPolicy = BackoffPolicy(initial=1.0, cap=30.0),
        clock: Callable[[], float] = time.monotonic,
        fsync: bool = True,
        bus: Store | None = None,
        plausibility: PlausibilityConfig | None = None,
        collector: str | None = None,
    ) -> None:
        named = [(store_name(store, slot), store) for slot, store in (("sql", sql), ("parquet", parquet),
                                                                      ("bus", bus)) if store is not None]
        named += [(store_name(store, type(store).__name__), store) for store in stores]
        if not named:
            raise StorageError("a storage writer needs at least one store")
        names = [name for name, _ in named]
        if len(set(names)) != len(names):
            raise StorageError(f"two stores share a name: {names}")
        self._states = [_StoreState(name, store) for name, store in named]
        self._max_pending = max_pending_rows
        self._policy = policy
        self._clock = clock
        self._buffer: list[Record] = []
        self._tables: list[Batch] = []  # table-native batches written since the last flush
        self._collector = collector[:64] if collector else None
        self._screen = Screen(plausibility, collector=self._collector)
        self.quarantined: Counter[tuple[str, str]] = Counter()  # (dataset, reason kind) -> records
        self.made: Counter[str] = Counter()  # rows the writer made itself (quarantine, store_outage)
        self._journal = Journal(spill_dir, fsync=fsync) if spill_dir is not None else None
        self._closed = False
        self._stopping = False  # close() is writing the last rows: no new outage span opens
        if self._journal is not None:
            for state in self._states:
                for seg in self._journal.segments():
                    if seg.stream.startswith(state.name + "."):
                        rows = segment_rows(seg.path)
                        state.spilled.append(seg)
                        state.segment_counts[str(seg.path)] = rows
                        state.spilled_counts[seg.stream.split(".", 1)[1]] += rows

    # -- the interface -----------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Buffer ``records`` for the next :meth:`flush`. Cheap; nothing is refused here.

        A :class:`~recorder.storage.schema.Batch` holding Arrow tables (``Batch.from_groups``,
        as the writer process receives them) stays in table form: screened column-wise and
        handed to the stores as tables, no record built per row.
        """
        if isinstance(records, Batch) and records.table_native:
            self._tables.append(records)
            return
        self._buffer.extend(records)

    def flush(self) -> None:
        """Screen the buffered records, hand them to every store; return once they are durable somewhere.

        Durable means written by at least one store, or spilled to the journal. A store
        that is down keeps the rows pending (or spilled) and is retried after its backoff
        delay. Records that cannot be stored are quarantined (see the module doc), never
        dropped and never retried. Raises :class:`StoreUnavailableError` only if no store
        wrote the rows and they could not be spilled either (they stay pending in memory
        and are retried).
        """
        if self._closed:
            raise StorageError("the storage writer is closed")
        self._flush(retry_now=False)

    def _flush(self, *, retry_now: bool) -> None:
        records, self._buffer = self._buffer, []
        tables, self._tables = self._tables, []
        batch = self._prepare(records, tables)
        counts = batch.counts
        rows = len(batch.records)
        now = self._clock()
        durable = False
        for state in self._states:
            if rows:
                state.pending.append(batch)
                state.pending_rows += len(batch.records)
                state.pending_counts.update(counts)
            if retry_now or now >= state.retry_at:
                self._drain(state)
            if not any(b is batch for b in state.pending):
                durable = True
        unspilled: list[str] = []
        for state in self._states:
            if not durable and state.pending and state.pending[-1] is batch:
                self._spill(state, len(state.pending), unspilled)  # nowhere else: make it durable now
            elif state.pending_rows > self._max_pending:
                self._spill_beyond_bound(state, unspilled)
        self._track_outages(closing=self._stopping)
        if not durable and rows and unspilled:
            raise StoreUnavailableError(
                f"{rows} rows not written by any store and not spilled: {'; '.join(unspilled)}"
            )

    def _prepare(self, records: list[Record], tables: Sequence[Batch] = ()) -> _Batch:
        """Screen ``records`` (and table-native ``tables``) once: quarantine what no store can hold;
        the batch both stores get."""
        if not records and not tables:
            return _Batch(Batch(records), Counter())
        if self._collector is not None:
            records = self._stamped(records)
            tables = [self._stamped_tables(b) for b in tables]
        if tables:
            parts = list(tables)
            if records:
                parts.append(Batch(records))
            result = self._screen.screen_batch(Batch.merged(parts))
        else:
            result = self._screen.screen(records)
        for name, problem in result.quarantined:
            self.quarantined[(name, problem.kind)] += 1
            self.made["quarantine"] += 1
        return _Batch(result.batch, Counter(result.batch.counts()))

    def _stamped(self, records: list[Record]) -> list[Record]:
        """``records`` with this writer's collector id on feed events and quarantine rows without one."""
        c = self._collector
        return [replace(r, collector=c) if isinstance(r, _STAMPED) and r.collector is None else r
                for r in records]

    def _stamped_tables(self, batch: Batch) -> Batch:
        """:meth:`_stamped` for a table-native batch: the ``collector`` column's nulls filled."""
        groups: dict[str, Sequence[Record] | pa.Table] = {}
        changed = False
        for name, group in batch.groups.items():
            if name in _STAMPED_DATASETS and batch.is_table(name):
                table = batch.table(name)
                column = table.column("collector")
                if column.null_count:
                    i = table.schema.get_field_index("collector")
                    table = table.set_column(i, table.schema.field(i),
                                             pc.fill_null(column, pa.scalar(self._collector, column.type)))
                    changed = True
                groups[name] = table
            elif batch.is_table(name):
                groups[name] = batch.table(name)
            else:
                groups[name] = group
        return Batch.from_groups(groups) if changed else batch

    def close(self) -> None:
        """Flush, retry every store once more, spill what is still pending, close the stores.

        An open ``store_outage`` span is closed (detail: still out at shutdown) and written
        where possible. Raises :class:`StoreUnavailableError` if rows remain neither written
        nor spilled.
        """
        if self._closed:
            return
        problems: list[str] = []
        try:
            self._flush(retry_now=True)
        except StoreUnavailableError as exc:
            problems.append(str(exc))
        # Rows made just now (quarantine rows of refused records, outage spans): a store still
        # down is not asked again (its backoff stands), so a dead server does not stall the stop.
        for closing in (False, False, True):
            self._stopping = closing
            self._track_outages(closing=closing)
            if not self._buffer:
                continue
            try:
                self._flush(retry_now=False)
            except StoreUnavailableError as exc:
                problems.append(str(exc))
        for state in self._states:
            if state.pending:
                self._spill(state, len(state.pending), problems)
            try:
                state.store.close()
            except StorageError as exc:
                problems.append(f"{state.name}: {exc}")
        if self._journal is not None:
            self._journal.close()
        self._closed = True
        if problems:
            raise StoreUnavailableError("; ".join(dict.fromkeys(problems)))

    def stats(self) -> dict[str, StoreStatus]:
        """Per store (``sql``, ``parquet``): health, last error, counts per dataset, open outage.

        ``healthy`` is False while the store's writes fail, while it reports itself
        unhealthy, and for :data:`REFUSAL_HOLD` s after it refused rows.
        """
        out = {}
        now = self._clock()
        for state in self._states:
            names = {*state.written, *state.pending_counts, *state.spilled_counts, *state.refused}
            healthy, last_error = state.healthy, state.last_error
            store_healthy = getattr(state.store, "healthy", True)
            if store_healthy is False:  # e.g. Parquet rows journaled but the root unwritable
                healthy, last_error = False, getattr(state.store, "last_error", None) or last_error
            if state.refused_at is not None and now - state.refused_at < REFUSAL_HOLD:
                healthy, last_error = False, last_error or state.refusal_error
            out[state.name] = StoreStatus(
                state.name, healthy, last_error,
                {n: DatasetCounts(state.written[n], state.pending_counts[n], state.spilled_counts[n],
                                  state.refused[n])
                 for n in sorted(names)},
                None if state.outage is None else state.outage.ts_start.isoformat(),
                state.outages,
            )
        return out

    def quarantine_stats(self) -> dict[str, object]:
        """Records set aside by the screen: ``total``, ``by_dataset``, ``by_reason`` (reason kind -> n)."""
        by_dataset: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        for (name, kind), n in self.quarantined.items():
            by_dataset[name] += n
            by_reason[kind] += n
        return {"total": sum(by_dataset.values()), "by_dataset": dict(sorted(by_dataset.items())),
                "by_reason": dict(by_reason.most_common())}

    # -- internals ---------------------------------------------------------------------------------

    def _track_outages(self, *, closing: bool) -> None:
        """Open a store_outage span when a store goes down; close it when it is back (or at close)."""
        for state in self._states:
            down = state.down
            if down and state.outage is None and not closing:
                error = state.last_error or getattr(state.store, "last_error", None) or "unavailable"
                state.outage = FeedEvent(kind=FeedEventKind.STORE_OUTAGE, ts_start=utc_now(), ts_end=None,
                                         connection=state.name, detail=f"{state.name} store: {error}"[:500])
                state.outages += 1
                self._emit(state.outage)
            elif state.outage is not None and (closing or not down):
                detail = state.outage.detail
                if down:
                    detail = f"{detail} (still out at shutdown)"[:500]
                self._emit(replace(state.outage, ts_end=utc_now(), detail=detail))
                state.outage = None

    def _emit(self, record: Record) -> None:
        self._buffer.append(record)
        self.made[dataset_for(record).name] += 1

    def _drain(self, state: _StoreState) -> None:
        """Write spilled segments (oldest first), then pending batches; stop at the first outage.

        A batch refused for good is split until the refused rows are isolated (quarantined).
        """
        try:
            while state.spilled:
                try:
                    self._replay(state, state.spilled[0])
                except RecorderError:
                    raise
                except Exception as exc:  # the segment stays spilled: nothing is lost
                    raise _unexpected(state, exc) from exc
                state.spilled.pop(0)
            while state.pending:
                head = state.pending[0]
                try:
                    state.store.write_batch(head.records)
                except PartialWriteError as exc:  # part of it was written: keep the rest
                    rest = _batch(exc.unwritten)
                    self._written(state, head.counts - rest.counts)
                    state.pending_counts.subtract(head.counts - rest.counts)
                    state.pending_rows -= len(head.records) - len(exc.unwritten)
                    state.pending[0] = rest
                    raise
                except StoreUnavailableError:
                    raise
                except (RecorderError, ValueError, TypeError) as exc:  # refused: retrying cannot fix it
                    self._isolate(state, head, exc)
                    continue
                except Exception as exc:  # a fault of the store or the install, not of the rows
                    raise _unexpected(state, exc) from exc
                state.pending.popleft()
                state.pending_rows -= len(head.records)
                state.pending_counts.subtract(head.counts)
                self._written(state, head.counts)
        except StoreUnavailableError as exc:
            state.last_error = str(exc)
            if state.delays is None:  # healthy -> down: one line; the status shows the rest
                log.error("%s store unavailable, rows kept (pending, spilled beyond %d) and retried: %s",
                          state.name, self._max_pending, exc,
                          exc_info=exc.__cause__ if isinstance(exc, _UnexpectedStoreError) else None)
                state.delays = backoff(self._policy)
            state.retry_at = self._clock() + next(state.delays)
            return
        if state.delays is not None:
            log.warning("%s store is back: pending and spilled rows written", state.name)
        state.delays = None
        state.retry_at = 0.0
        state.last_error = None

    def _isolate(self, state: _StoreState, head: _Batch, exc: Exception) -> None:
        """``head`` (first pending) was refused: write it in halves, quarantine the single rows refused.

        Raises StoreUnavailableError (the unwritten rest back at the front of the queue) if
        the store goes down meanwhile.
        """
        state.pending.popleft()
        state.pending_rows -= len(head.records)
        state.pending_counts.subtract(head.counts)
        records = list(head.records)
        log.warning("%s store refused a batch of %d rows (%s): isolating the refused rows",
                    state.name, len(records), exc)
        mid = len(records) // 2
        stack = [records[mid:], records[:mid]] if len(records) > 1 else []
        if len(records) == 1:
            self._refused(state, records[0], exc)
        while stack:
            part = stack.pop()
            if not part:
                continue
            try:
                state.store.write_batch(Batch(part))
            except (RecorderError, ValueError, TypeError) as part_exc:
                if isinstance(part_exc, StoreUnavailableError):
                    self._keep(state, part + [r for p in reversed(stack) for r in p])
                    raise
                if len(part) == 1:
                    self._refused(state, part[0], part_exc)
                else:
                    half = len(part) // 2
                    stack.extend((part[half:], part[:half]))
                continue
            except Exception as part_exc:  # a fault of the store or the install: keep the rows
                self._keep(state, part + [r for p in reversed(stack) for r in p])
                raise _unexpected(state, part_exc) from part_exc
            self._written(state, Counter(Batch(part).counts()))

    @staticmethod
    def _keep(state: _StoreState, rest: list[Record]) -> None:
        """Put ``rest`` back at the front of the store's queue (written at the next attempt)."""
        back = _batch(rest)
        state.pending.appendleft(back)
        state.pending_rows += len(rest)
        state.pending_counts.update(back.counts)

    def _refused(self, state: _StoreState, record: Record, exc: Exception) -> None:
        name = dataset_for(record).name
        state.refused[name] += 1
        state.refused_at = self._clock()
        state.refusal_error = f"{state.name}: refused {name} rows (quarantined): {exc}"[:500]
        if isinstance(record, QuarantinedFrame):  # never quarantine a quarantine row: it is lost here
            log.error("%s store refused a quarantine row (not stored): %s", state.name, exc)
            return
        problem = Problem(f"{name}: refused by the {state.name} store", str(exc)[:300])
        self.quarantined[(name, problem.kind)] += 1
        self._emit(self._screen.quarantine(name, record, problem))
        self._screen.log_quarantined(problem)  # rate-limited per reason

    def _written(self, state: _StoreState, counts: Counter[str]) -> None:
        state.written.update(counts)

    def _replay(self, state: _StoreState, seg: Segment) -> None:
        assert self._journal is not None
        self._journal.seal(seg.stream)
        dataset = DATASETS[seg.stream.split(".", 1)[1]]
        # Streamed (never the whole segment in memory) and handed over as Arrow: the rows are
        # not rebuilt into records to be converted back (Batch.from_table).
        pieces: list[pa.RecordBatch] = []
        rows = 0
        for batch in iter_segment(seg.path):
            pieces.append(batch)
            rows += batch.num_rows
            if rows >= _REPLAY_CHUNK:
                state.store.write_batch(Batch.from_table(dataset.name, pa.Table.from_batches(pieces)))
                pieces, rows = [], 0
        if pieces:
            state.store.write_batch(Batch.from_table(dataset.name, pa.Table.from_batches(pieces)))
        # Written: a crash before the removal replays it again, which the unique keys absorb.
        self._journal.remove(seg)
        n = state.segment_counts.pop(str(seg.path), 0)
        state.spilled_counts[dataset.name] -= n
        state.written[dataset.name] += n

    def _spill_beyond_bound(self, state: _StoreState, problems: list[str]) -> None:
        rows = 0
        count = 0
        for b in state.pending:  # the oldest batches until the rest fits the bound
            if state.pending_rows - rows <= self._max_pending:
                break
            rows += len(b.records)
            count += 1
        self._spill(state, count, problems)

    def _spill(self, state: _StoreState, count: int, problems: list[str]) -> None:
        """Move the ``count`` oldest pending batches of ``state`` to the journal."""
        if self._journal is None:
            problems.append(f"{state.name}: no spill directory")
            return
        for _ in range(count):
            head = state.pending[0]  # shared with the other store: never mutated
            groups = {DATASETS[name]: recs for name, recs in head.records.groups.items()}
            done: set[Dataset] = set()
            try:
                for dataset, recs in groups.items():
                    stream = f"{state.name}.{dataset.name}"
                    self._journal.append(stream, batch_to_table(head.records, dataset))
                    done.add(dataset)
                    seg = self._journal.open_segment(stream)
                    assert seg is not None
                    if seg not in state.spilled:
                        state.spilled.append(seg)
                    key = str(seg.path)
                    state.segment_counts[key] = state.segment_counts.get(key, 0) + len(recs)
                    state.spilled_counts[dataset.name] += len(recs)
                    state.pending_counts[dataset.name] -= len(recs)
                    state.pending_rows -= len(recs)
            except StoreUnavailableError as exc:
                problems.append(f"{state.name}: spill failed: {exc}")
                if done:
                    rest = [r for d, recs in groups.items() if d not in done for r in recs]
                    state.pending[0] = _batch(rest)
                state.spilled.sort()
                return
            state.pending.popleft()
        state.spilled.sort()


class _UnexpectedStoreError(StoreUnavailableError):
    """What a store raised that no store should (a bug, a broken install), as an outage of it."""


def _unexpected(state: _StoreState, exc: Exception) -> StoreUnavailableError:
    """An exception no store should raise (a bug, a broken install): treated as an outage of that
    store, so its rows are kept and retried with the backoff instead of lost with the thread. The
    outage's one error line carries the traceback."""
    return _UnexpectedStoreError(f"{state.name} store failed unexpectedly: {type(exc).__name__}: {exc}")

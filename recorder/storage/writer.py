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
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import StorageError, StoreUnavailableError
from recorder.okex.channels import validate_symbol
from recorder.records import Record
from recorder.storage.journal import Journal, Segment, iter_segment, segment_rows
from recorder.storage.parquet import PartialWriteError, batch_to_table
from recorder.storage.schema import DATASETS, Batch, Dataset

__all__ = ["DatasetCounts", "StorageWriter", "Store", "StoreStatus"]

_REPLAY_CHUNK = 20_000

log = logging.getLogger("recorder.storage")


class Store(Protocol):
    """What the writer needs of a store (``SqlStore``, ``ParquetStore``, test fakes)."""

    def write_batch(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    """Rows of one dataset for one store since start: written, waiting in memory, spilled to disk."""

    written: int = 0
    pending: int = 0
    spilled: int = 0


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """One store's health for the status line."""

    name: str
    healthy: bool
    last_error: str | None
    datasets: dict[str, DatasetCounts]


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
    delays: Iterator[float] | None = None
    retry_at: float = 0.0
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.delays is None


def _batch(records: Sequence[Record]) -> _Batch:
    # One Batch per flush, shared by every store: each dataset is converted once.
    batch = Batch.of(records)
    return _Batch(batch, Counter(batch.counts()))


class StorageWriter:
    """Writes typed records to a SQL store and a Parquet store (either may be None).

    ``max_pending_rows`` bounds the rows kept in memory per store while it is down;
    ``spill_dir`` (a local directory) holds what goes beyond, and rows no store could
    write. ``bus`` is a third store (``recorder.storage.bus.BusStore``; usually the only one).
    ``policy`` is the retry backoff; ``clock`` returns monotonic seconds.
    Spilled rows of an earlier run are replayed on the first flush.
    """

    def __init__(
        self,
        sql: Store | None,
        parquet: Store | None,
        *,
        max_pending_rows: int = 200_000,
        spill_dir: str | None = None,
        policy: BackoffPolicy = BackoffPolicy(initial=1.0, cap=30.0),
        clock: Callable[[], float] = time.monotonic,
        fsync: bool = True,
        bus: Store | None = None,
    ) -> None:
        if sql is None and parquet is None and bus is None:
            raise StorageError("a storage writer needs at least one store")
        self._states = [_StoreState(name, store) for name, store in (("sql", sql), ("parquet", parquet),
                                                                     ("bus", bus)) if store is not None]
        self._max_pending = max_pending_rows
        self._policy = policy
        self._clock = clock
        self._buffer: list[Record] = []
        self._symbols: set[str] = set()
        self._journal = Journal(spill_dir, fsync=fsync) if spill_dir is not None else None
        self._closed = False
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
        """Buffer ``records`` for the next :meth:`flush`. Cheap; validates symbols (SymbolError)."""
        for record in records:
            symbol = getattr(record, "symbol", None)
            if symbol is not None and symbol not in self._symbols:
                self._symbols.add(validate_symbol(symbol))
        self._buffer.extend(records)

    def flush(self) -> None:
        """Hand the buffered records to every store; return once they are durable somewhere.

        Durable means written by at least one store, or spilled to the journal. A store
        that is down keeps the rows pending (or spilled) and is retried after its backoff
        delay. Raises :class:`StoreUnavailableError` only if no store wrote the rows and
        they could not be spilled either (they stay pending in memory and are retried);
        :class:`StorageError` for a batch a store refuses for good (it is dropped from that
        store's queue, never retried).
        """
        if self._closed:
            raise StorageError("the storage writer is closed")
        records, self._buffer = self._buffer, []
        batch = _batch(records)
        counts = batch.counts
        now = self._clock()
        refused: list[StorageError] = []
        durable = False
        for state in self._states:
            if records:
                state.pending.append(batch)
                state.pending_rows += len(records)
                state.pending_counts.update(counts)
            if now >= state.retry_at:
                try:
                    self._drain(state)
                except StorageError as exc:
                    refused.append(exc)
            if not any(b is batch for b in state.pending):
                durable = True
        unspilled: list[str] = []
        for state in self._states:
            if not durable and state.pending and state.pending[-1] is batch:
                self._spill(state, len(state.pending), unspilled)  # nowhere else: make it durable now
            elif state.pending_rows > self._max_pending:
                self._spill_beyond_bound(state, unspilled)
        if refused:
            raise refused[0]
        if not durable and records and unspilled:
            raise StoreUnavailableError(
                f"{len(records)} rows not written by any store and not spilled: {'; '.join(unspilled)}"
            )

    def close(self) -> None:
        """Flush, retry every store once more, spill what is still pending, close the stores.

        Raises :class:`StoreUnavailableError` if rows remain neither written nor spilled.
        """
        if self._closed:
            return
        self.flush()
        problems: list[str] = []
        for state in self._states:
            if state.pending or state.spilled:
                try:
                    self._drain(state)
                except StorageError as exc:
                    problems.append(f"{state.name}: {exc}")
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
            raise StoreUnavailableError("; ".join(problems))

    def stats(self) -> dict[str, StoreStatus]:
        """Per store (``sql``, ``parquet``): health, last error, counts per dataset."""
        out = {}
        for state in self._states:
            names = set(state.written) | set(state.pending_counts) | set(state.spilled_counts)
            healthy, last_error = state.healthy, state.last_error
            store_healthy = getattr(state.store, "healthy", True)
            if store_healthy is False:  # e.g. Parquet rows journaled but the root unwritable
                healthy, last_error = False, getattr(state.store, "last_error", None) or last_error
            out[state.name] = StoreStatus(
                state.name, healthy, last_error,
                {n: DatasetCounts(state.written[n], state.pending_counts[n], state.spilled_counts[n])
                 for n in sorted(names)},
            )
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _drain(self, state: _StoreState) -> None:
        """Write spilled segments (oldest first), then pending batches; stop at the first failure."""
        try:
            while state.spilled:
                self._replay(state, state.spilled[0])
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
                except StorageError as exc:
                    if isinstance(exc, StoreUnavailableError):
                        raise
                    state.pending.popleft()  # refused for good: never retried
                    state.pending_rows -= len(head.records)
                    state.pending_counts.subtract(head.counts)
                    state.last_error = f"{state.name}: {exc}"
                    raise
                state.pending.popleft()
                state.pending_rows -= len(head.records)
                state.pending_counts.subtract(head.counts)
                self._written(state, head.counts)
        except StoreUnavailableError as exc:
            state.last_error = str(exc)
            if state.delays is None:  # healthy -> down: one line; the status shows the rest
                log.error("%s store unavailable, rows kept (pending, spilled beyond %d) and retried: %s",
                          state.name, self._max_pending, exc)
                state.delays = backoff(self._policy)
            state.retry_at = self._clock() + next(state.delays)
            return
        if state.delays is not None:
            log.warning("%s store is back: pending and spilled rows written", state.name)
        state.delays = None
        state.retry_at = 0.0
        state.last_error = None

    def _written(self, state: _StoreState, counts: Counter[str]) -> None:
        state.written.update(counts)

    def _replay(self, state: _StoreState, seg: Segment) -> None:
        assert self._journal is not None
        self._journal.seal(seg.stream)
        dataset = DATASETS[seg.stream.split(".", 1)[1]]
        chunk: list[Record] = []  # streamed: never the whole segment in memory
        for batch in iter_segment(seg.path):
            chunk.extend(dataset.from_row(r) for r in batch.to_pylist())
            if len(chunk) >= _REPLAY_CHUNK:
                state.store.write_batch(chunk)
                chunk = []
        if chunk:
            state.store.write_batch(chunk)
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

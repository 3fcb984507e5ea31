"""The storage writer in a second process: batches cross as Arrow IPC, acknowledged once durable.

``[storage] writer_process = true`` (docs/operations.md "Writer process") puts the
:class:`~recorder.storage.writer.StorageWriter` (SQL + Parquet, its screen, spill journal and
accounting) in a child process, so receiving/decoding/books and storage writing use two cores.

Collector side, :class:`ProcessWriter` (what the writer thread drives, a ``RecordWriter``):

* ``flush()`` converts the buffered records once per dataset with the datasets' own converters
  (:meth:`~recorder.storage.schema.Batch.table`) into one Arrow IPC stream per dataset, numbers the
  batch (``seq``, 1, 2, ...), keeps it in the *unacknowledged* list and sends it over a pipe;
  it returns when the child answered that every batch before the newest ``max_in_flight``
  (default 1) is durable (acks are cumulative): the collector decodes the next batch while the
  child writes this one. :meth:`ProcessWriter.wait_durable` waits for every batch (what an
  in-process ``StorageWriter.flush()`` does); answers arriving between flushes are read by
  :meth:`ProcessWriter.stats`.
  A record the converters refuse (a value no store can hold) travels pickled instead, so the
  child's screen quarantines it as in process.
* the child dies (SIGKILL, OOM, a bug): the pipe ends; the child is started again at once
  (then with backoff) and every unacknowledged batch is sent again, oldest first. Meanwhile
  ``flush()`` raises :class:`~recorder.errors.StoreUnavailableError` (the writer thread counts
  it, as for a store outage) and batches wait in memory, at most ``max_unacked_rows`` rows;
  beyond that ``flush()`` waits for the child (the writer thread stops taking rows, the record
  queue fills and the collector's backpressure policy drops frames inside a recorded gap).
* :meth:`stats` (``StoreStatus`` per store, as the in-process writer) / :meth:`quarantine_stats` /
  :attr:`made`: the child's figures (sent with every answer), summed over the child's incarnations;
  while the child is down every store is reported unhealthy (``writer process down: ...``), with
  the unacknowledged rows as pending.
* ``close()``: sends what is left, asks the child to close (flush, roll Parquet, close the
  stores) and waits for it. If the child cannot be brought back, the unacknowledged batches
  are written to the spill journal (``storage.spill_dir``, streams ``sql.<dataset>`` and
  ``parquet.<dataset>``) that the next start replays into both stores.

Child side, :func:`serve`: a thread takes the batches off the pipe as they come (so the
collector's send does not wait for the write); for each batch (with those received meanwhile),
read the IPC streams as Arrow tables (:func:`decode_tables`: no record is built; the writer
screens the tables column-wise and the stores take them as they are, see
``Screen.screen_batch``), ``write`` + ``flush`` the real ``StorageWriter`` (Parquet journal
appended and fsync'd, SQL committed, or spilled), then acknowledge the newest. A batch is
acknowledged only after it is durable: the journal-before-acknowledge rule of the single
process holds across the boundary. When ``flush()`` raises (nothing could
make the rows durable), the answer is ``pending``: the rows stay in the child's writer, which
retries them with its next flush, and the collector keeps the batch until a later ack covers it.
The child exits when the pipe ends (the collector is gone): it writes the batches it had
received and closes its writer first, so what it had acknowledged is in the stores and the
Parquet journal is rolled.

Loss bound: a SIGKILL of the collector loses what it had not handed over yet (at most one flush
interval, and a batch being sent in that instant, as a batch being written in one process); a
SIGKILL of the child loses nothing that was acknowledged, and nothing unacknowledged either
(it is sent again). Rows the child made durable in the instant between
its flush and its acknowledgement are sent twice: SQL keeps one copy (unique keys), the Parquet
journal may hold that one batch twice (readers that need exactly-once de-duplicate on the
datasets' keys, as after a replayed spill).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import RecorderError, StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage.schema import DATASETS, Batch
from recorder.storage.writer import DatasetCounts, StoreStatus

__all__ = ["ProcessWriter", "decode_batch", "decode_tables", "encode_batch", "serve"]

log = logging.getLogger("recorder.storage")

WriterFactory = Callable[[], Any]
"""Builds the real writer in the child (a picklable top-level callable, e.g. a ``functools.partial``)."""

_ZERO = {"written": 0, "pending": 0, "spilled": 0, "refused": 0}
_ANSWER_POLL = 0.25  # s between liveness checks while waiting for an answer


# --------------------------------------------------------------------------- the wire format


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def encode_batch(records: Sequence[Record]) -> list[tuple[str, str, bytes]]:
    """``records`` as ``[(dataset name, "arrow" | "pickle", payload)]``, one entry per dataset.

    "arrow": an Arrow IPC stream of the dataset's schema, built by the dataset's converter.
    "pickle": the records themselves, for a dataset whose records the converter refused (the
    child's screen then quarantines the culprits, as in process). Raises TypeError for a
    record of no dataset.
    """
    batch = Batch.of(records)
    out: list[tuple[str, str, bytes]] = []
    for name, group in batch.groups.items():
        try:
            out.append((name, "arrow", _ipc(batch.table(name))))
        except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError):
            out.append((name, "pickle", pickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL)))
    return out


def decode_batch(parts: Sequence[tuple[str, str, bytes]]) -> list[Record]:
    """The records of an :func:`encode_batch` result (grouped by dataset, order kept within each)."""
    records: list[Record] = []
    for name, kind, payload in parts:
        if kind == "pickle":
            records.extend(pickle.loads(payload))  # our own child process, our own bytes
            continue
        from_row = DATASETS[name].from_row
        reader = pa.ipc.open_stream(payload)
        for rb in reader:
            records.extend(from_row(row) for row in rb.to_pylist())
    return records


def decode_tables(parts: Sequence[tuple[str, str, bytes]]) -> Batch:
    """An :func:`encode_batch` result as a table-native :class:`Batch` (what the child writes).

    Each "arrow" part stays an Arrow table (no record is built: the writer screens and stores
    it as a table, :meth:`Batch.from_groups`); a "pickle" part is its records.
    """
    groups: dict[str, Sequence[Record] | pa.Table] = {}
    for name, kind, payload in parts:
        if kind == "pickle":
            groups[name] = pickle.loads(payload)  # our own child process, our own bytes
        else:
            groups[name] = pa.ipc.open_stream(payload).read_all()
    return Batch.from_groups(groups)


# --------------------------------------------------------------------------- the child


def _snapshot(writer: Any) -> dict[str, Any]:
    stats = getattr(writer, "stats", None)
    q = getattr(writer, "quarantine_stats", None)
    return {
        "stores": dict(stats()) if callable(stats) else {},
        "quarantine": dict(q()) if callable(q) else {"total": 0, "by_dataset": {}, "by_reason": {}},
        "made": dict(getattr(writer, "made", {}) or {}),
    }


def serve(conn: multiprocessing.connection.Connection, factory: WriterFactory) -> None:
    """The child's loop: open the writer, answer every batch once it is durable; close at the end.

    Messages in: ``("batch", seq, parts)``, ``("close",)``. Out: ``("ready", snapshot)``,
    ``("ack", seq, snapshot)``, ``("pending", seq, error, snapshot)``, ``("closed", problem, snapshot)``.
    Returns when asked to close or when the pipe ends (the collector is gone).
    """
    try:
        writer = factory()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ready", _snapshot(writer)))
    inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def receive() -> None:  # the collector's next batch is taken off the pipe while this one is written
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                inbox.put(("eof",))
                return
            inbox.put(msg)
            if msg[0] == "close":
                return

    threading.Thread(target=receive, name="okex-writer-inbox", daemon=True).start()
    problem = None
    held: tuple[Any, ...] | None = None
    try:
        while True:
            msg = held if held is not None else inbox.get()
            held = None
            if msg[0] == "eof":
                log.warning("writer process: the collector is gone; closing the storage writer")
                break
            if msg[0] == "close":
                break
            seq = msg[1]
            writer.write(decode_tables(msg[2]))
            while True:  # batches received meanwhile go with this one (one flush, one answer)
                try:
                    more = inbox.get_nowait()
                except queue.Empty:
                    break
                if more[0] != "batch":
                    held = more
                    break
                seq = more[1]
                writer.write(decode_tables(more[2]))
            try:
                writer.flush()
            except StoreUnavailableError as exc:
                conn.send(("pending", seq, str(exc), _snapshot(writer)))
                continue
            conn.send(("ack", seq, _snapshot(writer)))
    finally:
        try:
            writer.close()
        except RecorderError as exc:
            problem = str(exc)
        with contextlib.suppress(OSError):
            conn.send(("closed", problem, _snapshot(writer)))
        conn.close()


def _child_main(conn: multiprocessing.connection.Connection, factory: WriterFactory) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the collector decides when to stop (a terminal ^C
    serve(conn, factory)                            # reaches the whole process group)


# --------------------------------------------------------------------------- the collector side


@dataclass(slots=True)
class _Sent:
    seq: int
    parts: list[tuple[str, str, bytes]]
    counts: Counter[str]
    rows: int


def _add_stores(base: dict[str, dict[str, Any]], stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per store and dataset: ``written`` and ``refused`` summed (earlier incarnations + now)."""
    out: dict[str, dict[str, Any]] = {}
    for name in {*base, *stores}:
        now = _plain(stores.get(name)) or {"name": name, "healthy": True, "last_error": None, "datasets": {}}
        old = base.get(name, {}).get("datasets", {})
        datasets = {}
        for ds in {*old, *now.get("datasets", {})}:
            c = dict(now.get("datasets", {}).get(ds) or _ZERO)
            o = old.get(ds, {})
            c["written"] = c.get("written", 0) + o.get("written", 0)
            c["refused"] = c.get("refused", 0) + o.get("refused", 0)
            datasets[ds] = c
        out[name] = {**now, "datasets": datasets,
                     "outages": now.get("outages", 0) + base.get(name, {}).get("outages", 0)}
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    import dataclasses

    return dataclasses.asdict(value)


class ProcessWriter:
    """A ``RecordWriter`` whose storage writer runs in a child process (see the module doc).

    ``factory`` builds the real writer in the child (picklable). ``max_unacked_rows`` bounds the
    rows kept in memory until acknowledged; ``max_in_flight`` is how many of the newest batches
    :meth:`flush` leaves unanswered (0: it waits for all, as before); ``spill_dir`` is where
    unacknowledged rows go if the child cannot be brought back at close. ``policy`` paces
    restarts after the first (immediate) one. Raises :class:`StoreUnavailableError` from the
    constructor if the child does not start (its error).
    """

    def __init__(self, factory: WriterFactory, *, max_unacked_rows: int = 500_000,
                 max_in_flight: int = 1, spill_dir: str | Path | None = None,
                 policy: BackoffPolicy = BackoffPolicy(initial=1.0, cap=30.0),
                 start_timeout: float = 120.0) -> None:
        self._factory = factory
        self._max_unacked = max_unacked_rows
        self._window = max(0, max_in_flight)
        self._spill_dir = spill_dir
        self._policy = policy
        self._start_timeout = start_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._buffer: list[Record] = []
        self._unacked: deque[_Sent] = deque()
        self._unacked_rows = 0
        self._seq = 0
        self._acked = 0
        self._answered = 0  # highest seq the current child answered (ack or pending)
        self._sent_upto = 0  # highest seq handed to the current child
        self._proc: Any = None
        self._starting: tuple[Any, multiprocessing.connection.Connection, float] | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._delays: Iterator[float] | None = None
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._down_reason = ""
        self._base_stores: dict[str, dict[str, Any]] = {}  # summed figures of the dead incarnations
        self._base_quarantine: Counter[tuple[str, str]] = Counter()
        self._base_made: Counter[str] = Counter()
        self._snap: dict[str, Any] = {"stores": {}, "quarantine": {}, "made": {}}
        self.restarts = 0
        self.closed = False
        self._lock = threading.RLock()  # the pipe: the writer thread's flush vs. a status read
        self._start()

    # -- RecordWriter ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The child's process id (None while it is down)."""
        return self._proc.pid if self._proc is not None else None

    def write(self, records: Sequence[Record]) -> None:
        """Buffer ``records`` for the next :meth:`flush`."""
        self._buffer.extend(records)

    def flush(self) -> None:
        """Send the buffered records; return once the child says every batch before the newest
        ``max_in_flight`` is durable (those stay in flight; :meth:`wait_durable` waits for all).

        Raises :class:`StoreUnavailableError` when they are not durable yet: the child is down
        (restarted with backoff; the batch is kept and sent again) or its stores refused to make
        them durable (the child keeps retrying them). Waits (backpressure) while more than
        ``max_unacked_rows`` rows are unacknowledged and the child is down.
        """
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self.closed:
            raise StorageError("the storage writer is closed")
        records, self._buffer = self._buffer, []
        if records:
            batch = Batch.of(records)
            self._seq += 1
            sent = _Sent(self._seq, encode_batch(batch), Counter(batch.counts()), len(batch))
            self._unacked.append(sent)
            self._unacked_rows += sent.rows
        elif self._conn is not None and self._acked < self._answered == self._sent_upto:
            # nothing new, and the child holds rows its stores refused for now: an empty batch
            # makes it flush (retry) again
            self._seq += 1
            self._unacked.append(_Sent(self._seq, [], Counter(), 0))
        self._settle(self._window)

    @property
    def in_flight_window(self) -> int:
        """How many of the newest flushed batches :meth:`flush` leaves unacknowledged (not durable
        yet when it returns); the collector counts their rows as written only later."""
        return self._window

    def wait_durable(self) -> None:
        """:meth:`flush`, then wait until the child answered every batch sent (none in flight).

        Returns once everything written so far is durable; raises as :meth:`flush` otherwise.
        """
        with self._lock:
            self._flush()
            self._settle(0)

    def _settle(self, window: int) -> None:
        while True:
            self._exchange(window=window)
            if self._conn is not None or self._unacked_rows <= self._max_unacked:
                break
            time.sleep(max(0.05, min(1.0, self._retry_at - time.monotonic())))  # backpressure
        if self._conn is not None and self._answered > self._acked:
            raise StoreUnavailableError(f"{self._unacked_rows} rows not durable yet: {self._down_reason}")
        if self._conn is None:
            raise StoreUnavailableError(
                f"writer process down ({self._down_reason}); {self._unacked_rows} rows held in memory "
                f"(bound {self._max_unacked}), sent again when it is back")

    def close(self) -> None:
        """Send what is left, let the child close its writer (Parquet rolled), wait for it.

        Raises :class:`StoreUnavailableError` if rows could not be made durable by the child;
        they are then in the spill journal (or lost, if that fails too: the message says so).
        """
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        problems: list[str] = []
        records, self._buffer = self._buffer, []
        if records:
            self._buffer = records
            self.closed = False
            with contextlib.suppress(StoreUnavailableError):
                self.flush()
            self.closed = True
        for _attempt in range(3):
            with contextlib.suppress(StoreUnavailableError):
                self._exchange(force_restart=True)
            if self._conn is not None:
                problem = self._close_child()
                if problem is None and not self._unacked:
                    break
                if problem is not None:
                    problems.append(problem)
                    break
        if self._unacked:
            problems.append(self._spill_unacked())
        self._stop_child()
        if problems:
            raise StoreUnavailableError("; ".join(problems))

    # -- status ------------------------------------------------------------------------------------

    def stats(self) -> dict[str, StoreStatus]:
        """Per store, the child's figures summed over its incarnations (as ``StorageWriter.stats()``).

        While the child is down every store is reported unhealthy; unacknowledged rows count as pending.
        Reads the answers the child sent meanwhile (the batch left in flight by the last flush).
        """
        self._poll()
        stores = _add_stores(self._base_stores, self._snap.get("stores", {}))
        waiting = Counter[str]()
        for s in self._unacked:
            if s.seq > self._answered or self._conn is None:  # not sent, or in flight
                waiting.update(s.counts)
        for st in stores.values():
            for ds, n in waiting.items():
                c = st["datasets"].setdefault(ds, dict(_ZERO))
                c["pending"] = c.get("pending", 0) + n
            if self._conn is None:
                st["healthy"] = False
                st["last_error"] = f"writer process down: {self._down_reason}"[:500]
        return {name: StoreStatus(name, bool(st.get("healthy")), st.get("last_error"),
                                  {ds: DatasetCounts(**c) for ds, c in sorted(st["datasets"].items())},
                                  st.get("outage_since"), int(st.get("outages", 0)))
                for name, st in sorted(stores.items())}

    def quarantine_stats(self) -> dict[str, object]:
        """The child's quarantine figures, summed over its incarnations."""
        by_dataset: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        q = self._snap.get("quarantine") or {}
        by_dataset.update(q.get("by_dataset", {}))
        by_reason.update(q.get("by_reason", {}))
        for (ds, reason), n in self._base_quarantine.items():
            by_dataset[ds] += n
            by_reason[reason] += n
        return {"total": sum(by_dataset.values()), "by_dataset": dict(sorted(by_dataset.items())),
                "by_reason": dict(by_reason.most_common())}

    @property
    def made(self) -> dict[str, int]:
        """Rows the child's writer made itself (quarantine rows, store_outage spans), all incarnations."""
        total = Counter(self._base_made)
        total.update(self._snap.get("made", {}))
        return dict(total)

    @property
    def unacked_rows(self) -> int:
        """Rows sent or waiting to be sent that the child has not acknowledged as durable."""
        return self._unacked_rows

    # -- internals ---------------------------------------------------------------------------------

    def _poll(self) -> None:
        """Take the answers already waiting (never blocks; skipped while a flush holds the pipe)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            conn = self._conn
            while conn is not None and self._answered < self._sent_upto and conn.poll(0):
                self._answer(conn)
        except (EOFError, OSError):
            pass  # the child is gone: the next flush notices it and starts another
        finally:
            self._lock.release()

    def _start(self, *, wait: bool = True) -> None:
        """Launch the child; with ``wait``, until it is ready (else :meth:`_ready` finishes the start).

        Raises :class:`StoreUnavailableError` if it exits or says it failed before it is ready.
        """
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_child_main, args=(child, self._factory), name="okex-storage-writer",
                                 daemon=False)
        proc.start()
        child.close()
        self._starting = (proc, parent, time.monotonic() + self._start_timeout)
        if wait:
            while not self._ready(_ANSWER_POLL):
                pass

    def _ready(self, timeout: float = 0.0) -> bool:
        """Whether the child being started is ready now (waits up to ``timeout`` s for it).

        Raises :class:`StoreUnavailableError` if it exited, failed or took too long.
        """
        assert self._starting is not None
        proc, parent, deadline = self._starting
        try:
            if not parent.poll(timeout):
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise EOFError(f"exit code {proc.exitcode}")
                return False
            msg = parent.recv()
        except (EOFError, OSError) as exc:
            self._starting = None
            self._reap(proc, parent)
            raise StoreUnavailableError(f"the writer process did not start ({exc})") from None
        self._starting = None
        if msg[0] != "ready":
            self._reap(proc, parent)
            raise StoreUnavailableError(f"the writer process did not start: {msg[1]}")
        self._proc, self._conn = proc, parent
        self._snap = msg[1]
        self._sent_upto = self._answered = self._acked
        if self._down_since is not None:
            log.warning("writer process back (pid %s) after %.1f s; sending %d unacknowledged rows again",
                        proc.pid, time.monotonic() - self._down_since, self._unacked_rows)
        self._down_since = None
        self._delays = None
        return True

    @staticmethod
    def _reap(proc: Any, conn: multiprocessing.connection.Connection) -> None:
        with contextlib.suppress(OSError):
            conn.close()
        if proc.is_alive():
            proc.kill()
        proc.join(10)

    def _lost(self, reason: str) -> None:
        """The child is gone: remember its figures, start the restart clock."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and conn is not None:
            self._reap(proc, conn)
            reason = f"{reason} (exit code {proc.exitcode})"
        self._base_stores = _add_stores(self._base_stores, self._snap.get("stores", {}))
        for st in self._base_stores.values():
            for c in st["datasets"].values():
                c["pending"] = c["spilled"] = 0
        self._fold_quarantine(self._snap.get("quarantine") or {})
        self._base_made.update(self._snap.get("made", {}))
        self._snap = {"stores": {}, "quarantine": {}, "made": {}}
        self._down_since = time.monotonic() if self._down_since is None else self._down_since
        self._down_reason = reason
        self._sent_upto = self._answered = self._acked
        log.error("writer process lost: %s; %d unacknowledged rows kept and sent again after a restart",
                  reason, self._unacked_rows)

    def _fold_quarantine(self, q: dict[str, Any]) -> None:
        by_dataset = dict(q.get("by_dataset") or {})
        by_reason = dict(q.get("by_reason") or {})
        # spread the reasons over the datasets in order (only totals per dataset / reason are reported)
        ds_items = [[ds, n] for ds, n in by_dataset.items()]
        for reason, n in by_reason.items():
            while n > 0 and ds_items:
                take = min(n, ds_items[0][1])
                self._base_quarantine[(ds_items[0][0], reason)] += take
                ds_items[0][1] -= take
                n -= take
                if ds_items[0][1] == 0:
                    ds_items.pop(0)

    def _exchange(self, *, force_restart: bool = False, window: int = 0) -> None:
        """(Re)start the child if due, send what it has not seen, wait for the answers to all of it
        but the newest ``window`` batches (those stay in flight: the child writes them meanwhile)."""
        if self._conn is None:
            try:
                if self._starting is None:
                    if not force_restart and time.monotonic() < self._retry_at:
                        return
                    self.restarts += 1
                    self._start(wait=force_restart)
                elif force_restart:
                    while not self._ready(_ANSWER_POLL):
                        pass
                if self._starting is not None and not self._ready():
                    self._down_reason = "restarting"
                    return  # not ready yet: the batches wait (bounded), the caller goes on
            except StoreUnavailableError as exc:
                self._down_reason = str(exc)
                if self._delays is None:
                    self._delays = backoff(self._policy)
                self._retry_at = time.monotonic() + next(self._delays)
                log.error("%s; retrying in %.1f s", exc, self._retry_at - time.monotonic())
                return
        conn = self._conn
        assert conn is not None
        try:
            if self._proc is None or not self._proc.is_alive():  # a send to it might still succeed
                raise EOFError("writer process exited")
            for s in self._unacked:
                if s.seq > self._sent_upto:
                    conn.send(("batch", s.seq, s.parts))
                    self._sent_upto = s.seq
            while self._answered < self._sent_upto and (self._sent_upto - self._answered > window
                                                         or conn.poll(0)):
                self._answer(conn)
        except (EOFError, OSError, BrokenPipeError) as exc:
            self._lost(f"pipe closed ({type(exc).__name__})")
            if self._delays is None:  # the first restart is immediate
                self._retry_at = 0.0
                self._delays = backoff(self._policy)
            else:
                self._retry_at = time.monotonic() + next(self._delays)
            if not force_restart:
                self._exchange(window=window)

    def _answer(self, conn: multiprocessing.connection.Connection) -> tuple[Any, ...]:
        while not conn.poll(_ANSWER_POLL):
            if self._proc is None or not self._proc.is_alive():
                raise EOFError("writer process exited")
        msg: tuple[Any, ...] = conn.recv()
        kind = msg[0]
        if kind == "ack":
            self._snap = msg[2]
            self._answered = max(self._answered, msg[1])
            self._ack(msg[1])
        elif kind == "pending":
            self._snap = msg[3]
            self._answered = max(self._answered, msg[1])
            self._down_reason = msg[2]
        elif kind == "closed":
            self._snap = msg[2]
        return msg

    def _ack(self, seq: int) -> None:
        self._acked = max(self._acked, seq)
        while self._unacked and self._unacked[0].seq <= seq:
            self._unacked_rows -= self._unacked.popleft().rows

    def _close_child(self) -> str | None:
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        try:
            conn.send(("close",))
            while True:
                msg = self._answer(conn)
                if msg[0] == "closed":
                    break
        except (EOFError, OSError) as exc:
            self._lost(f"pipe closed while closing ({type(exc).__name__})")
            return None
        problem: str | None = msg[1]
        # The child's close flushed everything it held: what it had been sent is durable unless it said not.
        if problem is None:
            self._ack(self._sent_upto)
        self._stop_child()
        return problem

    def _stop_child(self) -> None:
        if self._starting is not None:
            starting, pipe, _ = self._starting
            self._starting = None
            self._reap(starting, pipe)
        proc, conn = self._proc, self._conn
        if proc is None or conn is None:
            return
        with contextlib.suppress(OSError):
            conn.close()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        self._proc = self._conn = None

    def _spill_unacked(self) -> str:
        """Write the unacknowledged batches to the spill journal (replayed into both stores at next start)."""
        rows = self._unacked_rows
        if self._spill_dir is None:
            return f"writer process gone: {rows} unacknowledged rows lost (no spill directory)"
        from recorder.storage.journal import Journal

        journal = Journal(self._spill_dir)
        try:
            for s in list(self._unacked):
                batch = decode_tables(s.parts)
                for name in batch.groups:
                    table = batch.table(name)
                    for store in ("sql", "parquet"):
                        journal.append(f"{store}.{name}", table)
                self._unacked.popleft()
                self._unacked_rows -= s.rows
        except (StorageError, pa.ArrowException, ValueError, TypeError) as exc:
            return (f"writer process gone; spilling failed ({exc}): {self._unacked_rows} "
                    f"unacknowledged rows lost")
        finally:
            journal.close()
        return (f"writer process gone: {rows} unacknowledged rows spilled to {self._spill_dir} "
                "(written into both stores at the next start)")

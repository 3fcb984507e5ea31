"""``okex-recorder run``: the WebSocket collector (and the poller, when credentials are configured).

:class:`Recorder` wires the parts (docs/collector.md): one :class:`Connection` per
share of ``collector.symbols_per_connection`` symbols, all handing their frames to one
:class:`~recorder.collector.pipeline.Intake` (decoding in the event loop's thread
through the :class:`~recorder.collector.pipeline.FramePipeline`), the writer thread around the
:class:`~recorder.storage.writer.StorageWriter`, the poller, and the status reporter
(one log line and ``status.json`` every ``collector.status_interval`` s).

SIGINT/SIGTERM: stop receiving, let the pipeline finish every frame received,
flush, close the files, exit 0. A second signal exits at once (code 130).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.backoff import BackoffPolicy
from recorder.collector.audit import BookAuditor
from recorder.collector.connection import Connection, ConnectionSettings, ConnectionSubscriptions
from recorder.collector.pipeline import (
    Control,
    ControlKind,
    FramePipeline,
    Intake,
    PipelineSettings,
    RecordQueue,
    RecordWriter,
    WriterThread,
)
from recorder.collector.status import StatusReporter
from recorder.config import Config, load_config, mask_url
from recorder.credentials import Credentials, load_credentials
from recorder.errors import ConfigError, SchemaNotAtHeadError
from recorder.poller.ratelimit import process_limiter
from recorder.records import Record, utc_now

if TYPE_CHECKING:
    from recorder.collector.metrics import MetricsServer

__all__ = ["Recorder", "RunResult", "add_arguments", "check_duration", "claim_storage", "open_storage",
           "prepare_database",
           "prepare_directories", "prepare_storage", "run"]

log = logging.getLogger("recorder.collector")

HANDOVER_INTERVAL = 0.05  # s: records produced are handed to the writer at least this often
BOOKKEEPING_TABLES = frozenset({"feed_events", "quarantine"})  # rows about the recording, not recorded data


def unreachable_message(ws_url: str, reason: str, cap: float) -> str:
    """The one ERROR line said when no connection to the exchange has ever succeeded."""
    prefix = f"cannot connect to {ws_url}: "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
    return (f"cannot reach the exchange at {ws_url} ({reason}); nothing is being recorded. "
            "Still retrying with backoff (up to "
            f"{cap:g} s between attempts; further failures are logged at DEBUG). The OKEx v1 service "
            "(the default exchange.ws_url) was switched off in 2019: to record from the local simulator, "
            "start `okex-recorder simulate` and set exchange.ws_url and exchange.rest_url to the URLs it "
            "prints; otherwise check exchange.ws_url, the network, DNS and any proxy.")


def queue_max_age(flush_interval: float) -> float:
    """How far (s) the writer may fall behind before receiving drops (backpressure): the lag bound."""
    return max(5.0, 5 * flush_interval)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``run [--config F] [--duration S]``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="TOML configuration file (see config.example.toml); environment variables "
                             "OKEX_RECORDER__<SECTION>__<KEY> override it")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop (cleanly) after S seconds; default: run until SIGINT/SIGTERM")
    parser.add_argument("--bus", default=None, metavar="nats://HOST:PORT",
                        help="publish to NATS JetStream instead of writing the stores (sets bus.url)")


def setup_logging(config: Config) -> None:
    """One handler on stderr, the configured level, UTC timestamps."""
    logging.basicConfig(
        level=config.log.level.number, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    logging.Formatter.converter = time.gmtime
    # Libraries log every HTTP request / connection / migration step at INFO: keep them for debug.
    quiet = logging.DEBUG if config.log.level.number <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "websockets", "alembic", "aiohttp.access"):
        logging.getLogger(name).setLevel(quiet)


def storage_paths(config: Config) -> dict[str, Path]:
    """Where a recording with ``config`` keeps its files: label -> path (relative to the working directory).

    ``sqlite`` (the database file, only for an SQLite ``sql_url`` with a file), ``parquet``
    (the dataset root), ``journal`` (the Parquet journal), ``spill`` (the SQL spill
    directory), ``status`` (the status file). A collector on the bus (``bus.url``) writes
    no store itself: only its spill directory and status file.
    """
    import sqlalchemy as sa

    s = config.storage
    paths: dict[str, Path] = {}
    if config.bus.url:
        return {"spill": Path(s.spill_dir), "status": Path(config.collector.status_file)}
    if s.is_default_sqlite:
        try:
            url = sa.make_url(s.sql_url)
        except sa.exc.ArgumentError:
            url = None
        database = None if url is None else url.database
        if database and database != ":memory:" and not database.startswith("file:") \
                and url is not None and not url.query.get("uri"):
            paths["sqlite"] = Path(database)
    paths["parquet"] = Path(s.parquet_root)
    paths["journal"] = Path(s.parquet_journal_dir)
    paths["spill"] = Path(s.spill_dir)
    paths["status"] = Path(config.collector.status_file)
    return paths


def _make_dir(directory: Path, label: str, path: Path) -> list[Path]:
    """Create ``directory`` (and parents); return those created, outermost first. Raises ConfigError."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {directory} for {label} ({path}): "
                          f"{exc.strerror or exc}") from None
    return list(reversed(missing))


def prepare_directories(config: Config, *, created_before: Sequence[Path] = ()) -> list[Path]:
    """Create the directories the SQLite file, Parquet root, journal, spill dir and status file need.

    Logs one INFO line saying where each goes and which directories were created
    (``created_before``: directories the caller created already, named in that line);
    returns the directories created here, outermost first. Raises :class:`ConfigError`
    naming the path when one cannot be created (permission denied, a file in the way).
    """
    created: list[Path] = []
    where = []
    for label, path in storage_paths(config).items():
        directory = path.parent if label in ("sqlite", "status") else path
        where.append(f"{label} {path}")
        created.extend(d for d in _make_dir(directory, label, path) if d not in created)
    named = [*created_before, *(d for d in created if d not in created_before)]
    log.info("files: %s (working directory %s)%s", ", ".join(where), Path.cwd(),
             f"; created {', '.join(str(d) for d in named)}" if named else "")
    return created


def prepare_storage(config: Config) -> None:
    """Before recording: the directories (:func:`prepare_directories`), the schema (:func:`prepare_database`).

    The SQLite file's directory is made first (the schema check opens the file), the
    others once the database is usable, so that a refused start leaves nothing behind.
    Raises :class:`ConfigError` / :class:`~recorder.errors.StorageError` as those do.
    """
    sqlite_file = storage_paths(config).get("sqlite")
    made = [] if sqlite_file is None else _make_dir(sqlite_file.parent, "sqlite", sqlite_file)
    try:
        prepare_database(config)
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when still empty
        raise
    prepare_directories(config, created_before=made)


def _lock_directory(directory: Path, key: str, fix: str) -> int:
    """Hold an exclusive advisory lock on ``directory`` (``flock`` on its descriptor); return the fd.

    Raises :class:`ConfigError` naming ``key`` when another process holds it.
    """
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{directory} ({key}) is in use by another okex-recorder process: {fix}") from None
    except OSError:
        os.close(fd)  # a filesystem without flock: nothing to hold
        return -1
    return fd


@contextlib.contextmanager
def claim_storage(config: Config, *, status_file: bool = True, fix: str | None = None) -> Any:
    """Refuse a second process on this recording's per-process files, for the ``with`` block.

    A second ``run`` / ``poll`` / ``demo`` given the same ``storage.parquet_journal_dir`` or
    ``storage.spill_dir`` would take over the first one's journal segments, and with the
    same ``collector.status_file`` would overwrite its status. Locks both directories
    (they must exist: :func:`prepare_storage` first) and checks the status file names no
    live, recently updated process (unless ``status_file`` is False: ``poll`` writes none).
    Raises :class:`ConfigError` naming the clash and ``fix`` (default: give each process
    its own files).
    """
    from recorder.collector.status import STALE_INTERVALS, _alive, read_status

    status_path = Path(config.collector.status_file)
    busy, pid = False, None
    with contextlib.suppress(Exception):  # no status file, or not ours to judge: nothing to refuse
        if not status_file:
            raise LookupError
        other = read_status(status_path)
        pid = other.get("pid")
        age = time.time() - _timestamp(other.get("updated_at"))
        fresh = age <= STALE_INTERVALS * float(other.get("config", {}).get("status_interval", 10.0)) + 5
        busy = (other.get("state") in ("running", "stopping") and pid != os.getpid() and _alive(pid) and fresh
                and _looks_like_recorder(pid))
    fix = fix or ("give each process its own collector.status_file, storage.spill_dir and "
                  "storage.parquet_journal_dir (README \"Several processes\"), or stop the other one first")
    if busy:
        raise ConfigError(f"{status_path} (collector.status_file) belongs to a running okex-recorder process "
                          f"(pid {pid}): {fix}")
    fds: list[int] = []
    try:
        paths = storage_paths(config)  # a collector on the bus has no Parquet journal
        for label, key in (("journal", "storage.parquet_journal_dir"), ("spill", "storage.spill_dir")):
            if label in paths:
                fds.append(_lock_directory(paths[label], key, fix))
        yield
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def _looks_like_recorder(pid: object) -> bool:
    """Whether process ``pid`` runs okex-recorder (its command line, where /proc tells; else assume so).

    A pid in a stale status file may belong to another program by now (a restarted container
    reuses small pids): that must not stop a restart.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"recorder" in cmdline


def _timestamp(value: object) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(value)).timestamp()


def prepare_database(config: Config) -> None:
    """Check the SQL schema is at head; upgrade an embedded SQLite file when allowed.

    Raises :class:`SchemaNotAtHeadError` naming ``okex-recorder db upgrade`` otherwise.
    """
    from recorder.storage import migrate

    url = config.storage.sql_url
    sqlite_file = storage_paths(config).get("sqlite")
    new_file = sqlite_file is not None and (not sqlite_file.exists() or sqlite_file.stat().st_size == 0)
    try:
        migrate.require_head(url)
    except SchemaNotAtHeadError:
        if not (config.storage.is_default_sqlite and config.storage.auto_upgrade_sqlite):
            raise
        if new_file:
            log.info("creating the SQLite database %s (schema at head)", sqlite_file)
        else:
            log.info("upgrading the SQLite schema of %s to head", mask_url(url))
        migrate.upgrade(url)


def open_storage(config: Config) -> RecordWriter:
    """The :class:`~recorder.storage.writer.StorageWriter` for ``config.storage``: SQL + Parquet.

    Raises :class:`~recorder.errors.StorageError` (e.g. SchemaNotAtHeadError) from the stores.
    """
    from recorder.storage.bus_config import default_collector_id
    from recorder.storage.compact import CompactionPolicy
    from recorder.storage.parquet import ParquetStore
    from recorder.storage.sql import SqlStore
    from recorder.storage.writer import StorageWriter

    s = config.storage
    if config.bus.url:  # collectors publish; `okex-recorder store` writes the stores
        from recorder.storage.bus import open_bus_writer
        return open_bus_writer(config)
    compaction = None
    if s.compact:
        compaction = CompactionPolicy(max_files=s.compact_max_files, closed_after=s.compact_closed_after,
                                      step_bytes=s.compact_step_bytes, grace=s.compact_grace)
    sql = SqlStore(s.sql_url)
    try:
        parquet = ParquetStore(s.parquet_root, roll_rows=s.parquet_roll_rows,
                               roll_seconds=s.parquet_roll_seconds, journal_dir=s.parquet_journal_dir,
                               compaction=compaction)
    except BaseException:
        sql.close()
        raise
    return StorageWriter(sql, parquet, max_pending_rows=s.max_pending_rows, spill_dir=str(s.spill_dir),
                         plausibility=config.plausibility,
                         collector=config.collector.id or default_collector_id())


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished recording reports."""

    status: dict[str, Any]
    exit_code: int


class Recorder:
    """The running collector: connections, pipeline threads, poller, status.

    ``writer`` is the storage writer (owned: closed at the end). ``credentials``
    (optional) starts the poller beside the collector.
    """

    def __init__(self, config: Config, writer: RecordWriter, *, credentials: Credentials | None = None,
                 rest_url: str | None = None) -> None:
        self.config = config
        c = config.collector
        self.records = RecordQueue(config.storage.writer_queue_rows,
                                   max_age=queue_max_age(config.storage.flush_interval))
        conn_settings = ConnectionSettings(
            url=config.exchange.ws_url, subscribe_batch=c.subscribe_batch, compress=c.compress,
            ping_interval=c.ping_interval, pong_timeout=c.pong_timeout, stall_timeout=c.stall_timeout,
            connect_timeout=c.connect_timeout,
            backoff=BackoffPolicy(initial=c.reconnect_initial, cap=max(c.reconnect_cap, c.reconnect_initial)),
        )
        shares = {f"ws-{i}": [ch for symbol in symbols for ch in c.channels_for(symbol)]
                  for i, symbols in enumerate(c.connection_shares())}
        by_name: dict[str, Connection] = {}
        self.pipeline = FramePipeline(
            PipelineSettings(snapshot_depth=c.snapshot_depth, snapshot_on_change=c.snapshot_on_change,
                             snapshot_interval_ms=c.snapshot_interval_ms,
                             audit_history=c.book_audit_history if c.book_audit_interval > 0 else 0),
            shares,
            subscriptions=ConnectionSubscriptions(by_name),
        )
        self.intake = Intake(self.pipeline, self.records, soft_rows=config.storage.batch_size)
        self.connections = [Connection(name, channels, conn_settings, self.intake)
                            for name, channels in shares.items()]
        by_name.update((conn.name, conn) for conn in self.connections)
        self.writer_thread = WriterThread(writer, self.records, batch_size=config.storage.batch_size,
                                          flush_interval=config.storage.flush_interval)
        self.credentials = credentials
        self.rest_url = rest_url or config.exchange.rest_url
        self.auditor = (BookAuditor(self.pipeline, self.rest_url, interval=c.book_audit_interval,
                                    slack=c.book_audit_slack_ms / 1000, depth=c.snapshot_depth,
                                    policy=conn_settings.backoff, limiter=process_limiter(config.poller))
                        if c.book_audit_interval > 0 else None)
        self.poller: Any = None
        self.status = StatusReporter(self)
        self.stop_event: asyncio.Event | None = None
        self.started = utc_now()
        self.unreachable_reported = False
        self.metrics: MetricsServer | None = None  # while run() serves [metrics]

    def sink(self, records: Sequence[Record]) -> None:
        """Where the poller hands its records (in the loop's thread): through the intake, never refused."""
        if records:
            self.intake.control(Control(ControlKind.RECORDS, "rest", utc_now(), records=tuple(records)))

    def request_stop(self) -> None:
        """Stop receiving (thread-safe within the recorder's loop)."""
        if self.stop_event is not None:
            self.stop_event.set()

    async def run(self, duration: float | None = None,
                  on_started: Callable[[Recorder], None] | None = None) -> RunResult:
        """Record until :meth:`request_stop` (or ``duration`` s), then drain, flush and close."""
        stop = self.stop_event = asyncio.Event()
        if self.config.metrics.enabled:  # opt-in Prometheus endpoint (docs/operations.md "Metrics")
            from recorder.collector.metrics import serve_metrics

            try:
                self.metrics = serve_metrics(self, self.config.metrics.host, self.config.metrics.port)
            except BaseException:
                self.writer_thread.writer.close()  # the writer thread that would close it never starts
                raise
        self.writer_thread.start()
        pump = asyncio.create_task(self._pump(stop), name="handover")
        tasks = [asyncio.create_task(conn.run(stop), name=conn.name) for conn in self.connections]
        poller_task: asyncio.Task[Any] | None = None
        if self.credentials is not None:
            from recorder.poller.service import Poller

            # The stored order states let a restarted run resume without re-sending known orders.
            self.poller = Poller(self.config.poller, self.credentials, self.sink, rest_url=self.rest_url,
                                 state_url=self.config.storage.sql_url)
            poller_task = asyncio.create_task(self.poller.run(stop), name="poller")
        status_task = asyncio.create_task(self.status.run(stop), name="status")
        audit_task = (asyncio.create_task(self.auditor.run(stop), name="book-audit")
                      if self.auditor is not None else None)
        log.info("recording %d symbols over %d connection(s) from %s into %s and %s",
                 len(self.config.collector.symbols), len(self.connections), self.config.exchange.ws_url,
                 mask_url(self.config.storage.sql_url), self.config.storage.parquet_root)
        if on_started is not None:
            on_started(self)
        exit_code = 0
        try:
            waiter = asyncio.ensure_future(stop.wait())
            watched: set[asyncio.Future[Any]] = {waiter, *tasks}
            if poller_task is not None:
                watched.add(poller_task)
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.is_set():
                timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._check_reachable()
                if self.intake.error is not None or not self.writer_thread.is_alive():
                    log.error("a pipeline thread stopped unexpectedly; stopping")
                    exit_code = 1
                    break
                for task in done - {waiter}:
                    watched.discard(task)
                    if task is poller_task:
                        self._poller_ended(task)
                    elif task.exception() is not None:
                        log.error("connection task failed: %r", task.exception())
                        exit_code = 1
                        stop.set()
            waiter.cancel()
        finally:
            stop.set()
            log.info("stopping: receiving stopped, flushing what was received")
            await asyncio.gather(*tasks, return_exceptions=True)
            if poller_task is not None:
                await asyncio.gather(poller_task, return_exceptions=True)
            if audit_task is not None:
                await asyncio.gather(audit_task, return_exceptions=True)
            await asyncio.gather(pump, return_exceptions=True)
            self.intake.control(Control(ControlKind.SHUTDOWN, "collector", utc_now(), "clean stop"))
            self.records.close()
            await asyncio.to_thread(self.writer_thread.join)
            await asyncio.gather(status_task, return_exceptions=True)
        if self.writer_thread.counters.errors:
            log.warning("storage reported %d error(s); last: %s", self.writer_thread.counters.errors,
                        self.writer_thread.counters.last_error)
        final = self.status.write(state="finished")
        self.status.log_line(final)
        if self.metrics is not None:
            self.metrics.close()
        if not self._summarise(final) and duration is not None and exit_code == 0:
            exit_code = 1
        return RunResult(final, exit_code)

    def _check_reachable(self) -> None:
        """Say once, plainly, when every connection has failed and none has ever connected."""
        conns = self.connections
        if self.unreachable_reported or not conns:
            return
        if all(c.counters.connects == 0 and c.counters.reconnects > 0 for c in conns):
            self.unreachable_reported = True
            log.error(unreachable_message(self.config.exchange.ws_url, conns[0].counters.last_error,
                                          self.config.collector.reconnect_cap))

    def recorded_rows(self) -> dict[str, int]:
        """Rows of recorded data (not feed events or quarantine) this run wrote, per table."""
        return {t: n for t, n in sorted(self.writer_thread.counters.rows_written.items())
                if n and t not in BOOKKEEPING_TABLES}

    def _summarise(self, final: dict[str, Any]) -> bool:
        """Log what this run recorded (one line); return False when it recorded nothing."""
        elapsed = final.get("elapsed_seconds", 0.0)
        rows = self.recorded_rows()
        gaps = self.writer_thread.counters.rows_written.get("feed_events", 0)
        if rows:
            log.info("run finished after %.0f s: %d frames received; rows written this run: %s; "
                     "%d feed event rows (gaps and instants)", elapsed, final["frames"]["received"],
                     ", ".join(f"{t} {n}" for t, n in rows.items()), gaps)
            return True
        conns = self.connections
        attempts = sum(c.counters.connects + c.counters.reconnects for c in conns)
        if conns and all(c.counters.connects == 0 for c in conns):
            last = conns[0].counters.last_error or "no attempt finished"
            why = (f"no connection to {self.config.exchange.ws_url} ever succeeded "
                   f"({attempts} failed attempts; last: {last}). Point exchange.ws_url at "
                   "`okex-recorder simulate` or check the network")
        else:
            why = (f"connected {sum(c.counters.connects for c in conns)} time(s) and received "
                   f"{final['frames']['received']} frames, but no market data or account rows "
                   "(subscriptions refused? see the warnings above and `okex-recorder status`)")
        log.error("run finished after %.0f s and recorded NOTHING: %s", elapsed, why)
        return False

    async def _pump(self, stop: asyncio.Event) -> None:
        """Hand the records produced to the writer every HANDOVER_INTERVAL s (frames do it in between)."""
        intake = self.intake
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HANDOVER_INTERVAL)
            intake.handover()

    def _poller_ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the poller stopped: %s; the collector keeps running", exc)
        else:
            outcome = getattr(task.result(), "value", "")
            log.warning("the poller stopped (%s); the collector keeps running", outcome)


def _install_signals(loop: asyncio.AbstractEventLoop, recorder: Recorder) -> None:
    seen = {"count": 0}

    def on_signal(signame: str) -> None:
        seen["count"] += 1
        if seen["count"] == 1:
            log.warning("%s: stopping (flushing everything received); send it again to exit at once", signame)
            recorder.request_stop()
        else:
            print(f"okex-recorder: second {signame}: exiting at once", file=sys.stderr, flush=True)
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig.name)


async def record(config: Config, *, duration: float | None = None, writer: RecordWriter | None = None,
                 credentials: Credentials | None = None, rest_url: str | None = None,
                 signals: bool = True) -> RunResult:
    """Run a :class:`Recorder` in the current loop (opening the storage unless ``writer`` is given)."""
    if writer is None:
        writer = await asyncio.to_thread(open_storage, config)
    recorder = Recorder(config, writer, credentials=credentials, rest_url=rest_url)
    if signals:
        _install_signals(asyncio.get_running_loop(), recorder)
    return await recorder.run(duration)


def run(args: argparse.Namespace) -> int:
    """``okex-recorder run``: exit 0 after a clean stop, 2 for bad configuration (one line).

    Exit 1 when a pipeline thread failed, or when a ``--duration`` run recorded nothing
    (no market-data or account rows: e.g. the exchange could not be reached).
    """
    config = load_config(args.config)
    if args.bus:
        config = dataclasses.replace(config, bus=dataclasses.replace(config.bus, url=args.bus))
    check_duration(args.duration)
    setup_logging(config)
    credentials = load_credentials(config.poller.credentials_file)
    if config.bus.url:  # no database here: `okex-recorder store` writes the stores
        prepare_directories(config)
    else:
        prepare_storage(config)
    if credentials is None:
        log.info("no API credentials configured: the poller is off (see docs/collector.md)")
    else:
        log.info("poller on with %r", credentials)
    with claim_storage(config):
        result = asyncio.run(record(config, duration=args.duration, credentials=credentials))
    return result.exit_code


def check_duration(duration: float | None) -> None:
    """``--duration S``: None (until stopped) or a finite number of seconds > 0; ConfigError otherwise."""
    if duration is not None and not 0 < duration < math.inf:
        raise ConfigError(f"--duration must be a finite number of seconds > 0, got {duration:g}"
                          " (leave it out to run until SIGINT/SIGTERM)")


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - python -m recorder.collector.app
    from recorder.cli import main as cli_main

    return cli_main(["run", *(argv if argv is not None else sys.argv[1:])])


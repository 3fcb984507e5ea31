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
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.backoff import BackoffPolicy
from recorder.collector.connection import Connection, ConnectionSettings
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
from recorder.records import Record, utc_now

__all__ = ["Recorder", "RunResult", "add_arguments", "open_storage", "prepare_database", "run"]

log = logging.getLogger("recorder.collector")

HANDOVER_INTERVAL = 0.05  # s: records produced are handed to the writer at least this often


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


def prepare_database(config: Config) -> None:
    """Check the SQL schema is at head; upgrade an embedded SQLite file when allowed.

    Raises :class:`SchemaNotAtHeadError` naming ``okex-recorder db upgrade`` otherwise.
    """
    from recorder.storage import migrate

    url = config.storage.sql_url
    try:
        migrate.require_head(url)
    except SchemaNotAtHeadError:
        if not (config.storage.is_default_sqlite and config.storage.auto_upgrade_sqlite):
            raise
        log.info("upgrading the SQLite schema of %s to head", mask_url(url))
        migrate.upgrade(url)


def open_storage(config: Config) -> RecordWriter:
    """The :class:`~recorder.storage.writer.StorageWriter` for ``config.storage``: SQL + Parquet.

    Raises :class:`~recorder.errors.StorageError` (e.g. SchemaNotAtHeadError) from the stores.
    """
    from recorder.storage.parquet import ParquetStore
    from recorder.storage.sql import SqlStore
    from recorder.storage.writer import StorageWriter

    s = config.storage
    sql = SqlStore(s.sql_url)
    try:
        parquet = ParquetStore(s.parquet_root, roll_rows=s.parquet_roll_rows,
                               roll_seconds=s.parquet_roll_seconds, journal_dir=s.parquet_journal_dir)
    except BaseException:
        sql.close()
        raise
    return StorageWriter(sql, parquet, max_pending_rows=s.max_pending_rows, spill_dir=str(s.spill_dir),
                         plausibility=config.plausibility)


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
                             snapshot_interval_ms=c.snapshot_interval_ms),
            shares,
            resubscribe=lambda conn, channel: by_name[conn].resubscribe(channel),
        )
        self.intake = Intake(self.pipeline, self.records, soft_rows=config.storage.batch_size)
        self.connections = [Connection(name, channels, conn_settings, self.intake)
                            for name, channels in shares.items()]
        by_name.update((conn.name, conn) for conn in self.connections)
        self.writer_thread = WriterThread(writer, self.records, batch_size=config.storage.batch_size,
                                          flush_interval=config.storage.flush_interval)
        self.credentials = credentials
        self.rest_url = rest_url or config.exchange.rest_url
        self.poller: Any = None
        self.status = StatusReporter(self)
        self.stop_event: asyncio.Event | None = None
        self.started = utc_now()

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
        return RunResult(final, exit_code)

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
    """``okex-recorder run``: exit 0 after a clean stop, 2 for bad configuration (one line)."""
    config = load_config(args.config)
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0 seconds")
    setup_logging(config)
    credentials = load_credentials(config.poller.credentials_file)
    prepare_database(config)
    if credentials is None:
        log.info("no API credentials configured: the poller is off (see docs/collector.md)")
    else:
        log.info("poller on with %r", credentials)
    result = asyncio.run(record(config, duration=args.duration, credentials=credentials))
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - python -m recorder.collector.app
    from recorder.cli import main as cli_main

    return cli_main(["run", *(argv if argv is not None else sys.argv[1:])])


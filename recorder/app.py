"""The composition root: the ``run`` and ``poll`` commands wire logging, the database check,
storage, the collector, the poller and the status reporter here, and nowhere else.

``okex-recorder run`` (:func:`run_command`): the WebSocket collector
(:class:`~recorder.collector.app.Recorder`, which starts the poller beside it when
credentials are configured and writes the status file). ``okex-recorder poll``
(:func:`poll_command`): only the signed REST poller (balances and orders) into storage; it
resumes from the orders already stored, polls until SIGINT/SIGTERM or ``--duration``, then
flushes and exits 0; credentials the exchange rejects end it with exit code 3 after one
clear message.

The wiring steps, in the order a command runs them: :func:`~recorder.logs.setup_logging`;
:func:`prepare_storage` (the schema check, :func:`prepare_database`, then the directories,
:func:`prepare_directories`); :func:`claim_storage` (one process per journal, spill dir and
status file); :func:`open_storage` (the :class:`~recorder.storage.writer.StorageWriter`
over SQL + Parquet, or the bus writer); :func:`record` / :func:`poll`.

Nothing below this module imports it (checked by the import contracts in
``pyproject.toml``), except the demo (:mod:`recorder.collector.demo`), which is a
composition of its own: the simulator plus this root.
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recorder import gc_policy
from recorder.collector.app import Recorder, RunResult
from recorder.collector.pipeline import RecordWriter
from recorder.config import Config, PlausibilityConfig, StorageConfig, load_config, mask_url
from recorder.credentials import Credentials, load_credentials, require_credentials
from recorder.errors import ConfigError, SchemaNotAtHeadError, StoreUnavailableError
from recorder.logs import setup_logging
from recorder.poller.loop import PollerOutcome as RestPollerOutcome
from recorder.poller.rest import RestPoller
from recorder.poller.service import Poller, PollerOutcome
from recorder.poller.state import StoredAccount, load_account_state, load_instrument_states
from recorder.records import Instrument, Record, RecordSink, utc_now
from recorder.venues.okx_v5.poll import V5AccountSource, V5PollSettings, load_v5_credentials
from recorder.venues.okx_v5.records import VENUE as V5_VENUE
from recorder.venues.okx_v5.settings import INHERITED as V5_INHERITED

__all__ = [
    "EXIT_AUTH_FAILED",
    "add_poll_arguments",
    "add_run_arguments",
    "check_duration",
    "claim_storage",
    "open_storage",
    "poll",
    "poll_command",
    "prepare_database",
    "prepare_directories",
    "prepare_storage",
    "record",
    "run_command",
    "setup_logging",
    "storage_paths",
]

log = logging.getLogger("recorder.collector")  # the names the lines had before the root existed
poll_log = logging.getLogger("recorder.poller")

EXIT_AUTH_FAILED = 3  # `poll`: the exchange rejected the credentials


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``run [--config F] [--duration S]``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="TOML configuration file (see config.example.toml); environment variables "
                             "OKEX_RECORDER__<SECTION>__<KEY> override it")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop (cleanly) after S seconds; default: run until SIGINT/SIGTERM")
    parser.add_argument("--bus", default=None, metavar="nats://HOST:PORT",
                        help="publish to NATS JetStream instead of writing the stores (sets bus.url)")


def add_poll_arguments(parser: argparse.ArgumentParser) -> None:
    """``poll [--config F] [--duration S]``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="TOML configuration file (the [poller] section; see config.example.toml)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop (cleanly) after S seconds; default: run until SIGINT/SIGTERM")


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

    With ``[storage] writer_process`` the writer runs in a child process behind a
    :class:`~recorder.storage.process.ProcessWriter` (docs/operations.md "Writer process").
    Raises :class:`~recorder.errors.StorageError` (e.g. SchemaNotAtHeadError) from the stores.
    """
    s = config.storage
    if config.bus.url:  # collectors publish; `okex-recorder store` writes the stores
        from recorder.storage.bus import open_bus_writer
        return open_bus_writer(config)
    if s.writer_process:  # the same writer, in a child process (recorder/storage/process.py)
        import functools

        from recorder.storage.process import ProcessWriter

        child = functools.partial(open_writer_in_child, s, config.plausibility, _collector_id(config),
                                  config.log.level.number)
        return ProcessWriter(child, max_unacked_rows=s.max_pending_rows, spill_dir=s.spill_dir)
    return _open_writer(s, config.plausibility, _collector_id(config))


def _collector_id(config: Config) -> str:
    from recorder.storage.bus_config import default_collector_id

    return config.collector.id or default_collector_id()


def open_writer_in_child(storage: StorageConfig, plausibility: PlausibilityConfig, collector_id: str,
                         log_level: int) -> RecordWriter:
    """The writer process's writer (``[storage] writer_process``): logging as configured, then the
    writer :func:`open_storage` would open in process. Runs in the child: its arguments are picklable."""
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    writer = _open_writer(storage, plausibility, collector_id)
    gc_policy.configure()  # as in `run` (recorder/gc_policy.py)
    return writer


def _open_writer(s: StorageConfig, plausibility: PlausibilityConfig, collector_id: str) -> RecordWriter:
    """``StorageWriter(SqlStore, ParquetStore)`` for ``[storage]``, in this process."""
    from recorder.storage import memory
    from recorder.storage.compact import CompactionPolicy
    from recorder.storage.parquet import ParquetStore
    from recorder.storage.sql_bulk import open_sql_store
    from recorder.storage.writer import StorageWriter

    memory.configure()  # Arrow on the system allocator, trimmed after rolls (bench/README.md "Memory")
    compaction = None
    if s.compact:
        compaction = CompactionPolicy(max_files=s.compact_max_files, closed_after=s.compact_closed_after,
                                      step_bytes=s.compact_step_bytes, grace=s.compact_grace)
    sql = open_sql_store(s.sql_url, bulk=s.sql_bulk)
    try:
        parquet = ParquetStore(s.parquet_root, roll_rows=s.parquet_roll_rows,
                               roll_seconds=s.parquet_roll_seconds, journal_dir=s.parquet_journal_dir,
                               compaction=compaction)
    except BaseException:
        sql.close()
        raise
    return StorageWriter(sql, parquet, max_pending_rows=s.max_pending_rows, spill_dir=str(s.spill_dir),
                         plausibility=plausibility, collector=collector_id)


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


def okx_v5_poll_settings(config: Config) -> V5PollSettings | None:
    """The ``[venues.okx_v5.poller]`` settings when that table says ``enabled = true``, else None."""
    venue = dict(config.venues.get("okx_v5") or {})
    table = venue.get("poller")
    if table is None:
        extra = venue.get("extra")  # parsed by the venue's own settings (SUBTABLES) after the merge
        table = extra.get("poller") if isinstance(extra, Mapping) else None
    if table is None:
        return None
    if isinstance(table, Mapping):  # the venue's rest_url unless the poller sets its own
        table = {**{k: venue[k] for k in V5_INHERITED["poller"] if k in venue}, **table}
    settings = table if isinstance(table, V5PollSettings) else V5PollSettings.from_table(table)
    return settings if settings.enabled else None


def okx_v5_poller(config: Config, sink: RecordSink, *, known_orders: bool = True,
                  stored: StoredAccount | None = None) -> RestPoller | None:
    """The OKX v5 REST account poller when ``[venues.okx_v5.poller] enabled = true``, else None.

    Raises :class:`ConfigError` when it is enabled but no OKX v5 credentials are configured
    (``OKX_API_KEY``/``OKX_API_SECRET``/``OKX_API_PASSPHRASE`` or the credentials file).
    ``known_orders``: resume from the account stored in ``storage.sql_url`` (read-only: order states,
    fill ids, the newest fill, instrument states; docs/poller.md "Restarts"); ``stored``: that
    account already read (an event loop reads it in a thread: :func:`stored_v5_account`).
    """
    settings = okx_v5_poll_settings(config)
    if settings is None:
        return None
    credentials = load_v5_credentials(settings.credentials_file)
    if credentials is None:
        raise ConfigError("venues.okx_v5.poller is enabled but no OKX v5 credentials are configured: set "
                          "OKX_API_KEY, OKX_API_SECRET and OKX_API_PASSPHRASE, or an owner-only "
                          "credentials_file (api_key, secret_key, passphrase)")
    if stored is None:
        stored = stored_v5_account(config) if known_orders else StoredAccount()
    source = V5AccountSource(settings, credentials)
    source.resume(instruments=stored.instruments.values(), newest_fill=stored.newest_fill, now=utc_now())
    log.info("OKX v5 poller on (%s) with %r; stored: %d orders, %d fills, %d instruments", settings.rest_url,
             credentials, len(stored.orders), len(stored.fill_ids), len(stored.instruments))
    return RestPoller(source, sink, policy=settings.backoff,
                      ban_seconds=settings.ban_seconds, request_timeout=settings.request_timeout,
                      time_sync_interval=settings.time_sync_interval, known_orders=stored.orders,
                      known_fills=stored.fill_ids)


def stored_v5_account(config: Config) -> StoredAccount:
    """The OKX v5 account stored in ``storage.sql_url`` (blocking; raises as
    :func:`~recorder.poller.state.load_account_state`)."""
    return load_account_state(config.storage.sql_url, V5_VENUE)


def stored_instruments(config: Config) -> list[Instrument]:
    """The last stored state of every instrument in ``storage.sql_url`` (blocking; read before the
    collector starts, so that it writes an instrument's state only when it changed). A database
    that cannot be read is one warning and an empty list: each state seen is then written once more."""
    try:
        return list(load_instrument_states(config.storage.sql_url).values())
    except StoreUnavailableError as exc:
        log.warning("%s; each instrument's state seen this run is written again, changed or not", exc)
        return []


async def record(config: Config, *, duration: float | None = None, writer: RecordWriter | None = None,
                 credentials: Credentials | None = None, rest_url: str | None = None,
                 signals: bool = True, gc_tuning: bool = False) -> RunResult:
    """Run a :class:`Recorder` in the current loop (opening the storage unless ``writer`` is given).

    ``gc_tuning``: apply :func:`recorder.gc_policy.configure` once startup is done (the ``run``
    command does; it is a whole-process setting, so not for a caller embedding the recorder)."""
    if writer is None:
        writer = await asyncio.to_thread(open_storage, config)
    recorder = Recorder(config, writer, credentials=credentials, rest_url=rest_url)
    if signals:
        _install_signals(asyncio.get_running_loop(), recorder)
    v5_tasks: list[asyncio.Task[RestPollerOutcome]] = []
    # read before the collector starts, off the loop: every stored fill id can be a long read
    v5_stored = (await asyncio.to_thread(stored_v5_account, config)
                 if okx_v5_poll_settings(config) is not None else None)
    if not config.bus.url:  # on the bus the collector has no database: `okex-recorder store` has it
        recorder.pipeline.seed_instruments(await asyncio.to_thread(stored_instruments, config))
    if gc_tuning:  # startup done: freeze what is alive, fewer full collections (gc_policy)
        gc_policy.configure()

    def start_v5(rec: Recorder) -> None:  # the OKX v5 account poller beside the collector
        stop = rec.stop_event
        assert stop is not None

        def sink(records: Sequence[Record]) -> None:
            if not stop.is_set():  # the intake closes after the stop; the next run re-reads the state
                rec.sink(records)

        poller = okx_v5_poller(config, sink, stored=v5_stored)
        if poller is not None:
            v5_tasks.append(asyncio.create_task(poller.run(stop), name="poller-okx_v5"))

    try:
        return await recorder.run(duration, on_started=start_v5)
    finally:
        for outcome in await asyncio.gather(*v5_tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.error("the OKX v5 poller failed: %r", outcome)


def run_command(args: argparse.Namespace) -> int:
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
    v5_settings = okx_v5_poll_settings(config)
    if v5_settings is not None and load_v5_credentials(v5_settings.credentials_file) is None:
        raise ConfigError("venues.okx_v5.poller is enabled but no OKX v5 credentials are configured: set "
                          "OKX_API_KEY, OKX_API_SECRET and OKX_API_PASSPHRASE, or an owner-only "
                          "credentials_file")
    if config.bus.url:  # no database here: `okex-recorder store` writes the stores
        prepare_directories(config)
    else:
        prepare_storage(config)
    if credentials is None:
        log.info("no OKEx v1 API credentials configured: the v1 account poller is off "
                 "(see docs/collector.md)")
    else:
        log.info("OKEx v1 poller on with %r", credentials)
    with claim_storage(config):
        result = asyncio.run(record(config, duration=args.duration, credentials=credentials, gc_tuning=True))
    return result.exit_code


def check_duration(duration: float | None, unset: str = "run until SIGINT/SIGTERM") -> None:
    """``--duration S``: None (until stopped) or a finite number of seconds > 0; ConfigError otherwise.

    ``unset``: what the command does without ``--duration`` (the error message says so)."""
    if duration is not None and not 0 < duration < math.inf:
        raise ConfigError(f"--duration must be a finite number of seconds > 0, got {duration:g}"
                          f" (leave it out to {unset})")


async def poll(config: Config, credentials: Credentials | None, *, duration: float | None = None,
               rest_url: str | None = None, signals: bool = True) -> PollerOutcome:
    """Open the storage, run the v1 :class:`Poller` (when ``credentials``) and the OKX v5 poller (when
    ``[venues.okx_v5.poller]`` is enabled) until stopped, flush and close; return why they ended
    (AUTH_FAILED when any poller's credentials were rejected)."""
    writer = await asyncio.to_thread(open_storage, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(duration, stop.set) if duration is not None else None

    def sink(records: Sequence[Record]) -> None:
        writer.write(records)

    async def flush_periodically() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), config.storage.flush_interval)
            writer.flush()

    runs: list[Any] = []
    if credentials is not None:
        poller = Poller(config.poller, credentials, sink, rest_url=rest_url or config.exchange.rest_url,
                        state_url=config.storage.sql_url)
        runs.append(poller.run(stop))
    v5 = await asyncio.to_thread(okx_v5_poller, config, sink)
    if v5 is not None:
        runs.append(v5.run(stop))
    flusher = asyncio.create_task(flush_periodically(), name="poll-flush")
    try:
        outcomes = await asyncio.gather(*runs)
        failed = any(o.value == PollerOutcome.AUTH_FAILED.value for o in outcomes)
        outcome = PollerOutcome.AUTH_FAILED if failed else PollerOutcome.STOPPED
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        await flusher
        writer.flush()
        _say_written(writer)
        writer.close()
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    return outcome


def _say_written(writer: object) -> None:
    """One closing line: rows each store wrote this run, per table (a poll otherwise ends silently)."""
    stats = getattr(writer, "stats", None)
    if not callable(stats):
        return
    parts = []
    for name, store in sorted(stats().items()):
        rows = ", ".join(f"{table} {counts.written}" for table, counts in store.datasets.items()
                         if counts.written)
        parts.append(f"{name}: {rows or 'nothing'}")
    poll_log.info("poll finished: rows written this run: %s", "; ".join(parts))


def poll_command(args: argparse.Namespace) -> int:
    """``okex-recorder poll``: 0 after a clean stop, 3 when the exchange rejected the credentials."""
    config = load_config(args.config)
    check_duration(args.duration)
    setup_logging(config)
    v5_on = okx_v5_poll_settings(config) is not None
    credentials = (load_credentials(config.poller.credentials_file) if v5_on
                   else require_credentials(config.poller.credentials_file))
    if credentials is not None and not config.poller.symbols:
        poll_log.warning("poller.symbols is empty: only balances are polled")
    prepare_storage(config)
    if credentials is not None:
        poll_log.info("polling %s with %r", config.exchange.rest_url, credentials)
    with claim_storage(config, status_file=False):
        outcome = asyncio.run(poll(config, credentials, duration=args.duration))
    return EXIT_AUTH_FAILED if outcome is PollerOutcome.AUTH_FAILED else 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - python -m recorder.app
    from recorder.cli import main as cli_main

    return cli_main(["run", *(argv if argv is not None else sys.argv[1:])])

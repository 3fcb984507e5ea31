"""``okex-recorder poll``: only the signed REST poller (balances and orders) into storage.

Reads the same configuration as ``run`` (``[poller]``, ``[storage]``, ``[exchange]``,
``[log]``), requires API credentials (:mod:`recorder.credentials`), resumes from the
orders already stored, and polls until SIGINT/SIGTERM or ``--duration``; then it
flushes and exits 0. Credentials the exchange rejects end it with exit code 3 after
one clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from recorder.config import Config, load_config
from recorder.credentials import Credentials, require_credentials
from recorder.poller.service import Poller, PollerOutcome
from recorder.records import Record

__all__ = ["add_arguments", "poll", "run"]

log = logging.getLogger("recorder.poller")

EXIT_AUTH_FAILED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``poll [--config F] [--duration S]``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="TOML configuration file (the [poller] section; see config.example.toml)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop (cleanly) after S seconds; default: run until SIGINT/SIGTERM")


async def poll(config: Config, credentials: Credentials, *, duration: float | None = None,
               rest_url: str | None = None, signals: bool = True) -> PollerOutcome:
    """Open the storage, run a :class:`Poller` until stopped, flush and close; return why it ended."""
    from recorder.collector.app import open_storage

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

    poller = Poller(config.poller, credentials, sink, rest_url=rest_url or config.exchange.rest_url,
                    state_url=config.storage.sql_url)
    flusher = asyncio.create_task(flush_periodically(), name="poll-flush")
    try:
        outcome = await poller.run(stop)
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
    log.info("poll finished: rows written this run: %s", "; ".join(parts))


def run(args: argparse.Namespace) -> int:
    """``okex-recorder poll``: 0 after a clean stop, 3 when the exchange rejected the credentials."""
    from recorder.collector.app import check_duration, claim_storage, prepare_storage, setup_logging

    config = load_config(args.config)
    check_duration(args.duration)
    setup_logging(config)
    credentials = require_credentials(config.poller.credentials_file)
    if not config.poller.symbols:
        log.warning("poller.symbols is empty: only balances are polled")
    prepare_storage(config)
    log.info("polling %s with %r", config.exchange.rest_url, credentials)
    with claim_storage(config, status_file=False):
        outcome = asyncio.run(poll(config, credentials, duration=args.duration))
    return EXIT_AUTH_FAILED if outcome is PollerOutcome.AUTH_FAILED else 0

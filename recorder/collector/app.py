"""The running collector: :class:`Recorder` and what it reports (:class:`RunResult`).

:class:`Recorder` holds the collector's parts (docs/collector.md): one :class:`Connection` per
share of ``collector.symbols_per_connection`` symbols, all handing their frames to one
:class:`~recorder.collector.pipeline.Intake` (decoding in the event loop's thread
through the :class:`~recorder.collector.pipeline.FramePipeline`), the writer thread around the
storage writer it is given, the poller, and the status reporter
(one log line and ``status.json`` every ``collector.status_interval`` s).
The composition root (:mod:`recorder.app`: ``okex-recorder run``) opens the storage and
hands it in; this module opens nothing itself.

SIGINT/SIGTERM (handlers installed by :func:`recorder.app.record`): stop receiving, let the
pipeline finish every frame received, flush, close the files, exit 0. A second signal exits
at once (code 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recorder.backoff import BackoffPolicy
from recorder.collector.audit import BookAuditor
from recorder.collector.connection import Connection
from recorder.collector.pipeline import (
    BOOKKEEPING_TABLES,
    Control,
    ControlKind,
    FramePipeline,
    Intake,
    RecordQueue,
    RecordWriter,
    WriterThread,
)
from recorder.collector.status import StatusReporter, feed_events_text
from recorder.config import Config, mask_url, venue_settings
from recorder.credentials import Credentials
from recorder.poller.ratelimit import process_limiter
from recorder.records import Record, utc_now
from recorder.venue import BookAuditSource

if TYPE_CHECKING:
    from recorder.collector.metrics import MetricsServer

__all__ = ["BOOKKEEPING_TABLES", "HANDOVER_INTERVAL", "Recorder", "RunResult", "queue_max_age",
           "unreachable_message"]

log = logging.getLogger("recorder.collector")

HANDOVER_INTERVAL = 0.05  # s: records produced are handed to the writer at least this often

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
        self.venues = venue_settings(config)  # [(venue, its settings)], every enabled venue
        self.pipeline = FramePipeline()
        for venue, settings in self.venues:
            self.pipeline.add(venue, settings)
        self.intake = Intake(self.pipeline, self.records, soft_rows=config.storage.batch_size)
        self.connections = [Connection(session, self.intake) for session in self.pipeline.sessions.values()]
        self.writer_thread = WriterThread(writer, self.records, batch_size=config.storage.batch_size,
                                          flush_interval=config.storage.flush_interval)
        self.credentials = credentials
        self.rest_url = rest_url or config.exchange.rest_url
        self.auditors: list[BookAuditor] = []
        if c.book_audit_interval > 0:
            policy = BackoffPolicy(initial=c.reconnect_initial, cap=max(c.reconnect_cap, c.reconnect_initial))
            for venue, settings in self.venues:
                if not isinstance(venue, BookAuditSource):
                    continue  # a venue without a REST book to audit against
                url = venue.rest_url(settings)
                if rest_url and url == config.exchange.rest_url:  # the [exchange] venue, its URL overridden
                    url = rest_url
                self.auditors.append(BookAuditor(
                    self.pipeline, url, source=venue, venue=venue.name, interval=c.book_audit_interval,
                    slack=c.book_audit_slack_ms / 1000, depth=c.snapshot_depth, policy=policy,
                    limiter=process_limiter(config.poller), on_resubscribe=self._wake_connections))
        self.auditor = self.auditors[0] if self.auditors else None
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

    def _what(self) -> str:
        """``okex_v1: 2 symbols from wss://…`` for every venue."""
        parts = []
        for venue, settings in self.venues:
            urls = sorted({c.url for c in self.connections if c.session.plan.venue == venue.name})
            n = len(venue.symbols(settings))
            parts.append(f"{venue.name}: {n} symbol{'' if n == 1 else 's'} from {', '.join(urls)}")
        return "; ".join(parts)

    def _where(self) -> str:
        """``into sqlite:///… and data/parquet``; on the bus, ``publishing to NATS nats://…, stream OKEX
        (the bus writers, `okex-recorder store`, write the stores)``: nothing is written here."""
        bus = self.config.bus
        if bus.url:
            url = re.sub(r"://[^@/]*@", "://***@", bus.url)  # a user, password or token: never logged
            return (f"publishing to NATS {url}, stream {bus.stream} (the bus writers, "
                    "`okex-recorder store`, write the stores)")
        return f"into {mask_url(self.config.storage.sql_url)} and {self.config.storage.parquet_root}"

    def _wake_connections(self) -> None:
        """A session may have a request to send (after a book audit): let the connections look."""
        for conn in self.connections:
            conn.wake()

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
        audit_tasks = [asyncio.create_task(auditor.run(stop), name=f"book-audit-{auditor.venue}")
                       for auditor in self.auditors]
        log.info("recording %s over %d connection(s) %s", self._what(), len(self.connections), self._where())
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
            self._mark_stop()
            log.info("stopping: receiving stopped, flushing what was received")
            await asyncio.gather(*tasks, return_exceptions=True)
            if poller_task is not None:
                await asyncio.gather(poller_task, return_exceptions=True)
            if audit_tasks:
                await asyncio.gather(*audit_tasks, return_exceptions=True)
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
            log.error(unreachable_message(conns[0].url, conns[0].counters.last_error,
                                          self.config.collector.reconnect_cap))

    def _mark_stop(self) -> None:
        """The stop begins: count the spans open now (the stop writes them closed)."""
        self.intake.handover()  # the spans opened so far are counted
        outages = 0
        stats_fn = getattr(self.writer_thread.writer, "stats", None)
        if callable(stats_fn):
            with contextlib.suppress(Exception):
                outages = sum(1 for st in stats_fn().values() if getattr(st, "outage_since", None))
        self.pipeline.feed_events.mark_stop(elsewhere=outages)

    def recorded_rows(self) -> dict[str, int]:
        """Rows of recorded data (not feed events or quarantine) this run handed to the storage writer
        and flushed, per table (stored, or kept by the writer until its store takes them)."""
        return {t: n for t, n in sorted(self.writer_thread.counters.rows_written.items())
                if n and t not in BOOKKEEPING_TABLES}

    def _summarise(self, final: dict[str, Any]) -> bool:
        """Log what this run recorded (one line, the figures ``okex-recorder status`` shows); return
        False when it recorded nothing."""
        elapsed = final.get("elapsed_seconds", 0.0)
        if self.recorded_rows():
            rows = final["rows"]
            written = {t: n for t, n in rows["written"].items() if n and t not in BOOKKEEPING_TABLES}
            quarantined = rows.get("quarantined") or {}
            behind = {t: n - quarantined.get(t, 0) - written.get(t, 0) for t, n in rows["produced"].items()
                      if t not in BOOKKEEPING_TABLES}
            behind = {t: n for t, n in sorted(behind.items()) if n > 0}
            line = (f"run finished after {elapsed:.0f} s: {final['frames']['received']} frames received; "
                    f"rows written this run (by every store): "
                    f"{', '.join(f'{t} {n}' for t, n in written.items()) or 'none'}")
            if behind:
                waiting = ", ".join(f"{t} {n}" for t, n in behind.items())
                line += (f"; not yet written by every store: {waiting} (pending or spilled, written when "
                         "the store is back: see `okex-recorder status`)")
            events = feed_events_text(final)
            if events is not None:
                line += f"; feed events: {events}"
            log.info("%s", line)
            return True
        conns = self.connections
        attempts = sum(c.counters.connects + c.counters.reconnects for c in conns)
        if conns and all(c.counters.connects == 0 for c in conns):
            last = conns[0].counters.last_error or "no attempt finished"
            why = (f"no connection to {conns[0].url} ever succeeded "
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

"""Recording status: the periodic status line and ``status.json``, and ``okex-recorder status``.

While recording, :class:`StatusReporter` logs one line every ``collector.status_interval``
seconds (rate, queue depths, lag, reconnects, open gaps) and replaces
``collector.status_file`` atomically with the full accounting (docs/collector.md
"Status"). ``okex-recorder status`` reads that file, for a running or a finished
recording, and adds the row counts found in the SQL database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recorder.config import Config, load_config, mask_url
from recorder.errors import ConfigError, StorageError
from recorder.records import utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from recorder.collector.connection import Connection
    from recorder.collector.pipeline import FramePipeline, Intake, RecordQueue, WriterThread

__all__ = ["RecorderView", "StatusReporter", "add_arguments", "check", "feed_events_text",
           "quarantine_counts", "read_status", "row_counts", "rows_table", "run"]

log = logging.getLogger("recorder.collector")


class RecorderView(Protocol):
    """What the status reporter and the metrics endpoint read of a running collector.

    :class:`~recorder.collector.app.Recorder` provides it; naming only this, the status
    module does not import the collector's app module (which imports it), so the two
    form no import cycle.
    """

    @property
    def config(self) -> Config: ...
    @property
    def pipeline(self) -> FramePipeline: ...
    @property
    def intake(self) -> Intake: ...
    @property
    def records(self) -> RecordQueue: ...
    @property
    def writer_thread(self) -> WriterThread: ...
    @property
    def connections(self) -> Sequence[Connection]: ...
    @property
    def started(self) -> datetime: ...
    @property
    def poller(self) -> Any: ...


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _venues(connections: Sequence[Connection]) -> dict[str, dict[str, list[str]]]:
    """Per venue recorded, its WebSocket URLs and symbols (from the connections' plans)."""
    venues: dict[str, dict[str, list[str]]] = {}
    for conn in connections:
        plan = conn.session.plan
        v = venues.setdefault(plan.venue, {"urls": [], "symbols": []})
        if conn.url not in v["urls"]:
            v["urls"].append(conn.url)
        v["symbols"].extend(s for s in plan.symbols if s not in v["symbols"])
    return venues


def _symbol_count(cfg: dict[str, Any]) -> int:
    """Symbols recorded, over every venue (a status file without ``venues``: OKEx v1's)."""
    venues = cfg.get("venues")
    if isinstance(venues, dict):
        return sum(len(v.get("symbols") or []) for v in venues.values())
    return len(cfg.get("symbols") or [])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _source(cfg: dict[str, Any]) -> str:
    """``okex_v1 ws://… (5 symbols); okx_v5 ws://…, ws://… (3 symbols); 3 connections``."""
    venues = cfg.get("venues")
    if isinstance(venues, dict) and venues:
        parts = [f"{name} {', '.join(v.get('urls') or [])} ({_plural(len(v.get('symbols') or []), 'symbol')})"
                 for name, v in venues.items()]
        return "; ".join(parts) + f"; {_plural(int(cfg.get('connections') or 0), 'connection')}"
    return (f"{cfg.get('ws_url')} ({_plural(len(cfg.get('symbols') or []), 'symbol')}, "
            f"{_plural(int(cfg.get('connections') or 0), 'connection')})")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StatusReporter:
    """Builds the status of a :class:`~recorder.collector.app.Recorder`, logs it and writes it."""

    def __init__(self, recorder: RecorderView) -> None:
        self.recorder = recorder
        self.path = recorder.config.collector.status_file
        self._started_mono = time.monotonic()
        self._last_frames = 0
        self._last_mono = self._started_mono

    def snapshot(self, state: str = "running") -> dict[str, Any]:
        """The whole status as a JSON-able dict."""
        r = self.recorder
        cfg = r.config
        p = r.pipeline.counters
        w = r.writer_thread.counters
        now_mono = time.monotonic()
        conns = []
        received = pongs = dropped = reconnects = 0
        for conn in r.connections:
            c = conn.counters
            received += c.frames
            pongs += c.pongs
            dropped += c.dropped
            reconnects += c.reconnects
            conns.append({
                # subscriptions: one per channel of one instrument, for every venue; channels: the
                # venue's channel names (v1's name the symbol, v5's do not: 20 for 5 x 4, 3 for 3 x 3)
                "name": conn.name, "state": conn.state.value,
                "subscriptions": conn.session.plan.subscriptions, "channels": len(conn.channels),
                "frames": c.frames, "bytes": c.bytes, "pongs": c.pongs, "dropped": c.dropped,
                "connects": c.connects, "reconnects": c.reconnects, "last_data": _iso(conn.last_data),
                "last_error": c.last_error,
            })
        elapsed = max(now_mono - self._started_mono, 1e-9)
        interval = max(now_mono - self._last_mono, 1e-9)
        rate_now = (received - self._last_frames) / interval
        self._last_frames, self._last_mono = received, now_mono
        latencies = list(w.latencies)
        storage_stats: Any = None
        writer = r.writer_thread.writer
        stats_fn = getattr(writer, "stats", None)
        if callable(stats_fn):
            with contextlib.suppress(Exception):
                storage_stats = {name: _plain(st) for name, st in stats_fn().items()}
        rows = _rows(dict(p.rows_out), dict(w.rows_written), writer, storage_stats)
        quarantine = quarantine_counts(dict(p.quarantined), writer)
        poller = r.poller
        stores = _stores(storage_stats)
        tally = r.pipeline.feed_events
        spans = dict(tally.spans)
        outages = sum(int(st.get("outages") or 0) for st in stores.values())  # written by the storage writer
        if outages:
            spans["store_outage"] = spans.get("store_outage", 0) + outages
        return {
            "state": state,
            "pid": os.getpid(),
            "started_at": r.started.isoformat(),
            "updated_at": utc_now().isoformat(),
            "elapsed_seconds": round(elapsed, 3),
            "config": {
                # ws_url / symbols: OKEx v1's settings (kept for older readers); venues: what is recorded
                "ws_url": cfg.exchange.ws_url, "symbols": list(cfg.collector.symbols),
                "venues": _venues(r.connections),
                "sql_url": mask_url(cfg.storage.sql_url), "parquet_root": str(cfg.storage.parquet_root),
                "connections": len(r.connections),
                "status_interval": cfg.collector.status_interval,
            },
            "frames": {
                "received": received, "pongs": pongs, "dropped_backpressure": dropped,
                "decoded": p.frames - p.frames_malformed, "malformed": p.frames_malformed,
                "queued": r.intake.pending_frames,  # decoded, records not yet handed to the writer
            },
            "rates": {"frames_per_second": round(rate_now, 1),
                      "frames_per_second_avg": round(received / elapsed, 1)},
            "queues": {"frames": r.intake.pending_frames, "frames_max": r.intake.handover_frames,
                       "writer_rows": r.records.rows, "writer_rows_max": r.records.max_rows,
                       "writer_age_seconds": round(r.records.age(), 3),
                       "writer_age_max_seconds": r.records.max_age},
            # receive -> durable, over batches of recorded data; None before any (feed events alone are
            # rows about the recording, not data arriving)
            "lag_seconds": ({"last": round(w.lag_last, 4), "max": round(w.lag_max, 4),
                             "p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)}
                            if w.lag_batches else {"last": None, "max": None, "p50": None, "p99": None}),
            "reconnects": reconnects,
            "connections": conns,
            "channels": r.pipeline.accounting(),
            "crossed_books": p.crossed_books,
            # Instrument records not written: equal to the last state stored or written of their instrument
            "instruments_unchanged": r.pipeline.instruments_unchanged,
            "error_acks": p.error_acks,
            "subscriptions_refused": r.pipeline.refused_subscriptions(),  # channel -> refusals, still open
            "books": {"not_whole": p.not_whole_books, "audits": dict(sorted(p.audits.items())),
                      "audit_interval": cfg.collector.book_audit_interval},
            "rows": rows,
            "quarantine": quarantine,
            "storage": {"flushes": w.flushes, "errors": w.errors, "last_error": w.last_error,
                        "stores": stores, "writer": storage_stats},
            # events, not rows: a span is two rows (open, closed) in Parquet and one in SQL
            "feed_events": {"spans": dict(sorted(spans.items())),
                            "instants": dict(sorted(tally.instants.items())),
                            "open_at_stop": tally.open_at_stop},
            "open_gaps": [
                {"kind": g.kind.value, "since": g.ts_start.isoformat(), "connection": g.connection,
                 "symbols": list(g.symbols), "channel": g.channel}
                for g in r.pipeline.open_spans()
            ] + [  # a store outage is a gap of that store's data (its store_outage span is open)
                {"kind": "store_outage", "since": st["outage_since"], "connection": name, "symbols": [],
                 "channel": None}
                for name, st in stores.items() if st.get("outage_since")
            ],
            "poller": None if poller is None else {
                "outcome": getattr(getattr(poller, "outcome", None), "value", None),
                "balance_polls": getattr(poller, "balance_polls", None),
                "order_rounds": getattr(poller, "rounds", None),
            },
        }

    def write(self, state: str = "running") -> dict[str, Any]:
        """Build the status and replace the status file with it atomically; return it."""
        status = self.snapshot(state)
        try:
            write_json_atomically(self.path, status)
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self.path, exc.strerror or exc)
        return status

    def log_line(self, s: dict[str, Any]) -> None:
        """The one-line status: rate, queue depths, lag, reconnects, rows, quarantine, stores, open gaps."""
        rows = sum(s["rows"]["written"].values())
        q = s.get("quarantine") or {}
        reasons = ", ".join(f"{n} x {k}" for k, n in list(q.get("by_reason", {}).items())[:3])
        stores = " ".join(f"{name} {'ok' if st['healthy'] else 'DOWN'}"
                          for name, st in (s["storage"].get("stores") or {}).items())
        lag = s["lag_seconds"]
        log.info(
            "status: %s %.0f frames/s (avg %.0f), %d received, %d dropped, %d malformed, "
            "queue %d frames + %d rows, %s, %s, %d rows written, "
            "%d quarantined%s, stores: %s, %d open gaps",
            s["state"], s["rates"]["frames_per_second"], s["rates"]["frames_per_second_avg"],
            s["frames"]["received"], s["frames"]["dropped_backpressure"], s["frames"]["malformed"],
            s["queues"]["frames"], s["queues"]["writer_rows"],
            f"lag {lag['last']:.3f} s (max {lag['max']:.3f})" if lag["last"] is not None else
            f"lag none: {_no_data(s)}",
            _reconnects(s.get("connections") or [], s["reconnects"]), rows,
            q.get("total", 0),
            f" ({reasons})" if reasons else "", stores or "-", len(s["open_gaps"]),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``status_interval`` s until ``stop``: log the line and write the file."""
        interval = self.recorder.config.collector.status_interval
        self.write("running")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                break
            self.log_line(self.write("running"))
        self.write("stopping")


def quarantine_counts(feed: dict[str, int], writer: Any) -> dict[str, Any]:
    """The quarantine rows this run made, every one counted once: what the venue sessions set aside
    (``feed``: reason head -> rows; a malformed frame, a v1 object, one item of a v5 push) and what the
    storage writer's screen or a store refused (``writer.quarantine_stats()``).

    Returns ``total`` (= the run's rows in the quarantine table), ``by_reason`` (reason kind -> rows,
    the most first: the head of a session's reason, the writer's problem kind), ``by_source``
    (``feed`` / ``storage`` -> rows) and ``by_dataset`` (the writer's: records of a dataset no store
    could hold, the ``quarantined`` of the row accounting; the feed's rows never became records).
    """
    from collections import Counter

    stored: dict[str, Any] = {"total": 0, "by_dataset": {}, "by_reason": {}}
    q_fn = getattr(writer, "quarantine_stats", None)
    if callable(q_fn):
        with contextlib.suppress(Exception):
            stored = dict(q_fn())
    by_reason: Counter[str] = Counter(feed)
    by_reason.update(stored.get("by_reason") or {})
    from_feed, from_storage = sum(feed.values()), int(stored.get("total") or 0)
    return {"total": from_feed + from_storage, "by_reason": dict(by_reason.most_common()),
            "by_source": {"feed": from_feed, "storage": from_storage},
            "by_dataset": dict(stored.get("by_dataset") or {})}


def _rows(produced: dict[str, int], handed: dict[str, int], writer: Any,
          storage_stats: dict[str, Any] | None) -> dict[str, Any]:
    """The row accounting (docs/operations.md "Accounting").

    ``produced``: rows made by the pipeline, the poller and the storage writer itself
    (quarantine rows, store_outage spans); ``handed_to_writer``: given to the storage writer;
    ``written_by_store``: what each store confirmed durable; ``written``: what every store
    confirmed (the least of them); ``quarantined``: records set aside instead of stored.
    After a clean stop, per dataset: produced = written_by_store[s] + quarantined, each s.
    """
    made = getattr(writer, "made", None)
    if isinstance(made, dict):
        for name, n in made.items():
            if n:
                produced[name] = produced.get(name, 0) + n
    by_store: dict[str, dict[str, int]] = {}
    if storage_stats:
        for name, st in storage_stats.items():
            datasets = st.get("datasets", {})
            by_store[name] = {ds: int(c["written"]) for ds, c in datasets.items() if c["written"]}
    if by_store:
        names = set().union(*by_store.values())
        written = {ds: min(counts.get(ds, 0) for counts in by_store.values()) for ds in names}
        written = {ds: n for ds, n in written.items() if n}
    else:  # a writer without per-store accounting (tests): what it was handed
        written = dict(handed)
    quarantined: dict[str, int] = {}
    q_fn = getattr(writer, "quarantine_stats", None)
    if callable(q_fn):
        with contextlib.suppress(Exception):
            quarantined = dict(q_fn()["by_dataset"])
    return {"produced": dict(sorted(produced.items())), "handed_to_writer": dict(sorted(handed.items())),
            "written": dict(sorted(written.items())), "written_by_store": by_store,
            "quarantined": quarantined}


def _stores(storage_stats: dict[str, Any] | None) -> dict[str, Any]:
    """Per store: healthy, last error, open outage start, rows refused (isolated and quarantined)."""
    out: dict[str, Any] = {}
    for name, st in (storage_stats or {}).items():
        out[name] = {"healthy": st.get("healthy"), "last_error": st.get("last_error"),
                     "outage_since": st.get("outage_since"), "outages": st.get("outages", 0),
                     "refused": sum(int(c.get("refused", 0)) for c in st.get("datasets", {}).values()),
                     "pending": sum(int(c.get("pending", 0)) for c in st.get("datasets", {}).values()),
                     "spilled": sum(int(c.get("spilled", 0)) for c in st.get("datasets", {}).values())}
    return out


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), "utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    """The status file's content; :class:`ConfigError` when missing or unreadable."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no status file at {path}: has `okex-recorder run` been started here?") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the status file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the status file {path} is not a status object")
    return data


def row_counts(sql_url: str) -> dict[str, int]:
    """Rows per table in the SQL database (tables of :mod:`recorder.storage.schema`)."""
    import sqlalchemy as sa

    from recorder.storage import schema

    engine = sa.create_engine(sql_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in schema.metadata.sorted_tables if t.name in existing
            }
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot count rows in {mask_url(sql_url)}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Exit codes of ``status --check`` (the Nagios plugin convention; docs/operations.md "Monitoring").
CHECK_OK, CHECK_DEGRADED, CHECK_DOWN, CHECK_UNKNOWN = 0, 1, 2, 3
DEFAULT_MAX_LAG = 10.0  # s: receive -> durable lag (or writer queue age) above this is degraded
STALE_INTERVALS = 3  # a status file older than this many status intervals: the recorder is not running

# Why the SQL count of a table may be lower than the rows written, by design (the table's key, schema.py).
BY_DESIGN: dict[str, str] = {
    "klines": "by design: SQL keeps the latest state of each candle (symbol, period, open time); "
              "Parquet keeps every update",
    "orders": "by design: SQL keeps the latest state of each order; Parquet keeps every state seen, "
              "order_status_changes each change",
    "order_status_changes": "by design: SQL keeps one row per order and status; Parquet every one seen",
    "feed_events": "by design: a span is written when it opens and again when it closes; SQL keeps one "
                   "row per event (see 'feed events'), Parquet both",
    "deals": "by design: SQL keeps one row per trade id (a deal received again is stored once); "
             "Parquet keeps every one received",
}
ON_THE_BUS = ("in SQL: what the bus writers (okex-recorder store) stored from every collector and run on "
              "the stream, one row per key")
ON_THE_BUS_QUARANTINE = ("in SQL: every collector's quarantine rows the bus writers stored, and the messages "
                         "and rows they could not store themselves (connection 'bus'; their log counts them)")
ON_THE_BUS_NO_SQL = (
    "this collector published to NATS JetStream and has no SQL database: its rows are in the database of "
    "the bus writers (`okex-recorder store --sql-url ...`); to count them, give status that database: "
    "--config with it as storage.sql_url (or OKEX_SQL_URL set to it, with --config), and --status-file "
    "naming this status file if that configuration names another")
LEGEND = ("produced = records this run made from what it received",
          "written  = rows each store confirmed written, this run",
          "quarantined = records no store could hold (reason in the quarantine table); "
          "produced = written + quarantined",
          "in SQL   = rows in the database now: every run into it, one row per key")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``status [--config F] [--status-file P] [--json] [--no-sql] [--check --max-lag S --stale-after S]``."""
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="the configuration the recording uses")
    parser.add_argument("--status-file", type=Path, default=None,
                        help="status file to read (default: collector.status_file of the configuration)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--no-sql", action="store_true", help="do not count rows in the SQL database")
    parser.add_argument("--check", action="store_true",
                        help="for monitors: print one line and exit 0 healthy, 1 degraded (open gap, store "
                             "down, lag over --max-lag, poller stopped, nothing received), 2 not running "
                             "(finished, killed, status file missing or stale), 3 unknown (unreadable)")
    parser.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG, metavar="S",
                        help=f"--check: lag above S seconds is degraded (default {DEFAULT_MAX_LAG:g})")
    parser.add_argument("--stale-after", type=float, default=None, metavar="S",
                        help=f"--check: a status file not updated for S seconds means not running "
                             f"(default {STALE_INTERVALS} x the recorder's status_interval)")


def _age(status: dict[str, Any], now: float) -> float | None:
    from datetime import datetime

    try:
        return now - datetime.fromisoformat(str(status["updated_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def check(status: dict[str, Any], *, now: float | None = None, max_lag: float = DEFAULT_MAX_LAG,
          stale_after: float | None = None, default_interval: float = 10.0) -> tuple[int, str]:
    """The monitor's verdict on a status dict: (exit code, one line saying why).

    Codes: :data:`CHECK_OK` 0; :data:`CHECK_DEGRADED` 1 (an open gap, a store not healthy,
    lag or writer-queue age above ``max_lag`` s, the poller stopped, nothing received
    after one status interval, or stopping); :data:`CHECK_DOWN` 2 (state finished,
    process gone, or the file not updated for ``stale_after`` s, default
    :data:`STALE_INTERVALS` x the recorder's status interval). ``now``: epoch seconds.
    """
    now = time.time() if now is None else now
    cfg = status.get("config") or {}
    interval = cfg.get("status_interval")
    interval = interval if isinstance(interval, int | float) and interval > 0 else default_interval
    stale = stale_after if stale_after is not None else STALE_INTERVALS * interval
    age = _age(status, now)
    state = status.get("state", "?")
    pid = status.get("pid")
    aged = "?" if age is None else f"{age:.0f} s"
    if state == "finished":
        return CHECK_DOWN, f"CRITICAL: not running: the recording finished at {status.get('updated_at')}"
    if not _alive(pid):
        return CHECK_DOWN, (f"CRITICAL: not running: process {pid} is gone (killed?); status {state}, "
                            f"last updated {aged} ago")
    if age is None or age > stale:
        return CHECK_DOWN, (f"CRITICAL: stale: the status file was last updated {aged} ago "
                            f"(limit {stale:g} s, the status interval is {interval:g} s): "
                            f"process {pid} is hung")
    problems: list[str] = []
    if state != "running":
        problems.append(f"state {state}")
    gaps = status.get("open_gaps") or []
    if gaps:
        g = gaps[0]
        first = f"{g.get('kind')} since {g.get('since')} on {g.get('connection')}"
        symbols = g.get("symbols") or []
        if symbols:
            first += f" ({','.join(symbols[:5])}{',...' if len(symbols) > 5 else ''})"
        problems.append(f"{len(gaps)} open gap(s), first: {first}")
    writer = ((status.get("storage") or {}).get("writer")) or {}
    if isinstance(writer, dict):
        for name, store in sorted(writer.items()):
            if isinstance(store, dict) and store.get("healthy") is False:
                problems.append(f"{name} store down: {store.get('last_error') or 'unhealthy'}")
    lag = status.get("lag_seconds") or {}
    queues = status.get("queues") or {}
    current_lag = max(float(lag.get("last") or 0.0), float(queues.get("writer_age_seconds") or 0.0))
    if current_lag > max_lag:
        problems.append(f"lag {current_lag:.1f} s > {max_lag:g} s")
    poller = status.get("poller") or {}
    if poller.get("outcome") not in (None, "running"):
        problems.append(f"poller stopped ({poller.get('outcome')})")
    frames = status.get("frames") or {}
    if not frames.get("received") and float(status.get("elapsed_seconds") or 0) >= interval:
        problems.append("nothing received from the exchange yet")
    if problems:
        return CHECK_DEGRADED, "DEGRADED: " + "; ".join(problems)
    rates = status.get("rates") or {}
    lag_text = f"lag {current_lag:.2f} s" if lag.get("last") is not None else "no market data recorded yet"
    return CHECK_OK, (f"OK: running, {_plural(_symbol_count(cfg), 'symbol')}, "
                      f"{rates.get('frames_per_second')} frames/s, {lag_text}, no open gap, "
                      f"stores healthy; status updated {aged} ago")


def _written_by_store(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """store -> table -> rows confirmed written, from ``storage.writer`` (empty when not reported)."""
    writer = ((status.get("storage") or {}).get("writer")) or {}
    out: dict[str, dict[str, int]] = {}
    if isinstance(writer, dict):
        for name, store in writer.items():
            datasets = store.get("datasets") if isinstance(store, dict) else None
            if isinstance(datasets, dict):
                out[name] = {t: int(d.get("written", 0)) for t, d in datasets.items() if isinstance(d, dict)}
    return out


def rows_table(status: dict[str, Any], counts: dict[str, int] | None,
               sql_added: dict[str, int] | None = None) -> list[str]:
    """The per-table rows report: produced / written per store / (added to SQL) / in SQL, and why
    figures differ. ``counts``: rows per table in SQL now; ``sql_added``: rows SQL gained this run."""
    rows = status.get("rows", {})
    produced: dict[str, int] = rows.get("produced", {})
    quarantined: dict[str, int] = rows.get("quarantined", {}) or {}
    by_store = _written_by_store(status)
    on_bus = "bus" in by_store  # a collector publishing to NATS: `okex-recorder store` writes the database
    stores = [s for s in ("sql", "parquet") if s in by_store]
    tables = sorted(set(produced) | set(rows.get("written", {})) | set(counts or {})
                    | {t for st in by_store.values() for t in st})
    head = f"  {'table':22} {'produced':>9}"
    if stores:
        head += "".join(f" {'written ' + ('SQL' if s == 'sql' else 'Parquet'):>15}" for s in stores)
    else:
        head += f" {'written':>9}"
    head += f" {'quarantined':>11}"
    legend = list(LEGEND)
    if sql_added is not None:
        head += f" {'added to SQL':>12}"
        legend.insert(2, "added to SQL = rows the database gained this run")
    if counts is not None:
        head += f" {'in SQL':>9}"
    lines = ["rows:        " + legend[0], *("             " + text for text in legend[1:]), head]
    for t in tables:
        line = f"  {t:22} {produced.get(t, 0):9d}"
        if stores:
            written = [by_store[s].get(t, 0) for s in stores]
            line += "".join(f" {n:15d}" for n in written)
        else:
            written = [int(rows.get("written", {}).get(t, 0))]
            line += f" {written[0]:9d}"
        line += f" {quarantined.get(t, 0):11d}"
        notes = []
        if len(set(written)) > 1 or produced.get(t, 0) - quarantined.get(t, 0) > max(written):
            notes.append("not all written yet (pending or spilled: see the storage section)")
        sql_written = by_store["sql"].get(t, 0) if "sql" in by_store else written[0]
        if sql_added is not None:
            line += f" {sql_added.get(t, 0):12d}"
        if counts is not None:
            in_sql = counts.get(t, 0)
            line += f" {in_sql:9d}"
            design = BY_DESIGN.get(t, "rows with the same key are stored once in SQL")
            if on_bus:
                if in_sql != sql_written:
                    notes.append(ON_THE_BUS_QUARANTINE if t == "quarantine" else ON_THE_BUS)
            elif sql_added is not None:
                gained = sql_added.get(t, 0)
                if gained < sql_written:
                    notes.append(design)
                if in_sql > gained:
                    notes.append(f"{in_sql - gained} from earlier runs")
            elif in_sql < sql_written:
                notes.append(design)
            elif in_sql > sql_written:
                notes.append("the database also holds earlier runs")
        if notes:
            line += "  <- " + "; ".join(notes)
        lines.append(line)
    return lines


def feed_events_text(status: dict[str, Any]) -> str | None:
    """``6 (one SQL row each): 2 spans (2 subscribe_refused; 2 open when the stop began), 4 instants
    (2 subscribe_error, 1 connected, 1 shutdown)``: the feed events of the run, each counted once
    (a span is written open and again closed). None for a status file without them (older)."""
    fe = status.get("feed_events")
    if not isinstance(fe, dict):
        return None
    spans: dict[str, int] = fe.get("spans") or {}
    instants: dict[str, int] = fe.get("instants") or {}
    n_spans, n_instants = sum(spans.values()), sum(instants.values())

    def kinds(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    at_stop = fe.get("open_at_stop")
    still = (f"{at_stop} open when the stop began" if isinstance(at_stop, int)
             else f"{len(status.get('open_gaps') or [])} open now")
    text = f"{n_spans + n_instants} (one SQL row each): {_plural(n_spans, 'span')}"
    if n_spans:
        text += f" ({kinds(spans)}; {still})"
    text += f", {_plural(n_instants, 'instant')}"
    if n_instants:
        text += f" ({kinds(instants)})"
    return text


def describe(status: dict[str, Any], counts: dict[str, int] | None) -> str:
    """A short human-readable report of a status dict (and SQL row counts)."""
    lines = []
    state = status.get("state", "?")
    if state in ("running", "stopping") and not _alive(status.get("pid")):
        state = (f"{state} (but process {status.get('pid')} is gone: killed, or stopped by a second "
                 "signal, before finishing)")
    age = _age(status, time.time())
    lines.append(f"state:       {state}, started {status.get('started_at')}, "
                 f"updated {status.get('updated_at')}" + ("" if age is None else f" ({age:.0f} s ago)"))
    cfg = status.get("config", {})
    lines.append(f"source:      {_source(cfg)}")
    if "bus" in _written_by_store(status):
        lines.append("storage:     published to NATS JetStream; `okex-recorder store` writes SQL and Parquet "
                     "(its log counts the rows it stored and quarantined)")
    else:
        lines.append(f"storage:     {cfg.get('sql_url')} + {cfg.get('parquet_root')}")
    f = status.get("frames", {})
    r = status.get("rates", {})
    lines.append(f"frames:      {f.get('received')} received ({r.get('frames_per_second_avg')}/s avg), "
                 f"{f.get('malformed')} malformed, {f.get('dropped_backpressure')} dropped (backpressure), "
                 f"{f.get('pongs')} pongs")
    lag = status.get("lag_seconds", {})
    lag_text = (f"last {_secs(lag.get('last'))}, max {_secs(lag.get('max'))}, p99 {_secs(lag.get('p99'))}"
                if lag.get("last") is not None else f"none: {_no_data(status)}")
    lines.append(f"lag:         {lag_text}; "
                 f"{_reconnects(status.get('connections') or [], status.get('reconnects') or 0)}")
    for conn in status.get("connections", []):
        subs = (_plural(conn["subscriptions"], "subscription") if isinstance(conn.get("subscriptions"), int)
                else _plural(int(conn.get("channels") or 0), "channel"))  # a status file of an older version
        lines.append(f"  {conn['name']}: {conn['state']}, {subs}, "
                     f"{conn['frames']} frames, "
                     f"{_reconnects([conn], conn['reconnects'])}, last data {conn['last_data'] or 'never'}"
                     + (f", last error: {conn['last_error']}" if conn.get("last_error") else ""))
    gaps = status.get("open_gaps", [])
    lines.append(f"open gaps:   {len(gaps)}")
    for g in gaps[:10]:
        where = g["connection"] + (f" {g['channel']}" if g.get("channel") else "")
        lines.append(f"  {g['kind']} since {g['since']} on {where} {','.join(g['symbols'])}")
    events = feed_events_text(status)
    if events is not None:
        lines.append(f"feed events: {events}")
    lines.extend(_refusals(status))
    lines.extend(rows_table(status, counts))
    stores = status.get("storage", {}).get("stores") or {}
    for name, st in stores.items():
        lines.append(f"store {name}: {'healthy' if st.get('healthy') else 'NOT healthy'}"
                     + (f", out since {st['outage_since']}" if st.get("outage_since") else "")
                     + f", {st.get('outages', 0)} outages, {st.get('pending', 0)} pending, "
                       f"{st.get('spilled', 0)} spilled, {st.get('refused', 0)} refused"
                     + (f", last error: {st['last_error']}" if st.get("last_error") else ""))
    q = status.get("quarantine") or {}
    if q.get("total"):
        source = q.get("by_source")
        split = "" if not isinstance(source, dict) else (
            f": {source.get('feed', 0)} from the feed (frames, messages or items the venue could not "
            f"take), {_plural(int(source.get('storage') or 0), 'record')} no store could hold")
        lines.append(f"quarantined: {q['total']} rows in the quarantine table this run{split}")
        for reason, n in q.get("by_reason", {}).items():
            lines.append(f"  {n} x {reason}")
    rejected = {name: ch["rejected"] for name, ch in status.get("channels", {}).items() if ch.get("rejected")}
    if rejected:
        lines.append("rejected:")
        for name, reasons in rejected.items():
            for reason, n in reasons.items():
                lines.append(f"  {name}: {n} x {reason}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``okex-recorder status``: print the status of a running or finished recording.

    With ``--check``: one line and the exit code of :func:`check` (3 when the
    configuration or the status file cannot be read; a missing status file is 2).
    """
    if args.check:
        return _run_check(args)
    config: Config = load_config(args.config)
    path = args.status_file or config.collector.status_file
    status = read_status(path)
    counts = None
    if not args.no_sql:
        url = _sql_url(args, config, status)
        missing = _missing_sqlite_file(url)
        try:
            recorded = (status.get("config") or {}).get("sql_url")
            if missing is not None and "bus" in _written_by_store(status):
                raise StorageError(ON_THE_BUS_NO_SQL)  # the collector's rows are where the writers put them
            if missing is not None and isinstance(recorded, str) and recorded != mask_url(url):
                raise StorageError(  # e.g. the recorder had OKEX_SQL_URL, this shell has not
                    f"the recording wrote to {recorded}, this configuration names {mask_url(url)}: "
                    "give status the recorder's database (OKEX_SQL_URL or storage.sql_url, as the "
                    "recorder had it)")
            if missing is not None:  # counting would create an empty file here and report 0 rows
                raise StorageError(
                    f"no SQLite file {missing} (from {mask_url(url)}) under {Path.cwd()}: a relative path is "
                    "relative to the recorder's working directory; run status there, or pass --config")
            counts = row_counts(url)
        except StorageError as exc:  # stderr: stdout stays the status alone (valid JSON with --json)
            print(f"(row counts unavailable: {exc})", file=sys.stderr)
    if args.json:
        print(json.dumps({"status": status, "sql_rows": counts}, indent=1, default=str))
    else:
        print(describe(status, counts))
    return 0


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist (None for other databases, or when it does)."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return None if Path(database).exists() else Path(database)


def _sql_url(args: argparse.Namespace, config: Config, status: dict[str, Any]) -> str:
    """The database to count: the configuration's; without ``--config``, the one the status file names
    (unless its password was masked there)."""
    recorded = (status.get("config") or {}).get("sql_url")
    if args.config is None and isinstance(recorded, str) and "***" not in recorded:
        return recorded
    return config.storage.sql_url


def _run_check(args: argparse.Namespace) -> int:
    if args.max_lag <= 0 or (args.stale_after is not None and args.stale_after <= 0):
        print("UNKNOWN: --max-lag and --stale-after must be > 0 seconds")
        return CHECK_UNKNOWN
    try:
        config: Config = load_config(args.config)
    except ConfigError as exc:
        print(f"UNKNOWN: {exc}")
        return CHECK_UNKNOWN
    path = args.status_file or config.collector.status_file
    if not path.exists():
        print(f"CRITICAL: not running: no status file at {path} (has `okex-recorder run` been started "
              "with this configuration?)")
        return CHECK_DOWN
    try:
        status = read_status(path)
    except ConfigError as exc:
        print(f"UNKNOWN: {exc}")
        return CHECK_UNKNOWN
    code, line = check(status, max_lag=args.max_lag, stale_after=args.stale_after,
                       default_interval=config.collector.status_interval)
    print(line)
    return code


def _no_data(status: dict[str, Any]) -> str:
    """Why there is no lag: ``no market data recorded (last data never)``; the connections' latest
    frame when some arrived (acks, refusals: no data to record)."""
    seen = [c["last_data"] for c in status.get("connections") or [] if c.get("last_data")]
    return "no market data recorded" + (f" (last frame {max(seen)})" if seen else " (last data never)")


def _secs(value: object) -> str:
    return f"{value:.3f} s" if isinstance(value, int | float) else "-"


def _reconnects(conns: list[dict[str, Any]], reconnects: int) -> str:
    """``N reconnects``; ``never connected (N failed attempts)`` when no connection ever opened:
    a count of reconnects would claim there had been a connection."""
    if conns and all(c.get("connects", 1) == 0 for c in conns):
        return f"never connected ({reconnects} failed attempts)"
    return f"{reconnects} reconnects"


def _refusals(status: dict[str, Any]) -> list[str]:
    """The channels the exchange refuses now (they get no data; retried with the backoff) and the
    error replies since start: one channel refused for an hour is one channel, not its N replies."""
    acks = int(status.get("error_acks") or 0)
    now: dict[str, int] = status.get("subscriptions_refused") or {}
    if not acks and not now:
        return []
    replies = f"{acks} subscription error repl{'y' if acks == 1 else 'ies'} since start"
    if not now:
        if status.get("state") == "running":
            return [f"refused:     no channel now ({replies}; those channels deliver since their retry)"]
        return [f"refused:     {replies} (see the log, and feed_events rows of kind 'subscribe_refused': a "
                "span still open at the stop is a channel that never delivered)"]
    names = ", ".join(list(now)[:5]) + (f" and {len(now) - 5} more" if len(now) > 5 else "")
    return [f"refused:     {len(now)} channel{'' if len(now) == 1 else 's'} refused by the exchange, getting "
            f"no data and retried with the backoff: {names} ({replies}; see the log, and feed_events "
            "rows of kind 'subscribe_error')"]

"""The opt-in Prometheus endpoint of a running recorder (``[metrics]``, docs/operations.md "Metrics").

:func:`serve_metrics` starts prometheus-client's HTTP server (its own daemon thread) on
``host:port`` (loopback by default) with a private registry holding one
:class:`RecorderCollector`. Nothing is counted twice: at every scrape the collector reads
the same accounting the status line and ``status.json`` are built from (the pipeline's
per-channel accounting, the connections' counters, the writer thread's counters, the
storage writer's ``stats()``, the open feed-event spans); the hot path is untouched.

Metric families (``okex_recorder_`` prefix; counters end in ``_total``, units in the name):

=============================================  =========  ==================================
name                                           type       labels
=============================================  =========  ==================================
``frames_received_total``                      counter    ``channel``: data messages received
``frames_stored_total``                        counter    ``channel``: accepted, handed to storage
``frames_rejected_total``                      counter    ``channel``, ``reason``: not stored
``frames_malformed_total``                     counter    whole frames that could not be decoded
``quarantined_rows_total``                     counter    ``reason``: rows of the quarantine dataset
``connection_frames_total``                    counter    ``connection``: WebSocket frames
``connection_reconnects_total``                counter    ``connection``
``connection_up``                              gauge      ``connection``: 1 while receiving
``open_gaps``                                  gauge      ``kind``: feed-event spans open now
``store_healthy``                              gauge      ``store`` (``sql``, ``parquet``): 1/0
``rows_written_total``                         counter    ``store``, ``dataset``
``rows_pending``                               gauge      ``store``, ``dataset``: in memory
``rows_spilled``                               gauge      ``store``, ``dataset``: in the spill journal
``lag_seconds``                                gauge      receipt of a batch's oldest frame -> flushed
``lag_max_seconds``                            gauge      the largest lag since start
``writer_queue_rows``                          gauge      rows waiting for the writer thread
``writer_queue_max_rows``                      gauge      its bound
``storage_errors_total``                       counter    write errors reported by storage
=============================================  =========  ==================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recorder.collector.status import quarantine_counts
from recorder.errors import ConfigError

if TYPE_CHECKING:
    from recorder.collector.status import RecorderView

__all__ = ["PREFIX", "MetricsServer", "RecorderCollector", "serve_metrics"]

log = logging.getLogger("recorder.collector")

PREFIX = "okex_recorder_"


class RecorderCollector(Collector):
    """Builds every metric family from a :class:`~recorder.collector.app.Recorder` at scrape time.

    Runs in the HTTP server's thread; it only reads (snapshots of dicts are taken with
    ``list``/``dict``, atomic under the interpreter lock, as the status reporter does).
    """

    def __init__(self, recorder: RecorderView) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        r = self.recorder
        received = CounterMetricFamily(f"{PREFIX}frames_received", "Data messages received per channel "
                                       "(stored + rejected), as the status accounting counts them",
                                       labels=["channel"])
        stored = CounterMetricFamily(f"{PREFIX}frames_stored", "Data messages accepted per channel and "
                                     "handed to storage", labels=["channel"])
        rejected = CounterMetricFamily(f"{PREFIX}frames_rejected", "Data messages rejected (quarantined) "
                                       "per channel and reason", labels=["channel", "reason"])
        for channel, entry in r.pipeline.accounting().items():
            received.add_metric([channel], entry["received"])
            stored.add_metric([channel], entry["accepted"])
            for reason, n in entry["rejected"].items():
                rejected.add_metric([channel, reason], n)
        yield from (received, stored, rejected)
        counters = r.pipeline.counters
        yield CounterMetricFamily(f"{PREFIX}frames_malformed", "Whole frames that could not be decoded "
                                  "(quarantined)", value=counters.frames_malformed)
        q = CounterMetricFamily(f"{PREFIX}quarantined_rows", "Rows put in the quarantine dataset, by reason "
                                "(the text before its first colon)", labels=["reason"])
        heads: dict[str, int] = {}  # the sessions' rows and the storage writer's, each counted once
        made = quarantine_counts(dict(counters.quarantined), r.writer_thread.writer)
        for reason, n in made["by_reason"].items():
            head = reason.split(":", 1)[0]
            heads[head] = heads.get(head, 0) + n
        for reason, n in sorted(heads.items()):
            q.add_metric([reason], n)
        yield q

        frames = CounterMetricFamily(f"{PREFIX}connection_frames", "WebSocket frames received",
                                     labels=["connection"])
        reconnects = CounterMetricFamily(f"{PREFIX}connection_reconnects", "Reconnects",
                                         labels=["connection"])
        up = GaugeMetricFamily(f"{PREFIX}connection_up", "1 while the connection is receiving",
                               labels=["connection"])
        for conn in r.connections:
            frames.add_metric([conn.name], conn.counters.frames)
            reconnects.add_metric([conn.name], conn.counters.reconnects)
            up.add_metric([conn.name], 1.0 if conn.state.value == "receiving" else 0.0)
        yield from (frames, reconnects, up)

        gaps = GaugeMetricFamily(f"{PREFIX}open_gaps", "Feed-event spans (gaps) open now", labels=["kind"])
        by_kind: dict[str, int] = {}
        for span in r.pipeline.open_spans():
            by_kind[span.kind.value] = by_kind.get(span.kind.value, 0) + 1
        for kind, n in sorted(by_kind.items()):
            gaps.add_metric([kind], n)
        yield gaps

        yield from self._storage()

        w = r.writer_thread.counters
        yield GaugeMetricFamily(f"{PREFIX}lag_seconds", "Seconds from receipt of the last flushed batch's "
                                "oldest frame to its flush", value=w.lag_last)
        yield GaugeMetricFamily(f"{PREFIX}lag_max_seconds", "Largest lag since start (s)", value=w.lag_max)
        yield GaugeMetricFamily(f"{PREFIX}writer_queue_rows", "Rows waiting for the writer thread",
                                value=r.records.rows)
        yield GaugeMetricFamily(f"{PREFIX}writer_queue_max_rows", "Bound of the writer queue (rows)",
                                value=r.records.max_rows)
        yield CounterMetricFamily(f"{PREFIX}storage_errors", "Write errors reported by storage",
                                  value=w.errors)

    def _storage(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(f"{PREFIX}store_healthy", "1 while the store accepts writes",
                                    labels=["store"])
        written = CounterMetricFamily(f"{PREFIX}rows_written", "Rows written per store and dataset",
                                      labels=["store", "dataset"])
        pending = GaugeMetricFamily(f"{PREFIX}rows_pending", "Rows waiting in memory for a store",
                                    labels=["store", "dataset"])
        spilled = GaugeMetricFamily(f"{PREFIX}rows_spilled", "Rows spilled to the local journal for a store",
                                    labels=["store", "dataset"])
        stats_fn = getattr(self.recorder.writer_thread.writer, "stats", None)
        stats: dict[str, Any] = {}
        if callable(stats_fn):
            with contextlib.suppress(Exception):
                stats = stats_fn()
        for store, status in sorted(stats.items()):
            st = dataclasses.asdict(status) if not isinstance(status, dict) else status
            healthy.add_metric([store], 1.0 if st.get("healthy") else 0.0)
            for dataset, counts in sorted(st.get("datasets", {}).items()):
                written.add_metric([store, dataset], counts["written"])
                pending.add_metric([store, dataset], counts["pending"])
                spilled.add_metric([store, dataset], counts["spilled"])
        yield from (healthy, written, pending, spilled)


@dataclasses.dataclass(slots=True)
class MetricsServer:
    """A running endpoint: ``url`` is ``http://host:port/metrics``; :meth:`close` stops it."""

    url: str
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def serve_metrics(recorder: RecorderView, host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
    """Serve ``GET /metrics`` for ``recorder`` on ``host:port`` (0: a free port) in a daemon thread.

    Raises :class:`~recorder.errors.ConfigError` if the address cannot be bound.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecorderCollector(recorder))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = server.server_port
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/metrics"
    log.info("metrics at %s", url)
    return MetricsServer(url, server, thread)

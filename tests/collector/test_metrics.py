"""The Prometheus endpoint, scraped over HTTP during and after a real run against the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.collector.metrics import serve_metrics
from recorder.config import MetricsConfig, load_config
from recorder.errors import ConfigError
from recorder.simulator import Simulator
from recorder.storage.parquet import open_dataset
from tests.collector.conftest import MemoryWriter, sim_config
from tests.collector.helpers import wait_until


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET url`` -> {(sample name, sorted labels): value}."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_label(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
             ) -> dict[tuple[str, ...], float]:
    """{label values, in label-name order: value} of one sample name."""
    return {tuple(v for _, v in labels): value for (n, labels), value in samples.items() if n == name}


async def test_metrics_equal_the_recorders_own_accounting_and_the_stored_rows(
        simulator: Simulator, tmp_path: Path) -> None:
    config = sim_config(tmp_path, simulator.ws_url, channels=["ticker", "depth", "deals"])
    config = dataclasses.replace(config, metrics=MetricsConfig(enabled=True, host="127.0.0.1", port=0))
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    await wait_until(lambda: recorder.metrics is not None and sum(
        e["accepted"] for e in recorder.pipeline.accounting().values()) > 200, what="data flowing")
    assert recorder.metrics is not None
    url = recorder.metrics.url
    simulator.faults.inject_frames("malformed_json", 3)  # quarantined, by reason
    await wait_until(lambda: recorder.pipeline.counters.frames_malformed >= 3, what="bad frames quarantined")
    simulator.faults.inject_frames("truncated", 2)
    await wait_until(lambda: recorder.pipeline.counters.frames_malformed >= 5, what="bad frames quarantined")
    assert url.startswith("http://127.0.0.1:")

    # During the run: every counter lies between the accounting read just before and just after.
    for _ in range(3):
        before = recorder.pipeline.accounting()
        samples = await asyncio.to_thread(scrape, url)
        after = recorder.pipeline.accounting()
        received = by_label(samples, "okex_recorder_frames_received_total")
        stored = by_label(samples, "okex_recorder_frames_stored_total")
        assert set(received) == {(c,) for c in after} >= {(c,) for c in before}
        for channel in after:
            low = before.get(channel, {"received": 0, "accepted": 0})
            assert low["received"] <= received[(channel,)] <= after[channel]["received"]
            assert low["accepted"] <= stored[(channel,)] <= after[channel]["accepted"]
        assert by_label(samples, "okex_recorder_store_healthy") == {("parquet",): 1.0, ("sql",): 1.0}
        assert by_label(samples, "okex_recorder_connection_up") == {
            (c.name,): 1.0 for c in recorder.connections}
        await asyncio.sleep(0.3)

    recorder.request_stop()
    result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    with pytest.raises(httpx.ConnectError):  # the run's endpoint is gone with the run
        await asyncio.to_thread(httpx.get, url, timeout=5)

    # After the run the figures stand still: they must equal the accounting and the stored rows exactly.
    server = serve_metrics(recorder, "127.0.0.1", 0)
    try:
        samples = await asyncio.to_thread(scrape, server.url)
    finally:
        server.close()
    accounting = recorder.pipeline.accounting()
    assert by_label(samples, "okex_recorder_frames_received_total") == {
        (c,): e["received"] for c, e in accounting.items()}
    assert by_label(samples, "okex_recorder_frames_stored_total") == {
        (c,): e["accepted"] for c, e in accounting.items()}
    assert by_label(samples, "okex_recorder_frames_rejected_total") == {
        (c, reason): n for c, e in accounting.items() for reason, n in e["rejected"].items()}
    assert by_label(samples, "okex_recorder_connection_frames_total") == {
        (c.name,): c.counters.frames for c in recorder.connections}
    written = by_label(samples, "okex_recorder_rows_written_total")
    root = str(tmp_path / "parquet")
    for dataset in ("tickers", "book_snapshots", "deals", "feed_events"):
        in_files = open_dataset(root, dataset).count_rows()
        assert in_files > 0
        assert written[(dataset, "parquet")] == in_files  # every row acknowledged is in a Parquet file
        assert written[(dataset, "sql")] == recorder.writer_thread.counters.rows_written[dataset]
    quarantined = by_label(samples, "okex_recorder_quarantined_rows_total")
    assert quarantined == {(k,): n for k, n in recorder.pipeline.counters.quarantined.items()}
    assert quarantined[("not valid JSON",)] >= 5  # the malformed and the truncated frames injected
    assert by_label(samples, "okex_recorder_frames_malformed_total") == {
        (): recorder.pipeline.counters.frames_malformed}
    rows = open_dataset(root, "quarantine").to_table(columns=["reason"]).column("reason").to_pylist()
    assert sorted(quarantined.items()) == sorted(  # each one is a stored row with that reason
        ((head,), float(n)) for head, n in Counter(r.split(":", 1)[0] for r in rows).items())
    assert written[("quarantine", "parquet")] == len(rows)
    assert by_label(samples, "okex_recorder_writer_queue_rows") == {(): 0.0}
    assert by_label(samples, "okex_recorder_lag_seconds") == {
        (): pytest.approx(recorder.writer_thread.counters.lag_last)}
    assert by_label(samples, "okex_recorder_open_gaps") == {}  # a clean stop closes every span
    assert by_label(samples, "okex_recorder_storage_errors_total") == {(): 0.0}


def test_metrics_are_off_by_default_and_bind_loopback(tmp_path: Path) -> None:
    assert load_config(env={}).metrics == MetricsConfig(enabled=False, host="127.0.0.1", port=9464)
    example = load_config(Path(__file__).parents[2] / "config.example.toml", env={})
    assert example.metrics == MetricsConfig()
    on = load_config(env={"OKEX_RECORDER__METRICS__ENABLED": "true", "OKEX_RECORDER__METRICS__PORT": "9999"})
    assert on.metrics == MetricsConfig(enabled=True, host="127.0.0.1", port=9999)
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        load_config(env={}, overrides={"metrics": {"port": 70000}})
    with pytest.raises(ConfigError, match="metrics"):
        load_config(env={}, overrides={"metrics": {"enable": True}})


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    config = sim_config(tmp_path, "ws://127.0.0.1:9/ws/v1")
    recorder = Recorder(config, MemoryWriter())
    first = serve_metrics(recorder, "127.0.0.1", 0)
    try:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(ConfigError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            serve_metrics(recorder, "127.0.0.1", port)
    finally:
        first.close()

"""Each benchmark once at size "tiny": the figures exist, are sane, and the work was really done."""

from __future__ import annotations

import importlib

import pytest

from bench.__main__ import BENCHMARKS, main
from bench.harness import BenchResult, render, save

pytestmark = pytest.mark.bench


def _run(name: str) -> tuple[BenchResult, dict[str, float]]:
    result: BenchResult = importlib.import_module(f"bench.{name}").run("tiny")
    assert result.name == name and result.size == "tiny"
    assert "| benchmark |" in render([result])
    return result, {f.metric: f.value for f in result.figures}


def test_ingest_persists_every_row_and_reports_a_ratio_to_the_floor() -> None:
    result, v = _run("ingest")
    assert v["recorder msg/s (SQLite + Parquet)"] > 0 and v["honest floor msg/s (SQLite + Parquet)"] > 0
    assert v["old floor msg/s (msgspec, float book, Parquet only)"] > 0
    assert v["ratio recorder / honest floor (SQLite)"] > 0
    rows = next(f for f in result.figures if f.metric == "rows persisted (each run, each store)")
    assert rows.ok is True and rows.value > 0, result.notes


def test_stages_account_for_the_cpu_time_of_a_run_that_stored_every_row() -> None:
    result, v = _run("stages")
    rows = next(f for f in result.figures if f.metric == "rows stored in SQL and in Parquet")
    assert rows.ok is True and rows.value > 1000, result.notes  # == the old floor's rows, SQL and Parquet
    stages = {m: x for m, x in v.items() if m.startswith("CPU s per 100k frames: ") and "total" not in m}
    assert len(stages) == 7 and all(x > 0 for m, x in stages.items() if "other" not in m)
    assert abs(sum(stages.values()) - v["CPU s per 100k frames: total (process)"]) < 1e-6


def test_v1_book_times_both_books_on_equal_records(capsys) -> None:  # type: ignore[no-untyped-def]
    from bench import v1_book

    assert v1_book.main("tiny", 1)
    out = capsys.readouterr().out
    assert "before (Decimal keys)" in out and "after (integer ticks)" in out and "equal (repr): yes" in out


def test_wire_receives_and_persists_every_frame() -> None:
    result, v = _run("wire")
    assert v["frame-counting client msg/s (server ceiling)"] > 0
    assert v["decoding client msg/s (inflate + msgspec, stores nothing)"] > 0
    assert v["recorder received msg/s"] > 0 and v["recorder persisted msg/s"] > 0
    assert v["honest floor msg/s (SQLite + Parquet, in process, same frames)"] > 0
    assert v["ratio persisted / honest floor"] > 0
    # the same frames again, paced at half the persisted rate: every row, latency measured
    metric = "paced at half the persisted rate: rows persisted (SQL)"
    paced = next(f for f in result.figures if f.metric == metric)
    assert paced.ok is True and paced.value > 0, result.notes
    assert 0 < v["paced at half the persisted rate: latency receive -> durable p99"] < 60_000
    assert v["frames dropped (backpressure)"] == 0
    rows = next(f for f in result.figures if f.metric == "rows persisted (SQL)")
    assert rows.ok is True and rows.value > 0, result.notes
    assert 0 < v["latency receive -> durable p99"] < 60_000
    # the same run with [storage] writer_process = true: every row in both stores too
    assert v["writer process: frames dropped (backpressure)"] == 0
    rows = next(f for f in result.figures if f.metric == "writer process: rows persisted (SQL)")
    assert rows.ok is True and rows.value > 0, result.notes
    assert v["ratio persisted writer process / in process (same run)"] > 0


def test_memory_samples_the_recorder() -> None:
    result, v = _run("memory")
    for variant in ("tuned", "untuned"):  # the memory tuning on (default) and off, same run
        idle = v["idle interpreter + project imported (baseline)"]
        assert 50 < idle < v[f"{variant}: peak RSS (VmHWM)"] < 4096
        assert v[f"{variant}: frames received"] > 0 and v[f"{variant}: rows written"] > 0, result.notes


def test_rest_sync_records_the_whole_history_without_10001() -> None:
    result, v = _run("rest_sync")
    recorded = next(f for f in result.figures if f.metric == "orders recorded")
    assert recorded.ok is True and recorded.value >= 1000, result.notes
    assert v["10001 answers"] == 0 and v["time to record"] > 0


def test_analysis_load_reads_every_row() -> None:
    result, v = _run("analysis_load")
    rows = next(f for f in result.figures if f.metric == "rows")
    assert rows.ok is True and rows.value == 10_000
    assert v["ratio analysis / bare"] > 0


def test_storage_cost_reports_bytes_per_snapshot() -> None:
    _, v = _run("storage_cost")
    assert v["snapshots"] > 100 and v["levels per snapshot (both sides)"] == 40
    assert 10 < v["Parquet (zstd) bytes / snapshot"] < 5_000
    assert 100 < v["SQLite bytes / snapshot"] < 20_000


def test_runner_rejects_unknown_names_and_saves_json(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        main(["--only", "nope"])
    assert set(BENCHMARKS) == {"ingest", "stages", "wire", "memory", "rest_sync", "analysis_load",
                               "storage_cost", "bus", "peer"}
    result = BenchResult("x", "tiny")
    result.add("m", 1.5, "s", ">= 1", True)
    path = save(result, tmp_path)
    assert '"metric": "m"' in path.read_text()


def test_bus_stores_every_produced_row_through_jetstream_and_directly() -> None:
    from bench.bus import NATS_URL, _nats_reachable

    if not _nats_reachable(NATS_URL):
        pytest.skip(f"NATS at {NATS_URL} not reachable")
    result, v = _run("bus")
    rows = next(f for f in result.figures if f.metric == "rows stored (each path, each store)")
    assert rows.ok is True and rows.value > 1000, result.notes  # SQL and Parquet of both paths == produced
    assert v["direct records/s (StorageWriter -> SQLite + Parquet)"] > 0
    assert v["bus records/s (publish -> JetStream -> 2 writers -> SQLite + Parquet)"] > 0
    assert v["messages published"] > 0 and v["ratio bus / direct"] > 0
    batched = ", dedupe_across_collectors = false"
    assert 0 < v[f"messages published{batched}"] < v["messages published"]  # tickers, snapshots batched
    assert v[f"bus records/s (publish -> JetStream -> 2 writers -> SQLite + Parquet{batched})"] > 0


@pytest.mark.postgres
def test_peer_records_the_same_v5_stream_as_cryptofeed() -> None:
    """Only with the ``peer`` extra installed (cryptofeed): offline, against the local v5 simulator."""
    pytest.importorskip("cryptofeed")
    result, v = _run("peer")
    assert v["paced: recorder msg/s received"] > 0 and v["paced: cryptofeed msg/s received"] > 0, result.notes
    # every row the recorder produced is in PostgreSQL and in Parquet
    rows = next(f for f in result.figures if f.metric == "paced: recorder rows stored (PostgreSQL)")
    assert rows.ok is True and rows.value > 0, result.notes
    assert rows.target == f"== {int(rows.value)} produced (and Parquet)"
    # cryptofeed stored rows too (it may lose its last queued rows when it stops: reported, not asserted)
    assert v["paced: cryptofeed rows stored (PostgreSQL)"] > 0, result.notes
    assert v["paced: cryptofeed rows produced but not stored (lost at its clean stop)"] >= 0
    # the same stream: trades and tickers with exchange times in the window are the same number in both
    for name in ("deals (recorder) / trades (cryptofeed)", "tickers (recorder) / ticker (cryptofeed)"):
        metric = f"paced: rows with exchange time in the window: {name}"
        f = next(f for f in result.figures if f.metric == metric)
        assert f.value > 0 and f.target == f"cryptofeed {int(f.value)}", (f, result.notes)


def test_peer_is_skipped_with_a_note_without_cryptofeed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bench import peer

    monkeypatch.setattr(peer, "available", lambda: "needs the peer extra")
    result = peer.run("tiny")
    assert result.figures == [] and result.notes == ["skipped: needs the peer extra"]

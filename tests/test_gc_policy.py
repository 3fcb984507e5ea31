"""The garbage-collector policy of a recording process (recorder/gc_policy.py).

It changes when the collector runs, never what is stored: the ingest stream written with the
policy and with the interpreter's defaults gives the same rows in SQLite and in Parquet, value
for value.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa

from bench import streams
from bench.harness import run_process_gc
from bench.ingest import open_writer, recorder_items
from recorder import gc_policy
from recorder.collector.pipeline import run_in_process


@pytest.fixture
def gc_state() -> Iterator[None]:
    """The interpreter's collector settings as they were, afterwards."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_configure_freezes_and_sets_thresholds(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKEX_GC_TUNING", raising=False)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert gc_policy.configure() is True
    assert gc.get_threshold() == gc_policy.THRESHOLDS == (700, 10, 100)
    assert gc.get_freeze_count() > 0  # what was alive at startup is no longer walked


def test_off_leaves_the_defaults(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKEX_GC_TUNING", "0")
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert gc_policy.configure() is False
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_bench_context_restores_the_settings(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKEX_GC_TUNING", raising=False)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with run_process_gc():
        assert gc.get_threshold() == (700, 10, 100)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


Stored = tuple[dict[str, list[tuple[object, ...]]], dict[str, list[dict[str, object]]]]


def _stored(tmp: Path, frames: list[str]) -> Stored:
    url = f"sqlite:///{tmp / 'rec.sqlite'}"
    run_in_process(recorder_items(frames), open_writer(url, tmp), streams.pipeline(), batch_frames=500)
    engine = sa.create_engine(url)
    sql: dict[str, list[tuple[object, ...]]] = {}
    parquet: dict[str, list[dict[str, object]]] = {}
    try:
        with engine.connect() as conn:
            for table in ("book_snapshots", "tickers", "deals"):
                sql[table] = sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table}"))
    finally:
        engine.dispose()
    for table in ("book_snapshots", "tickers", "deals"):
        rows = pads.dataset(tmp / "parquet" / table, partitioning="hive").to_table().to_pylist()
        parquet[table] = sorted(rows, key=repr)
    return sql, parquet


def test_same_rows_with_and_without_the_policy(tmp_path: Path, gc_state: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [f.decode() for f in streams.generate(3_000, 10).frames]
    monkeypatch.setenv("OKEX_GC_TUNING", "0")
    (tmp_path / "default").mkdir()
    with run_process_gc():
        default = _stored(tmp_path / "default", frames)
    monkeypatch.setenv("OKEX_GC_TUNING", "1")
    (tmp_path / "tuned").mkdir()
    with run_process_gc():
        assert gc.get_threshold() == gc_policy.THRESHOLDS
        tuned = _stored(tmp_path / "tuned", frames)
    assert default == tuned
    assert all(default[0][t] for t in default[0])  # rows of every dataset, compared value by value
    assert {t: len(v) for t, v in default[0].items()} == {t: len(v) for t, v in default[1].items()}

"""bench.nested_levels: both encodings of book levels hold the records' levels exactly; the benchmark runs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from bench import nested_levels as nl
from recorder.records import BookSnapshot

pytestmark = pytest.mark.bench

T0 = datetime(2026, 11, 18, tzinfo=UTC)


def _edge_cases() -> list[BookSnapshot]:
    """Level values at the edges: exponent forms, trailing zeros, 18 fractional digits, 20 integer
    digits, an empty side."""
    d = Decimal
    return [
        BookSnapshot(venue="okex_v1", symbol="btc_usdt", ts_event=T0, ts_recv=T0,
                     bids=((d("6500.50"), d("1E-8")), (d("6500.4"), d("0.000000000000000001"))),
                     asks=((d("6501"), d("12345678901234567.5")),)),
        BookSnapshot(venue="okex_v1", symbol="btc_usdt", ts_event=T0, ts_recv=T0.replace(microsecond=1),
                     bids=(), asks=((d("99999999999999999999.999999999999999999"), d("2.50")),)),
    ]


def _levels(records: list[BookSnapshot], side: str) -> list[tuple[tuple[Decimal, Decimal], ...]]:
    return [getattr(r, side) for r in records]


def _exact(got: list[tuple[tuple[Decimal, Decimal], ...]],
           want: list[tuple[tuple[Decimal, Decimal], ...]]) -> bool:
    """Equal value for value, and every value a Decimal (no float crept in)."""
    flat = [v for side in got for level in side for v in level]
    return got == want and all(type(v) is Decimal for v in flat)


def test_both_encodings_round_trip_to_the_records_levels_in_arrow_and_parquet(tmp_path: Path) -> None:
    records = nl.snapshots(40, 20) + _edge_cases()
    assert any(len(r.bids) == 20 for r in records)
    text, nested = nl.tables(records)
    assert text.schema.field("bids").type == pa.string()
    assert nested.schema.field("bids").type == nl.NESTED
    assert text.drop_columns(["bids", "asks"]).equals(nested.drop_columns(["bids", "asks"]))
    for side in nl.SIDES:
        assert _exact(nl.levels_of(text, side), _levels(records, side))
        assert _exact(nl.levels_of(nested, side), _levels(records, side))
    # the JSON text keeps the digits as given; the nested decimal128(38, 18) keeps the value only
    assert text.column("bids")[-2].as_py().startswith('[["6500.50","0.00000001"]')
    assert nested.column("bids")[-2].as_py()[0]["price"] == Decimal("6500.5")

    ordered = sorted(records, key=lambda r: (r.symbol, r.ts_recv))
    for name, table in (("json", text), ("nested", nested)):
        root = tmp_path / name
        assert nl.write_files(table, root) > 0
        back = pads.dataset(root / "book_snapshots", format="parquet", partitioning="hive").to_table()
        back = back.take(pc.sort_indices(back, [("symbol", "ascending"), ("ts_recv", "ascending")]))
        for side in nl.SIDES:
            assert _exact(nl.levels_of(back, side), _levels(ordered, side)), (name, side)


def test_readers_of_both_encodings_give_the_records_best_bid_and_ask(tmp_path: Path) -> None:
    records = nl.snapshots(60, 20)
    text, nested = nl.tables(records)
    nl.write_files(text, tmp_path / "json")
    nl.write_files(nested, tmp_path / "nested")
    expected = nl.expected_best(records)
    assert nl.answer(nl.duckdb_best(tmp_path / "json", False)) == expected
    assert nl.answer(nl.duckdb_best(tmp_path / "nested", True)) == expected
    assert nl.answer(nl.polars_best(tmp_path / "json", False)) == expected
    assert nl.answer(nl.polars_best(tmp_path / "nested", True)) == expected
    frame = nl.pandas_levels(tmp_path / "json", False)
    assert frame.equals(nl.pandas_levels(tmp_path / "nested", True))
    assert len(frame) == sum(len(r.bids) + len(r.asks) for r in records)
    first = records[0]  # snapshot order is the files' (symbol partitions), levels best first
    mine = (frame["symbol"] == first.symbol) & (frame["ts_recv"] == first.ts_recv)
    rows = frame[mine & (frame["side"] == "bid")]
    assert list(rows["price"]) == [float(p) for p, _ in first.bids]
    assert list(rows["level"]) == list(range(len(first.bids)))


def test_benchmark_runs_at_tiny_size_with_every_figure() -> None:
    result = nl.run("tiny", pg=False)  # PostgreSQL (d) is left out here: the answers are checked inside run
    assert result.name == "nested_levels" and result.size == "tiny"
    values = {f.metric: f.value for f in result.figures}
    for depth in (20, 200):
        assert values[f"{depth} levels: snapshots"] >= 30
        for metric in ("(a) build level columns CPU per 1,000 snapshots",
                       "(b) Parquet write CPU per 1,000 snapshots", "(b) Parquet bytes / snapshot",
                       "(c) DuckDB unnest + best bid/ask per snapshot",
                       "(c) pyarrow read + explode to pandas",
                       "(c) Polars explode + best bid/ask per snapshot"):
            assert any(m.startswith(f"{depth} levels: {metric}") and v > 0 for m, v in values.items()), metric

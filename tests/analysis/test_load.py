"""Loaders: the same recording read from SQL and from Parquet gives equal frames, equal to the records."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis import load
from recorder.records import Record
from tests.analysis.recording import at, hand_records, write_recording
from tests.fixtures.storage import sample_records

LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "tickers": load.load_tickers,
    "book_top": load.load_book_top,
    "book_levels": load.load_book_levels,
    "deals": load.load_deals,
    "klines": load.load_klines,
    "balances": load.load_balances,
    "orders": load.load_orders,
    "order_status_changes": load.load_order_status_changes,
    "feed_events": load.load_feed_events,
}


def ts(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(at(seconds))


@pytest.fixture
def recording(migrated_db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """The hand recording in a migrated database (SQLite, and PostgreSQL when configured) and in Parquet."""
    root = tmp_path / "parquet"
    write_recording(hand_records(), migrated_db_url, root)
    return migrated_db_url, root


@pytest.mark.parametrize("exact", [False, True])
def test_sql_and_parquet_give_equal_frames(recording: tuple[str, Path], exact: bool) -> None:
    url, root = recording
    for name, loader in LOADERS.items():
        from_sql = loader(url, exact=exact)
        from_parquet = loader(root, exact=exact)
        assert len(from_sql) > 0, name
        pd.testing.assert_frame_equal(from_sql, from_parquet, obj=name)


def test_filtered_frames_are_equal_too(recording: tuple[str, Path]) -> None:
    url, root = recording
    args: dict[str, Any] = {"symbols": ["btc_usdt", "usdt"], "start": at(0.5), "end": at(2.4)}
    for name, loader in LOADERS.items():
        pd.testing.assert_frame_equal(loader(url, **args), loader(root, **args), obj=name)


def test_tickers_frame_holds_the_recorded_values(recording: tuple[str, Path]) -> None:
    frame = load.load_tickers(recording[1])
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.dtype) == "datetime64[us, UTC]"
    assert frame.index.name == "ts_event"
    assert frame.index.tolist() == [ts(0), ts(1), ts(1), ts(2), ts(3)]
    assert frame["symbol"].tolist() == ["btc_usdt", "btc_usdt", "eth_usdt", "btc_usdt", "btc_usdt"]
    assert frame["buy"].dtype == np.float64
    assert frame["buy"].tolist() == [100.0, 101.0, 10.0, 102.0, 103.0]
    assert frame["sell"].tolist() == [101.0, 102.0, 10.2, 103.0, 104.0]
    assert frame["change"].isna().tolist() == [True, False, True, False, False]
    assert frame["ts_recv"].iloc[0] == ts(0.01)


def test_exact_keeps_decimals(recording: tuple[str, Path]) -> None:
    frame = load.load_deals(recording[0], exact=True)
    assert frame["price"].tolist() == [Decimal("100.1"), Decimal("100.2"), Decimal("10.1"), Decimal("100.3"),
                                       Decimal("100.4")]
    assert [str(p) for p in frame["price"]] == ["100.1", "100.2", "10.1", "100.3", "100.4"]
    assert frame["tid"].tolist() == [1, 2, 1, 3, 4]
    assert frame["side"].tolist() == ["buy", "sell", "buy", "buy", "sell"]


def test_symbol_and_time_filters(recording: tuple[str, Path]) -> None:
    for source in recording:
        frame = load.load_tickers(source, symbols="btc_usdt", start="2024-05-01T23:59:59Z", end=at(3))
        assert frame.index.tolist() == [ts(1), ts(2)]  # end excluded, across midnight
        assert frame["symbol"].unique().tolist() == ["btc_usdt"]


def test_naive_bounds_are_rejected(recording: tuple[str, Path]) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        load.load_deals(recording[1], start="2024-05-01 23:59")


def test_columns_reads_only_what_is_asked(recording: tuple[str, Path]) -> None:
    for source in recording:
        frame = load.load_deals(source, columns=["price"])
        assert frame.columns.tolist() == ["price"]
        assert frame["price"].tolist() == [100.1, 100.2, 10.1, 100.3, 100.4]
    with pytest.raises(ValueError, match="no column"):
        load.load_deals(recording[1], columns=["nope"])


def test_book_top_and_levels(recording: tuple[str, Path]) -> None:
    top = load.load_book_top(recording[1])
    assert top.columns.tolist() == [
        "symbol", "ts_recv", "source", "depth", "bid_price", "bid_amount", "ask_price", "ask_amount",
        "venue", "base", "quote", "seq_id",  # since schema revision 0003
    ]
    assert top[["bid_price", "ask_price"]].to_numpy().tolist()[0] == [100.0, 101.0]
    assert np.isnan(top.loc[ts(1.5), "ask_price"])  # eth: no asks
    levels = load.load_book_levels(recording[0])
    first = levels.loc[ts(0.5)]
    assert first[["side", "level", "price", "amount"]].to_numpy().tolist() == [
        ["bid", 0, 100.0, 1.0], ["bid", 1, 99.0, 2.0], ["ask", 0, 101.0, 3.0], ["ask", 1, 102.0, 4.0]
    ]
    shallow = load.load_book_levels(recording[1], depth=1)
    assert shallow.groupby(["ts_recv", "side"]).size().max() == 1
    assert len(shallow) == 5  # 2 + 2 + 1 (eth has one side)


def test_klines_keep_the_last_push_and_filter_period(recording: tuple[str, Path]) -> None:
    for source in recording:
        klines = load.load_klines(source, period="1min")
        assert klines.index.tolist() == [pd.Timestamp("2024-05-01T23:59Z"), ts(2)]
        assert klines["close"].tolist() == [100.4, 100.4]
        assert klines["volume"].tolist() == [8.75, 2.25]
        assert load.load_klines(source, period="5min")["period"].tolist() == ["5min"]


def test_orders_are_last_seen_state_with_status_names(recording: tuple[str, Path]) -> None:
    for source in recording:
        orders = load.load_orders(source)
        assert orders["order_id"].tolist() == [7, 8]
        assert orders["status"].tolist() == ["filled", "cancelled"]
        assert orders["avg_price"].tolist() == [101.25, 0.0]
        assert np.isnan(orders["price"].iloc[1])
        changes = load.load_order_status_changes(source)
        assert changes["status"].tolist() == ["open", "filled"]
        assert changes["previous_status"].tolist() == [None, "open"]


def test_balances_filter_currencies(recording: tuple[str, Path]) -> None:
    for source in recording:
        btc = load.load_balances(source, symbols=["btc"])
        assert btc.index.tolist() == [ts(0), ts(2.5)]
        assert btc["free"].tolist() == [1.0, 3.5]
        assert btc["frozen"].tolist() == [0.5, 0.0]


def test_feed_events_closed_span_and_overlap_filter(recording: tuple[str, Path]) -> None:
    for source in recording:
        events = load.load_feed_events(source)
        assert events["kind"].tolist() == ["disconnected", "connected"]
        assert events["ts_end"].tolist() == [ts(1.8), ts(1.8)]
        assert events["symbols"].tolist() == [("btc_usdt",), ()]
        # the span 1..1.8 overlaps [1.5, 1.7); the instant at 1.8 does not
        inside = load.load_feed_events(source, start=at(1.5), end=at(1.7))
        assert inside["event_id"].tolist() == ["e" * 32]
        # eth: only the connection-wide event
        assert load.load_feed_events(source, symbols=["eth_usdt"])["kind"].tolist() == ["connected"]


def test_parquet_reads_only_the_partitions_asked_for(recording: tuple[str, Path]) -> None:
    root = recording[1]
    # a broken file in the second day's partition: scanning it fails, pruning it does not
    bad = root / "deals" / "venue=okex_v1" / "date=2024-05-02" / "symbol=btc_usdt" / "part-broken.parquet"
    bad.write_bytes(b"not parquet")
    frame = load.load_deals(root, start=at(0), end="2024-05-02T00:00Z")
    assert frame["tid"].tolist() == [1, 2, 1]
    assert load.load_deals(root, symbols=["eth_usdt"])["tid"].tolist() == [1]
    with pytest.raises(pa.ArrowInvalid):
        load.load_deals(root)


def test_missing_dataset_reads_empty(tmp_path: Path) -> None:
    frame = load.load_deals(tmp_path / "nothing")
    assert len(frame) == 0
    assert frame.columns.tolist() == ["symbol", "tid", "price", "amount", "side", "ts_recv",
                                      "count", "venue", "base", "quote"]  # since schema revision 0003
    assert str(frame.index.dtype) == "datetime64[us, UTC]"


def test_awkward_values_survive_both_stores(migrated_sqlite_url: str, tmp_path: Path) -> None:
    records: list[Record] = sample_records()
    root = tmp_path / "parquet"
    write_recording([records], migrated_sqlite_url, root)
    for loader in LOADERS.values():
        pd.testing.assert_frame_equal(loader(migrated_sqlite_url, exact=True), loader(root, exact=True))
    ticker = load.load_tickers(root, exact=True).iloc[0]
    assert ticker["buy"] == Decimal("10532696.39199642")
    assert ticker["low"] == Decimal("1E-8")
    assert ticker["last"] == Decimal("123456789.123456789")
    assert load.load_deals(root)["tid"].tolist() == [9_007_199_254_740_993]


# --- the fast conversion and ordering paths -------------------------------------------------------


def _random_decimals(seed: int, n: int) -> list[Decimal | None]:
    rng = np.random.default_rng(seed)
    values: list[Decimal | None] = []
    for _ in range(n):
        if rng.random() < 0.05:
            values.append(None)
            continue
        digits = int(rng.choice([0, 1, 2, 4, 8, 8, 9, 12, 18]))
        magnitude = int(rng.choice([1, 10, 1000, 10**6, 10**9, 10**12, 10**19]))
        units = int(rng.integers(0, 2**62)) % (magnitude * 10**digits + 1)
        values.append(Decimal(-units if rng.random() < 0.2 else units).scaleb(-digits))
    edges = [2**53, 2**53 + 1, -(2**53), 2**53 - 1]
    values += [Decimal(e).scaleb(-8) for e in edges] + [Decimal("0.1"), Decimal("-0.3"), Decimal(0)]
    values += [Decimal("99999999999999999999.999999999999999999"), Decimal("-0.000000000000000001")]
    return values


@pytest.mark.parametrize("kind", [pa.decimal128(38, 18), pa.decimal128(20, 8), pa.decimal128(12, 4)])
def test_decimal_floats_are_the_nearest_float_of_every_decimal(kind: pa.Decimal128Type) -> None:
    def fits(v: Decimal) -> bool:
        q = v.quantize(Decimal(1).scaleb(-kind.scale), context=Context(prec=80))
        return q == v and len(q.as_tuple().digits) <= kind.precision

    values = [v for v in _random_decimals(5, 20_000) if v is None or fits(v)]
    array = pa.array(values, kind)
    for column in (array, array.slice(7, 5_000), pa.chunked_array([array.slice(0, 999), array.slice(999)])):
        got = load._decimal_floats(column)
        want = np.array([np.nan if v is None else float(v) for v in column.to_pylist()])
        assert got.dtype == np.float64
        assert np.array_equal(got, want, equal_nan=True)  # float(Decimal) is correctly rounded


class _TableSource:
    """A source answering every query from one in-memory table (rows in the order given)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def read(self, query: load.Query) -> pa.Table:
        return self.table.select(list(query.columns)).cast(query.arrow_schema)


def _book_rows(seed: int, n: int, duplicates: bool) -> pa.Table:
    """Top-of-book rows out of order (shuffled runs), ts_event ties across symbols, maybe duplicates."""
    rng = np.random.default_rng(seed)
    symbols = np.array(["eth_usdt", "btc_usdt", "ltc_usdt"])[rng.integers(0, 3, n)]
    sources = np.array(["depth", "depth_5"])[rng.integers(0, 2, n)]
    ts_recv = 1_700_000_000_000_000 + rng.permutation(n) * 1_000  # unique keys
    ts_event = ts_recv - rng.integers(0, 5, n) * 1_000  # many ties
    if duplicates:  # replayed copies: same key, other ts_event and values
        copies = rng.integers(0, n, n // 10)
        symbols = np.concatenate([symbols, symbols[copies]])
        sources = np.concatenate([sources, sources[copies]])
        ts_recv = np.concatenate([ts_recv, ts_recv[copies]])
        ts_event = np.concatenate([ts_event, ts_event[copies] - 7])
    rows = len(symbols)
    runs = np.array_split(np.arange(rows), 17)
    rng.shuffle(runs)
    order = np.concatenate(runs)
    cents = rng.integers(1, 10**7, rows)
    prices = pa.array([None if i % 11 == 0 else Decimal(int(p)).scaleb(-2) for i, p in enumerate(cents)],
                      pa.decimal128(38, 18))
    schema = load.DATASETS["book_snapshots"].arrow_schema
    table = pa.table({
        "symbol": symbols, "ts_event": pa.array(ts_event, pa.timestamp("us", tz="UTC")),
        "ts_recv": pa.array(ts_recv, pa.timestamp("us", tz="UTC")), "source": sources,
        "depth": pa.array(np.arange(rows, dtype=np.int32)),
        "best_bid": prices, "best_bid_amount": prices, "best_ask": prices, "best_ask_amount": prices,
        "bids": pa.array(["[]"] * rows), "asks": pa.array(["[]"] * rows),
        "venue": pa.array(["okex_v1"] * rows), "seq_id": pa.nulls(rows, pa.int64()),  # since revision 0003
    }).select(schema.names).cast(schema)
    return table.take(pa.array(order))


@pytest.mark.parametrize("duplicates", [False, True])
@pytest.mark.parametrize("exact", [False, True])
def test_fast_order_and_dedupe_equal_the_general_path(
    duplicates: bool, exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _TableSource(_book_rows(11, 3_000, duplicates))
    fast = load.load_book_top(source, exact=exact)
    in_order = load.load_book_top(_TableSource(source.table.sort_by("ts_event")), exact=exact)
    monkeypatch.setattr(load, "_fast_rows", lambda table, spec: False)
    general = load.load_book_top(source, exact=exact)
    pd.testing.assert_frame_equal(fast, general)
    assert fast.index.is_monotonic_increasing and str(fast.index.dtype) == "datetime64[us, UTC]"
    assert len(fast) == (source.table.num_rows if not duplicates else len(general))
    if not duplicates:  # with copies, which copy comes first depends on the order read
        pd.testing.assert_frame_equal(in_order, general)


def test_fast_rows_proves_uniqueness_cheaply_for_sorted_files() -> None:
    table = _book_rows(3, 2_000, False)
    keys = [load._sort_codes(table.column(k)) for k in ("symbol", "ts_recv", "source")]
    assert all(k is not None for k in keys)
    ordered = table.sort_by([("symbol", "ascending"), ("ts_recv", "ascending"), ("source", "ascending")])
    sorted_keys = [load._sort_codes(ordered.column(k)) for k in ("symbol", "ts_recv", "source")]
    assert load._unique_rows(sorted_keys)  # one strictly increasing run: proven without sorting
    assert load._first_of_each(sorted_keys) is None
    assert not load._unique_rows([np.concatenate([k, k[:1]]) for k in sorted_keys])  # a replayed row


def test_instruments_are_one_row_per_change_from_every_source(sqlite_url: str, tmp_path: Path) -> None:
    """The collector and the poller each stored the state they saw first in a run (and again after a
    restart): `load_instruments` showed the same state several times, not "one row per observed
    change". A state that comes back after a change is a change and stays."""
    from datetime import UTC, datetime, timedelta

    from recorder.records import Instrument

    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)

    def inst(symbol: str, seconds: int, state: str, tick: str = "0.1") -> Instrument:
        return Instrument(venue="okx_v5", symbol=symbol, ts_recv=t0 + timedelta(seconds=seconds), base="BTC",
                          quote="USDT", tick_size=Decimal(tick), lot_size=Decimal("1E-8"),
                          min_size=Decimal("0.00001"), state=state, inst_type="SPOT")

    seen = [inst("BTC-USDT", 0, "live"),
            inst("BTC-USDT", 1, "live"),  # the poller, 1 s after the collector: the same state
            inst("ETH-USDT", 2, "live"), inst("BTC-USDT", 3, "suspend"), inst("BTC-USDT", 4, "suspend"),
            inst("BTC-USDT", 5, "live"), inst("BTC-USDT", 6, "live", tick="0.01"),
            inst("ETH-USDT", 7, "live")]
    write_recording([seen[:4], seen[4:]], sqlite_url, tmp_path / "pq")
    want = [("BTC-USDT", 0, "live", Decimal("0.1")), ("ETH-USDT", 2, "live", Decimal("0.1")),
            ("BTC-USDT", 3, "suspend", Decimal("0.1")), ("BTC-USDT", 5, "live", Decimal("0.1")),
            ("BTC-USDT", 6, "live", Decimal("0.01"))]
    for source in (sqlite_url, tmp_path / "pq"):
        frame = load.load_instruments(source, exact=True)
        got = [(r.symbol, int((ts - t0).total_seconds()), r.state, r.tick_size)
               for ts, r in zip(frame.index, frame.itertuples(), strict=True)]
        assert got == want, source

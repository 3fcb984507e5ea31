"""Poisoned batches: one bad record of each kind in the middle of a busy batch costs only itself.

For every dataset, a flush holds hundreds of good rows of *every* dataset and, in the middle,
one record of each kind that a store cannot hold (too many digits, out-of-range integers, NUL
characters, over-long text, malformed symbols, naive or implausible times) of that dataset.
It goes through the real :class:`StorageWriter` into a real SQL database (SQLite, then
PostgreSQL) and a real Parquet root. Afterwards, for every dataset:

    produced = rows in SQL + quarantined = rows in Parquet + quarantined

every good row is stored exactly (SQL and Parquet equal to what was produced), every bad
record is one quarantine row with its reason and its original values, counted per reason,
and both stores are healthy (nothing was refused: the screen caught everything first).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.config import PlausibilityConfig
from recorder.records import (
    Balance,
    BookSnapshot,
    ChannelKind,
    Deal,
    FeedEvent,
    FeedEventKind,
    Fill,
    Instrument,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderStatusChange,
    OrderType,
    QuarantinedFrame,
    Record,
    Side,
    Ticker,
)
from recorder.storage.parquet import ParquetStore
from recorder.storage.schema import DATASETS, dataset_for
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter
from tests.collector.helpers import stored
from tests.faults.helpers import parquet_rows

pytestmark = pytest.mark.faults

T = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
N = 120  # good rows per dataset
FRACTION_31 = Decimal("0.1234567890123456789012345678901")


def _ms(i: int) -> timedelta:
    return timedelta(milliseconds=i)


def good_records() -> dict[str, list[Record]]:
    """N good records of every dataset, unique keys, awkward but storable values."""
    out: dict[str, list[Record]] = {name: [] for name in DATASETS}
    for i in range(N):
        recv = T + _ms(50 * i)
        out["tickers"].append(
            Ticker(venue="okex_v1",
                symbol="btc_usdt",
                ts_event=recv - _ms(3),
                ts_recv=recv,
                buy=Decimal("6500.12345678"),
                sell=Decimal("6500.2"),
                last=Decimal(6500 + i),
                high=Decimal("99999999999999999999.999999999999999999"),
                low=Decimal("0.000000000000000001"),
                vol=Decimal("1E+10"),
                change=None,
                day_high=Decimal("1.50"),
                day_low=Decimal("-0.5"),
            )
        )
        out["book_snapshots"].append(
            BookSnapshot(venue="okex_v1",
                symbol="eth_usdt",
                ts_event=recv - _ms(2),
                ts_recv=recv,
                bids=((Decimal("200.5") - Decimal(i) / 100, Decimal("1E-8")),),
                asks=((Decimal("201"), Decimal(i + 1)),),
                source=ChannelKind.DEPTH.value,
            )
        )
        out["deals"].append(
            Deal(venue="okex_v1",
                symbol="btc_usdt",
                tid=10_000 + i,
                price=Decimal("6500.5"),
                amount=Decimal("0.00000001") * (i + 1),
                side=Side.BUY if i % 2 else Side.SELL,
                ts_event=recv - timedelta(seconds=1),
                ts_recv=recv,
            )
        )
        out["klines"].append(
            Kline(venue="okex_v1",
                symbol="btc_usdt",
                period=KlinePeriod.MIN_1,
                ts_event=T + timedelta(minutes=i),
                ts_recv=T + timedelta(minutes=i, seconds=30),
                open=Decimal(1),
                high=Decimal(2),
                low=Decimal("0.5"),
                close=Decimal("1.5"),
                volume=Decimal("12345678901234567890.123456789012345678"),
            )
        )
        out["balances"].append(
            Balance(venue="okex_v1",
                ts_recv=recv,
                account="spot",
                currency="btc",
                free=Decimal("99999999999999999999.999999999999999999"),
                frozen=Decimal(i),
            )
        )
        out["orders"].append(
            Order(venue="okex_v1",
                order_id=500_000 + i,
                symbol="ltc_btc",
                type=OrderType.BUY,
                price=Decimal("0.0085"),
                amount=None if i % 7 == 0 else Decimal(3),
                deal_amount=Decimal(0),
                avg_price=Decimal(0),
                status=OrderStatus.OPEN,
                ts_event=T - timedelta(days=2),
                ts_recv=recv,
            )
        )
        out["order_status_changes"].append(
            OrderStatusChange(venue="okex_v1",
                order_id=500_000 + i,
                symbol="ltc_btc",
                status=OrderStatus.OPEN,
                previous_status=None,
                deal_amount=Decimal(0),
                ts_recv=recv,
            )
        )
        out["feed_events"].append(
            FeedEvent(
                kind=FeedEventKind.CONNECTED,
                ts_start=recv,
                ts_end=recv,
                connection="ws-0",
                symbols=("btc_usdt", "eth_usdt"),
                detail=f"connect {i}",
                event_id=f"ev{i:04d}",
            )
        )
        out["instruments"].append(
            Instrument(venue="okx_v5", symbol=f"X{i}-USDT", ts_recv=recv, base=f"X{i}", quote="USDT",
                       tick_size=Decimal("0.0001"), lot_size=Decimal("1E-8"), min_size=None, state="live")
        )
        out["fills"].append(
            Fill(venue="okx_v5", symbol="BTC-USDT", bill_id=f"b{i}", trade_id=f"t{i}", order_id=700_000 + i,
                 side=Side.BUY, price=Decimal("6500.1"), amount=Decimal("0.001"), fee=Decimal("-0.0000001"),
                 fee_currency="BTC", liquidity="taker", ts_event=recv - _ms(2), ts_recv=recv)
        )
        out["quarantine"].append(
            QuarantinedFrame(
                ts_recv=recv,
                connection="ws-0",
                reason=f"bad json {i}",
                payload=b"{\x00\xff" + bytes([i % 256]),
                channel="ok_sub_x",
            )
        )
    return out


def bad_records() -> dict[str, list[tuple[Record, str]]]:
    """Per dataset: (record, the reason kind it must be quarantined with)."""
    recv = T + _ms(50 * (N // 2) + 1)
    ticker = Ticker(venue="okex_v1",
        symbol="eth_usdt",
        ts_event=recv,
        ts_recv=recv,
        buy=Decimal(1),
        sell=Decimal(2),
        last=Decimal(3),
        high=Decimal(4),
        low=Decimal(1),
        vol=Decimal(5),
    )
    book = BookSnapshot(venue="okex_v1",
        symbol="eth_usdt",
        ts_event=recv,
        ts_recv=recv + _ms(1),
        bids=((Decimal(200), Decimal(1)),),
        asks=((Decimal(201), Decimal(1)),),
    )
    deal = Deal(venue="okex_v1",
        symbol="btc_usdt",
        tid=99_000,
        price=Decimal(1),
        amount=Decimal(1),
        side=Side.BUY,
        ts_event=recv,
        ts_recv=recv,
    )
    kline = Kline(venue="okex_v1",
        symbol="eth_usdt",
        period=KlinePeriod.MIN_5,
        ts_event=T,
        ts_recv=T + timedelta(seconds=20),
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        volume=Decimal(1),
    )
    balance = Balance(venue="okex_v1",
                      ts_recv=recv, account="wallet", currency="eth", free=Decimal(1), frozen=Decimal(0))
    order = Order(venue="okex_v1",
        order_id=900_000,
        symbol="ltc_btc",
        type=OrderType.SELL,
        price=Decimal(1),
        amount=Decimal(1),
        deal_amount=Decimal(0),
        avg_price=Decimal(0),
        status=OrderStatus.OPEN,
        ts_event=T,
        ts_recv=recv,
    )
    change = OrderStatusChange(venue="okex_v1",
        order_id=900_000,
        symbol="ltc_btc",
        status=OrderStatus.FILLED,
        previous_status=OrderStatus.OPEN,
        deal_amount=Decimal(1),
        ts_recv=recv,
    )
    event = FeedEvent(kind=FeedEventKind.STALL, ts_start=recv, ts_end=None, connection="ws-1", event_id="bad")
    instrument = Instrument(venue="okx_v5", symbol="BAD-USDT", ts_recv=recv, base="BAD", quote="USDT",
                            tick_size=Decimal("0.1"), lot_size=Decimal("1"), min_size=None, state="live")
    fill = Fill(venue="okx_v5", symbol="BTC-USDT", bill_id="bad", trade_id="t", order_id=1, side=Side.SELL,
                price=Decimal(1), amount=Decimal(1), fee=None, fee_currency=None, liquidity=None,
                ts_event=recv, ts_recv=recv)
    d31 = "more than 18 fractional digits (Parquet decimal128(38, 18))"
    i20 = "more than 20 integer digits (Parquet decimal128(38, 18))"
    return {
        "tickers": [
            (replace(ticker, last=FRACTION_31), f"tickers.last: {d31}"),
            (
                replace(ticker, ts_recv=recv + _ms(2), buy=Decimal("123456789012345678901")),
                f"tickers.buy: {i20}",
            ),
            (
                replace(ticker, ts_recv=recv + _ms(3), change=Decimal("NaN")),
                "tickers.change: not a finite number",
            ),
            (
                replace(
                    ticker,
                    ts_recv=recv + _ms(4),
                    ts_event=datetime.fromtimestamp(recv.timestamp() / 1000, UTC),
                ),  # epoch seconds read as ms
                "tickers.ts_event: more than 300 s before receipt",
            ),
            (replace(ticker, ts_recv=recv + _ms(5), symbol="ETH USDT"), "tickers.symbol: not a symbol"),
        ],
        "book_snapshots": [
            (
                replace(book, bids=((Decimal("200.0000000000000000001"), Decimal(1)),)),
                f"book_snapshots.best_bid: {d31}",
            ),
            (
                replace(book, ts_recv=recv + _ms(2), asks=((Decimal(201), Decimal("NaN")),)),
                "book_snapshots: cannot be converted",
            ),
            (
                replace(book, ts_recv=recv + _ms(3), ts_event=recv + timedelta(hours=1)),
                "book_snapshots.ts_event: more than 60 s after receipt",
            ),
            (
                replace(book, ts_recv=recv + _ms(4), symbol="a" * 20 + "_" + "b" * 20),
                "book_snapshots.symbol: longer than 32 characters",
            ),
        ],
        "deals": [
            (replace(deal, price=Decimal("1E-19")), f"deals.price: {d31}"),
            (replace(deal, tid=2**63), "deals.tid: beyond a 64-bit integer"),
            (
                replace(deal, tid=99_001, ts_event=recv - timedelta(hours=8)),  # UTC+8 read as UTC
                "deals.ts_event: more than 300 s before receipt",
            ),
        ],
        "klines": [
            (replace(kline, volume=Decimal("1E+21")), f"klines.volume: {i20}"),
            (
                replace(kline, period=KlinePeriod.MIN_1, ts_recv=T + timedelta(minutes=3)),
                "klines.ts_event: open more than one period + 60 s before receipt",
            ),
        ],
        "balances": [
            (
                replace(balance, free=Decimal("9999999999999999999.9999999999999999999")),
                f"balances.free: {d31}",
            ),
            (replace(balance, currency="c" * 17), "balances.currency: longer than 16 characters"),
            (replace(balance, currency="e\x00th"), "balances.currency: contains a NUL character"),
            (
                replace(balance, ts_recv=recv.replace(tzinfo=None)),
                "balances.ts_recv: not a timezone-aware datetime",
            ),
        ],
        "orders": [
            (replace(order, avg_price=Decimal("0.0000000000000000001")), f"orders.avg_price: {d31}"),
            (
                replace(order, order_id=900_001, ts_event=datetime(1970, 1, 21, tzinfo=UTC)),
                "orders.ts_event: before 2013-01-01",
            ),
            (replace(order, order_id=2**64), "orders.order_id: beyond a 64-bit integer"),
        ],
        "order_status_changes": [
            (replace(change, deal_amount=Decimal("1E-19")), f"order_status_changes.deal_amount: {d31}"),
            (replace(change, symbol="../x"), "order_status_changes.symbol: not a symbol"),
        ],
        "feed_events": [
            (replace(event, detail="nul \x00 inside"), "feed_events.detail: contains a NUL character"),
            (
                replace(event, event_id="bad2", connection="c" * 65),
                "feed_events.connection: longer than 64 characters",
            ),
        ],
        "instruments": [
            (replace(instrument, tick_size=FRACTION_31), f"instruments.tick_size: {d31}"),
            (replace(instrument, symbol="BAD/USDT"), "instruments.symbol: not a symbol"),
        ],
        "fills": [
            (replace(fill, bill_id="b" * 65), "fills.bill_id: longer than 64 characters"),
            (replace(fill, bill_id="bad2", venue="../v5"), "fills.venue: not a venue"),
        ],
        "quarantine": [],  # quarantine rows are repaired, never quarantined (see the repaired one below)
    }


UNFIT_QUARANTINE = QuarantinedFrame(
    ts_recv=T + _ms(7), connection="q" * 70, reason="nul \x00 reason", payload=b"x", channel="c"
)


def _sql_rows(url: str, table: str) -> list[Any]:
    return stored(url, table, order_by=DATASETS[table].date_column)


def _key(record: Any) -> Any:
    if isinstance(record, QuarantinedFrame):
        return (record.ts_recv, record.connection, record.reason, record.channel, bytes(record.payload))
    return record


@pytest.mark.parametrize("poisoned", sorted(DATASETS))
def test_one_bad_record_of_each_kind_costs_only_itself(
    poisoned: str, migrated_db_url: str, tmp_path: Path
) -> None:
    good = good_records()
    bad = bad_records()[poisoned]
    good["quarantine"].append(UNFIT_QUARANTINE)
    flush: list[Record] = []
    for name in DATASETS:  # a busy batch: every dataset interleaved, the bad ones in the middle
        rows = good[name]
        flush.extend(rows[: len(rows) // 2])
        if name == poisoned:
            flush.extend(r for r, _ in bad)
        flush.extend(rows[len(rows) // 2 :])
    root = tmp_path / "parquet"
    writer = StorageWriter(
        SqlStore(migrated_db_url),
        ParquetStore(root, journal_dir=tmp_path / "pqj", fsync=False),
        spill_dir=str(tmp_path / "spill"),
        fsync=False,
        plausibility=PlausibilityConfig(),
    )
    writer.write(flush)
    writer.flush()
    stats = writer.stats()
    writer.close()

    # nothing refused: both stores healthy, no outage
    for store in ("sql", "parquet"):
        assert stats[store].healthy is True and stats[store].last_error is None, store
        assert stats[store].outages == 0 and all(c.refused == 0 for c in stats[store].datasets.values())

    # counted per reason, once each
    expected_reasons = Counter(kind for _, kind in bad)
    q = writer.quarantine_stats()
    assert q["by_reason"] == dict(expected_reasons)
    assert q["total"] == len(bad)

    # the invariant, for every dataset, in both stores
    quarantined = Counter(dataset_for(r).name for r, _ in bad)
    in_parquet_all = {name: parquet_rows(root, name) for name in DATASETS}
    for name in DATASETS:
        produced = len(good[name]) + quarantined[name] + (len(bad) if name == "quarantine" else 0)
        in_sql = _sql_rows(migrated_db_url, name)
        in_parquet = in_parquet_all[name]
        extra = len(bad) if name == "quarantine" else 0  # the quarantine rows of the bad records
        assert len(in_sql) + quarantined[name] == produced == len(in_parquet) + quarantined[name], name
        assert stats["sql"].datasets[name].written == len(good[name]) + extra, name
        assert stats["parquet"].datasets[name].written == len(good[name]) + extra, name
        if name == "quarantine":
            continue
        # the neighbours: exactly what was produced, in both stores
        assert Counter(map(_key, in_sql)) == Counter(map(_key, good[name])), name
        assert Counter(map(_key, in_parquet)) == Counter(map(_key, good[name])), name

    # the quarantine rows: the good ones, the repaired one, and one per bad record with its reason
    # and its original values (exact decimal text)
    sql_q = _sql_rows(migrated_db_url, "quarantine")
    assert Counter(map(_key, sql_q)) == Counter(map(_key, in_parquet_all["quarantine"]))
    repaired = [r for r in sql_q if r.connection == "q" * 64]
    assert len(repaired) == 1 and repaired[0].reason == "nul \\x00 reason"
    made = [r for r in sql_q if r.connection == "storage"]
    by_kind = {next(k for _, k in bad if r.reason == k or r.reason.startswith(k + ": ")): r for r in made}
    assert len(made) == len(bad) and set(by_kind) == set(expected_reasons)
    for record, kind in bad:
        row = by_kind[kind]
        assert row.channel == poisoned
        payload = json.loads(row.payload)
        assert payload["dataset"] == poisoned
        for field_name in (
            "last",
            "buy",
            "price",
            "volume",
            "free",
            "avg_price",
            "deal_amount",
            "symbol",
            "currency",
            "detail",
        ):
            if hasattr(record, field_name):
                assert payload["values"][field_name] == str(getattr(record, field_name)), (kind, field_name)

"""Small recordings for the analysis tests, written through the storage layer.

:func:`hand_records` is a tiny recording with values chosen by hand (two symbols,
across a UTC midnight, with repeated states). :func:`synthetic_records` is a seeded
random-walk market of a few minutes for the notebooks. :func:`write_recording`
writes records to a SQL database (migrated first) and to a Parquet root, the way the
recorder does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from recorder.records import (
    Balance,
    BookSnapshot,
    ChannelKind,
    Deal,
    FeedEvent,
    FeedEventKind,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderStatusChange,
    OrderType,
    Record,
    Side,
    Ticker,
)
from recorder.storage import migrate
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore

D = Decimal
T = datetime(2024, 5, 1, 23, 59, 58, tzinfo=UTC)
"""Two seconds before midnight: the hand recording spans two ``date=`` partitions."""


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def hand_records() -> tuple[list[Record], list[Record]]:
    """Two batches: the second repeats orders, a kline and a feed event in later states."""
    first: list[Record] = []
    for i in range(4):  # btc tickers at T+0..3 (T+2 is midnight)
        first.append(
            Ticker(venue="okex_v1",
                   symbol="btc_usdt", ts_event=at(i), ts_recv=at(i + 0.01), buy=D(100 + i), sell=D(101 + i),
                   last=D("100.5") + i, high=D(110), low=D(90), vol=D(1000),
                   change=None if i == 0 else D("0.1"))
        )
    first.append(
        Ticker(venue="okex_v1",
               symbol="eth_usdt", ts_event=at(1), ts_recv=at(1.02), buy=D(10), sell=D("10.2"), last=D("10.1"),
               high=D(11), low=D(9), vol=D(50))
    )
    book = {"bids": ((D(100), D(1)), (D(99), D(2))), "asks": ((D(101), D(3)), (D(102), D(4)))}
    first += [
        BookSnapshot(venue="okex_v1",
                     symbol="btc_usdt", ts_event=at(0.5), ts_recv=at(0.52), source=ChannelKind.DEPTH.value,
                     **book),
        BookSnapshot(venue="okex_v1",
                     symbol="btc_usdt", ts_event=at(2.5), ts_recv=at(2.52), source=ChannelKind.DEPTH.value,
                     bids=((D("100.5"), D("0.5")),), asks=((D("101.5"), D("1.5")), (D(103), D(2)))),
        BookSnapshot(venue="okex_v1",
                     symbol="eth_usdt", ts_event=at(1.5), ts_recv=at(1.53), source=ChannelKind.DEPTH_5.value,
                     bids=((D(10), D(5)),), asks=()),
    ]
    for tid, (seconds, price, amount, side) in enumerate(
        [(0, "100.1", "0.5", Side.BUY), (1, "100.2", "1", Side.SELL), (2, "100.3", "2", Side.BUY),
         (3, "100.4", "0.25", Side.SELL)],
        start=1,
    ):
        first.append(Deal(venue="okex_v1",
                          symbol="btc_usdt", tid=tid, price=D(price), amount=D(amount), side=side,
                          ts_event=at(seconds), ts_recv=at(seconds + 0.05)))
    first.append(Deal(venue="okex_v1",
                      symbol="eth_usdt", tid=1, price=D("10.1"), amount=D(3), side=Side.BUY, ts_event=at(1),
                      ts_recv=at(1.05)))
    minute = datetime(2024, 5, 1, 23, 59, tzinfo=UTC)
    first.append(Kline(venue="okex_v1",
                       symbol="btc_usdt", period=KlinePeriod.MIN_1, ts_event=minute, ts_recv=at(0.1),
                       open=D(100), high=D(101), low=D(99), close=D(100), volume=D(5)))
    first += [
        Balance(venue="okex_v1", ts_recv=at(0), account="spot", currency="usdt", free=D(1000), frozen=D(0)),
        Balance(venue="okex_v1", ts_recv=at(0), account="spot", currency="btc", free=D(1), frozen=D("0.5")),
        Order(venue="okex_v1",
              order_id=7, symbol="btc_usdt", type=OrderType.BUY, price=D(101), amount=D(2), deal_amount=D(0),
              avg_price=D(0), status=OrderStatus.OPEN, ts_event=at(0), ts_recv=at(0.2)),
        OrderStatusChange(venue="okex_v1",
                          order_id=7, symbol="btc_usdt", status=OrderStatus.OPEN, previous_status=None,
                          deal_amount=D(0), ts_recv=at(0.2)),
        FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=at(1), ts_end=None, connection="ws-0",
                  symbols=("btc_usdt",), detail="1006", event_id="e" * 32),
    ]
    second: list[Record] = [
        Kline(venue="okex_v1", symbol="btc_usdt", period=KlinePeriod.MIN_1, ts_event=minute, ts_recv=at(1.9),
              open=D(100), high=D("101.5"), low=D(99), close=D("100.4"), volume=D("8.75")),
        Kline(venue="okex_v1", symbol="btc_usdt", period=KlinePeriod.MIN_1, ts_event=at(2), ts_recv=at(2.6),
              open=D("100.3"), high=D("100.4"), low=D("100.3"), close=D("100.4"), volume=D("2.25")),
        Kline(venue="okex_v1",
              symbol="btc_usdt", period=KlinePeriod.MIN_5, ts_event=datetime(2024, 5, 1, 23, 55, tzinfo=UTC),
              ts_recv=at(2.7), open=D(99), high=D(102), low=D(98), close=D("100.4"), volume=D(40)),
        Balance(venue="okex_v1",
                ts_recv=at(2.5), account="spot", currency="usdt", free=D("797.5"), frozen=D(0)),
        Balance(venue="okex_v1", ts_recv=at(2.5), account="spot", currency="btc", free=D("3.5"), frozen=D(0)),
        Order(venue="okex_v1",
              order_id=7, symbol="btc_usdt", type=OrderType.BUY, price=D(101), amount=D(2), deal_amount=D(2),
              avg_price=D("101.25"), status=OrderStatus.FILLED, ts_event=at(0), ts_recv=at(2.2)),
        OrderStatusChange(venue="okex_v1", order_id=7, symbol="btc_usdt", status=OrderStatus.FILLED,
                          previous_status=OrderStatus.OPEN, deal_amount=D(2), ts_recv=at(2.2)),
        Order(venue="okex_v1",
              order_id=8, symbol="eth_usdt", type=OrderType.SELL_MARKET, price=None, amount=D(1),
              deal_amount=D(0), avg_price=D(0), status=OrderStatus.CANCELLED, ts_event=at(1.1),
              ts_recv=at(1.2)),
        FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=at(1), ts_end=at(1.8), connection="ws-0",
                  symbols=("btc_usdt",), detail="1006", event_id="e" * 32),
        FeedEvent(kind=FeedEventKind.CONNECTED, ts_start=at(1.8), ts_end=at(1.8), connection="ws-1",
                  event_id="f" * 32),
    ]
    return first, second


def write_recording(batches: Sequence[Sequence[Record]], sql_url: str, parquet_root: Path) -> None:
    """Write each batch to both stores (SQL migrated first), then close them (Parquet files rolled)."""
    migrate.upgrade(sql_url)
    sql = SqlStore(sql_url)
    parquet = ParquetStore(parquet_root, fsync=False)
    try:
        for batch in batches:
            sql.write_batch(batch)
            parquet.write_batch(batch)
    finally:
        sql.close()
        parquet.close()


SYMBOLS = ("btc_usdt", "eth_usdt")
START = datetime(2024, 5, 1, 23, 58, tzinfo=UTC)


def synthetic_records(minutes: int = 4, seed: int = 7) -> list[Record]:
    """A seeded random-walk market: a snapshot and ticker per second and symbol, deals, 1-min
    klines, balances every 10 s, a few orders with their status changes, one disconnection."""
    rng = random.Random(seed)
    records: list[Record] = []
    mids = {"btc_usdt": 60_000.0, "eth_usdt": 3_000.0}
    ticks = {"btc_usdt": D("0.1"), "eth_usdt": D("0.01")}
    tid = 0
    candles: dict[tuple[str, datetime], list[Decimal]] = {}
    mid_at: dict[tuple[str, int], Decimal] = {}
    for second in range(minutes * 60):
        now = START + timedelta(seconds=second)
        for symbol in SYMBOLS:
            tick = ticks[symbol]
            mids[symbol] *= 1 + rng.gauss(0, 0.0004)
            center = (D(mids[symbol]) / tick).quantize(D(1)) * tick
            half = tick * rng.randint(1, 4)
            bids = tuple((center - half - tick * j, D(rng.randint(1, 400)) / 100) for j in range(20))
            asks = tuple((center + half + tick * j, D(rng.randint(1, 400)) / 100) for j in range(20))
            recv = now + timedelta(milliseconds=rng.randint(5, 80))
            records.append(BookSnapshot(venue="okex_v1",
                                        symbol=symbol, ts_event=now, ts_recv=recv, bids=bids, asks=asks,
                                        source=ChannelKind.DEPTH_20.value))
            mid_at[(symbol, second)] = center
            records.append(Ticker(venue="okex_v1",
                                  symbol=symbol, ts_event=now, ts_recv=recv, buy=bids[0][0], sell=asks[0][0],
                                  last=center, high=center, low=center, vol=D(1000)))
            for _ in range(rng.randint(0, 3)):
                tid += 1
                side = rng.choice([Side.BUY, Side.SELL])
                price = asks[0][0] if side is Side.BUY else bids[0][0]
                amount = D(rng.randint(1, 200)) / 100
                records.append(Deal(venue="okex_v1",
                                    symbol=symbol, tid=tid, price=price, amount=amount, side=side,
                                    ts_event=now, ts_recv=recv))
                start = now.replace(second=0)
                bar = candles.setdefault((symbol, start), [price, price, price, price, D(0)])
                bar[1], bar[2] = max(bar[1], price), min(bar[2], price)
                bar[3], bar[4] = price, bar[4] + amount
        if second % 10 == 0:
            records.append(Balance(venue="okex_v1",
                                   ts_recv=now, account="spot", currency="usdt", free=D(10_000 - second),
                                   frozen=D(0)))
            records.append(Balance(venue="okex_v1",
                                   ts_recv=now, account="spot", currency="btc", free=D(1) + D(second) / 1000,
                                   frozen=D(0)))
    for (symbol, start), (o, h, low, c, v) in candles.items():
        records.append(Kline(venue="okex_v1", symbol=symbol, period=KlinePeriod.MIN_1, ts_event=start,
                             ts_recv=start + timedelta(seconds=59), open=o, high=h, low=low, close=c,
                             volume=v))
    for n, second in enumerate(range(15, minutes * 60 - 30, 40)):
        created = START + timedelta(seconds=second)
        symbol = SYMBOLS[n % 2]
        buy = n % 3 != 1
        mid = mid_at[(symbol, second)]
        avg = mid * (D("1.0003") if buy else D("0.9996"))
        filled = n % 4 != 3
        status = OrderStatus.FILLED if filled else OrderStatus.CANCELLED
        done = created + timedelta(seconds=2 + n)
        records.append(Order(venue="okex_v1",
                             order_id=1000 + n, symbol=symbol, type=OrderType.BUY if buy else OrderType.SELL,
                             price=mid, amount=D(1), deal_amount=D(1) if filled else D("0.4"),
                             avg_price=avg.quantize(ticks[symbol]), status=status, ts_event=created,
                             ts_recv=done))
        records.append(OrderStatusChange(venue="okex_v1",
                                         order_id=1000 + n, symbol=symbol, status=OrderStatus.OPEN,
                                         previous_status=None, deal_amount=D(0),
                                         ts_recv=created + timedelta(milliseconds=300)))
        records.append(OrderStatusChange(venue="okex_v1", order_id=1000 + n, symbol=symbol, status=status,
                                         previous_status=OrderStatus.OPEN,
                                         deal_amount=D(1) if filled else D("0.4"), ts_recv=done))
    records.append(FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=START + timedelta(seconds=70),
                             ts_end=START + timedelta(seconds=75), connection="ws-0", symbols=SYMBOLS,
                             detail="synthetic"))
    return records

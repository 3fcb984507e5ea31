"""The screen's rules (schema-derived storage rules, plausibility windows) and the writer's isolation
of rows a store still refuses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.config import PlausibilityConfig, load_config
from recorder.errors import ConfigError, StorageError, StoreUnavailableError
from recorder.records import (
    Balance,
    Deal,
    FeedEventKind,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderType,
    QuarantinedFrame,
    Record,
    Side,
    Ticker,
)
from recorder.storage.parquet import ParquetStore
from recorder.storage.schema import Batch
from recorder.storage.sql import SqlStore
from recorder.storage.validate import Screen, ScreenResult
from recorder.storage.writer import REFUSAL_HOLD, StorageWriter
from tests.collector.helpers import stored
from tests.faults.helpers import parquet_rows
from tests.fixtures.storage import ManualClock

R = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ticker(ts_event: datetime, *, last: str = "1", ts_recv: datetime = R) -> Ticker:
    return Ticker(venue="okex_v1",
        symbol="btc_usdt",
        ts_event=ts_event,
        ts_recv=ts_recv,
        buy=Decimal(1),
        sell=Decimal(2),
        last=Decimal(last),
        high=Decimal(2),
        low=Decimal(1),
        vol=Decimal(1),
    )


def kline(period: KlinePeriod, open_: datetime) -> Kline:
    return Kline(venue="okex_v1",
        symbol="btc_usdt",
        period=period,
        ts_event=open_,
        ts_recv=R,
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        volume=Decimal(1),
    )


def deal(ts_event: datetime, tid: int = 1) -> Deal:
    return Deal(venue="okex_v1",
        symbol="btc_usdt",
        tid=tid,
        price=Decimal(1),
        amount=Decimal(1),
        side=Side.BUY,
        ts_event=ts_event,
        ts_recv=R,
    )


def order(created: datetime) -> Order:
    return Order(venue="okex_v1",
        order_id=1,
        symbol="btc_usdt",
        type=OrderType.BUY,
        price=Decimal(1),
        amount=Decimal(1),
        deal_amount=Decimal(0),
        avg_price=Decimal(0),
        status=OrderStatus.OPEN,
        ts_event=created,
        ts_recv=R,
    )


def kinds(screen: Screen, records: Sequence[Record]) -> list[str | None]:
    return [None if (p := screen.problem(r)) is None else p.kind for r in records]


def test_plausibility_windows_per_kind_of_exchange_time() -> None:
    s = Screen(PlausibilityConfig())
    sec = timedelta(seconds=1)
    assert kinds(
        s, [ticker(R - 300 * sec), ticker(R - 301 * sec), ticker(R + 60 * sec), ticker(R + 61 * sec)]
    ) == [
        None,
        "tickers.ts_event: more than 300 s before receipt",
        None,
        "tickers.ts_event: more than 60 s after receipt",
    ]
    # deals: HH:MM:SS has 1 s resolution: the window widens by a second
    assert kinds(s, [deal(R - 301 * sec), deal(R - 302 * sec), deal(R - timedelta(hours=8))]) == [
        None,
        "deals.ts_event: more than 300 s before receipt",
        "deals.ts_event: more than 300 s before receipt",
    ]
    # klines: the open lies up to one period (+ 60 s slack) before receipt, whatever the period
    one_period = "klines.ts_event: open more than one period + 60 s before receipt"
    assert kinds(
        s,
        [
            kline(KlinePeriod.MIN_1, R - 120 * sec),
            kline(KlinePeriod.MIN_1, R - 121 * sec),
            kline(KlinePeriod.DAY_1, R - timedelta(hours=23)),
            kline(KlinePeriod.DAY_1, R - timedelta(days=2)),
            kline(KlinePeriod.MIN_1, R + 61 * sec),
        ],
    ) == [None, one_period, None, one_period, "klines.ts_event: more than 60 s after receipt"]
    # orders: created any time after orders_not_before, not in the future
    assert kinds(
        s,
        [
            order(R - timedelta(days=40)),
            order(datetime(1970, 1, 21, tzinfo=UTC)),
            order(R + timedelta(minutes=5)),
        ],
    ) == [None, "orders.ts_event: before 2013-01-01", "orders.ts_event: more than 60 s after receipt"]
    # balances carry no exchange time; switched off, only the storage rules remain
    off = Screen(PlausibilityConfig(enabled=False))
    assert kinds(off, [ticker(datetime(1970, 1, 21, tzinfo=UTC)), ticker(R, last="1E-19")]) == [
        None,
        "tickers.last: more than 18 fractional digits (Parquet decimal128(38, 18))",
    ]


def test_the_column_wise_fast_path_finds_what_the_record_rules_find() -> None:
    s = Screen(PlausibilityConfig())
    good = [ticker(R - timedelta(milliseconds=i), ts_recv=R + timedelta(milliseconds=i)) for i in range(50)]
    bad = [
        ticker(R - timedelta(hours=1), ts_recv=R + timedelta(seconds=1)),
        replace(good[0], ts_recv=R + timedelta(seconds=2), symbol="btc_usdt" + "x" * 30),
    ]
    result = s.screen([*good[:25], *bad, *good[25:]])
    assert isinstance(result, ScreenResult)
    assert [p.kind for _, p in result.quarantined] == [
        "tickers.ts_event: more than 300 s before receipt",
        "tickers.symbol: longer than 32 characters",
    ]
    assert list(result.batch.groups["tickers"]) == good
    assert result.batch.table("tickers").num_rows == 50  # built once, shared by both stores
    assert [q.reason.split(":")[0] for q in result.batch.groups["quarantine"]] == [
        "tickers.ts_event",
        "tickers.symbol",
    ]


def test_table_problems_name_the_rows_an_arrow_table_holds_and_a_store_cannot() -> None:
    """Rows arriving as Arrow tables (the bus writer's input): each problem row by index, nothing else."""
    import pyarrow as pa

    from recorder.storage.schema import DATASETS
    from recorder.storage.validate import record_at, table_problems

    rows = [ticker(R - timedelta(milliseconds=i), ts_recv=R + timedelta(milliseconds=i)) for i in range(6)]
    rows[1] = replace(rows[1], symbol="btc/../../etc")
    rows[3] = replace(rows[3], venue="okex_v1" + "x" * 20)
    table = Batch.of(rows).table("tickers")
    venue = table.column("venue").to_pylist()
    venue[5] = None  # not nullable; Arrow's cast does not refuse it
    table = table.set_column(0, "venue", pa.array(venue, pa.string()))
    problems = table_problems(DATASETS["tickers"], table)
    assert {j: p.kind for j, p in problems.items()} == {
        1: "tickers.symbol: not a symbol", 3: "tickers.venue: longer than 16 characters",
        5: "tickers.venue: missing"}
    assert table_problems(DATASETS["tickers"], table.take([0, 2, 4])) == {}
    assert record_at(DATASETS["tickers"], table, 2) == rows[2]


def test_a_repaired_quarantine_row_keeps_its_venue() -> None:
    frame = QuarantinedFrame(ts_recv=R, connection="ws-0", reason="nul \x00 reason", payload=b"x",
                             channel="tickers", collector="c", venue="okx_v5")
    (q,) = Screen(None).screen([frame]).batch.groups["quarantine"]
    assert q == replace(frame, reason="nul \\x00 reason")


def test_a_record_set_aside_is_quarantined_under_its_own_venue() -> None:
    """The quarantine row of a record the stores cannot hold names the record's venue (it had venue
    "", kept for events of no one venue); a record whose venue is itself unfit names none."""
    huge = Decimal("1" * 51)  # more digits than the price column holds
    v5 = replace(deal(R), venue="okx_v5", symbol="BTC-USDT", price=huge)
    bad_venue = replace(ticker(R), venue="okx/v5")
    result = Screen(None).screen([v5, bad_venue, ticker(R, last="2")])
    rows = result.batch.groups["quarantine"]
    assert [(q.venue, q.channel) for q in rows] == [("okx_v5", "deals"), ("", "tickers")]
    assert [t.last for t in result.batch.groups["tickers"]] == [Decimal(2)]


def test_plausibility_keys_come_from_the_toml_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[plausibility]\nmax_behind_seconds = 30\nmax_ahead_seconds = 5\nkline_slack_seconds = 10\n"
        "orders_not_before = '2015-06-01'\n"
    )
    p = load_config(path, env={}).plausibility
    assert (p.max_behind_seconds, p.max_ahead_seconds, p.kline_slack_seconds, p.orders_earliest) == (
        30.0,
        5.0,
        10.0,
        datetime(2015, 6, 1, tzinfo=UTC),
    )
    assert load_config(env={"OKEX_RECORDER__PLAUSIBILITY__ENABLED": "false"}).plausibility.enabled is False
    with pytest.raises(ConfigError, match=r"plausibility\.max_behind_seconds"):
        load_config(overrides={"plausibility": {"max_behind_seconds": -1}}, env={})
    with pytest.raises(ConfigError, match=r"plausibility\.orders_not_before"):
        load_config(overrides={"plausibility": {"orders_not_before": "soon"}}, env={})


class PickyStore:
    """A store that refuses (for good) any batch holding a balance of currency ``bad``; can go down."""

    def __init__(self) -> None:
        self.rows: list[Record] = []
        self.calls = 0

    def write_batch(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if any(isinstance(r, Balance) and r.currency == "bad" for r in records):
            raise StorageError("value refused: currency 'bad'")
        self.rows.extend(records)

    def close(self) -> None:
        pass


def balances(n: int) -> list[Balance]:
    return [
        Balance(venue="okex_v1",
            ts_recv=R + timedelta(seconds=i),
            account="spot",
            currency="bad" if i in (3, 37) else "btc",
            free=Decimal(i),
            frozen=Decimal(0),
        )
        for i in range(n)
    ]


def test_a_store_that_still_refuses_a_batch_isolates_the_refused_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder")
    picky, clock = PickyStore(), ManualClock()
    parquet = ParquetStore(tmp_path / "pq", journal_dir=tmp_path / "pqj", fsync=False)
    writer = StorageWriter(picky, parquet, clock=clock)
    rows = balances(64)
    writer.write(rows)
    writer.flush()
    writer.flush()  # the quarantine rows of the refused ones
    stats = writer.stats()
    kept = [r for r in rows if r.currency == "btc"]
    assert [r for r in picky.rows if isinstance(r, Balance)] == kept  # neighbours written, in order
    assert picky.calls <= 2 * 2 * 6 + 1  # halving (2 bad rows, depth log2(64)), not one write per row
    assert stats["sql"].datasets["balances"].written == 62 and stats["sql"].datasets["balances"].refused == 2
    assert stats["sql"].healthy is False and "refused balances rows" in (stats["sql"].last_error or "")
    assert stats["sql"].datasets["balances"].pending == 0  # neither kept nor retried: isolated
    q = [r for r in picky.rows if isinstance(r, QuarantinedFrame)]
    assert [r.reason for r in q] == ["balances: refused by the sql store: value refused: currency 'bad'"] * 2
    assert writer.quarantine_stats()["by_reason"] == {"balances: refused by the sql store": 2}
    assert stats["parquet"].healthy is True and stats["parquet"].datasets["balances"].written == 64
    assert not any("kept" in r.getMessage() and "retried" in r.getMessage() for r in caplog.records)
    clock.advance(REFUSAL_HOLD + 1)
    assert writer.stats()["sql"].healthy is True
    writer.close()


@pytest.mark.parametrize("broken", ["nul", "digits"])
def test_real_stores_refusing_unscreened_rows_isolate_them(
    broken: str, migrated_db_url: str, tmp_path: Path
) -> None:
    """With the screen switched off, PostgreSQL refuses a NUL and Parquet 31 decimals: bisection copes."""
    root = tmp_path / "pq"
    writer = StorageWriter(
        SqlStore(migrated_db_url), ParquetStore(root, journal_dir=tmp_path / "pqj", fsync=False)
    )
    writer._screen.screen = lambda records: ScreenResult(Batch(list(records)), [])  # type: ignore[method-assign]
    rows = balances(40)
    if broken == "nul":
        rows[11] = replace(rows[11], currency="e\x00th")
    else:
        rows[11] = replace(rows[11], free=Decimal("0.1234567890123456789012345678901"))
    writer.write(rows)
    writer.flush()
    writer.close()
    good = list(rows)  # currency "bad" is fine for the real stores
    in_sql = stored(migrated_db_url, "balances")
    in_pq = sorted(parquet_rows(root, "balances"), key=lambda r: r.ts_recv)
    refused_by = {
        "nul": "postgresql" if migrated_db_url.startswith("postgresql") else None,
        "digits": "parquet",
    }
    if refused_by[broken] == "parquet":
        assert in_pq == [r for r in good if r is not rows[11]] and in_sql == good
    elif refused_by[broken] == "postgresql":
        assert in_sql == [r for r in good if r is not rows[11]] and in_pq == good
    else:  # SQLite holds a NUL
        assert in_sql == good == in_pq


class DownStore:
    """Always unavailable."""

    def write_batch(self, records: Sequence[Record]) -> None:
        raise StoreUnavailableError("database postgresql://***@db/rec unreachable: connection refused")

    def close(self) -> None:
        pass


def test_a_store_still_down_at_close_gets_a_closed_outage_span_everywhere(tmp_path: Path) -> None:
    parquet = ParquetStore(tmp_path / "pq", journal_dir=tmp_path / "pqj", fsync=False)
    writer = StorageWriter(
        DownStore(), parquet, clock=ManualClock(), spill_dir=str(tmp_path / "spill"), fsync=False
    )
    writer.write(balances(5))
    writer.flush()
    assert writer.stats()["sql"].outage_since is not None and writer.stats()["sql"].outages == 1
    writer.close()  # nothing lost: the SQL side is spilled, replayed at the next start
    spans = [e for e in parquet_rows(tmp_path / "pq", "feed_events") if e.kind is FeedEventKind.STORE_OUTAGE]
    assert [e.ts_end is None for e in spans] == [True, False] and spans[0].event_id == spans[1].event_id
    assert spans[1].connection == "sql" and spans[1].detail.endswith("(still out at shutdown)")
    # the SQL side waits in the spill journal (both span rows and the balances), replayed at the next start
    assert {p.parent.name for p in (tmp_path / "spill").rglob("*.arrows")} == {
        "sql.balances",
        "sql.feed_events",
    }

"""End to end: the okx_v5 venue (session + a minimal shell) against the v5 simulator's ground truth.

Every stored books snapshot equals the exchange's book at that seqId level for level; tickers,
trades, candles, books5 and bbo-tbt equal what was sent; each injected sequence gap or checksum
mismatch is a gap span followed by a correct book; a notice is a planned gap and a reconnect.
The market is stepped by hand (``advance``), so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from recorder.records import BookSnapshot, Deal, FeedEvent, FeedEventKind, Kline, KlinePeriod, Ticker
from recorder.simulator.okx_v5 import Simulator, V5Settings
from recorder.venues.okx_v5.settings import V5VenueSettings, parse_settings

from .shell import MiniShell, until

INST = "BTC-USDT"
SEED = 20260101


def venue_settings(sim: Simulator, **table: Any) -> V5VenueSettings:
    base: dict[str, Any] = {
        "public_url": sim.public_url, "business_url": sim.business_url, "private_url": sim.private_url,
        "rest_url": sim.rest_url, "instruments": [INST], "channels": ["tickers", "books", "trades"],
        "candle_bars": ["1m"], "record_instruments": True,
    }  # fmt: skip
    base.update(table)
    return parse_settings(base)


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    changes = getattr(request, "param", {})
    settings = V5Settings(seed=SEED, updates_per_second=0.0, instruments=(INST, "ETH-USDT"), **changes)
    async with Simulator(settings) as s:
        yield s


def _levels(levels: Any, n: int) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(lv[0]), Decimal(lv[1])) for lv in levels[:n])


def books_truth(sim: Simulator, channel: str = "books") -> dict[int, Any]:
    return {p.seq: p for p in sim.truth.pushes(f"{channel}:{INST}") if p.seq is not None}


def snapshots(out: list[Any], source: str = "books") -> list[BookSnapshot]:
    return [r for r in out if isinstance(r, BookSnapshot) and r.source == source and r.symbol == INST]


def events(out: list[Any], kind: FeedEventKind) -> list[FeedEvent]:
    return [r for r in out if isinstance(r, FeedEvent) and r.kind is kind]


async def _caught_up(sim: Simulator, shell: MiniShell) -> None:
    """Wait until the session's book holds the exchange's last seqId."""
    sess = shell.session("okx_v5-public")

    def done() -> bool:
        truth = sim.truth.pushes(f"books:{INST}")
        core = sess.core
        book = core.book("books", INST) if core is not None else None
        return bool(truth) and book is not None and book.seq_id == truth[-1].seq

    await until(done, what="the book to catch up with the exchange")


def check_books(sim: Simulator, out: list[Any], depth: int = 20) -> int:
    truth = books_truth(sim)
    snaps = snapshots(out)
    for snap in snaps:
        assert snap.seq_id is not None
        t = truth[snap.seq_id]
        assert snap.bids == _levels(t.bids, depth), snap.seq_id
        assert snap.asks == _levels(t.asks, depth), snap.seq_id
        assert snap.venue == "okx_v5"
    return len(snaps)


async def test_books_tickers_trades_candles_exact(sim: Simulator) -> None:
    settings = venue_settings(sim, channels=["tickers", "books", "trades", "books5", "bbo-tbt"])
    async with MiniShell(settings) as shell:
        await until(lambda: len(snapshots(shell.out)) >= 1, what="the first books snapshot")
        await sim.advance(60, INST)
        await _caught_up(sim, shell)
        n_trades = len(sim.truth.pushes(f"trades:{INST}"))
        await until(lambda: len([r for r in shell.out if isinstance(r, Deal)]) >= n_trades, what="trades")
        sim.push_candles()
        await until(lambda: any(isinstance(r, Kline) for r in shell.out), what="a candle")
    out = shell.out
    assert check_books(sim, out) >= 10
    # the cadence: one snapshot per change of the top 20 levels, never two equal ones in a row
    snaps = snapshots(out)
    assert all((a.bids, a.asks) != (b.bids, b.asks) for a, b in itertools.pairwise(snaps))
    # tickers
    tickers = [r for r in out if isinstance(r, Ticker)]
    sent = [p.data for p in sim.truth.pushes(f"tickers:{INST}")]
    assert len(tickers) == len(sent) > 0
    for rec, d in zip(tickers, sent, strict=True):
        assert (rec.buy, rec.sell, rec.last, rec.vol) == (
            Decimal(d["bidPx"]), Decimal(d["askPx"]), Decimal(d["last"]), Decimal(d["vol24h"]))
        assert rec.vol_quote == Decimal(d["volCcy24h"]) and rec.symbol == INST and rec.venue == "okx_v5"
    # trades
    deals = [r for r in out if isinstance(r, Deal)]
    items = [p.data for p in sim.truth.pushes(f"trades:{INST}")]
    assert [(d.tid, d.price, d.amount, d.side.value, d.count) for d in deals] == [
        (int(i["tradeId"]), Decimal(i["px"]), Decimal(i["sz"]), i["side"], int(i["count"])) for i in items]
    # candles
    klines = [r for r in out if isinstance(r, Kline)]
    rows = [p.data for p in sim.truth.pushes(f"candle1m:{INST}")]  # pushed every second: a prefix arrived
    assert 0 < len(klines) <= len(rows)
    for k, row in zip(klines, rows, strict=False):
        assert k.period is KlinePeriod.MIN_1
        assert int(k.ts_event.timestamp() * 1000) == int(row[0])
        assert (k.open, k.high, k.low, k.close, k.volume) == tuple(Decimal(x) for x in row[1:6])
        assert k.volume_quote == Decimal(row[7]) and k.confirmed is (row[8] == "1")
    # books5 / bbo-tbt: every push stored as sent
    for channel, n in (("books5", 5), ("bbo-tbt", 1)):
        stored = snapshots(out, channel)
        pushes = sim.truth.pushes(f"{channel}:{INST}")
        assert len(stored) == len(pushes) > 0
        for s, p in zip(stored, pushes, strict=True):
            assert s.bids == _levels(p.data["bids"], n) and s.asks == _levels(p.data["asks"], n)
            assert s.seq_id == p.data["seqId"]
    # nothing quarantined, no gaps
    assert not [r for r in out if type(r).__name__ == "QuarantinedFrame"]
    assert not events(out, FeedEventKind.SEQUENCE_BREAK) and not events(out, FeedEventKind.CHECKSUM_MISMATCH)
    # instruments: reference data of the configured instrument only
    insts: list[Any] = [r for r in out if type(r).__name__ == "Instrument"]
    assert [i.symbol for i in insts] == [INST]


async def test_sequence_gap_is_a_span_then_a_correct_book(sim: Simulator) -> None:
    async with MiniShell(venue_settings(sim, channels=["books"], candle_bars=[])) as shell:
        await until(lambda: len(snapshots(shell.out)) >= 1, what="the first snapshot")
        await sim.advance(5, INST)
        await _caught_up(sim, shell)
        for _ in range(2):
            sim.inject_gap(INST)
            await sim.advance(10, INST)
            await _caught_up(sim, shell)
            await sim.advance(5, INST)
            await _caught_up(sim, shell)
    out = shell.out
    breaks = events(out, FeedEventKind.SEQUENCE_BREAK)
    opened = [e for e in breaks if e.ts_end is None]
    closed = [e for e in breaks if e.ts_end is not None]
    assert len(opened) == 2 and len(closed) == 2
    assert {e.event_id for e in opened} == {e.event_id for e in closed}
    assert all(e.venue == "okx_v5" and e.symbols == (INST,) and e.channel == "books" for e in breaks)
    check_books(sim, out)
    # after each break, nothing is stored until the resubscription's snapshot
    for e in closed:
        inside = [s for s in snapshots(out) if e.ts_start < s.ts_recv < e.ts_end]  # type: ignore[operator]
        assert inside == []
    # the channel was resubscribed (unsubscribe + subscribe)
    unsubs = [m for _, m in shell.sent if '"unsubscribe"' in m and '"books"' in m]
    assert len(unsubs) == 2


@pytest.mark.parametrize("sim", [{"checksum": "crc32"}], indirect=True)
async def test_checksum_verified_and_mismatch_is_a_span(sim: Simulator) -> None:
    async with MiniShell(venue_settings(sim, channels=["books"], candle_bars=[])) as shell:
        await until(lambda: len(snapshots(shell.out)) >= 1, what="the first snapshot")
        await sim.advance(20, INST)
        await _caught_up(sim, shell)
        sim.inject_bad_checksum(INST)
        await sim.advance(10, INST)
        await _caught_up(sim, shell)
    out = shell.out
    spans = events(out, FeedEventKind.CHECKSUM_MISMATCH)
    assert len([e for e in spans if e.ts_end is None]) == 1 and len([e for e in spans if e.ts_end]) == 1
    assert "checksum mismatch" in spans[0].detail
    check_books(sim, out)
    assert not events(out, FeedEventKind.SEQUENCE_BREAK)


async def test_notice_is_a_planned_gap_and_a_reconnect(sim: Simulator) -> None:
    async with MiniShell(venue_settings(sim, channels=["books", "tickers"], candle_bars=[])) as shell:
        await until(lambda: len(snapshots(shell.out)) >= 1, what="the first snapshot")
        await sim.advance(5, INST)
        await _caught_up(sim, shell)
        assert sim.notice(close_after=30.0) == 1
        await until(lambda: shell.connects.get("okx_v5-public-0", 0) >= 2, what="the replacement connection")
        await sim.advance(5, INST)
        await _caught_up(sim, shell)
    out = shell.out
    planned = events(out, FeedEventKind.PLANNED_DISCONNECT)
    assert len(planned) == 2 and planned[0].ts_end is None and planned[1].ts_end is not None
    assert "64008" in planned[0].detail
    assert not events(out, FeedEventKind.DISCONNECTED)  # the planned span covers the replacement
    check_books(sim, out)
    # the new connection delivered a fresh snapshot after the planned span closed
    end = planned[1].ts_end
    assert end is not None and any(s.ts_recv >= end for s in snapshots(out))


async def test_refused_subscription_is_retried_with_code_and_text(sim: Simulator) -> None:
    sim.refuse_subscription("tickers", INST, code="60018", count=2)
    settings = venue_settings(sim, channels=["tickers"], candle_bars=[], reconnect_initial=0.05)
    async with MiniShell(settings) as shell:
        await until(lambda: any(isinstance(r, Ticker) for r in shell.out), what="the ticker after retries")
    refused = events(shell.out, FeedEventKind.SUBSCRIBE_REFUSED)
    assert len(refused) == 2 and refused[0].ts_end is None and refused[1].ts_end is not None
    assert refused[0].detail.startswith("60018 wrong URL, or channel/instId does not exist")
    assert refused[0].channel == "tickers" and refused[0].symbols == (INST,)
    subs = [m for _, m in shell.sent if '"subscribe"' in m and '"tickers"' in m]
    assert len(subs) == 3


async def test_connection_loss_is_a_gap_and_books_reset(sim: Simulator) -> None:
    async with MiniShell(venue_settings(sim, channels=["books"], candle_bars=[])) as shell:
        await until(lambda: len(snapshots(shell.out)) >= 1, what="the first snapshot")
        await sim.advance(5, INST)
        await _caught_up(sim, shell)
        assert sim.drop_connections() >= 1
        await until(lambda: shell.connects.get("okx_v5-public-0", 0) >= 2, what="the reconnect")
        await asyncio.sleep(0)
        await sim.advance(5, INST)
        await _caught_up(sim, shell)
    out = shell.out
    gaps = events(out, FeedEventKind.DISCONNECTED)
    resets = events(out, FeedEventKind.BOOK_RESET)
    assert len(gaps) == 2 and gaps[1].ts_end is not None
    assert len(resets) == 2 and resets[1].ts_end is not None
    check_books(sim, out)

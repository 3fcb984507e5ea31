"""Per-instrument v5 message building around the shared market model (PROTOCOL.md v5 §3, §4). Pure.

:class:`InstFeed` wraps one :class:`~recorder.simulator.market.SymbolMarket`
(depth 400) and owns the instrument's book sequence (``seqId``, identical for
every connection, §3.2 rule 1). It turns a market step into the ``books``
update (levels ``[px, sz, "0", count]``, asks ascending, bids descending, size
``"0"`` = delete), and builds snapshots, ``books5``, ``bbo-tbt``, tickers,
trades and candle rows, all with string numbers.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from recorder.records import KlinePeriod, Side
from recorder.simulator.market import BookSide, StepResult, SymbolMarket, Trade, period_start
from recorder.simulator.okx_v5.wire import Level, checksum, level, s
from recorder.venues.okex_v1.pairs import Pair

BOOK_DEPTH = 400
# v5 bar -> the model's period. UTC+8-aligned bars (6H, 12H, 1D, ...) and weeks/months are not modelled.
BARS: dict[str, KlinePeriod] = {
    "1m": KlinePeriod.MIN_1,
    "3m": KlinePeriod.MIN_3,
    "5m": KlinePeriod.MIN_5,
    "15m": KlinePeriod.MIN_15,
    "30m": KlinePeriod.MIN_30,
    "1H": KlinePeriod.HOUR_1,
    "2H": KlinePeriod.HOUR_2,
    "4H": KlinePeriod.HOUR_4,
    "6Hutc": KlinePeriod.HOUR_6,
    "12Hutc": KlinePeriod.HOUR_12,
    "1Dutc": KlinePeriod.DAY_1,
}
_Q8 = Decimal("0.00000001")

BookStrings = tuple[tuple[str, str], ...]


class InstFeed:
    """The v5 view of one instrument's market."""

    def __init__(self, inst_id: str, market: SymbolMarket, *, seed: int) -> None:
        self.inst_id = inst_id
        self.market = market
        rng = random.Random(f"okx-v5-sim:{seed}:{inst_id}:seq")
        self.seq_id = rng.randint(10_000_000, 2_000_000_000)
        self._rng = rng
        self.pending_reset: int | None = None  # next update restarts the sequence at this seqId
        self.last_book_ms = 0  # when the last books message (update or heartbeat) was built
        self.top5: tuple[Any, ...] = ()
        self.top1: tuple[Any, ...] = ()
        self.trade_seq = rng.randint(1_000, 100_000)
        self.state = "live"  # instrument state (§4.5), see Simulator.set_instrument_state

    @property
    def pair(self) -> Pair:
        return self.market.pair

    # ---- books -----------------------------------------------------------------------------------
    def levels(self, depth: int = BOOK_DEPTH) -> tuple[list[Level], list[Level]]:
        """``(bids highest first, asks lowest first)`` as wire levels, ``depth`` per side."""
        bids, asks = self.market.book(depth)
        return [level(p, a) for p, a in bids], [level(p, a) for p, a in asks]

    def book_strings(self) -> tuple[BookStrings, BookStrings]:
        """The full book as ``(px, sz)`` strings (ground truth), bids highest first, asks lowest first."""
        bids, asks = self.market.book(BOOK_DEPTH)
        return tuple((s(p), s(a)) for p, a in bids), tuple((s(p), s(a)) for p, a in asks)

    def checksum(self, crc: bool) -> int:
        """0, or the CRC32 checksum of the current book (§3.2) when ``crc``."""
        if not crc:
            return 0
        bids, asks = self.levels(25)
        return checksum(bids, asks)

    def snapshot(self, ts_ms: int, *, crc: bool) -> dict[str, Any]:
        """A ``books`` snapshot data item: 400 levels, ``prevSeqId`` -1, the current ``seqId``."""
        bids, asks = self.levels()
        return {"asks": asks, "bids": bids, "ts": str(ts_ms), "checksum": self.checksum(crc),
                "prevSeqId": -1, "seqId": self.seq_id}  # fmt: skip

    def update(self, step: StepResult, *, crc: bool) -> dict[str, Any] | None:
        """The ``books`` update for a market step (None when the book did not change); advances seqId.

        A pending sequence reset (:attr:`pending_reset`) makes this update's ``seqId`` smaller than its
        ``prevSeqId`` (§3.2 rule 5).
        """
        last: dict[tuple[BookSide, Decimal], Decimal] = {}
        for ch in step.changes:
            last[(ch.side, ch.price)] = ch.amount
        if not last:
            return None
        bids = sorted(((p, a) for (side, p), a in last.items() if side is BookSide.BID), reverse=True)
        asks = sorted((p, a) for (side, p), a in last.items() if side is BookSide.ASK)
        prev = self.seq_id
        if self.pending_reset is not None:
            self.seq_id, self.pending_reset = self.pending_reset, None
        else:
            self.seq_id += self._rng.randint(1, 4)
        self.last_book_ms = step.ts_ms
        return {"asks": [level(p, a) for p, a in asks], "bids": [level(p, a) for p, a in bids],
                "ts": str(step.ts_ms), "checksum": self.checksum(crc), "prevSeqId": prev,
                "seqId": self.seq_id}  # fmt: skip

    def heartbeat(self, ts_ms: int, *, crc: bool) -> dict[str, Any]:
        """An empty update with ``seqId == prevSeqId`` (§3.2 rule 4)."""
        self.last_book_ms = ts_ms
        return {"asks": [], "bids": [], "ts": str(ts_ms), "checksum": self.checksum(crc),
                "prevSeqId": self.seq_id, "seqId": self.seq_id}  # fmt: skip

    def books5(self, ts_ms: int) -> dict[str, Any]:
        """A ``books5`` data item (full 5 levels, ``instId``, ``seqId``, no ``prevSeqId``/checksum)."""
        bids, asks = self.levels(5)
        return {"asks": asks, "bids": bids, "instId": self.inst_id, "ts": str(ts_ms), "seqId": self.seq_id}

    def bbo(self, ts_ms: int) -> dict[str, Any]:
        """A ``bbo-tbt`` data item (1 level per side)."""
        bids, asks = self.levels(1)
        return {"asks": asks, "bids": bids, "ts": str(ts_ms), "seqId": self.seq_id}

    def top_changed(self) -> tuple[bool, bool]:
        """Whether the top 5 / top 1 levels changed since the last call."""
        bids, asks = self.market.book(5)
        top5 = (tuple(bids), tuple(asks))
        top1 = (tuple(bids[:1]), tuple(asks[:1]))
        c5, c1 = top5 != self.top5, top1 != self.top1
        self.top5, self.top1 = top5, top1
        return c5, c1

    # ---- ticker, trades, candles ---------------------------------------------------------------
    def ticker(self, ts_ms: int) -> dict[str, str]:
        """The ticker item shared by the WS channel and REST (§3.1, §4.1)."""
        m = self.market
        t = m.ticker()
        bids, asks = m.book(1)
        open24 = t.last - t.change
        day = m.klines[KlinePeriod.DAY_1].get(period_start(ts_ms, KlinePeriod.DAY_1))
        last_sz = m.trades[-1].amount if m.trades else Decimal(0)
        return {
            "instType": "SPOT", "instId": self.inst_id, "last": s(t.last), "lastSz": s(last_sz),
            "askPx": s(asks[0][0]) if asks else "", "askSz": s(asks[0][1]) if asks else "",
            "bidPx": s(bids[0][0]) if bids else "", "bidSz": s(bids[0][1]) if bids else "",
            "open24h": s(open24), "high24h": s(t.high), "low24h": s(t.low),
            "volCcy24h": s((t.vol * t.last).quantize(_Q8)), "vol24h": s(t.vol),
            "sodUtc0": s(day[0]) if day else s(open24), "sodUtc8": s(open24), "ts": str(ts_ms),
        }  # fmt: skip

    def trade_items(self, trades: tuple[Trade, ...]) -> list[dict[str, Any]]:
        """``trades`` channel items: one per (taker order, price); ``tradeId`` the last of ``count``."""
        groups: list[list[Trade]] = []
        for t in trades:
            if groups and groups[-1][-1].price == t.price and groups[-1][-1].side is t.side:
                groups[-1].append(t)
            else:
                groups.append([t])
        out = []
        for g in groups:
            self.trade_seq += 1
            out.append({
                "instId": self.inst_id, "tradeId": str(g[-1].tid), "px": s(g[-1].price),
                "sz": s(sum((t.amount for t in g), Decimal(0))), "side": _side(g[-1].side),
                "ts": str(g[-1].ts_ms), "count": str(len(g)), "source": "0", "seqId": self.trade_seq,
            })  # fmt: skip
        return out

    def trade_all_item(self, t: Trade) -> dict[str, str]:
        """A ``trades-all`` item / a REST trade (§3.3, §4.3): one fill, no ``count``/``seqId``."""
        return {"instId": self.inst_id, "tradeId": str(t.tid), "px": s(t.price), "sz": s(t.amount),
                "side": _side(t.side), "source": "0", "ts": str(t.ts_ms)}  # fmt: skip

    def candle_row(self, bar: str, start_ms: int, now_ms: int) -> list[str] | None:
        """``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` of the candle opening at ``start_ms``."""
        period = BARS[bar]
        row = self.market.klines[period].get(start_ms)
        if row is None:
            return None
        o, h, lo, c, vol = row
        length = int(period.duration.total_seconds() * 1000)
        quote = s((vol * c).quantize(_Q8))
        confirm = "1" if start_ms + length <= now_ms else "0"
        return [str(start_ms), s(o), s(h), s(lo), s(c), s(vol), quote, quote, confirm]

    def candle_rows(self, bar: str, now_ms: int) -> list[list[str]]:
        """Every modelled candle of ``bar``, newest first (REST order, §4.4)."""
        starts = sorted(self.market.klines[BARS[bar]], reverse=True)
        rows = [self.candle_row(bar, t, now_ms) for t in starts if t <= now_ms]
        return [r for r in rows if r is not None]

    def instrument(self) -> dict[str, Any]:
        """The ``/public/instruments`` item (§4.5); derivative-only fields are ``""``."""
        p = self.pair
        base, quote = self.inst_id.split("-")
        return {
            "instType": "SPOT", "instId": self.inst_id, "uly": "", "instFamily": "", "baseCcy": base,
            "quoteCcy": quote, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "",
            "stk": "", "listTime": "1548133413000", "auctionEndTime": "", "contTdSwTime": "",
            "preMktSwTime": "", "openType": "", "expTime": "", "lever": "", "tickSz": s(p.quote_increment),
            "lotSz": s(p.base_increment), "minSz": s(p.min_size), "ctType": "", "alias": "",
            "state": self.state, "ruleType": "normal", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
            "maxLmtAmt": "20000000", "maxMktAmt": "1000000", "maxTwapSz": "9999999999",
            "maxIcebergSz": "9999999999", "maxTriggerSz": "9999999999", "maxStopSz": "1000000",
            "futureSettlement": False, "instIdCode": p.product_id, "tradeQuoteCcyList": [quote],
            "upcChg": [],
        }  # fmt: skip


def _side(side: Side) -> str:
    return "buy" if side is Side.BUY else "sell"

"""The floor: the cheapest possible single-process ingest path, written inside the benchmark.

Typed msgspec decode -> order-book update -> append to column buffers -> zstd
Parquet write. No SQL, no exact decimals, no accounting, no feed events: what the
project's pipeline is compared with, measured in the same run on the same stream.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq


class _Depth(msgspec.Struct):
    asks: list[tuple[str, str]]
    bids: list[tuple[str, str]]
    timestamp: int


class _Ticker(msgspec.Struct):
    buy: str
    sell: str
    last: str
    vol: str
    timestamp: int


class _Push(msgspec.Struct):
    channel: str
    data: msgspec.Raw


_push_list = msgspec.json.Decoder(list[_Push])
_depth = msgspec.json.Decoder(_Depth)
_ticker = msgspec.json.Decoder(_Ticker)
_deals = msgspec.json.Decoder(list[tuple[str, str, str, str, str]])


class _Side:
    __slots__ = ("amounts", "desc", "keys")

    def __init__(self, desc: bool) -> None:
        self.amounts: dict[float, str] = {}
        self.keys: list[float] = []  # ascending; bids read from the end
        self.desc = desc

    def set(self, price: str, amount: str) -> None:
        p = float(price)
        if amount == "0":
            if self.amounts.pop(p, None) is not None:
                del self.keys[bisect.bisect_left(self.keys, p)]
        else:
            if p not in self.amounts:
                bisect.insort(self.keys, p)
            self.amounts[p] = amount

    def top(self, n: int) -> list[float]:
        return self.keys[-1:-n - 1:-1] if self.desc else self.keys[:n]


def run_floor(frames: Sequence[bytes | str], out_dir: Path, depth: int = 20) -> dict[str, int]:
    """Process ``frames``; write Parquet files into ``out_dir``; return the rows written per table.

    Like the project's pipeline, a book snapshot is taken when the top ``depth`` levels
    (prices and amounts) changed, so both write the same number of snapshot rows.
    """
    books: dict[tuple[str, bool], tuple[_Side, _Side]] = {}
    last_top: dict[tuple[str, bool], tuple[object, ...]] = {}
    snap_cols: dict[str, list[object]] = {"symbol": [], "ts": [], "bid_px": [], "bid_qty": [],
                                          "ask_px": [], "ask_qty": []}
    tick_cols: dict[str, list[object]] = {"symbol": [], "ts": [], "last": [], "buy": [], "sell": []}
    deal_cols: dict[str, list[object]] = {"symbol": [], "tid": [], "price": [], "amount": [], "side": []}
    for frame in frames:
        for push in _push_list.decode(frame):
            ch = push.channel
            body = ch[12:]  # after "ok_sub_spot_"
            if ch.endswith("_ticker"):
                t = _ticker.decode(push.data)
                sym = body[:-7]
                tick_cols["symbol"].append(sym)
                tick_cols["ts"].append(t.timestamp)
                tick_cols["last"].append(t.last)
                tick_cols["buy"].append(t.buy)
                tick_cols["sell"].append(t.sell)
            elif ch.endswith("_deals"):
                sym = body[:-6]
                for tid, price, amount, _hhmmss, side in _deals.decode(push.data):
                    deal_cols["symbol"].append(sym)
                    deal_cols["tid"].append(int(tid))
                    deal_cols["price"].append(price)
                    deal_cols["amount"].append(amount)
                    deal_cols["side"].append(side)
            else:
                d = _depth.decode(push.data)
                full = not ch.endswith("_depth")
                sym = body[: body.rindex("_depth")]
                book = books.get((sym, full))  # one book per channel, as in the pipeline
                if book is None or full:
                    book = books[(sym, full)] = (_Side(True), _Side(False))
                bids, asks = book
                for p, a in d.bids:
                    bids.set(p, a)
                for p, a in d.asks:
                    asks.set(p, a)
                tb = bids.top(depth)
                ta = asks.top(depth)
                bq = [bids.amounts[p] for p in tb]
                aq = [asks.amounts[p] for p in ta]
                top = (tb, bq, ta, aq)
                if last_top.get((sym, full)) == top:
                    continue
                last_top[(sym, full)] = top
                snap_cols["symbol"].append(sym)
                snap_cols["ts"].append(d.timestamp)
                snap_cols["bid_px"].append(tb)
                snap_cols["bid_qty"].append(bq)
                snap_cols["ask_px"].append(ta)
                snap_cols["ask_qty"].append(aq)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, cols in (("snapshots", snap_cols), ("tickers", tick_cols), ("deals", deal_cols)):
        pq.write_table(pa.table(cols), out_dir / f"{name}.parquet", compression="zstd")
    return {"book_snapshots": len(snap_cols["ts"]), "tickers": len(tick_cols["ts"]),
            "deals": len(deal_cols["tid"])}

"""Market measures over the frames :mod:`analysis.load` returns.

Every function is pure: frames in, frames (or Series) out, nothing read or written.
The input shapes are those of the loaders (see ``docs/analysis.md``):

* **top** (``load_book_top``): UTC ``DatetimeIndex`` ``ts_event``; columns ``symbol``,
  ``ts_recv``, ``bid_price``, ``bid_amount``, ``ask_price``, ``ask_amount`` (float64).
* **levels** (``load_book_levels``): long/tidy, one row per level; UTC index ``ts_event``;
  columns ``symbol``, ``ts_recv``, ``side`` (``"bid"``/``"ask"``), ``level`` (0 = best),
  ``price``, ``amount`` (float64); ``source`` (the book's channel). One snapshot is the
  rows sharing ``(symbol, ts_event, ts_recv, source)``.
* **deals** (``load_deals``): UTC index ``ts_event``; columns ``symbol``, ``tid``, ``price``,
  ``amount`` (float64), ``side`` (``"buy"``/``"sell"``, the aggressor), ``ts_recv``.
* **klines** (``load_klines``): UTC index ``ts_event`` (period start); columns ``symbol``,
  ``period``, ``open``, ``high``, ``low``, ``close``, ``volume`` (float64), ``ts_recv``.

Prices are in the quote currency of the symbol (``btc_usdt`` -> USDT), amounts in the
base currency. "bps" are basis points: 1 bps = 1e-4 of the mid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "compare_klines",
    "depth_within",
    "imbalance",
    "liquidity_grid",
    "microprice",
    "mid",
    "next_mid_change",
    "ohlcv",
    "realized_volatility",
    "signed_trade_flow",
    "spread",
    "vwap",
]

_SNAPSHOT_KEY = ["symbol", "ts_event", "ts_recv", "source"]


def _key(frame: pd.DataFrame) -> list[str]:
    """The columns identifying one snapshot (``source`` only when the frame has it)."""
    return [c for c in _SNAPSHOT_KEY if c in frame.columns]


def mid(top: pd.DataFrame) -> pd.Series:
    """Mid price ``(bid_price + ask_price) / 2`` of each top-of-book row.

    Takes a top-of-book frame; returns a float64 Series on the same index, named
    ``"mid"``. NaN where a side is missing.
    """
    return ((top["bid_price"] + top["ask_price"]) / 2).rename("mid")


def spread(top: pd.DataFrame) -> pd.DataFrame:
    """Quoted spread of each top-of-book row.

    Returns a frame on the same index with float64 columns ``spread``
    (``ask_price - bid_price``, quote currency) and ``spread_bps``
    (``spread / mid * 1e4``).
    """
    absolute = top["ask_price"] - top["bid_price"]
    return pd.DataFrame({"spread": absolute, "spread_bps": absolute / mid(top) * 1e4}, index=top.index)


def microprice(top: pd.DataFrame) -> pd.Series:
    """Size-weighted mid: ``(bid_price * ask_amount + ask_price * bid_amount) / (bid_amount + ask_amount)``.

    The price leans towards the side with less size (the side more likely to be
    consumed next). Returns a float64 Series named ``"microprice"``.
    """
    weight = top["bid_amount"] + top["ask_amount"]
    value = (top["bid_price"] * top["ask_amount"] + top["ask_price"] * top["bid_amount"]) / weight
    return value.rename("microprice")


def _per_snapshot(levels: pd.DataFrame) -> pd.DataFrame:
    """The levels with ``ts_event`` as a column, for grouping by snapshot."""
    frame = levels.reset_index()
    if "ts_event" not in frame.columns:  # an unnamed index
        frame = frame.rename(columns={"index": "ts_event"})
    return frame


def _snapshot_index(grouped: pd.DataFrame) -> pd.DataFrame:
    """Turn a per-snapshot group result back into a ts_event-indexed frame, sorted by time."""
    return grouped.reset_index().sort_values(["ts_event", "symbol"], kind="stable").set_index("ts_event")


def imbalance(levels: pd.DataFrame, n: int = 1) -> pd.DataFrame:
    """Top-``n`` order-book imbalance of each snapshot.

    ``imbalance = (B - A) / (B + A)`` where ``B`` and ``A`` are the summed amounts of
    the best ``n`` bid and ask levels (``level < n``). It lies in [-1, 1]; positive means
    more size on the bid. Takes a levels frame; returns a frame indexed by ``ts_event``
    with columns ``symbol``, ``ts_recv`` (and ``source``), ``bid_amount``, ``ask_amount``,
    ``imbalance`` (float64), one row per snapshot, sorted by time.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    frame = _per_snapshot(levels)
    top = frame[frame["level"] < n]
    sums = top.pivot_table(
        index=_key(frame), columns="side", values="amount", aggfunc="sum", fill_value=0.0, observed=True
    )
    sums = sums.reindex(columns=["bid", "ask"], fill_value=0.0).rename(
        columns={"bid": "bid_amount", "ask": "ask_amount"}
    )
    sums.columns.name = None
    total = sums["bid_amount"] + sums["ask_amount"]
    sums["imbalance"] = (sums["bid_amount"] - sums["ask_amount"]) / total
    return _snapshot_index(sums).astype({"bid_amount": "float64", "ask_amount": "float64"})


def depth_within(levels: pd.DataFrame, bps: float) -> pd.DataFrame:
    """Resting size within ``bps`` basis points of the mid, per snapshot.

    The mid of a snapshot is the mean of its best bid and best ask (level 0). A bid
    level counts when ``price >= mid * (1 - bps/1e4)``, an ask level when
    ``price <= mid * (1 + bps/1e4)`` (bounds included). Returns a frame indexed by
    ``ts_event`` with columns ``symbol``, ``ts_recv`` (and ``source``), ``mid``, ``bid_depth``,
    ``ask_depth`` (base currency) and ``bid_notional``, ``ask_notional``
    (``sum(price * amount)``, quote currency), all float64. Snapshots missing one side
    have a NaN mid and zero depth.
    """
    frame = _per_snapshot(levels)
    key = _key(frame)
    best = frame[frame["level"] == 0].pivot_table(
        index=key, columns="side", values="price", aggfunc="first", observed=True
    )
    best = best.reindex(columns=["bid", "ask"])
    mids = ((best["bid"] + best["ask"]) / 2).rename("mid")
    frame = frame.join(mids, on=key)
    band = frame["mid"] * bps / 1e4
    is_bid = frame["side"] == "bid"
    inside = np.where(is_bid, frame["price"] >= frame["mid"] - band, frame["price"] <= frame["mid"] + band)
    frame = frame.assign(
        bid_depth=np.where(inside & is_bid, frame["amount"], 0.0),
        ask_depth=np.where(inside & ~is_bid, frame["amount"], 0.0),
        bid_notional=np.where(inside & is_bid, frame["amount"] * frame["price"], 0.0),
        ask_notional=np.where(inside & ~is_bid, frame["amount"] * frame["price"], 0.0),
    )
    columns = ["bid_depth", "ask_depth", "bid_notional", "ask_notional"]
    sums = frame.groupby(key, sort=True, observed=True)[columns].sum()
    result = sums.join(mids)[["mid", *columns]]
    return _snapshot_index(result)


def _per_symbol(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(str(symbol), part) for symbol, part in frame.groupby("symbol", sort=True, observed=True)]


def ohlcv(deals: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """OHLCV bars resampled from deals, per symbol.

    Bars are labelled by their start and closed on the left (``[start, start+freq)``),
    as recorded klines are. Between the first and last deal of a symbol every bar is
    present; a bar without deals has NaN prices and zero ``volume``/``count``. Returns a
    frame indexed by the bar start (UTC) with columns ``symbol``, ``open``, ``high``,
    ``low``, ``close``, ``volume`` (base currency), ``notional`` (``sum(price*amount)``),
    ``count`` (int64), sorted by symbol then time.
    """
    parts = []
    for symbol, part in _per_symbol(deals):
        part = part.sort_index(kind="stable")
        sampler = part.resample(freq, label="left", closed="left")
        bars = sampler["price"].ohlc()
        bars["volume"] = sampler["amount"].sum()
        bars["notional"] = (part["price"] * part["amount"]).resample(freq, label="left", closed="left").sum()
        bars["count"] = sampler["price"].count().astype("int64")
        bars.insert(0, "symbol", symbol)
        parts.append(bars)
    if not parts:
        empty = pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in ["open", "high", "low", "close", "volume", "notional"]},
            index=pd.DatetimeIndex([], tz="UTC", name="ts_event"),
        )
        empty.insert(0, "symbol", pd.Series(dtype="str"))
        empty["count"] = pd.Series(dtype="int64")
        return empty
    result = pd.concat(parts)
    result.index.name = "ts_event"
    return result


def compare_klines(bars: pd.DataFrame, klines: pd.DataFrame) -> pd.DataFrame:
    """Check bars built from deals (:func:`ohlcv`) against recorded klines of the same period.

    Pushes of an open candle repeat it: the kline kept per ``(symbol, ts_event)`` is the
    last received (greatest ``ts_recv``). Bars and klines are matched on
    ``(symbol, ts_event)``; only bars present on both sides are returned. Result
    columns: ``symbol``, and for each of ``open``, ``high``, ``low``, ``close``,
    ``volume`` the bar value (``<name>``), the kline value (``<name>_kline``) and
    ``<name>_diff`` (bar minus kline); plus ``match`` (bool: every diff within
    ``1e-9`` relative). The recorded volume counts every trade of the period on the
    exchange, so a bar from a recording that started inside the period shows less.
    """
    last = klines.reset_index().sort_values(["symbol", "ts_event", "ts_recv"], kind="stable")
    last = last.drop_duplicates(["symbol", "ts_event"], keep="last")
    fields = ["open", "high", "low", "close", "volume"]
    left = bars.reset_index()[["ts_event", "symbol", *fields]]
    right = last[["ts_event", "symbol", *fields]].rename(columns={f: f"{f}_kline" for f in fields})
    merged = left.merge(right, on=["symbol", "ts_event"], how="inner").set_index("ts_event")
    ok = pd.Series(True, index=merged.index)
    for f in fields:
        merged[f"{f}_diff"] = merged[f] - merged[f"{f}_kline"]
        ok &= np.isclose(merged[f], merged[f"{f}_kline"], rtol=1e-9, atol=0.0)
    merged["match"] = ok
    order = ["symbol"] + [c for f in fields for c in (f, f"{f}_kline", f"{f}_diff")] + ["match"]
    return merged[order].sort_values(["symbol", "ts_event"], kind="stable")


def vwap(deals: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Volume-weighted average price ``sum(price * amount) / sum(amount)`` per symbol.

    With ``freq=None`` one row per symbol (index ``symbol``); with a pandas frequency
    (``"1min"``) one row per symbol and bar (index bar start, column ``symbol``).
    Columns: ``vwap`` (quote currency), ``volume`` (base currency), float64. Bars without
    deals have NaN ``vwap``.
    """
    frame = deals.assign(notional=deals["price"] * deals["amount"])
    if freq is None:
        sums = frame.groupby("symbol", sort=True, observed=True)[["notional", "amount"]].sum()
        return pd.DataFrame({"vwap": sums["notional"] / sums["amount"], "volume": sums["amount"]})
    bars = ohlcv(deals, freq)
    return pd.DataFrame(
        {"symbol": bars["symbol"], "vwap": bars["notional"] / bars["volume"], "volume": bars["volume"]},
        index=bars.index,
    )


def realized_volatility(
    prices: pd.Series, sample: str = "1min", window: str | None = None
) -> float | pd.Series:
    """Realized volatility of one price series: ``sqrt(sum(r_i ** 2))``, ``r_i`` log returns.

    ``prices`` is a float64 Series on a UTC DatetimeIndex (e.g. :func:`mid` of one symbol).
    It is first sampled on a regular grid of ``sample`` (last price of each bin,
    carried forward across empty bins), then log returns between consecutive grid
    points are taken. With ``window=None`` returns a float over the whole series
    (not annualised; in units of log return); with ``window`` (``"1h"``) returns a
    Series of the realized volatility of the returns ending in each window.
    """
    sampled = prices.sort_index(kind="stable").resample(sample, label="left", closed="left").last().ffill()
    returns = np.log(sampled).diff().dropna()
    if window is None:
        return float(np.sqrt((returns**2).sum()))
    return np.sqrt((returns**2).resample(window, label="left", closed="left").sum()).rename(
        "realized_volatility"
    )


def signed_trade_flow(deals: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Aggressor-signed traded volume per symbol and bar.

    A deal whose aggressor bought counts ``+amount``, one that sold ``-amount``. Returns
    a frame indexed by bar start (UTC) with columns ``symbol``, ``buy_volume``,
    ``sell_volume``, ``net`` (``buy - sell``), ``imbalance`` (``net / (buy + sell)``,
    NaN for an empty bar) and ``cumulative_net`` (running sum of ``net`` per symbol),
    all float64 (base currency).
    """
    parts = []
    for symbol, part in _per_symbol(deals):
        part = part.sort_index(kind="stable")
        buy = part["amount"].where(part["side"] == "buy", 0.0)
        sell = part["amount"].where(part["side"] == "sell", 0.0)
        bars = pd.DataFrame({"buy_volume": buy, "sell_volume": sell}).resample(
            freq, label="left", closed="left"
        ).sum()
        bars["net"] = bars["buy_volume"] - bars["sell_volume"]
        bars["imbalance"] = bars["net"] / (bars["buy_volume"] + bars["sell_volume"])
        bars["cumulative_net"] = bars["net"].cumsum()
        bars.insert(0, "symbol", symbol)
        parts.append(bars)
    if not parts:
        columns = ["buy_volume", "sell_volume", "net", "imbalance", "cumulative_net"]
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        empty.insert(0, "symbol", pd.Series(dtype="str"))
        return empty.set_axis(pd.DatetimeIndex([], tz="UTC", name="ts_event"))
    result = pd.concat(parts)
    result.index.name = "ts_event"
    return result


def next_mid_change(top: pd.DataFrame, horizon: str = "1s") -> pd.Series:
    """Change of the mid from each snapshot to the first snapshot of the same symbol at or after
    ``ts_event + horizon`` (quote currency; NaN when there is none).

    Pair it with :func:`imbalance` (same index and symbols) to ask whether the imbalance
    predicts the next move. Returns a float64 Series on ``top``'s index, named
    ``"next_mid_change"``.
    """
    step = pd.Timedelta(horizon)
    out = pd.Series(np.nan, index=top.index, name="next_mid_change", dtype="float64")
    mids = mid(top)
    position = np.arange(len(top))
    for _, part in top.assign(_pos=position, _mid=mids.to_numpy()).groupby("symbol", observed=True):
        part = part.sort_index(kind="stable")
        times = pd.DatetimeIndex(part.index)
        later = times.searchsorted(times + step, side="left")
        valid = later < len(part)
        future = np.full(len(part), np.nan)
        future[valid] = part["_mid"].to_numpy()[later[valid]]
        out.iloc[part["_pos"].to_numpy()] = future - part["_mid"].to_numpy()
    return out


def liquidity_grid(levels: pd.DataFrame, price_step: float, freq: str = "10s") -> pd.DataFrame:
    """Resting size by time bin and price bin: the data of a liquidity heat map, for one symbol.

    Each level's price is floored to a multiple of ``price_step``; sizes are summed per
    snapshot and price bin, then averaged over the snapshots of each ``freq`` time bin
    (a bin where a price had no size in some snapshots counts those as zero). Returns a
    float64 frame indexed by time-bin start (UTC), one column per price-bin lower edge
    (ascending), in base currency. Pass the levels of a single symbol.
    """
    frame = _per_snapshot(levels)
    key = _key(frame)
    frame = frame.assign(price_bin=np.floor(frame["price"] / price_step + 1e-9) * price_step)
    per_snapshot = frame.pivot_table(
        index=key, columns="price_bin", values="amount", aggfunc="sum", fill_value=0.0, observed=True
    )
    times = pd.DatetimeIndex(per_snapshot.index.get_level_values("ts_event"))
    per_snapshot.index = times
    grid = per_snapshot.resample(freq, label="left", closed="left").mean().dropna(how="all")
    grid.columns.name = "price"
    grid.index.name = "ts_event"
    return grid.astype("float64")

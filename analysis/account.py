"""Account measures: balances valued in a quote currency, order fills, slippage, realised P&L.

Pure functions over the frames of :mod:`analysis.load` (see ``docs/analysis.md``):

* **balances** (``load_balances``): UTC index ``ts_recv``; columns ``account``,
  ``currency``, ``free``, ``frozen`` (float64).
* **orders** (``load_orders``): UTC index ``ts_event`` (the order's creation time);
  columns ``order_id`` (int64), ``symbol``, ``type`` (``"buy"``, ``"sell"``,
  ``"buy_market"``, ``"sell_market"``), ``price``, ``amount``, ``deal_amount``,
  ``avg_price`` (float64; ``price`` NaN for market sells, ``amount`` NaN for market
  buys), ``status`` (lower-case :class:`recorder.records.OrderStatus` name, e.g.
  ``"filled"``), ``ts_recv`` (when that state was seen).
* **status changes** (``load_order_status_changes``): UTC index ``ts_recv``; columns
  ``order_id``, ``symbol``, ``status``, ``previous_status`` (names as above, ``None``
  when first seen), ``deal_amount``.
* **tickers** (``load_tickers``): UTC index ``ts_event``; ``symbol``, ``buy``, ``sell``,
  ``last``... ; **top** (``load_book_top``): ``bid_price``, ``ask_price``...
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np
import pandas as pd

from analysis.market import mid as _mid

__all__ = ["latest_orders", "order_fills", "realised_pnl", "value_balances"]


def _prices_by_symbol(tickers: pd.DataFrame, price: Literal["mid", "last"]) -> pd.DataFrame:
    """A ``ts``, ``symbol``, ``price`` frame sorted by ``ts`` from a tickers frame."""
    value = (tickers["buy"] + tickers["sell"]) / 2 if price == "mid" else tickers["last"]
    frame = pd.DataFrame(
        {"ts": tickers.index, "symbol": tickers["symbol"].to_numpy(), "price": value.to_numpy()}
    )
    return frame.dropna(subset=["price"]).sort_values("ts", kind="stable")


def value_balances(
    balances: pd.DataFrame,
    tickers: pd.DataFrame,
    quote: str = "usdt",
    price: Literal["mid", "last"] = "mid",
) -> pd.DataFrame:
    """Value each balance row in ``quote`` with the last recorded price at or before it (as-of join).

    The price of currency ``c`` is taken from the ticker of ``<c>_<quote>``; failing
    that, ``1 / price`` of ``<quote>_<c>``; ``quote`` itself is worth 1. ``price`` chooses
    the ticker mid (``(buy + sell) / 2``) or ``last``. A balance polled before any price of
    its currency was recorded, or with no such market, gets NaN ``value``.

    Returns the balances frame (same UTC ``ts_recv`` index and order) with float64 columns
    ``total`` (``free + frozen``), ``price`` (quote per unit) and ``value``
    (``total * price``, quote currency). Sum ``value`` by ``ts_recv`` (see
    :func:`portfolio_value`) for the account's worth over time.
    """
    quote = quote.lower()
    prices = _prices_by_symbol(tickers, price)
    rows = balances.reset_index()
    time_col = rows.columns[0]
    rows["_order"] = np.arange(len(rows))
    rows["currency"] = rows["currency"].astype(str).str.lower()
    rows["_direct"] = rows["currency"] + "_" + quote
    rows["_inverse"] = quote + "_" + rows["currency"]
    rows = rows.sort_values(time_col, kind="stable")

    def asof(symbol_col: str) -> pd.Series:
        merged = pd.merge_asof(
            rows[[time_col, symbol_col, "_order"]],
            prices.rename(columns={"ts": time_col, "symbol": symbol_col}),
            on=time_col,
            by=symbol_col,
            direction="backward",
        )
        return merged.set_index("_order")["price"]

    direct = asof("_direct")
    inverse = 1.0 / asof("_inverse")
    unit = direct.fillna(inverse)
    rows = rows.set_index("_order")
    unit = unit.where(rows["currency"] != quote, 1.0).astype("float64")
    rows = rows.sort_index()
    unit = unit.sort_index()
    result = balances.copy()
    result["total"] = (rows["free"] + rows["frozen"]).to_numpy(dtype="float64")
    result["price"] = unit.to_numpy(dtype="float64")
    result["value"] = result["total"] * result["price"]
    return result


def portfolio_value(valued: pd.DataFrame) -> pd.Series:
    """Total worth per poll: the sum of ``value`` of the rows of :func:`value_balances` per ``ts_recv``.

    NaN values (currencies without a price) count as zero; returns a float64 Series on
    the sorted unique UTC ``ts_recv`` index, named ``"value"``.
    """
    return valued["value"].groupby(level=0, sort=True).sum(min_count=1).rename("value")


__all__ += ["portfolio_value"]


def latest_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per ``order_id``: the state with the greatest ``ts_recv`` (the last seen).

    Keeps the orders frame shape (index ``ts_event``), sorted by creation time then
    ``order_id``.
    """
    frame = orders.reset_index().sort_values(["order_id", "ts_recv"], kind="stable")
    frame = frame.drop_duplicates("order_id", keep="last")
    return frame.sort_values(["ts_event", "order_id"], kind="stable").set_index("ts_event")


def _side_sign(types: pd.Series) -> pd.Series:
    """+1 for buys (limit or market), -1 for sells."""
    return pd.Series(np.where(types.astype(str).str.startswith("buy"), 1.0, -1.0), index=types.index)


def order_fills(
    orders: pd.DataFrame, status_changes: pd.DataFrame, top: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per order: fill ratio, time to fill and slippage against the mid at creation.

    * ``fill_ratio`` = ``deal_amount / amount`` of the last seen state (NaN for market
      buys, whose ``amount`` is not known in base currency).
    * ``time_to_fill`` = first ``ts_recv`` at which the order was seen ``"filled"`` (from
      the status changes; failing that, the order's own ``ts_recv`` if its last state is
      ``"filled"``) minus its creation time ``ts_event``; ``NaT`` when never filled.
    * ``mid_at_creation``: the mid of the last top-of-book snapshot of the order's symbol
      at or before its creation time (as-of join on ``ts_event``; NaN without ``top``).
    * ``slippage_bps`` = ``sign * (avg_price - mid_at_creation) / mid_at_creation * 1e4``
      with ``sign`` +1 for buys and -1 for sells: positive means paid more / received
      less than the mid (a cost). NaN for orders with nothing filled.

    Returns one row per order (latest state, index ``ts_event``) with columns
    ``order_id``, ``symbol``, ``type``, ``status``, ``amount``, ``deal_amount``,
    ``avg_price``, ``fill_ratio``, ``time_to_fill`` (timedelta64), ``mid_at_creation``,
    ``slippage_bps``.
    """
    latest = latest_orders(orders).reset_index()
    changes = status_changes.reset_index()
    filled_at = changes[changes["status"] == "filled"].groupby("order_id")["ts_recv"].min()
    own = latest.loc[latest["status"] == "filled"].set_index("order_id")["ts_recv"]
    first_filled = latest["order_id"].map(filled_at).fillna(latest["order_id"].map(own))
    result = latest[
        ["ts_event", "order_id", "symbol", "type", "status", "amount", "deal_amount", "avg_price"]
    ].copy()
    result["fill_ratio"] = result["deal_amount"] / result["amount"]
    result["time_to_fill"] = pd.to_datetime(first_filled, utc=True) - result["ts_event"]
    if top is not None and len(top) and len(result):
        quotes = pd.DataFrame(
            {
                "ts_event": top.index,
                "symbol": top["symbol"].to_numpy(),
                "mid_at_creation": _mid(top).to_numpy(),
            }
        ).sort_values("ts_event", kind="stable")
        quotes["ts_event"] = quotes["ts_event"].astype(result["ts_event"].dtype)
        keyed = result.assign(_order=np.arange(len(result))).sort_values("ts_event", kind="stable")
        merged = pd.merge_asof(keyed, quotes, on="ts_event", by="symbol", direction="backward")
        result["mid_at_creation"] = merged.set_index("_order")["mid_at_creation"].sort_index().to_numpy()
    else:
        result["mid_at_creation"] = np.nan
    sign = _side_sign(result["type"])
    price = result["avg_price"].where(result["deal_amount"] > 0)
    result["slippage_bps"] = sign * (price - result["mid_at_creation"]) / result["mid_at_creation"] * 1e4
    return result.set_index("ts_event")


def realised_pnl(orders: pd.DataFrame, method: Literal["fifo", "average"] = "fifo") -> pd.DataFrame:
    """Realised trading P&L of each sell, from the filled part of every order.

    Each order (latest state, :func:`latest_orders`) with ``deal_amount > 0`` is taken as
    one fill of ``deal_amount`` at ``avg_price``, at its creation time, in creation
    order, per symbol. Buys add inventory. A sell of ``q`` realises
    ``q * avg_price - cost`` where ``cost`` is, with ``method="fifo"``, the cost of the
    oldest ``q`` units still held, and with ``method="average"``, ``q`` times the average
    cost of the units held. Units sold beyond what was bought in the recording (inventory
    held before it started) have no known cost: they are reported in ``unmatched`` and
    realise nothing. Fees are not in the v1 order data and are ignored.

    Returns one row per sell order that filled something (index ``ts_event``), columns
    ``order_id``, ``symbol``, ``amount`` (filled), ``price`` (``avg_price``),
    ``cost`` (quote currency, of the matched units), ``realised`` (quote currency),
    ``unmatched`` (base currency) and ``cumulative`` (running sum of ``realised`` per
    symbol), all float64 except ``order_id``.
    """
    if method not in ("fifo", "average"):
        raise ValueError(f"unknown method {method!r}: 'fifo' or 'average'")
    fills = latest_orders(orders)
    fills = fills[fills["deal_amount"] > 0]
    rows: list[dict[str, object]] = []
    for symbol, part in fills.groupby("symbol", sort=True, observed=True):
        lots: deque[list[float]] = deque()  # [amount, price] oldest first
        held, held_cost = 0.0, 0.0  # for the average method
        cumulative = 0.0
        for ts, order in part.iterrows():
            qty, px = float(order["deal_amount"]), float(order["avg_price"])
            if str(order["type"]).startswith("buy"):
                lots.append([qty, px])
                held, held_cost = held + qty, held_cost + qty * px
                continue
            if method == "fifo":
                remaining, cost = qty, 0.0
                while remaining > 0 and lots:
                    lot = lots[0]
                    take = min(remaining, lot[0])
                    cost += take * lot[1]
                    lot[0] -= take
                    remaining -= take
                    if lot[0] <= 0:
                        lots.popleft()
                matched = qty - remaining
            else:
                matched = min(qty, held)
                cost = held_cost / held * matched if held > 0 else 0.0
                held, held_cost = held - matched, held_cost - cost
            realised = matched * px - cost
            cumulative += realised
            rows.append(
                {
                    "ts_event": ts,
                    "order_id": order["order_id"],
                    "symbol": symbol,
                    "amount": qty,
                    "price": px,
                    "cost": cost,
                    "realised": realised,
                    "unmatched": qty - matched,
                    "cumulative": cumulative,
                }
            )
    columns = ["order_id", "symbol", "amount", "price", "cost", "realised", "unmatched", "cumulative"]
    if not rows:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        empty["order_id"] = empty["order_id"].astype("int64")
        empty["symbol"] = empty["symbol"].astype("str")
        return empty.set_axis(pd.DatetimeIndex([], tz="UTC", name="ts_event"))
    result = pd.DataFrame(rows).set_index("ts_event")
    result["order_id"] = result["order_id"].astype("int64")
    return result.sort_index(kind="stable")[columns]

"""The v5 demo account model: cash balances, orders and fills with ~3 months of history. Pure.

Orders follow v5's state machine (PROTOCOL.md v5 §5.2): ``live`` ->
``partially_filled`` -> ``filled``; ``live``/``partially_filled`` -> ``canceled``.
Ids are 19-digit numbers increasing with time (``ordId`` from ``cTime``,
``billId`` from the fill time), so "newest first" is "largest id first".
A buy pays its fee in the base currency, a sell in the quote currency (fees are
negative = charged). Open buy orders freeze ``px * remaining`` quote, open sells
``remaining`` base; ``cashBal = availBal + frozenBal``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from recorder.simulator.okx_v5.settings import V5Account
from recorder.simulator.okx_v5.wire import inst_to_symbol, s
from recorder.venues.okex_v1.pairs import Pair, pairs

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TAKER_RATE = Decimal("-0.001")
MAKER_RATE = Decimal("-0.0008")
_FEE_Q = Decimal("0.00000001")


class AccountError(Exception):
    """An account operation failed: ``code`` is the v5 error code (e.g. 51603 order does not exist)."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


@dataclass(slots=True)
class Fill:
    bill_id: int
    trade_id: int
    ord_id: int
    inst_id: str
    side: str  # buy / sell
    px: Decimal
    sz: Decimal
    exec_type: str  # T taker, M maker
    fee: Decimal  # negative = charged
    fee_ccy: str
    fee_rate: Decimal
    fill_time: int  # ms
    ts: int  # ms

    def wire(self) -> dict[str, str]:
        """The fill item of ``/trade/fills`` (§5.3)."""
        return {
            "instType": "SPOT", "instId": self.inst_id, "tradeId": str(self.trade_id),
            "ordId": str(self.ord_id), "clOrdId": "", "billId": str(self.bill_id),
            "subType": "1" if self.side == "buy" else "2", "tag": "", "fillPx": s(self.px),
            "fillSz": s(self.sz), "side": self.side, "posSide": "net", "execType": self.exec_type,
            "fee": s(self.fee), "feeCcy": self.fee_ccy, "feeRate": s(self.fee_rate), "fillIdxPx": "",
            "fillPnl": "0", "fillTime": str(self.fill_time), "ts": str(self.ts), "tradeQuoteCcy": "",
            "fillFwdPx": "", "fillMarkPx": "", "fillMarkVol": "", "fillPxUsd": "", "fillPxVol": "",
        }  # fmt: skip


@dataclass(slots=True)
class Order:
    ord_id: int
    inst_id: str
    side: str
    ord_type: str  # limit / market / post_only / ioc
    px: Decimal | None  # None for market orders
    sz: Decimal
    c_time: int
    u_time: int
    state: str = "live"
    acc_fill_sz: Decimal = Decimal(0)
    fill_value: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    last_fill: Fill | None = None
    cancel_source: str = ""
    fills: list[Fill] = field(default_factory=list)

    @property
    def pair(self) -> Pair:
        return pairs()[inst_to_symbol(self.inst_id)]

    @property
    def fee_ccy(self) -> str:
        base, quote = self.inst_id.split("-")
        return base if self.side == "buy" else quote

    @property
    def is_open(self) -> bool:
        return self.state in ("live", "partially_filled")

    @property
    def avg_px(self) -> Decimal | None:
        if not self.acc_fill_sz:
            return None
        return (self.fill_value / self.acc_fill_sz).quantize(self.pair.quote_increment.normalize())

    def wire(self) -> dict[str, Any]:
        """The order object shared by the order endpoints (§5.2); absent values are ``""``."""
        lf = self.last_fill
        return {
            "instType": "SPOT", "instId": self.inst_id, "tgtCcy": "", "ccy": "", "ordId": str(self.ord_id),
            "clOrdId": "", "tag": "", "px": s(self.px), "pxUsd": "", "pxVol": "", "pxType": "",
            "sz": s(self.sz), "pnl": "0", "ordType": self.ord_type, "side": self.side, "posSide": "net",
            "tdMode": "cash", "accFillSz": s(self.acc_fill_sz), "fillPx": s(lf.px) if lf else "",
            "tradeId": str(lf.trade_id) if lf else "", "fillSz": s(lf.sz) if lf else "0",
            "fillTime": str(lf.fill_time) if lf else "", "avgPx": s(self.avg_px), "state": self.state,
            "lever": "", "attachAlgoClOrdId": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tpOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "slOrdPx": "",
            "attachAlgoOrds": [], "linkedAlgoOrd": {"algoId": ""}, "stpId": "", "stpMode": "cancel_maker",
            "feeCcy": self.fee_ccy, "fee": s(self.fee), "rebateCcy": self.fee_ccy, "rebate": "0",
            "source": "", "category": "normal", "reduceOnly": "false", "isTpLimit": "false",
            "cancelSource": self.cancel_source, "cancelSourceReason": "", "quickMgnType": "",
            "algoClOrdId": "", "algoId": "", "uTime": str(self.u_time), "cTime": str(self.c_time),
        }  # fmt: skip


class Account:
    """One simulated v5 account. ``prices`` gives the current price of an instrument (for eqUsd)."""

    def __init__(self, settings: V5Account) -> None:
        self.settings = settings
        self.cash: dict[str, Decimal] = dict(settings.balances)
        self.ccy_utime: dict[str, int] = {}
        self.orders: dict[int, Order] = {}
        self.fills: list[Fill] = []
        self._next_trade = 400_000_000
        self._bill_seq = 0
        self._ord_seq = 0

    # ---- ids -----------------------------------------------------------------------------------
    def _new_ord_id(self, ms: int) -> int:
        self._ord_seq = (self._ord_seq + 1) % 1000
        return ms * 1_000_000 + 7000 + self._ord_seq

    def _new_bill_id(self, ms: int) -> int:
        self._bill_seq = (self._bill_seq + 1) % 1000
        return ms * 1_000_000 + 3000 + self._bill_seq

    # ---- balances ------------------------------------------------------------------------------
    def frozen(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for o in self.orders.values():
            if not o.is_open or o.px is None:
                continue
            base, quote = o.inst_id.split("-")
            remaining = o.sz - o.acc_fill_sz
            if o.side == "buy":
                out[quote] = out.get(quote, Decimal(0)) + o.px * remaining
            else:
                out[base] = out.get(base, Decimal(0)) + remaining
        return out

    def balance(
        self, now_ms: int, usd_price: Callable[[str], Decimal | None], ccys: set[str] | None = None
    ) -> dict[str, object]:
        """The ``/account/balance`` data item (§5.1); currencies with zero cash are omitted."""
        frozen = self.frozen()
        details: list[dict[str, Any]] = []
        total = Decimal(0)
        for ccy in sorted(self.cash):
            cash = self.cash[ccy]
            if not cash or (ccys is not None and ccy not in ccys):
                continue
            fz = frozen.get(ccy, Decimal(0))
            price = usd_price(ccy)
            eq_usd = None if price is None else (cash * price).quantize(_FEE_Q)
            if eq_usd is not None:
                total += eq_usd
            details.append({
                "ccy": ccy, "eq": s(cash), "cashBal": s(cash), "availBal": s(cash - fz), "availEq": "",
                "frozenBal": s(fz), "ordFrozen": s(fz), "eqUsd": s(eq_usd), "upl": "0", "uplLiab": "",
                "disEq": s(eq_usd), "liab": "", "crossLiab": "", "isoLiab": "", "interest": "",
                "isoEq": "", "isoUpl": "", "mgnRatio": "", "imr": "", "mmr": "", "notionalLever": "",
                "maxLoan": "", "stgyEq": "0", "spotBal": "", "spotInUseAmt": "", "openAvgPx": "",
                "accAvgPx": "", "spotUpl": "", "spotUplRatio": "", "totalPnl": "", "totalPnlRatio": "",
                "twap": "0", "borrowFroz": "", "clSpotInUseAmt": "", "maxSpotInUse": "", "fixedBal": "0",
                "smtSyncEq": "0", "spotCopyTradingEq": "0", "colRes": "0", "collateralEnabled": False,
                "colBorrAutoConversion": "0", "frpType": "0", "rewardBal": "",
                "uTime": str(self.ccy_utime.get(ccy, now_ms)),
            })  # fmt: skip
        return {
            "uTime": str(now_ms), "totalEq": s(total), "isoEq": "", "adjEq": "", "availEq": "",
            "ordFroz": "", "imr": "", "mmr": "", "borrowFroz": "", "mgnRatio": "", "notionalUsd": "",
            "notionalUsdForBorrow": "", "notionalUsdForFutures": "", "notionalUsdForOption": "",
            "notionalUsdForSwap": "", "upl": "", "delta": "", "deltaLever": "", "deltaNeutralStatus": "",
            "details": details,
        }  # fmt: skip

    # ---- operations ----------------------------------------------------------------------------
    def place(
        self, inst_id: str, side: str, px: Decimal, sz: Decimal, now_ms: int, ord_type: str = "limit"
    ) -> Order:
        """Place a limit order (``live``). Raises AccountError 51008 when funds are short."""
        if side not in ("buy", "sell"):
            raise AccountError("51000", "Parameter side error")
        base, quote = inst_id.split("-")
        need_ccy, need = (quote, px * sz) if side == "buy" else (base, sz)
        avail = self.cash.get(need_ccy, Decimal(0)) - self.frozen().get(need_ccy, Decimal(0))
        if need > avail:
            raise AccountError("51008", "Order failed. Insufficient balance")
        order = Order(self._new_ord_id(now_ms), inst_id, side, ord_type, px, sz, now_ms, now_ms)
        self.orders[order.ord_id] = order
        self.ccy_utime[need_ccy] = now_ms
        return order

    def get(self, ord_id: int) -> Order:
        try:
            return self.orders[ord_id]
        except KeyError:
            raise AccountError("51603", "Order does not exist") from None

    def fill(
        self, ord_id: int, sz: Decimal, now_ms: int, px: Decimal | None = None, *, maker: bool = True
    ) -> Order:
        """Fill ``sz`` of an open order at ``px`` (default: its price): a new fill, balances move."""
        order = self.get(ord_id)
        if not order.is_open:
            raise AccountError("51400", "Order has been filled or canceled")
        sz = min(sz, order.sz - order.acc_fill_sz)
        price = px if px is not None else order.px
        if price is None or sz <= 0:
            raise AccountError("51000", "Parameter sz error")
        rate = MAKER_RATE if maker else TAKER_RATE
        base, quote = order.inst_id.split("-")
        value = price * sz
        if order.side == "buy":
            fee = (sz * rate).quantize(_FEE_Q, rounding=ROUND_DOWN)
            self.cash[base] = self.cash.get(base, Decimal(0)) + sz + fee
            self.cash[quote] = self.cash.get(quote, Decimal(0)) - value
        else:
            fee = (value * rate).quantize(_FEE_Q, rounding=ROUND_DOWN)
            self.cash[base] = self.cash.get(base, Decimal(0)) - sz
            self.cash[quote] = self.cash.get(quote, Decimal(0)) + value + fee
        self.ccy_utime[base] = self.ccy_utime[quote] = now_ms
        self._next_trade += 1
        f = Fill(
            self._new_bill_id(now_ms),
            self._next_trade,
            ord_id,
            order.inst_id,
            order.side,
            price,
            sz,
            "M" if maker else "T",
            fee,
            order.fee_ccy,
            rate,
            now_ms,
            now_ms,
        )
        self.fills.append(f)
        order.fills.append(f)
        order.last_fill = f
        order.acc_fill_sz += sz
        order.fill_value += value
        order.fee += fee
        order.u_time = now_ms
        order.state = "filled" if order.acc_fill_sz >= order.sz else "partially_filled"
        return order

    def cancel(self, ord_id: int, now_ms: int) -> Order:
        """Cancel an open order (``canceled``; an unfilled cancel leaves orders-history after 2 h)."""
        order = self.get(ord_id)
        if not order.is_open:
            raise AccountError("51400", "Order has been filled or canceled")
        order.state = "canceled"
        order.cancel_source = "1"
        order.u_time = now_ms
        return order

    # ---- queries -------------------------------------------------------------------------------
    def open_orders(self) -> list[Order]:
        return sorted((o for o in self.orders.values() if o.is_open), key=lambda o: -o.ord_id)

    def finished_orders(self, now_ms: int, window_ms: int) -> list[Order]:
        """Terminal orders updated within ``window_ms``, newest first; unfilled cancels only for 2 h."""
        out = []
        for o in self.orders.values():
            if o.is_open or o.u_time < now_ms - window_ms:
                continue
            if o.state == "canceled" and not o.acc_fill_sz and o.u_time < now_ms - 2 * HOUR_MS:
                continue
            out.append(o)
        return sorted(out, key=lambda o: -o.ord_id)

    def recent_fills(self, now_ms: int, window_ms: int) -> list[Fill]:
        """Fills within ``window_ms``, newest first (by billId)."""
        return sorted((f for f in self.fills if f.ts >= now_ms - window_ms), key=lambda f: -f.bill_id)

    # ---- seeded history --------------------------------------------------------------------------
    def seed_history(self, seed: int, now_ms: int, prices: dict[str, Decimal]) -> None:
        """About 3 months of orders and fills (deterministic for ``seed``), ending with open orders.

        Within the last 7 days there are more than 100 finished orders (so pages are exercised),
        unfilled cancels within the last 2 hours, and fills within the last 3 days. Cash balances
        are the configured ones at the end (history does not move them).
        """
        rng = random.Random(f"okx-v5-sim:{seed}:{self.settings.api_key}:history")
        start_cash = dict(self.cash)
        ccys = {c for inst in prices for c in inst.split("-")} | set(self.cash)
        self.cash = {c: Decimal(10**9) for c in ccys}  # the seeded history does not need the funds
        insts = sorted(prices)
        times = sorted(
            [now_ms - rng.randint(8 * DAY_MS, 90 * DAY_MS) for _ in range(120)]
            + [now_ms - rng.randint(3 * HOUR_MS, 7 * DAY_MS - HOUR_MS) for _ in range(150)]
            + [now_ms - rng.randint(5 * 60_000, 90 * 60_000) for _ in range(8)]
        )
        for t in times:
            inst = rng.choice(insts)
            pair = pairs()[inst_to_symbol(inst)]
            tick, lot = pair.quote_increment.normalize(), pair.base_increment.normalize()
            mid = prices[inst]
            side = rng.choice(("buy", "sell"))
            px = (mid * Decimal(str(round(1 + rng.uniform(-0.02, 0.02), 5)))).quantize(tick)
            sz = max(
                pair.min_size,
                (Decimal(str(round(rng.uniform(0.5, 20), 4))) * pair.min_size * 10).quantize(
                    lot, rounding=ROUND_DOWN
                ),
            )
            order = Order(
                self._new_ord_id(t), inst, side, rng.choice(("limit", "limit", "post_only")), px, sz, t, t
            )
            self.orders[order.ord_id] = order
            roll = rng.random()
            done = t + rng.randint(1_000, 3_600_000 if now_ms - t > 2 * HOUR_MS else 60_000)
            done = min(done, now_ms - 1000)
            if roll < 0.6:  # filled in 1-3 fills
                parts = rng.randint(1, 3)
                for i in range(parts):
                    left = order.sz - order.acc_fill_sz
                    part = left if i == parts - 1 else (left / 2).quantize(lot, rounding=ROUND_DOWN)
                    if part > 0:
                        at = t + (done - t) * (i + 1) // parts
                        self.fill(order.ord_id, part, at, maker=rng.random() < 0.7)
            elif roll < 0.75:  # partly filled, then canceled
                self.fill(
                    order.ord_id,
                    (order.sz / 3).quantize(lot, rounding=ROUND_DOWN) or lot,
                    t + (done - t) // 2,
                    maker=True,
                )
                self.cancel(order.ord_id, done)
            else:  # canceled without a fill
                self.cancel(order.ord_id, done)
        self.cash = {c: Decimal(10**9) for c in ccys}
        # Open orders: two live, one partially filled (priced away from the market).
        for inst, side, k, fill in (
            (insts[0], "buy", "0.97", False),
            (insts[-1], "sell", "1.04", True),
            (insts[0], "sell", "1.05", False),
        ):
            pair = pairs()[inst_to_symbol(inst)]
            px = (prices[inst] * Decimal(k)).quantize(pair.quote_increment.normalize())
            sz = pair.min_size * 5
            t = now_ms - rng.randint(60_000, 3 * HOUR_MS)
            order = self.place(inst, side, px, sz, t)
            if fill:
                self.fill(order.ord_id, pair.min_size * 2, t + 30_000, maker=True)
        self.cash = dict(start_cash)  # balances are the configured ones
        self.ccy_utime.clear()


class Accounts:
    """Every configured account, by api key."""

    def __init__(self, settings: tuple[V5Account, ...]) -> None:
        self._by_key = {a.api_key: Account(a) for a in settings}

    def get(self, api_key: str) -> Account | None:
        return self._by_key.get(api_key)

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_key.values())

"""OKX v5 wire schemas: msgspec Structs with the venue's own field names, numbers as ``str``.

Implements the shapes of PROTOCOL.md §0 (conventions), §2 (WebSocket envelope
and events), §3 (public pushes), §4 (REST envelope and market data) and §5
(private read endpoints). Nothing here converts values: absent values stay
``""`` exactly as v5 sends them; :mod:`.parse` turns them into typed records.
Fields every record needs are required (a missing one is a decode error naming
it); the rest default to ``""``.
"""

from __future__ import annotations

import msgspec

from .channels import ChannelArg

__all__ = [
    "BalanceData",
    "BalanceDetail",
    "BookData",
    "FillData",
    "InstrumentData",
    "OrderData",
    "RestEnvelope",
    "TickerData",
    "TimeData",
    "TradeData",
    "WsMessage",
]


class WsMessage(msgspec.Struct, frozen=True):
    """Any JSON frame from a v5 WebSocket (§2.2, §2.3, §2.5, §2.6).

    Control messages carry ``event`` (``subscribe``, ``unsubscribe``, ``error``, ``login``,
    ``notice``, ``channel-conn-count``...); pushes carry ``arg`` and ``data`` (kept raw and
    decoded per channel), and ``action`` on incremental book channels.
    """

    event: str = ""
    code: str | int = ""
    msg: str = ""
    id: str = ""
    connId: str = ""
    arg: ChannelArg | None = None
    action: str = ""
    data: msgspec.Raw = msgspec.Raw()  # empty (len 0) when absent
    channel: str = ""
    connCount: str = ""


class TickerData(msgspec.Struct, frozen=True):
    """One ``tickers`` item (§3.1), also a REST ``/market/ticker(s)`` item (§4.1)."""

    instId: str
    ts: str
    instType: str = ""
    last: str = ""
    lastSz: str = ""
    askPx: str = ""
    askSz: str = ""
    bidPx: str = ""
    bidSz: str = ""
    open24h: str = ""
    high24h: str = ""
    low24h: str = ""
    volCcy24h: str = ""
    vol24h: str = ""
    sodUtc0: str = ""
    sodUtc8: str = ""


class BookData(msgspec.Struct, frozen=True):
    """One book item (§3.2; REST ``/market/books`` §4.2).

    Levels are ``[price, size, "0", orderCount]`` strings. ``checksum``, ``seqId`` and
    ``prevSeqId`` are JSON integers and may be absent (``books5``: no checksum, no
    ``prevSeqId``); absent is ``None``.
    """

    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    instId: str = ""
    checksum: int | None = None
    prevSeqId: int | None = None
    seqId: int | None = None


class TradeData(msgspec.Struct, frozen=True):
    """One ``trades`` / ``trades-all`` item (§3.3) or REST trade (§4.3)."""

    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str
    count: str = ""
    source: str = ""
    seqId: int | None = None


class InstrumentData(msgspec.Struct, frozen=True):
    """One ``/public/instruments`` item or ``instruments`` push (§4.5, §3.5)."""

    instType: str
    instId: str
    tickSz: str
    lotSz: str
    state: str
    baseCcy: str = ""
    quoteCcy: str = ""
    minSz: str = ""
    maxLmtSz: str = ""
    maxMktSz: str = ""
    maxLmtAmt: str = ""
    maxMktAmt: str = ""
    listTime: str = ""
    expTime: str = ""
    instFamily: str = ""
    ctVal: str = ""
    lever: str = ""


class BalanceDetail(msgspec.Struct, frozen=True):
    """One currency of ``/account/balance`` (§5.1)."""

    ccy: str
    uTime: str = ""
    eq: str = ""
    cashBal: str = ""
    availBal: str = ""
    frozenBal: str = ""
    ordFrozen: str = ""
    eqUsd: str = ""


class BalanceData(msgspec.Struct, frozen=True):
    """One account of ``/account/balance`` (§5.1)."""

    details: list[BalanceDetail]
    uTime: str = ""
    totalEq: str = ""


class OrderData(msgspec.Struct, frozen=True):
    """One order of ``orders-pending`` / ``orders-history(-archive)`` / ``order`` (§5.2)."""

    instId: str
    ordId: str
    side: str
    ordType: str
    state: str
    cTime: str
    uTime: str
    instType: str = ""
    clOrdId: str = ""
    tag: str = ""
    px: str = ""
    sz: str = ""
    tdMode: str = ""
    tgtCcy: str = ""
    accFillSz: str = ""
    avgPx: str = ""
    fillPx: str = ""
    fillSz: str = ""
    fillTime: str = ""
    tradeId: str = ""
    fee: str = ""
    feeCcy: str = ""
    rebate: str = ""
    rebateCcy: str = ""
    category: str = ""


class FillData(msgspec.Struct, frozen=True):
    """One fill of ``/trade/fills`` / ``fills-history`` (§5.3)."""

    instId: str
    tradeId: str
    ordId: str
    fillPx: str
    fillSz: str
    side: str
    fillTime: str
    instType: str = ""
    clOrdId: str = ""
    billId: str = ""
    execType: str = ""
    fee: str = ""
    feeCcy: str = ""
    feeRate: str = ""
    ts: str = ""


class TimeData(msgspec.Struct, frozen=True):
    """The ``/public/time`` item (§4.6)."""

    ts: str


class RestEnvelope(msgspec.Struct, frozen=True):
    """Every REST answer (§4.0): ``code`` (string, or a number in old answers), ``msg``, ``data``.

    Auth and rate-limit errors come without ``data``.
    """

    code: str | int
    msg: str = ""
    data: msgspec.Raw = msgspec.Raw()  # empty (len 0) when absent

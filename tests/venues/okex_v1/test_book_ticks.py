"""The integer-tick v1 book (recorder.venues.okex_v1.book) emits exactly what the Decimal-keyed
book did (tests/venues/okex_v1/decimal_book.py, the code before the change): same records, same
Decimal digits and exponents (compared by ``repr``, since ``Decimal("0.1") == Decimal("0.10")``),
same error texts. Off-grid prices and symbols the pair table does not hold included.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import streams
from recorder.errors import BookError
from recorder.records import ChannelKind, DepthUpdate, FeedEvent, Level, Record
from recorder.venue import FeedCounters
from recorder.venues.okex_v1 import session as session_module
from recorder.venues.okex_v1.book import OrderBook, price_decimals
from recorder.venues.okex_v1.session import V1Session, plan_connection
from recorder.venues.okex_v1.settings import V1Settings
from tests.venues.okex_v1 import decimal_book

T0 = datetime(2026, 11, 18, tzinfo=UTC)
UNLISTED = "qqq_zzz"  # not in the pair table: the book starts at scale 0


def test_scales_come_from_the_pair_table() -> None:
    assert price_decimals("bch_btc") == 8  # quote_increment 0.00000001
    assert price_decimals("btc_usdt") == 4  # 0.0001
    assert price_decimals(UNLISTED) == 0


# --- a realistic stream, perturbed, through the whole session with each book -------------------


def _perturb(frames: list[bytes], seed: int) -> list[str]:
    """The stream with some level texts rewritten: exponent forms, trailing zeros, prices off the
    pair's grid, zero amounts as ``0E-8``, one symbol renamed to a pair the table does not hold,
    and a few crossing levels (full-depth and incremental)."""
    rng = random.Random(seed)
    first = json.loads(frames[0])[0]["channel"].split("_")
    renamed = f"{first[3]}_{first[4]}"  # ok_sub_spot_<base>_<quote>_depth

    def price(text: str) -> str:
        r = rng.random()
        if r < 0.04:
            return f"{Decimal(text).normalize():E}"  # 0.001234 -> 1.234E-3
        if r < 0.08:
            return text + "00" if "." in text else text + ".00"
        if r < 0.10:
            return text + "7" if "." in text else text + ".7"  # off the grid
        return text

    out: list[str] = []
    for raw in frames:
        doc: list[dict[str, Any]] = json.loads(raw)
        for push in doc:
            channel: str = push["channel"]
            if f"_{renamed}_" in channel:
                push["channel"] = channel.replace(f"_{renamed}_", f"_{UNLISTED}_")
            if not channel.endswith(("_depth", "_depth_20")):
                continue
            data = push["data"]
            for side in ("bids", "asks"):
                for level in data[side]:
                    level[0] = price(level[0])
                    if level[1] == "0" and rng.random() < 0.3:
                        level[1] = "0E-8"
            crossing = 0.01 if channel.endswith("_depth_20") else 0.001
            if data["bids"] and data["asks"] and rng.random() < crossing:
                data["bids"].append([data["asks"][-1][0], "1"])
        out.append(json.dumps(doc))
    return out


def _records(frames: list[str], book: type, monkeypatch: pytest.MonkeyPatch) -> list[Record]:
    monkeypatch.setattr(session_module, "OrderBook", book)
    out: list[Record] = []
    s = V1Session(plan_connection("ws-0", []), V1Settings(), out, FeedCounters())
    for i, frame in enumerate(frames):
        s.receive(frame, T0 + timedelta(milliseconds=i))
    s.stop(T0 + timedelta(days=1))
    return [replace(r, event_id="-") if isinstance(r, FeedEvent) else r for r in out]  # ids are random


@pytest.mark.parametrize("perturbed", [False, True], ids=["as generated", "perturbed"])
def test_a_stream_gives_the_same_records_as_the_decimal_book(
    perturbed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = streams.generate(6_000, 12, seed=11, levels=60).frames
    frames = _perturb(raw, seed=5) if perturbed else [f.decode() for f in raw]
    old = _records(frames, decimal_book.OrderBook, monkeypatch)
    new = _records(frames, OrderBook, monkeypatch)
    assert len(new) == len(old) > 3_000
    assert [repr(r) for r in new] == [repr(r) for r in old]  # repr: Decimal digits and exponent too
    kinds = {type(r).__name__ for r in new}
    assert {"BookSnapshot", "Ticker", "Deal"} <= kinds
    if perturbed:  # the perturbations were met: crossings, a symbol off the table, prices off the grid
        details = [getattr(r, "detail", "") for r in new]
        assert any("crossed book" in d for d in details)
        assert any(getattr(r, "symbol", "") == UNLISTED for r in new)
        snapshot_texts = " ".join(repr(r) for r in new if type(r).__name__ == "BookSnapshot")
        assert "E-" in snapshot_texts  # exponent forms reached the snapshots as sent


# --- property: any pushes, any texts, any scale ---------------------------------------------------


def _text(units: int, form: int) -> str:
    """``units * 1E-10`` as text: plain, plain with trailing zeros, or exponent form."""
    value = Decimal(units).scaleb(-10)
    if form == 0:
        return f"{value.normalize():f}"
    if form == 1:
        return f"{value:f}"  # ten decimals: finer digits than most grids, all zeros
    return f"{value.normalize():E}"


def _prices(low: int, high: int) -> st.SearchStrategy[Decimal]:
    # Mostly on a 1E-4 grid (btc_usdt's), some on 1E-8 (bch_btc's), a few on 1E-10 (off both);
    # rarely one no integer scale should hold (the book turns to Decimal keys).
    step = st.sampled_from([10**6] * 6 + [10**2] * 3 + [1])
    usual = st.builds(lambda n, k, form: Decimal(_text(n * k, form)),
                      st.integers(low, high), step, st.integers(0, 2)).filter(lambda d: d > 0)
    extreme = st.sampled_from(["1E-45", "3.000000000000000000000000000000000000000000001"] if low < 20
                              else ["1E+65", "4" + "0" * 70])
    return st.one_of(usual, usual, usual, usual, usual, usual, usual, usual, usual, extreme.map(Decimal))


amounts = st.one_of(st.sampled_from(["0", "0.0", "0E-8", "1", "2.50", "3E-3"]).map(Decimal),
                    st.integers(1, 10**6).map(lambda n: Decimal(n).scaleb(-3)))


def _side(low: int, high: int) -> st.SearchStrategy[list[Level]]:
    return st.lists(st.tuples(_prices(low, high), amounts), max_size=10)


@st.composite
def _step(draw: st.DrawFn) -> tuple[str, ChannelKind, list[Level], list[Level]]:
    action = draw(st.sampled_from(["push"] * 10 + ["reset", "cross"]))
    kind = draw(st.sampled_from([ChannelKind.DEPTH] * 4 + [ChannelKind.DEPTH_20]))
    if action == "reset":
        return ("reset", kind, [], [])
    bids = draw(_side(1, 20) if action == "push" else _side(21, 40))
    return ("push", kind, bids, draw(_side(21, 40)))


def _outcome(book: Any, call: Any) -> str:
    try:
        call()
    except BookError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _state(book: Any) -> str:
    snapshot = _outcome(book, lambda: book.snapshot(5)) if not book.is_ready else repr(book.snapshot(5))
    return repr((book.is_ready, book.source, book.top(), book.best_bid(), book.best_ask(), snapshot,
                 book.ts_event))


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_step(), min_size=3, max_size=30), max_depth=st.sampled_from([3, 8, 200]),
       symbol=st.sampled_from(["bch_btc", "btc_usdt", UNLISTED]))
def test_any_pushes_give_what_the_decimal_book_gave(
    steps: list[tuple[str, ChannelKind, list[Level], list[Level]]], max_depth: int, symbol: str
) -> None:
    old = decimal_book.OrderBook(symbol, max_depth=max_depth)
    new = OrderBook(symbol, max_depth=max_depth)
    for i, (action, kind, bids, asks) in enumerate(steps):
        if action == "reset":
            old.reset()
            new.reset()
        else:
            push = DepthUpdate(venue="okex_v1", symbol=symbol, kind=kind, ts_event=T0 + timedelta(seconds=i),
                               ts_recv=T0 + timedelta(seconds=i), bids=tuple(bids), asks=tuple(asks))
            assert _outcome(new, lambda p=push: new.apply(p)) == _outcome(old, lambda p=push: old.apply(p))
        assert _state(new) == _state(old), f"step {i}"


def test_an_off_grid_price_widens_the_scale_and_keeps_every_level_exactly() -> None:
    book = OrderBook("btc_usdt")  # 1E-4
    levels = ((Decimal("100.0001"), Decimal("1")), (Decimal("99.9"), Decimal("2")))
    book.apply(DepthUpdate(venue="okex_v1", symbol="btc_usdt", kind=ChannelKind.DEPTH, ts_event=T0,
                           ts_recv=T0, bids=levels, asks=((Decimal("101"), Decimal("3")),)))
    off = (Decimal("100.00015"), Decimal("4"))  # between 100.0001 and 100.0002
    book.apply(DepthUpdate(venue="okex_v1", symbol="btc_usdt", kind=ChannelKind.DEPTH, ts_event=T0,
                           ts_recv=T0, bids=(off, (Decimal("100.000100"), Decimal("5"))), asks=()))
    bids, asks = book.top()
    assert bids == (off, (Decimal("100.000100"), Decimal("5")), levels[1])
    assert repr(bids[1][0]) == "Decimal('100.000100')"  # the latest text of a level, as before
    assert asks == ((Decimal("101"), Decimal("3")),)
    book.reset()  # back to the pair's scale
    assert book._scale.decimals == 4  # private, on purpose: the scale went back


def _push(bids: tuple[tuple[str, str], ...], asks: tuple[tuple[str, str], ...]) -> DepthUpdate:
    return DepthUpdate(venue="okex_v1", symbol="btc_usdt", kind=ChannelKind.DEPTH, ts_event=T0, ts_recv=T0,
                       bids=tuple((Decimal(p), Decimal(a)) for p, a in bids),
                       asks=tuple((Decimal(p), Decimal(a)) for p, a in asks))


@pytest.mark.parametrize("extreme", ["1E+65", "1E-45", "2." + "0" * 50 + "1"])
def test_a_price_no_scale_should_hold_turns_the_book_to_decimal_keys_until_reset(extreme: str) -> None:
    old, new = decimal_book.OrderBook("btc_usdt"), OrderBook("btc_usdt")
    level = ((extreme, "7"),)
    pushes = [
        _push((("1.5", "1"), ("1.4", "2")), (("1.6", "3"), ("1E+3", "1"))),
        _push(level, ()) if Decimal(extreme) < 1 else _push((), level),  # a bid below, or an ask above
        _push((("1.4", "0"), ("1.45", "4")), (("1.6000", "5"),)),
    ]
    for push in pushes:
        old.apply(push)
        new.apply(push)
        assert _state(new) == _state(old)
    assert new._scale.factor is None  # on Decimal keys
    assert any(level[0] == Decimal(extreme) for side in new.top() for level in side)
    new.reset()
    assert new._scale.factor == Decimal("1E4")  # ticks again

"""The order book (recorder.venues.okex_v1.book; PROTOCOL.md "WebSocket", depth channels)."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from recorder.errors import BookError, CrossedBookError
from recorder.records import BookSnapshot, ChannelKind, DepthUpdate, Level
from recorder.venues.okex_v1.book import OrderBook, whole_book_problem
from recorder.venues.okex_v1.numbers import parse_decimal
from recorder.venues.okex_v1.parse import decode_frame

T0 = datetime(2018, 3, 1, 12, 0, tzinfo=UTC)
D = Decimal


def update(
    bids: Sequence[tuple[str, str]] = (),
    asks: Sequence[tuple[str, str]] = (),
    kind: ChannelKind = ChannelKind.DEPTH,
    symbol: str = "bch_btc",
    at: int = 0,
) -> DepthUpdate:
    """A depth push; exchange time T0 + ``at`` seconds, received 5 ms later."""
    ts_event = T0 + timedelta(seconds=at)
    return DepthUpdate(venue="okex_v1",
        symbol=symbol, kind=kind, ts_event=ts_event, ts_recv=ts_event + timedelta(milliseconds=5),
        bids=tuple((D(p), D(a)) for p, a in bids), asks=tuple((D(p), D(a)) for p, a in asks),
    )


def levels(*pairs: tuple[str, str]) -> tuple[Level, ...]:
    return tuple((D(p), D(a)) for p, a in pairs)


FULL = update(bids=[("0.0990", "1"), ("0.1000", "2"), ("0.0980", "3")],
              asks=[("0.1030", "4"), ("0.1010", "5"), ("0.1020", "6")])


def test_first_incremental_push_is_the_full_book() -> None:
    book = OrderBook("bch_btc")
    assert not book.is_ready
    book.apply(FULL)
    assert book.is_ready
    assert book.top() == (
        levels(("0.1000", "2"), ("0.0990", "1"), ("0.0980", "3")),
        levels(("0.1010", "5"), ("0.1020", "6"), ("0.1030", "4")),
    )


def test_depth_increment_with_zero_amount_deletes_level() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    book.apply(update(bids=[("0.0990", "0")], asks=[("0.1010", "0.000")]))
    assert book.top() == (
        levels(("0.1000", "2"), ("0.0980", "3")),
        levels(("0.1020", "6"), ("0.1030", "4")),
    )


def test_depth_increment_with_known_price_replaces_and_new_price_adds() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    book.apply(update(bids=[("0.1000", "7"), ("0.0995", "1.5")], asks=[("0.1040", "9")]))
    bids, asks = book.top()
    assert bids == levels(("0.1000", "7"), ("0.0995", "1.5"), ("0.0990", "1"), ("0.0980", "3"))
    assert asks == levels(("0.1010", "5"), ("0.1020", "6"), ("0.1030", "4"), ("0.1040", "9"))


def test_exponent_form_price_is_the_same_level() -> None:
    book = OrderBook("bch_btc")
    book.apply(update(bids=[("0.00000001", "5")], asks=[("0.00000003", "1")]))
    book.apply(update(bids=[("1E-8", "6")], asks=[("3E-8", "0")]))
    assert book.top() == (levels(("0.00000001", "6")), ())
    book.apply(update(bids=[("1.0E-8", "0")]))
    assert book.top() == ((), ())


def test_delete_of_an_unknown_price_changes_nothing() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    before = book.top()
    book.apply(update(bids=[("0.0500", "0")], asks=[("0.5", "0")]))
    assert book.top() == before


def test_zero_amounts_in_the_full_push_are_not_levels() -> None:
    book = OrderBook("bch_btc")
    book.apply(update(bids=[("1", "0"), ("2", "1")], asks=[("3", "0E-8"), ("4", "1")]))
    assert book.top() == (levels(("2", "1")), levels(("4", "1")))


@pytest.mark.parametrize(("bids", "asks"), [
    ([("100", "1")], []),  # one bid level: an increment, as when the full push was missed
    ([], [("101", "1")]),
    ([("100", "1")], [("101", "0")]),  # the only ask is a deletion
    ([], []),
])
def test_a_first_push_without_both_sides_is_not_taken_as_the_whole_book(
        bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
    book = OrderBook("bch_btc")
    with pytest.raises(BookError, match="not a whole book"):
        book.apply(update(bids=bids, asks=asks))
    assert not book.is_ready and book.top() == ((), ())
    assert whole_book_problem(update(bids=bids, asks=asks)) is not None
    book.apply(FULL)  # the real full push is still taken
    assert book.is_ready and whole_book_problem(FULL) is None


@pytest.mark.parametrize("kind", [ChannelKind.DEPTH_5, ChannelKind.DEPTH_10, ChannelKind.DEPTH_20])
def test_full_depth_channels_replace_the_book_wholesale(kind: ChannelKind) -> None:
    book = OrderBook("bch_btc")
    book.apply(update(bids=[("1", "1"), ("2", "1")], asks=[("3", "1")], kind=kind))
    book.apply(update(bids=[("1.5", "2")], asks=[("4", "1"), ("5", "2")], kind=kind, at=1))
    assert book.top() == (levels(("1.5", "2")), levels(("4", "1"), ("5", "2")))
    assert book.source is kind
    assert book.snapshot(5).source == kind.value


def test_top_n_returns_only_the_best_levels() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    assert book.top(2) == (levels(("0.1000", "2"), ("0.0990", "1")), levels(("0.1010", "5"), ("0.1020", "6")))
    assert book.top(0) == ((), ())
    assert book.top(50) == book.top()
    assert book.best_bid() == (D("0.1000"), D(2))
    assert book.best_ask() == (D("0.1010"), D(5))
    with pytest.raises(ValueError, match="n must be >= 0"):
        book.top(-1)


def test_snapshot_carries_the_last_update_clocks_or_given_ones() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    book.apply(update(bids=[("0.0990", "0")], at=3))
    assert book.snapshot(1) == BookSnapshot(venue="okex_v1",
        symbol="bch_btc",
        ts_event=T0 + timedelta(seconds=3),
        ts_recv=T0 + timedelta(seconds=3, milliseconds=5),
        bids=levels(("0.1000", "2")), asks=levels(("0.1010", "5")), source=ChannelKind.DEPTH.value,
    )
    later = T0 + timedelta(minutes=1)
    snap = book.snapshot(2, ts_event=later, ts_recv=later)
    assert (snap.ts_event, snap.ts_recv, len(snap.bids), len(snap.asks)) == (later, later, 2, 2)


def test_snapshot_of_an_empty_book_is_refused() -> None:
    with pytest.raises(BookError, match="not ready"):
        OrderBook("bch_btc").snapshot(5)


def test_crossed_book_is_reported_and_not_kept() -> None:
    book = OrderBook("bch_btc")
    book.apply(FULL)
    with pytest.raises(CrossedBookError) as info:
        book.apply(update(bids=[("0.1015", "1")]))
    error = info.value
    assert (error.symbol, error.best_bid, error.best_ask) == ("bch_btc", D("0.1015"), D("0.1010"))
    assert not book.is_ready
    with pytest.raises(BookError, match="invalid after a crossed update"):
        book.snapshot(5)
    with pytest.raises(BookError, match="reset\\(\\) it first"):
        book.apply(update(bids=[("0.1015", "0")]))
    book.reset()
    assert not book.is_ready and book.top() == ((), ())
    book.apply(FULL)  # the next push after reset is the full book again
    assert book.is_ready and book.best_bid() == (D("0.1000"), D(2))


def test_equal_best_bid_and_ask_is_crossed() -> None:
    with pytest.raises(CrossedBookError):
        OrderBook("bch_btc").apply(update(bids=[("1", "1")], asks=[("1", "2")]))


def test_full_depth_push_repairs_a_crossed_full_depth_book() -> None:
    book = OrderBook("bch_btc")
    with pytest.raises(CrossedBookError):
        book.apply(update(bids=[("2", "1")], asks=[("1", "1")], kind=ChannelKind.DEPTH_5))
    book.apply(update(bids=[("1", "1")], asks=[("2", "1")], kind=ChannelKind.DEPTH_5))
    assert book.is_ready


def test_update_for_another_symbol_or_channel_is_refused() -> None:
    book = OrderBook("bch_btc")
    with pytest.raises(BookError, match="depth update for ltc_btc applied to the book of bch_btc"):
        book.apply(update(symbol="ltc_btc"))
    with pytest.raises(BookError, match="ticker update is not a depth push"):
        book.apply(update(kind=ChannelKind.TICKER))
    book.apply(update(bids=[("1", "1")], kind=ChannelKind.DEPTH_20))  # full-depth pushes: no shape rule
    with pytest.raises(BookError, match="kept from depth_20"):
        book.apply(update(bids=[("1", "0")]))


def test_book_is_trimmed_to_max_depth_dropping_the_worst_levels() -> None:
    book = OrderBook("bch_btc", max_depth=2)
    book.apply(update(bids=[("1", "1"), ("2", "1"), ("3", "1")], asks=[("6", "1"), ("5", "1"), ("4", "1")]))
    assert book.top() == (levels(("3", "1"), ("2", "1")), levels(("4", "1"), ("5", "1")))
    book.apply(update(bids=[("2.5", "1")], asks=[("3.5", "1")]))
    assert book.top() == (levels(("3", "1"), ("2.5", "1")), levels(("3.5", "1"), ("4", "1")))
    with pytest.raises(ValueError, match="max_depth"):
        OrderBook("bch_btc", max_depth=0)


def test_decoded_frames_drive_the_book() -> None:
    book = OrderBook("bch_btc")
    frames = [
        '[{"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":[["0.00000003","1"],["0.00000002","2"]],'
        '"bids":[["1E-8","5"]],"timestamp":1519905600000}}]',
        '[{"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":[["2E-8","0"]],"bids":[["0.00000001","4"]],'
        '"timestamp":1519905601000}}]',
    ]
    for frame in frames:
        [msg] = decode_frame(frame, T0)
        assert isinstance(msg, DepthUpdate)
        book.apply(msg)
    assert book.snapshot(10) == BookSnapshot(venue="okex_v1",
        symbol="bch_btc", ts_event=datetime(2018, 3, 1, 12, 0, 1, tzinfo=UTC), ts_recv=T0,
        bids=levels(("0.00000001", "4")), asks=levels(("0.00000003", "1")),
    )


# --- property: the book equals a plain dict model, level for level -------------------------------


def _price_text(units: int, exponent_form: bool) -> str:
    return f"{units}E-8" if exponent_form else f"{Decimal(units).scaleb(-8):f}"


def _prices(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.builds(lambda u, e: parse_decimal(_price_text(u, e)), st.integers(low, high), st.booleans())


amounts = st.one_of(
    st.just(Decimal(0)),
    st.sampled_from(["0", "0.0", "0E-8"]).map(parse_decimal),
    st.builds(lambda n, e: parse_decimal(f"{n}E-{e}"), st.integers(1, 10**6), st.integers(0, 8)),
)
bid_sides = st.lists(st.tuples(_prices(1, 20), amounts), max_size=12)  # bids below asks ...
ask_sides = st.lists(st.tuples(_prices(21, 40), amounts), max_size=12)
crossing_bids = st.lists(st.tuples(_prices(21, 40), amounts), min_size=1, max_size=2)  # ... except here


@st.composite
def _step(draw: st.DrawFn) -> tuple[str, list[Level], list[Level]]:
    action = draw(st.sampled_from(["push"] * 12 + ["reset", "cross"]))
    if action == "reset":
        return ("reset", [], [])
    bids = draw(crossing_bids if action == "cross" else bid_sides)
    return ("push", bids, draw(ask_sides))


steps = st.lists(_step(), min_size=5, max_size=40)
sides = st.lists(st.tuples(_prices(1, 40), amounts), max_size=12)


class _Model:
    """The reference: two dicts and the protocol rules, nothing clever."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.full = False

    def whole(self, bids: list[Level], asks: list[Level]) -> bool:
        """Can this push be the first (whole) book? Both sides hold a level."""
        return self.full or (any(a != 0 for _, a in bids) and any(a != 0 for _, a in asks))

    def apply(self, bids: list[Level], asks: list[Level]) -> bool:
        """Apply; return True when the result is crossed."""
        if not self.full:
            self.bids, self.asks, self.full = {}, {}, True
        for book, changes in ((self.bids, bids), (self.asks, asks)):
            for price, amount in changes:
                if amount == 0:
                    book.pop(price, None)
                else:
                    book[price] = amount
        self.bids = dict(sorted(self.bids.items(), reverse=True)[: self.max_depth])
        self.asks = dict(sorted(self.asks.items())[: self.max_depth])
        return bool(self.bids and self.asks and max(self.bids) >= min(self.asks))

    def top(self) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        return tuple(sorted(self.bids.items(), reverse=True)), tuple(sorted(self.asks.items()))


@settings(max_examples=200, deadline=None)
@given(steps=steps, max_depth=st.sampled_from([3, 10, 200]))
def test_book_matches_reference_model_under_random_increments(
    steps: list[tuple[str, list[Level], list[Level]]], max_depth: int
) -> None:
    book = OrderBook("bch_btc", max_depth=max_depth)
    model = _Model(max_depth)
    applied = 0
    for i, (action, bids, asks) in enumerate(steps):
        if action == "reset":
            book.reset()
            model = _Model(max_depth)
            assert not book.is_ready
            continue
        push = DepthUpdate(venue="okex_v1", symbol="bch_btc", kind=ChannelKind.DEPTH, ts_event=T0, ts_recv=T0,
                           bids=tuple(bids), asks=tuple(asks))
        if not model.whole(bids, asks):
            with pytest.raises(BookError, match="not a whole book"):
                book.apply(push)
            assert not book.is_ready
            continue
        crossed = model.apply(bids, asks)
        if crossed:
            with pytest.raises(CrossedBookError):
                book.apply(push)
            assert not book.is_ready
            book.reset()
            model = _Model(max_depth)
            continue
        book.apply(push)
        applied += 1
        assert book.is_ready
        assert book.top() == model.top(), f"step {i}"
        n = i % 5
        expected_bids, expected_asks = model.top()
        assert book.top(n) == (expected_bids[:n], expected_asks[:n])
    event(f"pushes applied without crossing: {min(applied, 10) // 5 * 5}+")


@settings(max_examples=100, deadline=None)
@given(pushes=st.lists(st.tuples(sides, sides), min_size=1, max_size=10))
def test_full_depth_book_is_always_exactly_the_last_push(
    pushes: list[tuple[list[Level], list[Level]]],
) -> None:
    book = OrderBook("bch_btc")
    for bids, asks in pushes:
        model = _Model(20)
        crossed = model.apply(bids, asks)
        push = DepthUpdate(venue="okex_v1",
                           symbol="bch_btc", kind=ChannelKind.DEPTH_20, ts_event=T0, ts_recv=T0,
                           bids=tuple(bids), asks=tuple(asks))
        if crossed:
            with pytest.raises(CrossedBookError):
                book.apply(push)
            continue
        book.apply(push)
        assert book.top() == model.top()

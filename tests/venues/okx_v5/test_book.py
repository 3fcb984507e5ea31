"""The v5 book: integer ticks, seqId chain, CRC32 checksum (PROTOCOL.md §3.2, §9)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import BookError, ChecksumMismatchError, DecodeError, SequenceGapError
from recorder.venues.okx_v5.book import (
    ChecksumMode,
    OrderBook,
    Scale,
    checksum,
    checksum_string,
    decimals_of,
    to_fixed,
)

from .frames import (
    CHECKSUM_1,
    CHECKSUM_2,
    CHECKSUM_BOOK,
    CHECKSUM_STRING_1,
    CHECKSUM_STRING_2,
    CHECKSUM_UPDATE,
    CHECKSUM_WRONG,
    LEGACY_CHECKSUMS,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def signed_crc(text: str) -> int:
    v = zlib.crc32(text.encode()) & 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def pairs(levels: list[list[str]]) -> list[tuple[str, str]]:
    return [(lv[0], lv[1]) for lv in levels]


# -- checksum vectors (§9) ---------------------------------------------------------------------------


def test_worked_example_checksum_after_snapshot_and_update() -> None:
    bids, asks = pairs(CHECKSUM_BOOK["bids"]), pairs(CHECKSUM_BOOK["asks"])
    assert checksum_string(bids, asks) == CHECKSUM_STRING_1
    assert checksum(bids, asks) == CHECKSUM_1
    book = OrderBook("ETH-USDT", Scale(1, 7))
    book.apply_snapshot(
        CHECKSUM_BOOK["bids"], CHECKSUM_BOOK["asks"], ts_event=T0, seq_id=1, checksum_value=CHECKSUM_1
    )
    assert book.checksum() == CHECKSUM_1
    book.apply_update(
        CHECKSUM_UPDATE["bids"],
        CHECKSUM_UPDATE["asks"],
        ts_event=T0,
        prev_seq_id=1,
        seq_id=2,
        checksum_value=CHECKSUM_2,
    )
    assert book.checksum() == CHECKSUM_2
    assert signed_crc(CHECKSUM_STRING_2) == CHECKSUM_2


def test_wrong_normalisations_do_not_match() -> None:
    assert signed_crc(CHECKSUM_STRING_1.replace("7.0", "7", 1)) == CHECKSUM_WRONG["7.0->7"]
    assert signed_crc(CHECKSUM_STRING_1.replace("0.0000001", "1e-07")) == CHECKSUM_WRONG["0.0000001->1e-07"]
    assert signed_crc(CHECKSUM_STRING_1.replace("0.0000001", "1E-7")) == CHECKSUM_WRONG["0.0000001->1E-7"]
    assert CHECKSUM_1 not in CHECKSUM_WRONG.values()


@pytest.mark.parametrize(("text", "expected"), sorted(LEGACY_CHECKSUMS.items()))
def test_legacy_doc_strings(text: str, expected: int) -> None:
    assert signed_crc(text) == expected
    parts = text.split(":")
    # both legacy strings are two bids and two asks, interleaved
    bids = [(parts[0], parts[1]), (parts[4], parts[5])]
    asks = [(parts[2], parts[3]), (parts[6], parts[7])]
    assert checksum(bids, asks) == expected


def test_checksum_uses_strings_as_received_for_a_level_sent_in_exponent_notation() -> None:
    book = OrderBook("X-Y", Scale(1, 7))
    bids = [["3366.1", "7.0", "0", "3"], ["3366", "1E-7", "0", "1"], ["3365.5", "2", "0", "1"]]
    book.apply_snapshot(bids, CHECKSUM_BOOK["asks"], ts_event=T0, seq_id=1)
    assert book.checksum() == CHECKSUM_WRONG["0.0000001->1E-7"]
    assert book.bids() == ((33661, 70000000, 3), (33660, 1, 1), (33655, 20000000, 1))


def test_only_top_25_levels_feed_the_checksum() -> None:
    bids = [[f"{1000 - i}", "1", "0", "1"] for i in range(40)]
    asks = [[f"{1001 + i}", "2", "0", "1"] for i in range(30)]
    book = OrderBook("X-Y", Scale(0, 0))
    book.apply_snapshot(bids, asks, ts_event=T0, seq_id=0)
    assert book.checksum() == checksum(pairs(bids[:25]), pairs(asks[:25]))


# -- checksum modes --------------------------------------------------------------------------------


def test_nonzero_checksum_mismatch_drops_book() -> None:
    book = OrderBook("ETH-USDT", Scale(1, 7))
    with pytest.raises(ChecksumMismatchError) as info:
        book.apply_snapshot(
            CHECKSUM_BOOK["bids"], CHECKSUM_BOOK["asks"], ts_event=T0, seq_id=5, checksum_value=CHECKSUM_1 + 1
        )
    assert (info.value.expected, info.value.computed, info.value.seq_id) == (CHECKSUM_1 + 1, CHECKSUM_1, 5)
    assert not book.is_valid and book.bids() == () and book.seq_id is None


def test_zero_or_absent_checksum_is_skipped_and_off_mode_never_checks() -> None:
    book = OrderBook("ETH-USDT", Scale(1, 7))
    book.apply_snapshot(CHECKSUM_BOOK["bids"], CHECKSUM_BOOK["asks"], ts_event=T0, seq_id=5, checksum_value=0)
    book.apply_update([], [], ts_event=T0, prev_seq_id=5, seq_id=5, checksum_value=None)
    assert book.is_valid
    off = OrderBook("ETH-USDT", Scale(1, 7), checksum_mode=ChecksumMode.OFF)
    off.apply_snapshot(
        CHECKSUM_BOOK["bids"], CHECKSUM_BOOK["asks"], ts_event=T0, seq_id=5, checksum_value=123
    )
    assert off.is_valid


# -- sequence rules ---------------------------------------------------------------------------------


def test_documented_sequence_with_heartbeat_and_reset() -> None:
    # PROTOCOL.md §3.2 rule 5: snapshot (-1, 10), update (10, 15), heartbeat (15, 15),
    # reset (15, 3), update (3, 5)
    book = OrderBook("BTC-USDT", Scale(1, 8))
    book.apply_snapshot([["100.0", "1", "0", "1"]], [["100.5", "2", "0", "1"]], ts_event=T0, seq_id=10)
    book.apply_update([["100.1", "3", "0", "1"]], [], ts_event=T0, prev_seq_id=10, seq_id=15)
    book.apply_update([], [], ts_event=T0 + timedelta(seconds=60), prev_seq_id=15, seq_id=15)
    assert book.ts_event == T0 + timedelta(seconds=60)
    book.apply_update([], [["100.5", "0", "0", "0"]], ts_event=T0, prev_seq_id=15, seq_id=3)
    book.apply_update([], [["100.7", "1.5", "0", "2"]], ts_event=T0, prev_seq_id=3, seq_id=5)
    assert book.seq_id == 5
    assert book.bids() == ((1001, 300000000, 1), (1000, 100000000, 1))
    assert book.asks() == ((1007, 150000000, 2),)


def test_reset_refused_when_configured() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 8), accept_sequence_reset=False)
    book.apply_snapshot([], [], ts_event=T0, seq_id=15)
    with pytest.raises(SequenceGapError):
        book.apply_update([], [], ts_event=T0, prev_seq_id=15, seq_id=3)
    assert not book.is_valid


def test_break_drops_book_and_names_ids() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 8))
    book.apply_snapshot([["1", "1"]], [["2", "1"]], ts_event=T0, seq_id=10)
    with pytest.raises(SequenceGapError) as info:
        book.apply_update([], [], ts_event=T0, prev_seq_id=11, seq_id=12)
    assert (info.value.expected, info.value.prev_seq_id, info.value.seq_id) == (10, 11, 12)
    assert "BTC-USDT" in str(info.value)
    assert not book.is_valid and book.bids() == ()
    with pytest.raises(BookError):
        book.snapshot(T0)
    # the following (linking) update still fails until a snapshot arrives
    with pytest.raises(SequenceGapError) as again:
        book.apply_update([], [], ts_event=T0, prev_seq_id=12, seq_id=13)
    assert again.value.expected is None


def test_update_before_snapshot_is_a_gap() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 8))
    with pytest.raises(SequenceGapError) as info:
        book.apply_update([["1", "1"]], [], ts_event=T0, prev_seq_id=-1, seq_id=0)
    assert info.value.expected is None


def test_undecodable_update_drops_book() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 8))
    book.apply_snapshot([["1", "1"]], [["2", "1"]], ts_event=T0, seq_id=1)
    with pytest.raises(DecodeError, match="bids price"):
        book.apply_update([["abc", "1"]], [], ts_event=T0, prev_seq_id=1, seq_id=2)
    assert not book.is_valid


def test_bad_snapshot_leaves_book_untouched() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 8))
    book.apply_snapshot([["1", "1"]], [["2", "1"]], ts_event=T0, seq_id=1)
    with pytest.raises(DecodeError, match="asks size"):
        book.apply_snapshot([["1", "1"]], [["2", ""]], ts_event=T0, seq_id=9)
    assert book.seq_id == 1 and book.asks() == ((20, 100000000, None),)


def test_level_finer_than_scale_is_a_decode_error() -> None:
    book = OrderBook("BTC-USDT", Scale(0, 0))
    book.apply_snapshot([["10", "1"]], [], ts_event=T0, seq_id=1)
    with pytest.raises(DecodeError, match="finer than the scale"):
        book.apply_update([["9.5", "1"]], [], ts_event=T0, prev_seq_id=1, seq_id=2)


def test_truncation_drops_worst_levels() -> None:
    book = OrderBook("BTC-USDT", Scale(1, 0), depth=2)
    book.apply_snapshot([["10", "1"], ["9", "1"]], [["11", "1"], ["12", "1"]], ts_event=T0, seq_id=1)
    book.apply_update([["10.5", "2"]], [["10.8", "3"]], ts_event=T0, prev_seq_id=1, seq_id=2)
    assert book.bids() == ((105, 2, None), (100, 1, None))
    assert book.asks() == ((108, 3, None), (110, 1, None))
    snap = book.snapshot(T0 + timedelta(seconds=1), depth=1)
    assert (snap.bids, snap.asks, snap.seq_id, snap.price_decimals) == (
        ((105, 2, None),),
        ((108, 3, None),),
        2,
        1,
    )
    assert book.scale.price(snap.bids[0][0]) == Decimal("10.5")


# -- fixed point -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "dec", "expected"),
    [
        ("42219.9", 1, 422199),
        ("42219.90", 1, 422199),
        ("3366", 1, 33660),
        ("0.0000001", 8, 10),
        ("1e-07", 8, 10),
        ("1E-7", 7, 1),
        ("7.0", 0, 7),
        ("0", 3, 0),
        ("-1.5", 1, -15),
        ("1.", 2, 100),
        ("12345678901234567890.12345678", 8, 1234567890123456789012345678),
    ],
)
def test_to_fixed(text: str, dec: int, expected: int) -> None:
    assert to_fixed(text, dec) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "NaN", "Infinity", " 1", "1_000", "١٢", "0x10", "+-1"])
def test_to_fixed_rejects(text: str) -> None:
    with pytest.raises(DecodeError, match="px"):
        to_fixed(text, 2, "px")


@pytest.mark.parametrize(
    ("text", "expected"), [("0.1", 1), ("1", 0), ("0.00000001", 8), ("1e-8", 8), ("0.010", 2), ("10", 0)]
)
def test_decimals_of(text: str, expected: int) -> None:
    assert decimals_of(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-0.1", "x", "NaN"])
def test_decimals_of_rejects(text: str) -> None:
    with pytest.raises(DecodeError):
        decimals_of(text)


@given(st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=6, allow_nan=False))
def test_to_fixed_is_exact(d: Decimal) -> None:
    for text in (str(d), f"{d:f}", f"{d:E}"):
        assert to_fixed(text, 6) == int(d.scaleb(6))


# -- property: the book equals a dict model ----------------------------------------------------------

price_st = st.integers(min_value=1, max_value=60)
size_st = st.integers(min_value=0, max_value=5)
fmt_st = st.sampled_from(["plain", "trailing", "exp"])


def render(units: int, decimals: int, fmt: str) -> str:
    d = Decimal(units).scaleb(-decimals)
    if fmt == "trailing":
        return f"{d:f}" + ("0" if "." in f"{d:f}" else ".0")
    if fmt == "exp":
        return f"{d:E}"
    return f"{d:f}"


levels_st = st.lists(st.tuples(price_st, size_st, fmt_st), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    snap_b=levels_st,
    snap_a=levels_st,
    updates=st.lists(st.tuples(levels_st, levels_st), max_size=15),
    depth=st.integers(min_value=1, max_value=40),
)
def test_book_matches_dict_model(
    snap_b: list[tuple[int, int, str]],
    snap_a: list[tuple[int, int, str]],
    updates: list[tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]],
    depth: int,
) -> None:
    scale = Scale(1, 2)
    book = OrderBook("X-Y", scale, depth=depth)

    # bids live at prices 1..60 (scaled ticks), asks at 61..120 so the book never crosses
    def wire(levels: list[tuple[int, int, str]], offset: int) -> list[list[str]]:
        return [[render(p + offset, 1, f), render(s, 2, f), "0", "1"] for p, s, f in levels]

    model_b: dict[int, tuple[int, str, str]] = {}
    model_a: dict[int, tuple[int, str, str]] = {}

    def load(
        model: dict[int, tuple[int, str, str]],
        levels: list[list[str]],
        offset: int,
        raw: list[tuple[int, int, str]],
    ) -> None:
        for (p, s, _), lv in zip(raw, levels, strict=True):
            if s == 0:
                model.pop(p + offset, None)
            else:
                model[p + offset] = (s, lv[0], lv[1])

    def truncate() -> None:
        for k in sorted(model_b, reverse=True)[depth:]:
            del model_b[k]
        for k in sorted(model_a)[depth:]:
            del model_a[k]

    wb, wa = wire(snap_b, 0), wire(snap_a, 60)
    load(model_b, wb, 0, snap_b)
    load(model_a, wa, 60, snap_a)
    truncate()
    book.apply_snapshot(wb, wa, ts_event=T0, seq_id=0)
    for seq, (ub, ua) in enumerate(updates):
        wb, wa = wire(ub, 0), wire(ua, 60)
        load(model_b, wb, 0, ub)
        load(model_a, wa, 60, ua)
        truncate()
        bids_sorted = [model_b[k] for k in sorted(model_b, reverse=True)]
        asks_sorted = [model_a[k] for k in sorted(model_a)]
        expected_ck = checksum(
            [(px, sz) for _, px, sz in bids_sorted], [(px, sz) for _, px, sz in asks_sorted]
        )
        book.apply_update(wb, wa, ts_event=T0, prev_seq_id=seq, seq_id=seq + 1, checksum_value=expected_ck)
        assert book.checksum() == expected_ck
    assert [(t, s) for t, s, _ in book.bids()] == [(k, model_b[k][0]) for k in sorted(model_b, reverse=True)]
    assert [(t, s) for t, s, _ in book.asks()] == [(k, model_a[k][0]) for k in sorted(model_a)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=-2, max_value=50), st.integers(min_value=-2, max_value=50)),
        max_size=20,
    )
)
def test_seq_chain_model(pairs_: list[tuple[int, int]]) -> None:
    """Any sequence of (prevSeqId, seqId) is accepted exactly when each prev equals the last seqId."""
    book = OrderBook("X-Y", Scale(0, 0))
    book.apply_snapshot([], [], ts_event=T0, seq_id=0)
    last: int | None = 0
    for prev, seq in pairs_:
        ok = last is not None and prev == last
        try:
            book.apply_update([], [], ts_event=T0, prev_seq_id=prev, seq_id=seq)
        except SequenceGapError:
            assert not ok
            last = None
            assert not book.is_valid
        else:
            assert ok
            last = seq
            assert book.seq_id == seq


def test_scale_bounds_and_round_trip() -> None:
    with pytest.raises(DecodeError, match="price_decimals"):
        Scale(-1, 0)
    with pytest.raises(DecodeError, match="size_decimals"):
        Scale(0, 31)
    scale = Scale.from_sizes("0.1", "0.00000001")
    assert scale == Scale(1, 8)
    assert (scale.price(422199), scale.size(12060306)) == (Decimal("42219.9"), Decimal("0.12060306"))


def test_snapshot_with_repeated_price_and_zero_size() -> None:
    book = OrderBook("X-Y", Scale(1, 0))
    book.apply_snapshot([["10", "1"], ["10.0", "3"], ["9", "0"]], [], ts_event=T0, seq_id=1)
    assert book.bids() == ((100, 3, None),)
    assert book.checksum() == checksum([("10.0", "3")], [])

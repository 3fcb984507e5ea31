"""The typed fast path of ``decode_frame`` gives exactly what the general path gives.

Every frame is decoded twice, once as ``decode_frame`` does it (typed first) and once by the
general path alone, and the messages must be equal; frames the typed path must not take
(other shapes, values that break a rule) are checked to fall through to the general path,
which names the fault.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bench import streams
from recorder.records import Deal, DepthUpdate
from recorder.venues.okex_v1 import parse
from recorder.venues.okex_v1.parse import Rejected, decode_frame

TS = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def general(frame: str | bytes) -> list[parse.Message]:
    """The general path alone (what decode_frame did before the typed path)."""
    saved = parse._typed_frame
    parse._typed_frame = lambda text, ts: None  # type: ignore[assignment]
    try:
        return decode_frame(frame, TS)
    finally:
        parse._typed_frame = saved


def test_every_frame_of_a_realistic_stream_decodes_the_same_and_depth_and_deals_take_the_typed_path() -> None:
    stream = streams.generate(3_000, 20)
    typed_kinds: set[str] = set()
    for raw in stream.frames:
        frame = raw.decode()
        fast = parse._typed_frame(frame, TS)
        expected = general(frame)
        assert decode_frame(frame, TS) == expected
        channel = json.loads(frame)[0]["channel"]
        if channel.endswith(("_depth", "_depth_20", "_deals")):
            assert fast == expected, frame[:200]  # taken by the typed path, same records
            typed_kinds.add(channel.rsplit("_", 1)[-1])
        else:
            assert fast is None  # tickers: the general path
    assert typed_kinds == {"depth", "20", "deals"}
    depth = [m for raw in stream.frames for m in decode_frame(raw.decode(), TS) if isinstance(m, DepthUpdate)]
    assert sum(len(d.bids) + len(d.asks) for d in depth) > 0


SYMBOL = "ok_sub_spot_btc_usdt"

DECLINED = {
    # another shape: acks, errors, events, objects instead of lists
    "error ack": [{"channel": f"{SYMBOL}_depth", "success": False, "errorcode": 10001}],
    "result ack": [{"channel": f"{SYMBOL}_depth", "data": {"result": True}}],
    "addChannel ack": [{"channel": "addChannel", "data": {"result": True, "channel": f"{SYMBOL}_depth"}}],
    "pong": {"event": "pong"},
    "ticker": [{"channel": f"{SYMBOL}_ticker", "data": {"buy": "1", "sell": "2", "last": "1", "high": "2",
                                                        "low": "1", "vol": "3", "timestamp": 1795000000000}}],
    "unknown channel": [{"channel": "ok_sub_spot_btc_usdt_nonsense", "data": {}}],
    # values the general path judges (and rejects or accepts with its own rule)
    "numbers instead of strings": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [[9001.5, 1.25]], "bids": [[9000.5, 2]]}}],
    "NaN price": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["NaN", "1"]], "bids": [["9000", "1"]]}}],
    "negative amount": [{"channel": f"{SYMBOL}_depth_20", "data": {
        "timestamp": 1795000000000, "asks": [["9001", "-1"]], "bids": [["9000", "1"]]}}],
    "zero price": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["0", "1"]], "bids": [["9000", "1"]]}}],
    "spaces in a number": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [[" 9001", "1"]], "bids": [["9000", "1"]]}}],
    "underscore in a number": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["9_001", "1"]], "bids": [["9000", "1"]]}}],
    "timestamp as a string": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": "1795000000000", "asks": [["9001", "1"]], "bids": [["9000", "1"]]}}],
    "timestamp out of range": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 10**17, "asks": [["9001", "1"]], "bids": [["9000", "1"]]}}],
    "no sides": [{"channel": f"{SYMBOL}_depth", "data": {"timestamp": 1795000000000}}],
    "a level of three values": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["9001", "1", "x"]], "bids": [["9000", "1"]]}}],
    "an extra field in depth data": [{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["9001", "1"]], "bids": [["9000", "1"]], "seq": 5}}],
    "a bad deal among good ones": [{"channel": f"{SYMBOL}_deals", "data": [
        ["1", "9000", "0.5", "12:00:00", "bid"], ["2", "9000", "0.5", "12:00:01", "sideways"],
        ["3", "9001", "0.1", "12:00:01", "ask"]]}],
    "a deal row of six values": [{"channel": f"{SYMBOL}_deals", "data": [
        ["1", "9000", "0.5", "12:00:00", "bid", "extra"]]}],
    "a depth push and a ticker in one frame": [
        {"channel": f"{SYMBOL}_depth", "data": {"timestamp": 1795000000000, "asks": [["9001", "1"]],
                                               "bids": [["9000", "1"]]}},
        {"channel": f"{SYMBOL}_ticker", "data": {"buy": "1"}}],
}


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_the_typed_path_declines_what_the_general_path_must_judge(name: str) -> None:
    frame = json.dumps(DECLINED[name])
    assert parse._typed_frame(frame, TS) is None
    # ErrorAck holds an exception (compared by identity): compare what the messages say
    assert repr(decode_frame(frame, TS)) == repr(general(frame))


def test_a_bad_deal_is_still_rejected_alone_with_its_reason() -> None:
    out = decode_frame(json.dumps(DECLINED["a bad deal among good ones"]), TS)
    assert [type(m) for m in out] == [Deal, Rejected, Deal]
    rejected = out[1]
    assert isinstance(rejected, Rejected) and "unknown deal type 'sideways'" in rejected.reason


def test_typed_levels_keep_the_exchange_digits_and_exponents_as_values() -> None:
    frame = json.dumps([{"channel": f"{SYMBOL}_depth", "data": {
        "timestamp": 1795000000000, "asks": [["1E-8", "1.50"], ["0.00000002", "0"]], "bids": []}}])
    fast = parse._typed_frame(frame, TS)
    assert fast is not None and fast == general(frame)
    (update,) = fast
    assert isinstance(update, DepthUpdate)
    assert update.asks == ((Decimal("0.00000001"), Decimal("1.5")), (Decimal("0.00000002"), Decimal(0)))
    assert str(update.asks[0][1]) == "1.50"  # the exchange's digits, as the general path keeps them
    assert update.bids == ()


def test_deflate_frames_take_the_typed_path_too() -> None:
    import zlib

    text = json.dumps([{"channel": f"{SYMBOL}_deals", "data": [["7", "9000.1", "0.25", "23:59:59", "ask"]]}])
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    frame = c.compress(text.encode()) + c.flush()
    out = decode_frame(frame, TS)
    assert out == general(frame)
    (deal,) = out
    assert isinstance(deal, Deal) and deal.tid == 7 and str(deal.price) == "9000.1"

"""Connection-level attacks from small scripted exchanges (tests/collector/scripted.py), real recorder.

Odd close codes, a server that accepts and then says nothing, an ack whose channel differs in
case, a refusal with an error code the table does not know: every outage is a feed_events span
with a start and an end, and what is stored is exactly what was pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from recorder.collector.app import Recorder
from recorder.records import FeedEventKind, Ticker
from tests.collector.helpers import stored
from tests.collector.scripted import Exchange, ack, standard, until
from tests.collector.test_scripted import BTC_T, ETH_T, events, record, ticker, url


def _stored_tickers(tmp_path: Path) -> list[tuple[Any, ...]]:
    return [(int(t.ts_event.timestamp() * 1000), t.last, t.vol) for t in stored(url(tmp_path), "tickers")]


def _sent_tickers(ex: Exchange) -> list[tuple[Any, ...]]:
    return [(d["timestamp"], Decimal(d["last"]), Decimal(d["vol"])) for c, d in ex.sent if c == BTC_T]


async def test_closes_with_odd_codes_each_reconnect_and_each_outage_is_a_span(tmp_path: Path) -> None:
    """The server closes with 1000 (normal), 4001, 1011 and 3000 in turn; the recorder comes back
    each time, every push is stored, and each outage is one closed DISCONNECTED span."""
    codes = [1000, 4001, 1011, 3000]

    async def during(rec: Recorder) -> None:
        n = 0
        for code in codes:
            await until(lambda: bool(ex.subscribed) and any(BTC_T in s for s in ex.subscribed.values()),
                        what="a subscription")
            for _ in range(3):
                await ex.push(BTC_T, ticker(n))
                n += 1
            ws = next(iter(ex.subscribed))
            await until(functools.partial(_accepted, rec, n), what="the pushes")
            await ws.close(code, "odd close")
            await until(functools.partial(_gone, ex, ws), what="the close")
        await until(lambda: bool(ex.subscribed), what="the last reconnect")
        await ex.push(BTC_T, ticker(n))
        await until(lambda: rec.pipeline.counters.accepted.get(_tkey(), 0) == n + 1, what="the last push")

    async with Exchange(standard) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during)
    assert _stored_tickers(tmp_path) == _sent_tickers(ex)
    spans = events(tmp_path, FeedEventKind.DISCONNECTED)
    assert len(spans) == len(codes) and all(e.ts_end is not None and e.ts_end > e.ts_start for e in spans)
    assert [str(c) in e.detail for c, e in zip(codes, spans, strict=True)] == [False, True, True, True]


def _accepted(rec: Recorder, n: int) -> bool:
    return rec.pipeline.counters.accepted.get(_tkey(), 0) == n


def _gone(ex: Exchange, ws: ServerConnection) -> bool:
    return ws not in ex.subscribed


def _tkey() -> tuple[Any, ...]:
    return (Ticker, "btc_usdt", None)


async def test_a_server_that_accepts_and_says_nothing_is_a_gap_from_the_start(tmp_path: Path) -> None:
    """The first two connections are accepted and never answered (no ack, no pong, no data);
    the third behaves. The time before the first data is one or more spans, and data follows."""

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if ex.connections.index(ws) < 2:
            return  # silent
        await standard(ex, ws, req)

    async def during(rec: Recorder) -> None:
        await until(lambda: bool(ex.subscribed) and any(ex.subscribed.values()), timeout=40,
                    what="a behaving connection")
        await ex.push(BTC_T, ticker(1))
        await until(lambda: rec.pipeline.counters.accepted.get(_tkey(), 0) == 1, what="the push")

    async with Exchange(script) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during)
    assert _stored_tickers(tmp_path) == _sent_tickers(ex)
    assert len(ex.connections) >= 3
    # one gap, from the first silent connection's start (nothing was ever received on it, not
    # from when the missing pong was noticed) to the first data
    first = events(tmp_path, FeedEventKind.CONNECTED)[0]
    (gap,) = events(tmp_path, FeedEventKind.DISCONNECTED)
    (t,) = stored(url(tmp_path), "tickers")
    assert "no pong" in gap.detail and gap.ts_end == t.ts_recv
    assert (gap.ts_start - first.ts_start).total_seconds() < 0.5


async def test_an_ack_in_another_case_and_an_unknown_refusal_code(tmp_path: Path) -> None:
    """addChannel refused once with error 99999 (no such code in the table), then acked with the
    channel name upper-cased: the refusal is a span closed by the first data, the data is stored."""
    refused = False

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        nonlocal refused
        if req.get("event") == "addChannel" and not refused:
            refused = True
            await ex.send(ws, [{"channel": "addChannel", "data": {"result": False, "error_code": 99999,
                                                                  "channel": req["channel"]}}])
            return
        if req.get("event") == "addChannel":
            ex.subscribed[ws].add(req["channel"])
            await ex.send(ws, [ack(req["channel"].upper())])
            return
        await standard(ex, ws, req)

    async def during(rec: Recorder) -> None:
        await until(lambda: any(ex.subscribed.values()), timeout=30, what="the second addChannel")
        await ex.push(BTC_T, ticker(1))
        await until(lambda: rec.pipeline.counters.accepted.get(_tkey(), 0) == 1, what="the push")

    async with Exchange(script) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during)
    assert _stored_tickers(tmp_path) == _sent_tickers(ex)
    (span,) = events(tmp_path, FeedEventKind.SUBSCRIBE_REFUSED)
    assert span.ts_end is not None and "99999" in span.detail


def test_depth_acks_and_refusals_in_another_case_are_about_the_channel_asked_for() -> None:
    """Sans-I/O: the incremental depth channel's addChannel ack echoes the name upper-cased.
    The full push is confirmed by it (snapshots of the whole book and of every increment),
    instead of being held back until the channel is resubscribed, again and again."""
    from datetime import UTC, datetime, timedelta

    from recorder.collector.pipeline import Control, ControlKind
    from recorder.records import BookSnapshot, ChannelKind
    from recorder.venues.okex_v1.channels import Channel
    from tests.venues.okex_v1.helpers import requested, v1_pipeline

    p = v1_pipeline({"ws-0": [Channel("btc_usdt", ChannelKind.DEPTH)]})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ms = int(t0.timestamp() * 1000)
    depth = "ok_sub_spot_btc_usdt_depth"
    p.control(Control(ControlKind.CONNECTED, "ws-0", t0, "subscribed"))
    assert requested(p) == [("addChannel", depth)]
    p.process_frame("ws-0", t0, json.dumps([ack(depth.upper())]))
    pushes = [{"bids": [["100", "1"]], "asks": [["101", "1"]], "timestamp": ms}]
    pushes += [{"bids": [["100", str(i)]], "asks": [], "timestamp": ms} for i in range(2, 30)]
    for i, data in enumerate(pushes):
        frame = json.dumps([{"channel": depth, "data": data}])
        p.process_frame("ws-0", t0 + timedelta(milliseconds=i + 1), frame)
    snaps = [r for r in p.take() if isinstance(r, BookSnapshot)]
    assert [s.bids for s in snaps] == [((Decimal(100), Decimal(i)),) for i in range(1, 30)]
    assert requested(p) == []  # never resubscribed


async def test_pongs_answered_late_cost_one_connection_and_the_gap_is_on_the_record(tmp_path: Path) -> None:
    """The first connection answers each ping 3 s late (pong_timeout 2 s) while data flows every
    0.2 s: it is replaced once; every ticker pushed is stored, and the outage is one closed span."""
    pending: set[asyncio.Task[None]] = set()

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "ping" and ex.connections.index(ws) == 0:
            async def late() -> None:
                await asyncio.sleep(3)
                with contextlib.suppress(ConnectionClosed):
                    await ex.send(ws, {"event": "pong"})
            pending.add(asyncio.get_running_loop().create_task(late()))
            return
        await standard(ex, ws, req)

    async def during(rec: Recorder) -> None:
        n = 0
        while len(ex.connections) < 2 or not any(ex.subscribed.get(ex.connections[-1], ())):
            await ex.push(BTC_T, ticker(n))
            n += 1
            await asyncio.sleep(0.2)
            assert n < 200, "never replaced"
        before = rec.pipeline.counters.accepted.get(_tkey(), 0)
        for _ in range(3):
            await ex.push(BTC_T, ticker(n))
            n += 1
        await until(functools.partial(_accepted, rec, before + 3), what="pushes after the reconnect")

    async with Exchange(script) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during, stall_timeout=30.0)
    (gap,) = events(tmp_path, FeedEventKind.DISCONNECTED)
    assert "no pong" in gap.detail and gap.ts_end is not None
    stored_ = _stored_tickers(tmp_path)
    sent = _sent_tickers(ex)
    assert set(stored_) <= set(sent) and len(stored_) > 3
    start, end = (int(t.timestamp() * 1000) for t in (gap.ts_start, gap.ts_end))
    # a push not stored was sent inside the gap (to the connection being replaced)
    assert all(start - 50 <= s[0] <= end for s in sent if s not in stored_), (start, end)
    # the gap starts at the last frame received on the replaced connection: no stored row inside it
    assert not [t for t in stored(url(tmp_path), "tickers") if gap.ts_start < t.ts_recv < gap.ts_end]


async def test_every_v1_feed_event_and_quarantine_row_names_its_venue(tmp_path: Path) -> None:
    """v1's connection events (connected, disconnected, malformed_frame) and its quarantine rows
    were stored with venue "" — the value the docs keep for events of no one venue (a shutdown) —
    so `load_feed_events(venues="okx_v5")` returned every v1 disconnection too."""

    async def during(rec: Recorder) -> None:
        await until(lambda: any(BTC_T in s for s in ex.subscribed.values()), what="a subscription")
        ws = next(iter(ex.subscribed))
        await ex.send(ws, "not json")
        await ex.push(BTC_T, ticker(0))
        await until(functools.partial(_accepted, rec, 1), what="the push")
        await ws.close(4001, "odd close")
        await until(lambda: ws not in ex.subscribed and bool(ex.subscribed), what="the reconnect")
        await ex.push(BTC_T, ticker(1))
        await until(functools.partial(_accepted, rec, 2), what="the push after the reconnect")

    async with Exchange(standard) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during)
    venues = sorted({(e.kind.value, e.venue) for e in events(tmp_path)})
    assert venues == [("connected", "okex_v1"), ("disconnected", "okex_v1"), ("malformed_frame", "okex_v1"),
                      ("shutdown", "")]
    (bad,) = stored(url(tmp_path), "quarantine")
    assert bad.payload == b"not json" and bad.venue == "okex_v1"
    assert _stored_tickers(tmp_path) == _sent_tickers(ex)


async def test_server_pings_foreign_channels_plain_binary_and_codeless_error_acks(tmp_path: Path) -> None:
    """After subscribing btc_usdt's ticker the server sends `{"event":"ping"}` (was quarantined as
    malformed), eth_usdt's ticker (never subscribed: was stored), a ticker as an uncompressed binary
    frame (was quarantined as "bad DEFLATE"), a binary frame that is neither DEFLATE nor JSON, and
    an error ack without an error code. Now: the ping is keep-alive (no row, no event), the foreign
    push is quarantined "not subscribed on this connection", the plain binary ticker is stored, the
    junk frame is quarantined saying what was tried, the error ack is quarantined as what it is
    (no code is made up), and every btc_usdt ticker is stored exactly."""
    frames: dict[str, bytes] = {}

    async def during(rec: Recorder) -> None:
        await until(lambda: any(BTC_T in s for s in ex.subscribed.values()), what="a subscription")
        ws = next(iter(ex.subscribed))
        await ex.push(BTC_T, ticker(0))
        await ex.send(ws, '{"event":"ping"}')
        foreign = [{"channel": ETH_T, "data": ticker(7)}]
        frames["foreign"] = json.dumps(foreign).encode()
        await ws.send(frames["foreign"].decode())
        plain = ticker(1)
        ex.sent.append((BTC_T, plain))
        await ws.send(json.dumps([{"channel": BTC_T, "data": plain}]).encode())  # binary, not compressed
        frames["junk"] = b"\xff\xfe\x00junk"
        await ws.send(frames["junk"])
        frames["codeless"] = json.dumps({"channel": BTC_T, "success": False}).encode()
        await ws.send(frames["codeless"].decode())
        await ex.push(BTC_T, ticker(2))
        await until(functools.partial(_accepted, rec, 3), what="the three tickers")

    async with Exchange(standard) as ex:
        await record(tmp_path, ex, ["btc_usdt"], ["ticker"], during)
    assert _stored_tickers(tmp_path) == _sent_tickers(ex)
    assert len(_stored_tickers(tmp_path)) == 3
    rows = {q.payload: (q.reason, q.venue, q.channel) for q in stored(url(tmp_path), "quarantine")}
    junk_reason, *junk_rest = rows.pop(frames["junk"])
    # zlib's own words between these two parts
    assert junk_reason.startswith("binary frame is neither raw DEFLATE data (bad DEFLATE data: ")
    assert junk_reason.endswith(") nor uncompressed UTF-8 JSON (not UTF-8 (invalid start byte at byte 0))")
    assert junk_rest == ["okex_v1", ""]
    assert rows == {
        frames["foreign"]: (f"not subscribed on this connection: {ETH_T}", "okex_v1", ETH_T),
        frames["codeless"].replace(b" ", b""): ("error ack without an error code", "okex_v1", BTC_T),
    }
    (malformed,) = events(tmp_path, FeedEventKind.MALFORMED_FRAME)
    assert malformed.detail.startswith("binary frame is neither raw DEFLATE data")

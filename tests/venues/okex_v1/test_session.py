"""The v1 sans-I/O session on its own: what it asks the shell to send, and when."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recorder.errors import ConfigError
from recorder.records import ChannelKind, FeedEvent, FeedEventKind, Record
from recorder.venue import (
    FRAME_DATA,
    FRAME_PONG,
    FRAME_TAKEN,
    SUBSCRIBE_PATIENCE,
    FeedCounters,
    Session,
    get_venue,
)
from recorder.venues.okex_v1.channels import Channel
from recorder.venues.okex_v1.session import PING, V1Session, plan_connection
from recorder.venues.okex_v1.settings import V1Settings, parse_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEPTH = "ok_sub_spot_btc_usdt_depth"
TICKER = "ok_sub_spot_btc_usdt_ticker"


def session(**settings: Any) -> tuple[V1Session, list[Record]]:
    out: list[Record] = []
    channels = [Channel("btc_usdt", ChannelKind.DEPTH), Channel("btc_usdt", ChannelKind.TICKER)]
    plan = plan_connection("ws-0", channels, "ws://127.0.0.1:1/ws")
    return V1Session(plan, V1Settings(**settings), out, FeedCounters()), out


def sent(s: V1Session) -> list[dict[str, str]]:
    return [obj for message in s.data_to_send() for obj in json.loads(message)]


def depth(bids: list[list[str]], asks: list[list[str]]) -> str:
    return json.dumps([{"channel": DEPTH, "data": {"bids": bids, "asks": asks, "timestamp": 1767225600000}}])


def test_the_venue_plans_connections_and_opens_sessions_that_satisfy_the_interface() -> None:
    venue = get_venue("okex_v1")
    settings = venue.parse_settings({"symbols": ["btc_usdt", "eth_usdt", "ltc_btc"],
                                     "channels": "ticker,depth", "symbols_per_connection": 2,
                                     "ws_url": "ws://127.0.0.1:1/ws"})
    plans = venue.plan_connections(settings)
    assert [(p.name, p.symbols, len(p.channels)) for p in plans] == [
        ("ws-0", ("btc_usdt", "eth_usdt"), 4), ("ws-1", ("ltc_btc",), 2)]
    assert {p.url for p in plans} == {"ws://127.0.0.1:1/ws"} and {p.venue for p in plans} == {"okex_v1"}
    s = venue.open_session(plans[0], settings, [], FeedCounters())
    assert isinstance(s, Session) and s.ping() == PING == '{"event":"ping"}'


def test_settings_refuse_bad_keys_naming_them() -> None:
    with pytest.raises(ConfigError, match=r"venues.okex_v1.symbols: .*'BTC-USDT'"):
        parse_settings({"symbols": ["BTC-USDT"]})
    with pytest.raises(ConfigError, match=r"unknown key 'venues.okex_v1.symbolz'"):
        parse_settings({"symbolz": ["btc_usdt"]})
    with pytest.raises(ConfigError, match=r"venues.okex_v1.channels: unknown channel 'books'"):
        parse_settings({"channels": ["books"]})
    assert parse_settings({"compress": "true", "ping_interval": "5"}).timing.ping_interval == 5.0


def test_start_subscribes_everything_in_batches_with_the_binary_flag_when_compressing() -> None:
    s, out = session(subscribe_batch=1, compress=True)
    s.start(T0)
    messages = s.data_to_send()
    assert [json.loads(m) for m in messages] == [
        [{"event": "addChannel", "channel": DEPTH, "binary": "1"}],
        [{"event": "addChannel", "channel": TICKER, "binary": "1"}]]
    assert s.data_to_send() == []
    (connected,) = out
    assert isinstance(connected, FeedEvent) and connected.kind is FeedEventKind.CONNECTED
    assert connected.detail == "sent 2 subscriptions" and connected.symbols == ("btc_usdt",)


def _outcome_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "recorder.collector"]


def _ack(channel: str) -> str:
    return json.dumps([{"channel": "addChannel", "data": {"result": True, "channel": channel}}])


def _error_ack(channel: str) -> str:
    return json.dumps([{"channel": channel, "success": False, "errorcode": 10015}])


def test_the_log_says_sent_then_the_outcome_of_the_subscriptions_once_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'sent N subscriptions' when they go out; then, once each is acked or refused, how many the
    exchange confirmed and which it refused (nothing claims 'subscribed' before the answers)."""
    caplog.set_level(logging.INFO, logger="recorder.collector")
    s, _ = session()
    s.start(T0)
    assert _outcome_lines(caplog) == []  # queued, not sent yet
    assert len(sent(s)) == 2
    assert _outcome_lines(caplog) == [("INFO", "ws-0: sent 2 subscriptions")]
    s.receive(_ack(DEPTH), T0 + timedelta(milliseconds=5))
    assert len(_outcome_lines(caplog)) == 1  # the ticker is not answered yet
    s.receive(_error_ack(TICKER), T0 + timedelta(milliseconds=6))
    lines = _outcome_lines(caplog)
    assert lines[1][0] == "ERROR" and lines[1][1].startswith(f"ws-0: subscription to {TICKER} refused: ")
    assert lines[2:] == [("WARNING", f"ws-0: 1 of 2 subscriptions confirmed, 1 refused ({TICKER}: asked "
                                     "again with the backoff)")]
    s.on_timer(T0 + timedelta(seconds=60))  # said once
    s.receive(_error_ack(TICKER), T0 + timedelta(seconds=61))
    assert _outcome_lines(caplog)[3:] == []
    # a new connection: the ticker's first data answers it as well as an ack would
    s.closed(T0 + timedelta(seconds=62), "connection lost")
    s.start(T0 + timedelta(seconds=63))
    sent(s)
    s.receive(_ack(DEPTH), T0 + timedelta(seconds=63.1))
    ticker = {"buy": "1", "sell": "2", "last": "1.5", "high": "2", "low": "1", "vol": "3",
              "timestamp": 1767225600000}
    s.receive(json.dumps([{"channel": TICKER, "data": ticker}]), T0 + timedelta(seconds=63.2))
    assert _outcome_lines(caplog)[3:] == [("INFO", "ws-0: sent 2 subscriptions"),
                                          ("INFO", "ws-0: all 2 subscriptions confirmed by the exchange"),
                                          ("INFO", f"ws-0: {TICKER} delivers after 2 refusal(s)")]


def test_subscriptions_still_unanswered_after_the_patience_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.collector")
    s, _ = session()
    s.start(T0)
    sent(s)
    s.receive(_ack(TICKER), T0 + timedelta(milliseconds=5))
    s.on_timer(T0 + timedelta(seconds=SUBSCRIBE_PATIENCE) - timedelta(microseconds=1))
    assert _outcome_lines(caplog) == [("INFO", "ws-0: sent 2 subscriptions")]
    s.on_timer(T0 + timedelta(seconds=SUBSCRIBE_PATIENCE))
    assert _outcome_lines(caplog)[1:] == [
        ("WARNING", f"ws-0: 1 of 2 subscriptions confirmed, 1 unanswered after 10 s ({DEPTH})")]


def test_a_crossed_book_is_resubscribed_once_when_due_and_the_pong_is_what_the_decoder_says() -> None:
    s, _ = session()
    assert s.receive('{"event":"pong"}', T0) == FRAME_TAKEN | FRAME_PONG
    flags = s.receive(depth([["100", "1"]], [["101", "1"]]), T0 + timedelta(milliseconds=1))
    assert flags == FRAME_TAKEN | FRAME_DATA
    s.receive(depth([["102", "1"]], []), T0 + timedelta(milliseconds=2))  # crossed
    due = s.next_deadline()
    assert due is not None and due <= T0 + timedelta(milliseconds=2, seconds=0.5)  # the backoff's first delay
    s.on_timer(due - timedelta(microseconds=1))
    assert s.data_to_send() == []  # not yet
    s.receive(depth([["100", "1"]], [["101", "1"]]), T0 + timedelta(milliseconds=3))  # discarded: no request
    s.on_timer(due)
    assert [(o["event"], o["channel"]) for o in sent(s)] == [("removeChannel", DEPTH), ("addChannel", DEPTH)]
    assert s.next_deadline() is None


def test_a_lost_connection_drops_pending_requests_the_next_one_subscribes_everything() -> None:
    s, out = session()
    s.receive(json.dumps([{"channel": TICKER, "success": False, "errorcode": 10015}]), T0)
    assert s.next_deadline() is not None
    s.closed(T0 + timedelta(seconds=1), "server closed the connection")
    assert s.next_deadline() is None and s.data_to_send() == []
    kinds = [r.kind for r in out if isinstance(r, FeedEvent)]
    assert kinds == [FeedEventKind.SUBSCRIBE_ERROR, FeedEventKind.SUBSCRIBE_REFUSED,
                     FeedEventKind.DISCONNECTED]
    s.start(T0 + timedelta(seconds=2))
    assert [(o["event"], o["channel"]) for o in sent(s)] == [("addChannel", DEPTH), ("addChannel", TICKER)]


def test_no_removechannel_ack_asks_for_a_new_connection() -> None:
    s, _ = session()
    s.receive(depth([["100", "1"]], [["101", "1"]]), T0)
    s.receive(depth([["102", "1"]], []), T0 + timedelta(milliseconds=1))  # crossed: resubscribe
    s.on_timer(T0 + timedelta(seconds=5))
    assert sent(s)  # removeChannel + addChannel went out
    for i in range(20):  # pushes keep coming, no removeChannel ack
        s.receive(depth([["100", str(i + 2)]], []), T0 + timedelta(seconds=6, milliseconds=i))
    assert (s.replace_reason() or "").startswith(f"no removeChannel ack for {DEPTH}")
    assert s.replace_reason() is None  # read once


def test_a_server_ping_is_keep_alive_and_pushes_of_channels_not_subscribed_are_quarantined() -> None:
    """`{"event":"ping"}` from the server was quarantined as malformed; depth and deals of eth_usdt
    (never subscribed here) were kept as data (a book of a channel nobody asked for)."""
    from recorder.records import QuarantinedFrame

    s, out = session()
    s.start(T0)
    assert s.receive('{"event":"ping"}', T0) == FRAME_TAKEN | FRAME_PONG
    assert s.pong_only('{"event":"ping"}') and s.counters.pong_frames == 1 and out[1:] == []
    eth_depth, eth_deals = "ok_sub_spot_eth_usdt_depth", "ok_sub_spot_eth_usdt_deals"
    frame = json.dumps([{"channel": eth_depth, "data": {"bids": [["1", "1"]], "asks": [["2", "1"]],
                                                        "timestamp": 1767225600000}},
                        {"channel": eth_deals, "data": [["1", "1", "1", "00:00:01", "bid"],
                                                        ["2", "1", "1", "00:00:01", "ask"]]}])  # fmt: skip
    assert s.receive(frame, T0 + timedelta(seconds=1)) == FRAME_TAKEN | FRAME_DATA
    rows = [(q.reason, q.channel, q.payload, q.venue) for q in out if isinstance(q, QuarantinedFrame)]
    assert rows == [(f"not subscribed on this connection: {name}", name, frame.encode(), "okex_v1")
                    for name in (eth_depth, eth_deals)]  # fmt: skip
    assert [r for r in out[1:] if not isinstance(r, QuarantinedFrame)] == []
    assert s.counters.accepted == {}

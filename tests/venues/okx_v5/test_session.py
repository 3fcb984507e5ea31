"""The sans-I/O session (PROTOCOL.md §2, §3): frames in, records/events and messages out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from recorder.errors import ChannelError, ConfigError, DecodeError
from recorder.venues.okx_v5 import records
from recorder.venues.okx_v5.book import Scale, checksum
from recorder.venues.okx_v5.channels import ChannelArg, UrlKind
from recorder.venues.okx_v5.records import (
    BookGap,
    BookSnapshot,
    BookUpdate,
    Candle,
    ChannelConnCount,
    ErrorEvent,
    GapReason,
    Instrument,
    LoginAck,
    Notice,
    Pong,
    PongTimeout,
    SubscribeAck,
    Trade,
    UnsubscribeAck,
    V5Ticker,
)
from recorder.venues.okx_v5.session import SessionConfig, V5Session
from recorder.venues.okx_v5.signing import V5Credentials

from .frames import (
    BOOKS_UPDATE,
    CANDLE,
    CHANNEL_CONN_COUNT,
    CHECKSUM_1,
    CHECKSUM_2,
    CHECKSUM_BOOK,
    CHECKSUM_UPDATE,
    ERROR_60012,
    ERROR_60014,
    ERROR_60018,
    LOGIN_FAILED,
    LOGIN_OK,
    NOTICE,
    SECRET_A,
    SUBSCRIBE_ACK,
    TICKER,
    TRADES,
    UNSUBSCRIBE_ACK,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BOOKS = ChannelArg("books", "BTC-USDT")
SCALES = {"BTC-USDT": Scale(2, 0), "ETH-USDT": Scale(1, 7)}


def book_frame(
    action: str,
    bids: list[list[str]],
    asks: list[list[str]],
    prev: int,
    seq: int,
    checksum_value: int = 0,
    inst: str = "BTC-USDT",
    channel: str = "books",
) -> str:
    return json.dumps(
        {
            "arg": {"channel": channel, "instId": inst},
            "action": action,
            "data": [
                {
                    "asks": asks,
                    "bids": bids,
                    "ts": "1597026383085",
                    "checksum": checksum_value,
                    "prevSeqId": prev,
                    "seqId": seq,
                }
            ],
        }
    )


def snapshot_frame(seq: int = 123456, **kw: object) -> str:
    return book_frame(
        "snapshot",
        [["8476.97", "100", "0", "3"], ["8476", "5", "0", "1"]],
        [["8476.98", "7", "0", "2"], ["8477", "9", "0", "1"]],
        -1,
        seq,
        **kw,
    )  # type: ignore[arg-type]


def sent(s: V5Session) -> list[object]:
    return [m if m == "ping" else json.loads(m) for m in s.data_to_send()]


def test_subscribe_one_arg_per_request_with_ids_then_ack() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.subscribe([ChannelArg("tickers", "BTC-USDT"), ChannelArg("books", "ETH-USDT")])
    assert sent(s) == [
        {"id": "1", "op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]},
        {"id": "2", "op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]},
    ]
    (ack,) = s.receive(SUBSCRIBE_ACK.replace('"1512"', '"1"'), T0)
    assert isinstance(ack, SubscribeAck)
    assert (ack.arg, ack.request_id, ack.conn_id) == (ChannelArg("tickers", "BTC-USDT"), "1", "accb8e21")
    assert s.subscribed == {ChannelArg("tickers", "BTC-USDT")} and s.conn_id == "accb8e21"
    (unack,) = s.receive(UNSUBSCRIBE_ACK, T0)
    assert isinstance(unack, UnsubscribeAck) and s.subscribed == set()


def test_multi_arg_request_when_configured() -> None:
    s = V5Session(UrlKind.PUBLIC, config=SessionConfig(one_arg_per_request=False))
    s.subscribe([ChannelArg("tickers", "BTC-USDT"), ChannelArg("books", "ETH-USDT")])
    (msg,) = sent(s)
    assert msg == {
        "id": "1",
        "op": "subscribe",
        "args": [{"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "books", "instId": "ETH-USDT"}],
    }


def test_wrong_url_is_refused_before_sending() -> None:
    s = V5Session(UrlKind.PUBLIC)
    with pytest.raises(ChannelError, match="business"):
        s.subscribe([ChannelArg("candle1m", "BTC-USDT")])
    assert s.data_to_send() == []


def test_error_attributed_to_its_request_and_book_gap() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.subscribe([BOOKS])
    s.data_to_send()
    err, gap = s.receive(ERROR_60018.replace('{"event"', '{"id": "1", "event"'), T0)
    assert isinstance(err, ErrorEvent)
    assert (err.code, err.request_id, err.args) == (60018, "1", (BOOKS,))
    assert "doesn't exist" in err.msg
    assert isinstance(gap, BookGap) and gap.reason is GapReason.SUBSCRIBE_ERROR and not gap.resubscribe


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [(ERROR_60012, 60012, "1512"), (ERROR_60014, 60014, None), (LOGIN_FAILED, 60009, None)],
)
def test_documented_error_events(frame: str, code: int, rid: str | None) -> None:
    (err,) = V5Session(UrlKind.PUBLIC).receive(frame, T0)
    assert isinstance(err, ErrorEvent) and (err.code, err.request_id, err.args) == (code, rid, ())


def test_login_message_and_ack() -> None:
    s = V5Session(UrlKind.PRIVATE)
    s.login(V5Credentials("<key>", SECRET_A, "<passphrase>"), datetime.fromtimestamp(1538054050.9, tz=UTC))
    assert sent(s) == [
        {
            "op": "login",
            "args": [
                {
                    "apiKey": "<key>",
                    "passphrase": "<passphrase>",
                    "timestamp": "1538054050",
                    "sign": "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M=",
                }
            ],
        }
    ]
    (ack,) = s.receive(LOGIN_OK, T0)
    assert isinstance(ack, LoginAck) and s.logged_in


def test_notice_and_conn_count() -> None:
    s = V5Session(UrlKind.PUBLIC)
    (n,) = s.receive(NOTICE, T0)
    assert isinstance(n, Notice) and n.code == 64008 and "service upgrade" in n.msg
    assert s.notice_received == T0
    (c,) = s.receive(CHANNEL_CONN_COUNT, T0)
    assert isinstance(c, ChannelConnCount) and (c.channel, c.count) == ("orders", 2)


def test_unknown_event_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="whatever"):
        V5Session(UrlKind.PUBLIC).receive('{"event":"whatever"}', T0)


def test_keepalive_ping_pong_and_timeout() -> None:
    s = V5Session(UrlKind.PUBLIC, now=T0)
    assert s.next_deadline() == T0 + timedelta(seconds=20)
    assert s.tick(T0 + timedelta(seconds=19)) is None and s.data_to_send() == []
    s.receive(TICKER, T0 + timedelta(seconds=19))  # data resets the timer
    assert s.tick(T0 + timedelta(seconds=38)) is None and s.data_to_send() == []
    assert s.tick(T0 + timedelta(seconds=39)) is None
    assert s.data_to_send() == ["ping"]
    assert s.tick(T0 + timedelta(seconds=45)) is None and s.data_to_send() == []  # one ping at a time
    (pong,) = s.receive("pong", T0 + timedelta(seconds=46))
    assert isinstance(pong, Pong)
    assert s.tick(T0 + timedelta(seconds=66)) is None and s.data_to_send() == ["ping"]
    timeout = s.tick(T0 + timedelta(seconds=86))
    assert isinstance(timeout, PongTimeout) and timeout.ping_sent == T0 + timedelta(seconds=66)


@pytest.mark.parametrize("seconds", [0, 30, 31])
def test_ping_after_must_be_under_30s(seconds: int) -> None:
    with pytest.raises(ConfigError):
        SessionConfig(ping_after=timedelta(seconds=seconds))


def test_pushes_dispatch_to_records() -> None:
    s = V5Session(UrlKind.PUBLIC)
    (t,) = s.receive(TICKER, T0)
    assert isinstance(t, V5Ticker) and t.last == Decimal("9999.99") and t.ts_recv == T0
    (tr,) = s.receive(TRADES, T0)
    assert isinstance(tr, Trade) and tr.count == 3
    biz = V5Session(UrlKind.BUSINESS)
    (c,) = biz.receive(CANDLE, T0)
    assert isinstance(c, Candle) and c.bar == "1m" and c.volume_ccy_quote == Decimal("5529.5858061")
    inst = (
        '{"arg":{"channel":"instruments","instType":"SPOT"},"data":[{"instType":"SPOT","instId":"BTC-USDT",'
        '"tickSz":"0.1","lotSz":"0.00000001","state":"suspend","listTime":"","expTime":""}]}'
    )
    (i,) = s.receive(inst, T0)
    assert isinstance(i, Instrument) and i.state == "suspend" and i.list_time is None


def test_book_snapshot_then_documented_update() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    (snap,) = s.receive(snapshot_frame(), T0)
    assert isinstance(snap, BookSnapshot)
    assert snap.bids == ((847697, 100, 3), (847600, 5, 1)) and snap.asks == ((847698, 7, 2), (847700, 9, 1))
    assert snap.seq_id == 123456 and snap.price_decimals == 2
    (upd,) = s.receive(BOOKS_UPDATE, T0)
    assert isinstance(upd, BookUpdate) and not upd.is_heartbeat
    assert upd.asks == ((847698, 415, 13), (847700, 0, 0)) and upd.bids == ((847697, 256, 12),)
    book = s.book("books", "BTC-USDT")
    assert book is not None
    assert book.bids() == ((847697, 256, 12), (847600, 5, 1)) and book.asks() == ((847698, 415, 13),)
    assert book.seq_id == 123457


def test_heartbeat_and_reset_are_updates() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    (hb,) = s.receive(book_frame("update", [], [], 10, 10), T0)
    assert isinstance(hb, BookUpdate) and hb.is_heartbeat
    (reset,) = s.receive(book_frame("update", [], [["8477", "0", "0", "0"]], 10, 3), T0)
    assert isinstance(reset, BookUpdate) and reset.is_sequence_reset
    (nxt,) = s.receive(book_frame("update", [], [], 3, 5), T0)
    assert isinstance(nxt, BookUpdate)
    assert s.data_to_send() == []


def test_gap_drops_book_resubscribes_and_discards_until_snapshot() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    (gap,) = s.receive(book_frame("update", [], [], 11, 12), T0)
    assert isinstance(gap, BookGap) and gap.reason is GapReason.SEQUENCE and gap.resubscribe
    assert "prevSeqId 11" in gap.detail
    assert s.book("books", "BTC-USDT") is None
    assert sent(s) == [
        {"id": "1", "op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
        {"id": "2", "op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
    ]
    # updates in flight are discarded quietly, without a second gap or resubscribe
    assert s.receive(book_frame("update", [], [], 12, 13), T0) == []
    assert s.dropped_updates == 1 and s.data_to_send() == []
    (snap,) = s.receive(snapshot_frame(500), T0)
    assert isinstance(snap, BookSnapshot) and s.book("books", "BTC-USDT") is not None
    (upd,) = s.receive(book_frame("update", [], [], 500, 501), T0)
    assert isinstance(upd, BookUpdate)


def test_update_before_snapshot_is_a_gap() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    (gap,) = s.receive(BOOKS_UPDATE, T0)
    assert isinstance(gap, BookGap) and gap.reason is GapReason.NO_SNAPSHOT


def test_checksum_verified_when_nonzero() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    (snap,) = s.receive(
        book_frame(
            "snapshot", CHECKSUM_BOOK["bids"], CHECKSUM_BOOK["asks"], -1, 1, CHECKSUM_1, inst="ETH-USDT"
        ),
        T0,
    )
    assert isinstance(snap, BookSnapshot)
    (upd,) = s.receive(
        book_frame(
            "update", CHECKSUM_UPDATE["bids"], CHECKSUM_UPDATE["asks"], 1, 2, CHECKSUM_2, inst="ETH-USDT"
        ),
        T0,
    )
    assert isinstance(upd, BookUpdate) and upd.checksum == CHECKSUM_2
    (gap,) = s.receive(
        book_frame("update", [], [["3368", "0.6", "0", "1"]], 2, 3, CHECKSUM_2, inst="ETH-USDT"), T0
    )
    assert isinstance(gap, BookGap) and gap.reason is GapReason.CHECKSUM
    assert str(CHECKSUM_2) in gap.detail


def test_books5_and_bbo_replace_the_book_each_push() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    for asks in ([["8477", "1", "0", "1"]], [["8478", "2", "0", "1"]]):
        frame = json.dumps(
            {
                "arg": {"channel": "books5", "instId": "BTC-USDT"},
                "data": [{"asks": asks, "bids": [], "instId": "BTC-USDT", "ts": "1", "seqId": 7}],
            }
        )
        (snap,) = s.receive(frame, T0)
        assert isinstance(snap, BookSnapshot) and snap.asks == ((int(asks[0][0]) * 100, int(asks[0][1]), 1),)
    book = s.book("books5", "BTC-USDT")
    assert book is not None and book.asks() == ((847800, 2, 1),)


def test_book_without_scale_is_a_clear_error() -> None:
    s = V5Session(UrlKind.PUBLIC)
    with pytest.raises(DecodeError, match="tickSz"):
        s.receive(snapshot_frame(), T0)
    s.set_scale("BTC-USDT", Scale(2, 0))
    (snap,) = s.receive(snapshot_frame(), T0)
    assert isinstance(snap, BookSnapshot)


def test_undecodable_increment_raises_and_defers_the_gap() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    with pytest.raises(DecodeError, match="bids price"):
        s.receive(book_frame("update", [["84x", "1", "0", "1"]], [], 10, 11), T0)
    assert len(sent(s)) == 2  # unsubscribe + subscribe queued
    gap, tick = s.receive(TICKER, T0)
    assert isinstance(gap, BookGap) and gap.reason is GapReason.DECODE and isinstance(tick, V5Ticker)


def test_no_resubscribe_when_configured_off() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES, config=SessionConfig(resubscribe_on_gap=False))
    s.receive(snapshot_frame(10), T0)
    (gap,) = s.receive(book_frame("update", [], [], 9, 12), T0)
    assert isinstance(gap, BookGap) and not gap.resubscribe and s.data_to_send() == []
    assert s.receive(book_frame("update", [], [], 12, 13), T0) == []


@pytest.mark.parametrize(
    "frame",
    [
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"weird","data":[{"asks":[],"bids":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"bids":[],"ts":""}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"ts":"1"}]}',
        '{"arg":{"channel":"nope","instId":"BTC-USDT"},"data":[]}',
        '{"arg":{"channel":"status"},"data":[]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"}}',
    ],
)
def test_malformed_pushes_are_decode_errors(frame: str) -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    with pytest.raises(DecodeError):
        s.receive(frame, T0)


def test_snapshot_checksum_uses_received_strings() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    bids = [["8476.970", "100", "0", "3"]]
    asks = [["8476.98", "7", "0", "2"]]
    ck = checksum([("8476.970", "100")], [("8476.98", "7")])
    (snap,) = s.receive(book_frame("snapshot", bids, asks, -1, 1, ck), T0)
    assert isinstance(snap, BookSnapshot) and snap.bids == ((847697, 100, 3),)


def test_unsubscribe_discards_in_flight_updates_without_a_gap() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    s.unsubscribe([BOOKS])
    assert sent(s) == [{"id": "1", "op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}]
    assert s.receive(book_frame("update", [], [], 10, 11), T0) == []
    assert s.data_to_send() == [] and s.book("books", "BTC-USDT") is None


def test_scale_change_drops_book_and_next_update_resubscribes() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    s.set_scale("BTC-USDT", Scale(3, 0))
    (gap,) = s.receive(book_frame("update", [], [], 10, 11), T0)
    assert isinstance(gap, BookGap) and gap.reason is GapReason.NO_SNAPSHOT and len(sent(s)) == 2
    (snap,) = s.receive(snapshot_frame(20), T0)
    assert isinstance(snap, BookSnapshot) and snap.bids[0][0] == 8476970 and snap.price_decimals == 3


def test_malformed_update_for_a_dropped_book_is_discarded_not_a_second_gap() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.receive(snapshot_frame(10), T0)
    (gap,) = s.receive(book_frame("update", [], [], 11, 12), T0)
    assert isinstance(gap, BookGap)
    assert len(s.data_to_send()) == 2
    assert s.receive(book_frame("update", [["bad", "1"]], [], 12, 13), T0) == []
    assert s.data_to_send() == [] and s.take_deferred() == [] and s.dropped_updates == 1


def test_requests_are_counted_for_the_hourly_limit() -> None:
    s = V5Session(UrlKind.PUBLIC, scales=SCALES)
    s.subscribe([BOOKS, ChannelArg("tickers", "BTC-USDT")])
    s.receive(snapshot_frame(10), T0)
    s.receive(book_frame("update", [], [], 11, 12), T0)  # gap: unsubscribe + subscribe
    s.login(V5Credentials("k" * 16, SECRET_A, "p"), T0)
    assert s.requests_queued == 5


def test_a_server_ping_is_answered_pong_and_is_no_data() -> None:
    s = V5Session(UrlKind.PUBLIC, now=T0)
    for frame in ("ping", b"ping"):
        assert s.receive(frame, T0) == [records.ServerPing(T0)]
        assert s.data_to_send() == ["pong"]


def test_an_error_or_login_event_without_a_code_has_none() -> None:
    s = V5Session(UrlKind.PUBLIC, now=T0)
    (err,) = s.receive('{"event":"error","msg":"odd"}', T0)
    assert isinstance(err, records.ErrorEvent) and (err.code, err.msg, err.args) == (None, "odd", ())
    (login,) = s.receive('{"event":"login","msg":""}', T0)
    assert isinstance(login, records.ErrorEvent) and login.code is None and not s.logged_in


def test_pushes_of_args_not_accepted_and_items_of_another_instrument_are_not_data() -> None:
    s = V5Session(UrlKind.PUBLIC, now=T0, accept=[("trades", "BTC-USDT")])

    def trade(inst: str, tid: str) -> dict[str, str]:
        return {"instId": inst, "tradeId": tid, "px": "1", "sz": "1", "side": "buy", "ts": "1764460800000"}

    doge = {"channel": "trades", "instId": "DOGE-USDT"}
    foreign = json.dumps({"arg": doge, "data": [trade("DOGE-USDT", "1")]})
    assert s.receive(foreign, T0) == [records.ForeignPush("trades", "DOGE-USDT", foreign.encode(), T0)]
    arg = {"channel": "trades", "instId": "BTC-USDT"}
    two = [trade("BTC-USDT", "2"), trade("DOGE-USDT", "3")]
    good, bad = s.receive(json.dumps({"arg": arg, "data": two}), T0)
    assert isinstance(good, records.Trade) and good.instrument == "BTC-USDT"
    assert isinstance(bad, records.RejectedItem)
    assert bad.reason == "trades item instId 'DOGE-USDT' differs from its arg's instId 'BTC-USDT'"
    with pytest.raises(DecodeError, match="differs from its arg's instId"):
        s.receive(json.dumps({"arg": arg, "data": [trade("DOGE-USDT", "4")]}), T0)

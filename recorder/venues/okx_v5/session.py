"""The sans-I/O OKX v5 WebSocket session: frames in → records and events out, messages to send out.

Implements PROTOCOL.md §2.1 (text ``ping``/``pong`` keep-alive), §2.2 (subscribe /
unsubscribe and their acks and errors), §2.3 (push dispatch), §2.5 (login), §2.6
(notices), §3 (channel pushes) and §3.2 (books: snapshot, updates, seqId chain,
checksum; on a break the book is dropped, a :class:`~.records.BookGap` is emitted
and an unsubscribe + subscribe of that arg is queued).

Like ``websockets``' protocol objects it owns both directions and does no I/O::

    s = V5Session(UrlKind.PUBLIC, scales={"BTC-USDT": Scale(1, 8)})
    s.subscribe([ChannelArg("books", "BTC-USDT")])
    ws.send(*s.data_to_send())                  # text frames to send
    events = s.receive(frame, ts_recv=now)      # records and events
    s.tick(now)                                 # keep-alive: may queue "ping" or return PongTimeout

Times are aware UTC datetimes supplied by the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec

from recorder.errors import (
    ChannelError,
    ChecksumMismatchError,
    ConfigError,
    CrossedBookError,
    DecodeError,
    SequenceGapError,
)

from . import parse as P
from .book import ChecksumMode, OrderBook, Scale
from .channels import MAX_REQUEST_BYTES, Channel, ChannelArg, UrlKind, parse_channel, split_requests
from .records import (
    BookGap,
    BookSnapshot,
    BookUpdate,
    ChannelConnCount,
    ErrorEvent,
    ForeignPush,
    GapReason,
    LoginAck,
    Notice,
    Pong,
    PongTimeout,
    RejectedItem,
    ServerPing,
    SubscribeAck,
    Trade,
    UnsubscribeAck,
    V5Ticker,
)
from .schemas import BookData, InstrumentData, TickerData, TradeData, WsMessage
from .signing import V5Credentials, ws_login_args

__all__ = ["SessionConfig", "V5Session"]

NOTICE_CODE = 64008


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Tunables of a session; every point PROTOCOL.md marks unconfirmed is one of them.

    * ``ping_after``: silence before sending ``ping`` (§2.1: N < 30 s; ccxt pings every 20 s).
    * ``pong_timeout``: wait for ``pong`` before the connection counts as dead (§2.1: N s).
    * ``one_arg_per_request``: subscribe each arg in its own request so an error (which carries
      no ``arg``) can be attributed (§11; default True).
    * ``checksum_mode``: verify non-zero checksums (default) or never (§3.2 "Current state").
    * ``accept_sequence_reset``: accept ``seqId < prevSeqId`` with a linking ``prevSeqId`` (§3.2 rule 5).
    * ``truncate_books``: drop levels beyond the channel depth after each message (§3.2, unconfirmed
      whether the server deletes them itself).
    * ``resubscribe_on_gap``: queue unsubscribe + subscribe of a broken book (§3.2 rule 6).
    * ``max_request_bytes``: size limit of one subscribe request (§2.4).
    """

    ping_after: timedelta = timedelta(seconds=20)
    pong_timeout: timedelta = timedelta(seconds=20)
    one_arg_per_request: bool = True
    checksum_mode: ChecksumMode = ChecksumMode.VERIFY_NONZERO
    accept_sequence_reset: bool = True
    truncate_books: bool = True
    resubscribe_on_gap: bool = True
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        if not timedelta(0) < self.ping_after < timedelta(seconds=30):
            raise ConfigError("ping_after must be between 0 and 30 s (idle connections close at 30 s)")
        if self.pong_timeout <= timedelta(0):
            raise ConfigError("pong_timeout must be positive")


_ENCODER = msgspec.json.Encoder()


class V5Session:
    """One v5 WebSocket connection's protocol state, without I/O (§2, §3).

    ``scales`` maps instId → :class:`~.book.Scale` (from the instrument's ``tickSz``/``lotSz``);
    book pushes of an instrument without a scale raise :class:`~recorder.errors.DecodeError`.
    Add scales later with :meth:`set_scale`.

    ``accept`` holds the arg keys ``(channel, instId)`` this connection subscribes (the args of
    its plan; ``("instruments", "")`` for the instruments channel): a push of any other arg is a
    :class:`~.records.ForeignPush`, not data. None (the default) takes the push of any arg.
    """

    def __init__(
        self,
        url_kind: UrlKind,
        *,
        scales: Mapping[str, Scale] | None = None,
        config: SessionConfig | None = None,
        now: datetime | None = None,
        accept: Collection[tuple[str, str]] | None = None,
    ) -> None:
        self.url_kind = url_kind
        self.accept = None if accept is None else frozenset(accept)
        self.config = config or SessionConfig()
        self._scales: dict[str, Scale] = dict(scales or {})
        self._outbox: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, tuple[ChannelArg, ...]]] = {}
        self.subscribed: set[ChannelArg] = set()
        self._books: dict[tuple[str, str], OrderBook] = {}
        self._dropped: set[tuple[str, str]] = set()
        self._last_recv = now
        self._ping_sent: datetime | None = None
        self.conn_id: str | None = None
        self.logged_in = False
        self.notice_received: datetime | None = None
        self.dropped_updates = 0
        self._deferred: list[object] = []
        self.requests_queued = 0
        """subscribe + unsubscribe + login ops queued on this connection; §2.4 allows 480 per hour
        per connection (error 60014 beyond): the shell reconnects or waits before that."""

    # -- outgoing ---------------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        """Drain the text frames queued to send (subscribe, unsubscribe, login, ``ping``)."""
        out, self._outbox = self._outbox, []
        return out

    def _request(self, op: str, args: Sequence[ChannelArg]) -> None:
        groups = (
            [[a] for a in args]
            if self.config.one_arg_per_request
            else split_requests(args, max_bytes=self.config.max_request_bytes)
        )
        for group in groups:
            rid = str(next(self._ids))
            self._pending[rid] = (op, tuple(group))
            self.requests_queued += 1
            self._outbox.append(_ENCODER.encode({"id": rid, "op": op, "args": group}).decode())

    def subscribe(self, args: Iterable[ChannelArg]) -> None:
        """Queue ``subscribe`` requests (§2.2) with ids. Raises ChannelError for a channel this URL
        does not serve (§1: candles and ``trades-all`` on business, the rest on public)."""
        args = list(args)
        for arg in args:
            kind = arg.url_kind
            if kind is not self.url_kind:
                raise ChannelError(f"{arg.channel} is served on /{kind.value}, not /{self.url_kind.value}")
        self._request("subscribe", args)

    def unsubscribe(self, args: Iterable[ChannelArg]) -> None:
        """Queue ``unsubscribe`` requests (§2.2). Their books are dropped at once; book updates
        still in flight are discarded quietly (no gap) until a new snapshot."""
        args = list(args)
        for arg in args:
            self._books.pop(arg.key, None)
            self._dropped.add(arg.key)
        self._request("unsubscribe", args)

    def resubscribe(self, arg: ChannelArg) -> None:
        """Queue unsubscribe + subscribe of ``arg`` to get a fresh snapshot (§3.2 rule 6)."""
        self.unsubscribe([arg])
        self._request("subscribe", [arg])

    def answer_ping(self) -> None:
        """Queue ``pong``: the answer to the server's own ``ping`` (done by :meth:`receive` too)."""
        self._outbox.append("pong")

    def login(self, credentials: V5Credentials, now: datetime) -> None:
        """Queue the ``login`` op (§2.5) signed for ``now`` (Unix seconds, integer).

        Pass local time plus the measured server clock offset: the login expires 30 s after
        its timestamp (60006).
        """
        args = ws_login_args(credentials, str(int(now.timestamp())))
        self.requests_queued += 1
        self._outbox.append(_ENCODER.encode({"op": "login", "args": [args]}).decode())

    def set_scale(self, instrument: str, scale: Scale) -> None:
        """Set (or change, e.g. after a ``tickSz`` change) the scale of ``instrument``.

        Its books are dropped: the next update of each is a ``BookGap(NO_SNAPSHOT)`` with a
        resubscribe, and the fresh snapshot is parsed with the new scale.
        """
        self._scales[instrument] = scale
        for key in [k for k in self._books if k[1] == instrument]:
            del self._books[key]

    def book(self, channel: str, instrument: str) -> OrderBook | None:
        """The local book of ``(channel, instrument)``, or None (no snapshot yet, or dropped)."""
        book = self._books.get((channel, instrument))
        return book if book is not None and book.is_valid else None

    # -- keep-alive -------------------------------------------------------------------------------

    def tick(self, now: datetime) -> PongTimeout | None:
        """Run the keep-alive timer (§2.1): queue ``ping`` after ``ping_after`` of silence;
        return :class:`~.records.PongTimeout` when no ``pong`` came within ``pong_timeout``."""
        if self._last_recv is None:
            self._last_recv = now
        if self._ping_sent is not None:
            if now - self._ping_sent >= self.config.pong_timeout:
                return PongTimeout(ping_sent=self._ping_sent, now=now)
            return None
        if now - self._last_recv >= self.config.ping_after:
            self._outbox.append("ping")
            self._ping_sent = now
        return None

    def next_deadline(self) -> datetime | None:
        """When :meth:`tick` must next be called (None before anything was received or ticked)."""
        if self._ping_sent is not None:
            return self._ping_sent + self.config.pong_timeout
        return None if self._last_recv is None else self._last_recv + self.config.ping_after

    # -- incoming ---------------------------------------------------------------------------------

    def receive(self, frame: str | bytes, ts_recv: datetime) -> list[object]:
        """Decode one text frame (§2.3: ``event`` first, then ``arg.channel``, and the bare ``pong``)
        and return the records/events it carries; ``ts_recv`` is the local receive time (aware UTC).

        Any frame counts as "received" for the keep-alive. The server's own text ``ping`` is
        answered with ``pong`` (queued) and returned as :class:`~.records.ServerPing`. Raises
        :class:`~recorder.errors.DecodeError` for a malformed frame (quarantine it). When
        the malformed frame was a book increment, that book is dropped, a resubscribe is
        queued, and its :class:`~.records.BookGap` is returned first by the next
        :meth:`receive` (or by :meth:`take_deferred`).
        """
        self._last_recv = ts_recv
        self._ping_sent = None
        out = self.take_deferred()
        msg = P.decode_ws_message(frame)
        if msg is P.PING:
            self.answer_ping()
            out.append(ServerPing(ts_recv))
        elif msg is P.PONG or isinstance(msg, str):
            out.append(Pong(ts_recv))
        elif msg.event:
            out += self._event(msg, ts_recv)
        elif msg.arg is None or not msg.data:
            raise DecodeError("okx_v5 frame without 'event' has no 'arg'/'data'", sample=frame)
        else:
            out += self._push(msg, ts_recv, frame)
        return out

    def take_deferred(self) -> list[object]:
        """Events held back because :meth:`receive` raised (a BookGap after an undecodable increment)."""
        out, self._deferred = self._deferred, []
        return out

    def _event(self, msg: WsMessage, ts_recv: datetime) -> list[object]:
        conn = msg.connId or None
        if conn:
            self.conn_id = conn
        rid = msg.id or None
        ev = msg.event
        if ev in ("subscribe", "unsubscribe"):
            if msg.arg is None:
                raise DecodeError(f"okx_v5 {ev} ack without 'arg'")
            self._ack(rid, msg.arg)
            if ev == "subscribe":
                self.subscribed.add(msg.arg)
                return [SubscribeAck(msg.arg, rid, conn, ts_recv)]
            self.subscribed.discard(msg.arg)
            return [UnsubscribeAck(msg.arg, rid, conn, ts_recv)]
        if ev == "error":
            # no code sent: None, never a made-up 0 (0 is v5's "success")
            error_code = None if msg.code == "" else _code(msg.code)
            pending = self._pending.pop(rid, None) if rid else None
            args = pending[1] if pending else ()
            out: list[object] = [ErrorEvent(error_code, msg.msg, rid, conn, args, ts_recv)]
            for arg in args:
                if pending and pending[0] == "subscribe" and _is_book(arg):
                    self._books.pop(arg.key, None)
                    out.append(
                        BookGap(
                            arg.instId,
                            arg.channel,
                            ts_recv,
                            GapReason.SUBSCRIBE_ERROR,
                            f"subscribe refused: {'no code' if error_code is None else error_code} {msg.msg}",
                            False,
                        )
                    )
            return out
        code = _code(msg.code)
        if ev == "login":
            if msg.code == "" or code != 0:  # no code is no "0" (success) either
                return [ErrorEvent(None if msg.code == "" else code, msg.msg, rid, conn, (), ts_recv)]
            self.logged_in = True
            return [LoginAck(conn, ts_recv)]
        if ev == "notice":
            if code == NOTICE_CODE:
                self.notice_received = ts_recv
            return [Notice(code, msg.msg, conn, ts_recv)]
        if ev in ("channel-conn-count", "channel-conn-count-error"):
            count = int(msg.connCount) if msg.connCount.isdigit() else None
            return [ChannelConnCount(ev, msg.channel, count, conn, ts_recv)]
        raise DecodeError(f"okx_v5 unknown event {ev!r}")

    def _ack(self, rid: str | None, arg: ChannelArg) -> None:
        if rid is None or rid not in self._pending:
            return
        op, args = self._pending[rid]
        rest = tuple(a for a in args if a != arg)
        if rest:
            self._pending[rid] = (op, rest)
        else:
            del self._pending[rid]

    def _push(self, msg: WsMessage, ts_recv: datetime, frame: str | bytes) -> list[object]:
        arg = msg.arg
        assert arg is not None
        if self.accept is not None and arg.key not in self.accept:
            payload = frame.encode() if isinstance(frame, str) else bytes(frame)
            return [ForeignPush(arg.channel, arg.instId, payload, ts_recv)]
        try:
            kind = parse_channel(arg.channel)
        except ChannelError as exc:
            raise DecodeError(str(exc), sample=frame) from None
        try:
            if isinstance(kind, str):  # candle bar
                rows = P.decode_data(msg.data, list, arg.channel)
                return [P.parse_candle(r, arg.instId, kind, ts_recv) for r in rows]
            if kind.is_book:
                return self._book_push(kind, arg, msg, ts_recv)
            if kind is Channel.TICKERS:
                return [_same_inst(P.parse_ticker(d, ts_recv), arg)
                        for d in P.decode_data(msg.data, TickerData, "tickers")]
            if kind in (Channel.TRADES, Channel.TRADES_ALL):
                return [_same_inst(P.parse_trade(d, ts_recv), arg)
                        for d in P.decode_data(msg.data, TradeData, arg.channel)]
            if kind is Channel.INSTRUMENTS:
                listed = P.decode_data(msg.data, InstrumentData, "instruments")
                return [P.parse_instrument(d, ts_recv) for d in listed]
        except DecodeError:
            # One bad item must not cost its neighbours: decode the push again item by item. A push
            # of one item (or whose data is no array) is quarantined whole, as before; so is an
            # instruments push (a partial list would read as instruments gone).
            if kind is Channel.INSTRUMENTS or (isinstance(kind, Channel) and kind.is_book):
                raise
            one_by_one = self._each_item(kind, arg, msg, ts_recv)
            if one_by_one is None:
                raise
            return one_by_one
        raise DecodeError(f"okx_v5 channel {arg.channel!r} has no parser in this core", sample=frame)

    def _each_item(self, kind: Channel | str, arg: ChannelArg, msg: WsMessage,
                   ts_recv: datetime) -> list[object] | None:  # fmt: skip
        """The slow path of :meth:`_push` after a bad item: every item on its own, each bad one a
        :class:`~.records.RejectedItem` (reason, the push cut down to that item). None when ``data``
        is not an array or holds one item (the caller quarantines the frame)."""
        try:
            raws = P.decode_items(msg.data, arg.channel)
        except DecodeError:
            return None
        if len(raws) < 2:
            return None
        prefix = b'{"arg":' + _ENCODER.encode(arg) + b',"data":['
        out: list[object] = []
        for raw in raws:
            try:
                if isinstance(kind, str):
                    row = P.decode_item(raw, list, arg.channel)
                    out.append(P.parse_candle(row, arg.instId, kind, ts_recv))
                elif kind is Channel.TICKERS:
                    ticker = P.parse_ticker(P.decode_item(raw, TickerData, "tickers"), ts_recv)
                    out.append(_same_inst(ticker, arg))
                else:
                    trade = P.parse_trade(P.decode_item(raw, TradeData, arg.channel), ts_recv)
                    out.append(_same_inst(trade, arg))
            except DecodeError as exc:
                payload = prefix + bytes(raw) + b"]}"
                out.append(RejectedItem(arg.channel, arg.instId, str(exc), payload, ts_recv))
        return out

    def _book_push(self, kind: Channel, arg: ChannelArg, msg: WsMessage, ts_recv: datetime) -> list[object]:
        items = P.decode_data(msg.data, BookData, arg.channel)
        scale = self._scales.get(arg.instId)
        if scale is None:
            raise DecodeError(
                f"okx_v5 {arg.channel}: no price/size scale for instrument {arg.instId!r}; "
                "load its instrument (tickSz, lotSz) first"
            )
        out: list[object] = []
        key = arg.key
        for d in items:
            ts_event = P.parse_ms(d.ts, f"{arg.channel}.ts")
            if ts_event is None:
                raise DecodeError(f"field '{arg.channel}.ts' is empty")
            book = self._books.get(key)
            if book is None:
                book = OrderBook(
                    arg.instId,
                    scale,
                    channel=arg.channel,
                    depth=kind.depth,
                    checksum_mode=self.config.checksum_mode,
                    accept_sequence_reset=self.config.accept_sequence_reset,
                    truncate=self.config.truncate_books,
                )
            snapshot = msg.action == "snapshot" or not kind.is_incremental_book
            if not snapshot and key in self._dropped:
                # The book was dropped (gap, unsubscribe): updates still in flight are discarded
                # quietly until the fresh snapshot; no second gap, no second resubscribe.
                self.dropped_updates += 1
                continue
            try:
                if snapshot:
                    book.apply_snapshot(
                        d.bids, d.asks, ts_event=ts_event, seq_id=d.seqId, checksum_value=d.checksum
                    )
                    # the book as it now is, not the levels as sent: a size-0 level is no level, and a
                    # price sent twice is one level (the last)
                    bids, asks = book.bids(), book.asks()
                    self._books[key] = book
                    self._dropped.discard(key)
                    out.append(
                        BookSnapshot(
                            arg.instId,
                            arg.channel,
                            ts_event,
                            ts_recv,
                            d.seqId,
                            bids,
                            asks,
                            scale.price_decimals,
                            scale.size_decimals,
                        )
                    )
                else:
                    if msg.action != "update":
                        raise DecodeError(f"field 'action': {msg.action!r} is not snapshot/update")
                    if d.seqId is None or d.prevSeqId is None:
                        raise DecodeError(f"{arg.channel} update without seqId/prevSeqId")
                    bids, asks = book.apply_update(
                        d.bids,
                        d.asks,
                        ts_event=ts_event,
                        prev_seq_id=d.prevSeqId,
                        seq_id=d.seqId,
                        checksum_value=d.checksum,
                    )
                    self._books[key] = book
                    out.append(
                        BookUpdate(
                            arg.instId,
                            arg.channel,
                            ts_event,
                            ts_recv,
                            d.seqId,
                            d.prevSeqId,
                            bids,
                            asks,
                            scale.price_decimals,
                            scale.size_decimals,
                            d.checksum,
                        )
                    )
            except SequenceGapError as exc:
                reason = GapReason.NO_SNAPSHOT if exc.expected is None else GapReason.SEQUENCE
                out.append(self._gap(arg, ts_recv, reason, str(exc)))
            except ChecksumMismatchError as exc:
                out.append(self._gap(arg, ts_recv, GapReason.CHECKSUM, str(exc)))
            except CrossedBookError as exc:
                out.append(self._gap(arg, ts_recv, GapReason.CROSSED, str(exc)))
            except DecodeError:
                if not snapshot:
                    self._deferred += out
                    self._deferred.append(self._gap(arg, ts_recv, GapReason.DECODE, "undecodable increment"))
                raise
        return out

    def _gap(self, arg: ChannelArg, ts_recv: datetime, reason: GapReason, detail: str) -> BookGap:
        self._books.pop(arg.key, None)
        resub = self.config.resubscribe_on_gap
        if resub:
            self.resubscribe(arg)
        else:
            self._dropped.add(arg.key)
        return BookGap(arg.instId, arg.channel, ts_recv, reason, detail, resub)


_R = TypeVar("_R", Trade, V5Ticker)


def _same_inst(record: _R, arg: ChannelArg) -> _R:
    """``record`` if its item's ``instId`` is its push's ``arg.instId``; else DecodeError (a malformed
    item: stored under its own instId it would be data of a stream never subscribed)."""
    if record.instrument != arg.instId:
        raise DecodeError(f"{arg.channel} item instId {record.instrument!r} differs from its arg's "
                          f"instId {arg.instId!r}")
    return record


def _is_book(arg: ChannelArg) -> bool:
    kind = parse_channel(arg.channel)
    return isinstance(kind, Channel) and kind.is_book


def _code(code: str | int) -> int:
    if code == "" or code is None:
        return 0
    try:
        return int(code)
    except (TypeError, ValueError):
        raise DecodeError(f"field 'code': {code!r} is not an error code") from None

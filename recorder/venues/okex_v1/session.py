"""The sans-I/O OKEx v1 WebSocket session: frames in; records and the messages to send out.

One :class:`V1Session` per connection (``ws-0``…), living across its reconnects. It
implements :class:`recorder.venue.Session` for PROTOCOL.md "WebSocket": ``addChannel``
subscriptions in batches (``"binary": "1"`` when compression is asked for), the
``{"event":"ping"}`` keep-alive and its pong, subscribe acks and error acks (both shapes),
``removeChannel`` + ``addChannel`` resubscription of a book to rebuild, and the data channels
(decoded by :func:`recorder.venues.okex_v1.parse.decode_frame`: one inflate per binary frame;
a pong is what the decoder says it is).

It owns every order book of its connection (:class:`_Book`: the levels, the evidence state,
the snapshot cadence, the audit history, one :meth:`_Book.reset`), the connection's feed-event
spans (disconnect / stall, book resets, refused subscriptions) and the retries of refused or
rebuilt channels, paced per channel with :func:`recorder.backoff.backoff` (the reconnect policy)
and coalesced while one is pending; a channel that delivers again starts from the first delay.

The book evidence rule (docs/collector.md "Order books"): the push taken as an incremental
channel's whole book is the first push of that channel after a clean subscription boundary (on a
new connection: its first push, wherever the addChannel ack lies; after a resubscription on a
live connection: the first push after the server's removeChannel ack), the channel's addChannel
ack of that subscription arrives (before or after it; its snapshots are held back until then),
and it looks whole (both sides hold a level, not crossed). Anything else is never stored, keeps
the gap open and is resubscribed.

Times are aware UTC datetimes given by the caller; the session reads no clock (the log
throttles use :func:`time.monotonic`, which changes no record).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import BookError, CrossedBookError, DecodeError
from recorder.records import (
    Balance,
    BookSnapshot,
    ChannelKind,
    Deal,
    DepthUpdate,
    FeedEvent,
    FeedEventKind,
    Kline,
    Order,
    QuarantinedFrame,
    Record,
    Ticker,
)
from recorder.venue import (
    FRAME_DATA,
    FRAME_PONG,
    FRAME_TAKEN,
    AuditOutcome,
    ConnectionPlan,
    FeedCounters,
    Frame,
    SessionTiming,
    SubscriptionRound,
)
from recorder.venues.okex_v1.book import OrderBook
from recorder.venues.okex_v1.channels import CHANNEL_PREFIX, Channel
from recorder.venues.okex_v1.parse import ErrorAck, Message, Ping, Pong, Rejected, SubscribeAck, decode_frame
from recorder.venues.okex_v1.settings import V1Settings

__all__ = ["ACK_PATIENCE", "PING", "V1Session", "channel_name_of", "plan_connection", "subscribe_messages"]

log = logging.getLogger("recorder.collector")

VENUE = "okex_v1"
PING = '{"event":"ping"}'
"""The keep-alive text (PROTOCOL.md "WebSocket", ping/pong)."""
QUARANTINE_MAX_BYTES = 64 * 1024
ACK_PATIENCE = 20  # depth pushes discarded waiting for a removeChannel ack before the connection is replaced
REFUSAL_LOG_INTERVAL = 60.0  # seconds between two log lines about one still-refused subscription
_ONE_US = timedelta(microseconds=1)
UNASKED_CACHE = 4096  # keys whose subscription check is remembered per connection
_KEEP_ALIVE = (Pong, Ping)  # messages that only say the connection is alive


def subscribe_messages(channels: Sequence[Channel], batch: int, *, compress: bool, event: str = "addChannel"
                       ) -> Iterator[str]:
    """The text frames that (un)subscribe ``channels``: JSON lists of at most ``batch`` objects."""
    for i in range(0, len(channels), batch):
        objs: list[dict[str, str]] = []
        for ch in channels[i:i + batch]:
            obj = {"event": event, "channel": ch.name}
            if compress:
                obj["binary"] = "1"
            objs.append(obj)
        yield json.dumps(objs, separators=(",", ":"))


def plan_connection(name: str, channels: Sequence[Channel], url: str = "") -> ConnectionPlan:
    """The :class:`~recorder.venue.ConnectionPlan` of a connection carrying ``channels``."""
    return ConnectionPlan(venue=VENUE, name=name, url=url, channels=tuple(c.name for c in channels),
                          symbols=tuple(dict.fromkeys(c.symbol for c in channels)), data=tuple(channels))


def channel_name_of(key: tuple[type, str, object]) -> str | None:
    """The v1 channel name of a :attr:`~recorder.venue.FeedCounters.accepted` key (None: not a v1 key)."""
    cls, symbol, extra = key
    if not symbol or symbol != symbol.lower() or "-" in symbol:
        return None if cls is not Balance else f"balance:{symbol}"
    if cls is DepthUpdate:
        assert isinstance(extra, ChannelKind)
        return f"{CHANNEL_PREFIX}{symbol}_{extra.value}"
    if cls is Kline:
        return f"{CHANNEL_PREFIX}{symbol}_kline_{getattr(extra, 'value', extra)}"
    kind = {Ticker: ChannelKind.TICKER, Deal: ChannelKind.DEALS, Order: ChannelKind.ORDER}.get(cls)
    if kind is None:
        return f"{cls.__name__.lower()}:{symbol}"
    return f"{CHANNEL_PREFIX}{symbol}_{kind.value}"


def _unlisted_hint(symbol: str) -> str:
    """A hint for a refusal of a symbol the exchange's published pair list does not hold (a typo?)."""
    from recorder.venues.okex_v1.pairs import pairs

    if symbol in pairs():
        return ""
    return (f" ({symbol} is not in the v1 pair table (recorder/venues/okex_v1/data/pairs_increment.csv): "
            "is it a listed pair? check collector.symbols)")


@dataclass(slots=True)
class _Book:
    """One channel's order book and everything known about it: the one owner of book state."""

    book: OrderBook
    channel: Channel
    name: str  # the channel's wire name
    await_remove: bool = False  # resubscribing on a live connection: discard pushes until removeChannel ack
    remove_sent: bool = False  # ... and the removeChannel has gone out
    discarded: int = 0  # pushes discarded since the removeChannel went out
    gap: FeedEvent | None = None  # open BOOK_RESET / RESUBSCRIBED span
    last_top: tuple[Any, Any] | None = None
    last_bucket: int = -1
    epoch: int = 0  # +1 on every reset and rebuild: an audit spanning a change is void
    good_since: datetime | None = None  # the book was rebuilt (or last passed an audit) at this receive time
    acked: bool = True  # the addChannel ack of the current subscription was seen (no start() seen: trusted)
    candidate_at: datetime | None = None  # receive time of the push taken as the whole book
    pending: list[BookSnapshot] = field(default_factory=list)  # snapshots held until the ack confirms
    pending_pushes: int = 0
    audit_due: bool = False  # rebuilt and not audited since
    history: deque[tuple[datetime, tuple[Any, ...], tuple[Any, ...]]] | None = None  # (from, bids, asks)

    def reset(self, *, acked: bool | None = None, await_remove: bool = False) -> None:
        """Throw the book away (the one reset path): empty levels, new epoch, no held snapshots.

        The caller counts held snapshots (:meth:`V1Session._drop_pending`) before.
        """
        self.book.reset()
        self.epoch += 1
        self.await_remove = await_remove
        self.remove_sent = False
        self.discarded = 0
        if acked is not None:
            self.acked = acked
        self.pending = []
        self.pending_pushes = 0
        self.audit_due = False
        self.last_top = None


@dataclass(slots=True)
class _Refusal:
    """A subscription the exchange refused: its open SUBSCRIBE_REFUSED span and its retries."""

    span: FeedEvent
    channel: Channel
    refusals: int = 1
    logged: float = 0.0  # time.monotonic() of the last log line


@dataclass(slots=True)
class _Request:
    """A paced request for one channel: ``addChannel`` again, or ``removeChannel`` + ``addChannel``."""

    channel: Channel
    due: datetime
    remove_first: bool


class V1Session:
    """One OKEx v1 connection's protocol state (see the module doc and :class:`recorder.venue.Session`).

    ``plan.data`` holds the :class:`~recorder.venues.okex_v1.channels.Channel` objects the
    connection subscribes (:func:`plan_connection`); records go to ``out``, accounting to the
    shared ``counters``.
    """

    def __init__(self, plan: ConnectionPlan, settings: V1Settings, out: list[Record],
                 counters: FeedCounters) -> None:
        self.plan = plan
        self.name = plan.name
        self.settings = settings
        self.timing: SessionTiming = settings.timing
        self.counters = counters
        self._out = out
        self._subscribed: tuple[Channel, ...] = tuple(plan.data or ())
        self._channels: dict[str, Channel] = {c.name: c for c in self._subscribed}
        self._symbols = plan.symbols
        self._books: dict[tuple[str, ChannelKind], _Book] = {}
        self._gap: FeedEvent | None = None  # open DISCONNECTED / STALL span
        self._refused: dict[str, _Refusal] = {}  # channel name -> open SUBSCRIBE_REFUSED span
        self._spread_to: datetime | None = None  # latest ts_recv given by _spread
        self._policy = BackoffPolicy(initial=settings.reconnect_initial, cap=settings.reconnect_cap)
        self._delays: dict[str, Iterator[float]] = {}  # channel -> its backoff (requests again)
        self._requests: dict[str, _Request] = {}  # channel -> the pending request
        self._outbox: list[Frame] = []
        self._down = False  # the connection is lost (until start()): requests are moot
        self._replace: str | None = None
        self._now: datetime | None = None  # the latest time the caller gave
        self._quarantine_logged = 0.0
        self._quarantine_unlogged = 0
        self._foreign_logged = 0.0
        self._unasked_keys: dict[tuple[type, str, object], str] = {}
        """``accepted`` key -> :meth:`_unasked` of it (absent: not seen yet)."""
        self._round: SubscriptionRound | None = None  # the subscriptions of this connection, until answered

    # -- the shell's side --------------------------------------------------------------------------

    def ping(self) -> Frame:
        """``{"event":"ping"}``."""
        return PING

    def data_to_send(self) -> list[Frame]:
        """The messages to send now, in order; the session counts them as sent."""
        out = self._outbox
        if out:
            self._outbox = []
            r = self._round
            if r is not None and not r.announced:  # the connection's subscriptions go out now
                r.announced = True
                log.info("%s: %s", self.name, r.sent_line())
        return out

    def replace_reason(self) -> str | None:
        """Why the connection should be replaced (no removeChannel ack), or None; cleared on read."""
        reason, self._replace = self._replace, None
        return reason

    def next_deadline(self) -> datetime | None:
        """When the earliest paced request is due (None: none pending)."""
        if not self._requests:
            return None
        return min(r.due for r in self._requests.values())

    def on_timer(self, now: datetime) -> None:
        """Queue the requests now due: ``addChannel`` again, or ``removeChannel`` + ``addChannel``; log
        the outcome of the connection's subscriptions when some are still unanswered after a while."""
        self._now = now
        if self._round is not None:
            self._report_round(now)
        if not self._requests:
            return
        s = self.settings
        for name, req in list(self._requests.items()):
            if req.due > now:
                continue
            del self._requests[name]
            ch = req.channel
            if req.remove_first:  # before the send: the server's removeChannel ack can only come after it
                st = self._books.get((ch.symbol, ch.kind))
                if st is not None and st.await_remove:
                    st.remove_sent = True
                    st.discarded = 0
                self._outbox.extend(subscribe_messages([ch], 1, compress=s.compress, event="removeChannel"))
                log.info("%s: resubscribed %s", self.name, name)
            else:  # a refused channel: the refusals are logged, rate-limited
                log.debug("%s: asked again for %s", self.name, name)
            self._outbox.extend(subscribe_messages([ch], 1, compress=s.compress))

    def start(self, now: datetime, detail: str = "") -> None:
        """A new connection: subscribe everything (a clean boundary for every incremental book)."""
        self._now = now
        self._down = False
        self._replace = None
        self._requests.clear()  # the new connection subscribes everything anyway
        s = self.settings
        self._outbox = list(subscribe_messages(self._subscribed, s.subscribe_batch, compress=s.compress))
        self._round = SubscriptionRound((c.name for c in self._subscribed), now)
        # The first push of each incremental depth channel on it is the whole book, wherever its ack lies.
        for ch in self._subscribed:
            if ch.kind is not ChannelKind.DEPTH:
                continue
            st = self._book(ch)
            self._drop_pending(st)
            st.reset(acked=False)
        self._out.append(FeedEvent(venue=VENUE, kind=FeedEventKind.CONNECTED, ts_start=now, ts_end=now,
                                   connection=self.name, symbols=self._symbols,
                                   detail=detail or self._round.sent_line()))

    def closed(self, now: datetime, reason: str, *, stall_since: datetime | None = None,
               dead_since: datetime | None = None) -> None:
        """The connection was lost: open its gap and the books' BOOK_RESET spans; throw the books away."""
        self._down = True
        self._round = None  # its outcome is moot: the next connection subscribes everything again
        self._requests.clear()
        self._outbox = []
        since = stall_since or dead_since or now
        if self._gap is None:
            kind = FeedEventKind.STALL if stall_since is not None else FeedEventKind.DISCONNECTED
            self._gap = FeedEvent(venue=VENUE, kind=kind, ts_start=since, ts_end=None, connection=self.name,
                                  symbols=self._symbols, detail=reason[:500])
            self._out.append(self._gap)
        for st in self._books.values():
            self._drop_pending(st)
            st.reset(acked=False)
            if st.gap is None:
                st.gap = FeedEvent(venue=VENUE, kind=FeedEventKind.BOOK_RESET, ts_start=since, ts_end=None,
                                   connection=self.name, symbols=(st.book.symbol,), channel=st.name,
                                   detail="connection lost: waiting for a fresh full push")
                self._out.append(st.gap)

    def stop(self, now: datetime) -> None:
        """Close every open span at ``now``."""
        self._round = None
        for span in self.open_spans():
            detail = f"{span.detail} (still open at shutdown)"[:500]
            self._out.append(replace(span, ts_end=now, detail=detail))
        self._gap = None
        self._refused.clear()
        for st in self._books.values():
            st.gap = None
            self._drop_pending(st)
            st.pending = []

    def open_spans(self) -> list[FeedEvent]:
        """Feed-event spans open right now (connection gap, book resets, refused subscriptions)."""
        spans = [self._gap] if self._gap is not None else []
        spans.extend(st.gap for st in self._books.values() if st.gap is not None)
        spans.extend(r.span for r in self._refused.values())
        return spans

    def refused_subscriptions(self) -> dict[str, int]:
        """Channels refused and not delivering yet -> refusals so far."""
        return {name: r.refusals for name, r in sorted(self._refused.items())}

    def channel_name(self, key: tuple[type, str, object]) -> str | None:
        """See :func:`channel_name_of`."""
        return channel_name_of(key)

    def pong_only(self, frame: Frame) -> bool:
        """Whether ``frame`` holds only keep-alive messages (pongs; the server's own ping)."""
        try:
            messages = decode_frame(frame, self._now_or_epoch())
        except DecodeError:
            return False
        return bool(messages) and all(type(m) in _KEEP_ALIVE for m in messages)

    def _now_or_epoch(self) -> datetime:
        from datetime import UTC

        return self._now or datetime(1970, 1, 1, tzinfo=UTC)

    # -- frames ------------------------------------------------------------------------------------

    def receive(self, frame: Frame, ts_recv: datetime) -> int:
        """Decode one frame and handle every message in it (see :meth:`recorder.venue.Session.receive`).

        A frame holding only keep-alive messages (pongs, or the server's own ``{"event":"ping"}``,
        which the protocol gives no answer) is counted in ``pong_frames``, not in ``frames``, and
        is not logged. Data of a channel this connection did not subscribe is quarantined
        (``not subscribed on this connection: <channel>``), one row per channel and frame (a
        session whose plan names no channels, as one opened on first use, takes every channel).
        """
        counters = self.counters
        self._now = ts_recv
        latest = self._spread_to
        if latest is not None and ts_recv <= latest:
            ts_recv = latest + _ONE_US
        try:
            messages = decode_frame(frame, ts_recv)
            if len(messages) > 1:
                messages = self._spread(ts_recv, messages)
        except DecodeError as exc:
            counters.frames += 1
            counters.last_ts_recv = ts_recv
            self._malformed(ts_recv, frame, str(exc))
            return FRAME_TAKEN | FRAME_DATA
        if messages and all(type(m) in _KEEP_ALIVE for m in messages):
            counters.pong_frames += 1
            return FRAME_TAKEN | FRAME_PONG
        counters.frames += 1
        counters.last_ts_recv = ts_recv
        flags = FRAME_TAKEN | FRAME_DATA
        out = self._out
        accepted = counters.accepted
        unasked = self._unasked_keys
        foreign: set[str] | None = None
        for m in messages:
            t = type(m)
            if t is DepthUpdate:
                dkey = (t, m.symbol, m.kind)  # type: ignore[union-attr]
                dname = unasked.get(dkey)
                if dname is None:
                    dname = self._unasked(dkey)
                if dname:
                    foreign = self._foreign(foreign, dname, ts_recv, frame)
                    continue
                self._depth(m)  # type: ignore[arg-type]
                continue
            if t is Ticker or t is Deal:
                key: tuple[type, str, object] = (t, m.symbol, None)  # type: ignore[union-attr]
            elif t is Kline:
                key = (t, m.symbol, m.period)  # type: ignore[union-attr]
            elif t is Rejected:
                self._rejected(ts_recv, m)  # type: ignore[arg-type]
                continue
            elif t is SubscribeAck:
                self._ack(m)  # type: ignore[arg-type]
                continue
            elif t is ErrorAck:
                self._error_ack(ts_recv, m)  # type: ignore[arg-type]
                continue
            elif t is Order or t is Balance:
                key = (t, getattr(m, "symbol", getattr(m, "currency", "")), None)
            elif t is Pong or t is Ping:
                flags |= FRAME_PONG
                continue
            else:  # LoginResult: nothing to store
                continue
            cname = unasked.get(key)
            if cname is None:
                cname = self._unasked(key)
            if cname:
                foreign = self._foreign(foreign, cname, ts_recv, frame)
                continue
            accepted[key] = accepted.get(key, 0) + 1
            out.append(m)  # type: ignore[arg-type]
            if self._round is not None:
                self._answered(channel_name_of(key), ts_recv)
            if self._gap is not None:
                self._close_gap(ts_recv)
            if self._refused:
                name = channel_name_of(key)
                if name is not None:
                    self._delivered(name, ts_recv)
        return flags

    def _spread(self, ts_recv: datetime, messages: list[Message]) -> list[Message]:
        """Give each further ticker, depth push or balance of one key in a frame its own ts_recv.

        ``ts_recv`` is part of the row key of tickers ``(symbol, ts_recv)``, book snapshots
        ``(symbol, ts_recv, source)`` and balances ``(account, currency, ts_recv)``: two of them
        in one frame (an exchange batching updates, or sending one twice) would be one SQL row
        and two Parquet rows. The n-th one of a key gets ``ts_recv + n µs``; the connection's
        next frame then gets a later ts_recv still.
        """
        seen: dict[tuple[type, str], int] | None = None
        out = messages
        for i, m in enumerate(messages):
            key: tuple[type, str]
            if isinstance(m, Ticker | DepthUpdate):
                key = (type(m), m.symbol)
            elif isinstance(m, Balance):
                key = (Balance, f"{m.account} {m.currency}")
            else:
                continue
            if seen is None:
                seen = {}
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n:
                if out is messages:
                    out = list(messages)
                stamp = ts_recv + n * _ONE_US
                out[i] = replace(m, ts_recv=stamp)
                latest = self._spread_to
                if latest is None or stamp > latest:
                    self._spread_to = stamp
        return out

    def _book(self, ch: Channel) -> _Book:
        key = (ch.symbol, ch.kind)
        st = self._books.get(key)
        if st is None:
            st = self._books[key] = _Book(OrderBook(ch.symbol), ch, ch.name)
        return st

    def _depth(self, u: DepthUpdate) -> None:
        st = self._books.get((u.symbol, u.kind))
        if st is None:
            name = f"{CHANNEL_PREFIX}{u.symbol}_{u.kind.value}"
            st = self._book(self._channels.get(name) or Channel(u.symbol, u.kind))
        counters = self.counters
        if self._round is not None:
            self._answered(st.name, u.ts_recv)
        if self._refused and st.name in self._refused:
            self._delivered(st.name, u.ts_recv)
        if st.await_remove:
            counters.reject(st.name, "discarded: pushed before the removeChannel ack of a resubscription")
            if st.remove_sent:
                st.discarded += 1
                if st.discarded >= ACK_PATIENCE:  # no removeChannel ack: a new connection is a clean boundary
                    st.discarded = 0
                    if self._replace is None:
                        self._replace = f"no removeChannel ack for {st.name} after {ACK_PATIENCE} pushes"
            return
        book = st.book
        incremental = u.kind is ChannelKind.DEPTH
        rebuilt = not book.is_ready
        try:
            book.apply(u)
        except CrossedBookError as exc:
            counters.reject(st.name, "crossed book (never stored)")
            self._drop_pending(st)
            self._crossed(st, u, exc)
            return
        except BookError as exc:
            if incremental and rebuilt:
                counters.reject(st.name, "discarded: not a whole book (never stored)")
                self._not_whole(st, u, str(exc))
            else:
                counters.reject(st.name, "book error")
            return
        if self._gap is not None:
            self._close_gap(u.ts_recv)
        if rebuilt:
            st.epoch += 1
            st.candidate_at = u.ts_recv
            if st.history is not None:
                st.history.clear()
        snapshot = self._maybe_snapshot(st, u, incremental)
        if not incremental or st.acked:
            akey = (DepthUpdate, u.symbol, u.kind)
            counters.accepted[akey] = counters.accepted.get(akey, 0) + 1
            if rebuilt:
                self._confirmed(st, u.ts_recv)
            if snapshot is not None:
                self._out.append(snapshot)
            return
        # A candidate whole book without its addChannel ack yet: held back until the ack comes.
        st.pending_pushes += 1
        if snapshot is not None:
            st.pending.append(snapshot)
        if st.pending_pushes > ACK_PATIENCE:
            self._drop_pending(st)
            self._not_whole(st, u, f"no addChannel ack within {ACK_PATIENCE} pushes of the first one")

    def _maybe_snapshot(self, st: _Book, u: DepthUpdate, incremental: bool) -> BookSnapshot | None:
        """The snapshot cadence: one on a change of the top levels and/or one per interval bucket."""
        settings = self.settings
        book = st.book
        take = False
        if settings.snapshot_interval_ms:
            bucket = int(u.ts_event.timestamp() * 1000) // settings.snapshot_interval_ms
            if bucket != st.last_bucket:
                st.last_bucket = bucket
                take = True
        top = book.top(settings.snapshot_depth)
        if settings.snapshot_on_change and top != st.last_top:
            st.last_top = top
            take = True
        if incremental and settings.audit_history:
            history = st.history
            if history is None:
                history = st.history = deque(maxlen=settings.audit_history)
            bids, asks = top
            if not history or history[-1][1] != bids or history[-1][2] != asks:
                history.append((u.ts_recv, bids, asks))
        if not take:
            return None
        return book.snapshot(top=top)

    def _confirmed(self, st: _Book, ts: datetime) -> None:
        """The book is whole on the evidence (first push after the boundary + its ack + shape)."""
        since = st.candidate_at or ts
        st.good_since = since
        if st.book.source is ChannelKind.DEPTH:
            st.audit_due = True
            self._delays.pop(st.name, None)  # it delivers: the next request starts from the first delay
        if st.gap is not None:
            self._out.append(replace(st.gap, ts_end=since))
            st.gap = None
        if st.pending_pushes:
            akey = (DepthUpdate, st.book.symbol, ChannelKind.DEPTH)
            accepted = self.counters.accepted
            accepted[akey] = accepted.get(akey, 0) + st.pending_pushes
            self._out.extend(st.pending)
        st.pending = []
        st.pending_pushes = 0

    def _drop_pending(self, st: _Book) -> None:
        if st.pending_pushes:
            self.counters.reject(st.name, "discarded: no addChannel ack for the first push",
                                 st.pending_pushes)
        st.pending = []
        st.pending_pushes = 0

    def _not_whole(self, st: _Book, u: DepthUpdate, why: str) -> None:
        self.counters.not_whole_books += 1
        log.warning("%s: %s: the push taken as the whole book is not whole (%s); resubscribing",
                    self.name, st.name, why)
        self._resubscribe(st, u.ts_recv, f"first push is not a whole book ({why[:200]})")

    def _crossed(self, st: _Book, u: DepthUpdate, exc: CrossedBookError) -> None:
        self.counters.crossed_books += 1
        now = u.ts_recv
        symbols = (u.symbol,)
        self._out.append(FeedEvent(venue=VENUE, kind=FeedEventKind.CROSSED_BOOK, ts_start=now, ts_end=now,
                                   connection=self.name, symbols=symbols, channel=st.name, detail=str(exc)))
        if u.kind is ChannelKind.DEPTH:
            self._resubscribe(st, now, "crossed book")
            log.warning("%s: %s; book reset, resubscribing", self.name, exc)
            return
        st.reset()  # a full-depth channel: the next push replaces the book by itself
        if st.gap is None:
            st.gap = FeedEvent(venue=VENUE, kind=FeedEventKind.BOOK_RESET, ts_start=now, ts_end=None,
                               connection=self.name, symbols=symbols, channel=st.name,
                               detail="crossed book: waiting for the next push")
            self._out.append(st.gap)
        log.warning("%s: %s; book reset, waiting for a fresh full push", self.name, exc)

    def _resubscribe(self, st: _Book, now: datetime, why: str) -> None:
        """Throw the book away and ask for ``removeChannel`` + ``addChannel`` (paced)."""
        self._drop_pending(st)
        st.reset(acked=False, await_remove=True)
        if st.gap is None:
            st.gap = FeedEvent(venue=VENUE, kind=FeedEventKind.RESUBSCRIBED, ts_start=now, ts_end=None,
                               connection=self.name, symbols=(st.book.symbol,), channel=st.name,
                               detail=f"{why}: removeChannel + addChannel, waiting for a whole book")
            self._out.append(st.gap)
        self._request(st.channel, now, remove_first=True)

    def _request(self, ch: Channel, now: datetime, *, remove_first: bool) -> None:
        """Queue a paced request for ``ch``; one per channel at a time, the stronger one wins."""
        if self._down:
            return  # the next connection subscribes everything anyway
        pending = self._requests.get(ch.name)
        if pending is not None:
            pending.remove_first = pending.remove_first or remove_first
            return
        delays = self._delays.get(ch.name)
        if delays is None:
            delays = self._delays[ch.name] = backoff(self._policy)
        self._requests[ch.name] = _Request(ch, now + timedelta(seconds=next(delays)), remove_first)

    def _asked(self, name: str) -> Channel | None:
        """The channel of this connection an ack or error ack is about, or None.

        Channel names are lower-case on the wire; an ack that echoes one in another case
        (``OK_SUB_SPOT_BTC_USDT_DEPTH``) is about that channel all the same.
        """
        ch = self._channels.get(name)
        if ch is None and not name.islower():
            ch = self._channels.get(name.lower())
        return ch

    def _ack(self, ack: SubscribeAck) -> None:
        # The addChannel ack may come before or after the full push, in its frame or not: it
        # confirms the first push after the boundary (held back until then). A removeChannel
        # ack of a pending resubscription is the boundary after which the first push is the book.
        ch = self._asked(ack.channel)
        if ch is not None and ack.subscribed and self._round is not None:
            self._answered(ch.name, self._now_or_epoch())
        if ch is None or ch.kind is not ChannelKind.DEPTH:
            return  # a channel never asked for, or not a book
        st = self._books.get((ch.symbol, ch.kind))
        if st is None:
            return
        if not ack.subscribed:
            if st.await_remove and st.remove_sent:
                st.reset(acked=False)
            return
        if st.await_remove or st.acked:
            return  # an ack of the old subscription, or a duplicate
        st.acked = True
        if st.book.is_ready:
            self._confirmed(st, st.candidate_at or st.book.ts_recv or self._now_or_epoch())

    def _error_ack(self, ts_recv: datetime, ack: ErrorAck) -> None:
        self.counters.error_acks += 1
        err = ack.error
        ch = self._asked(ack.channel)
        detail = f"{err.code}: {err.message_en}"
        if ch is None:  # not a channel of this connection (login, a bad request, ...): an instant
            self._out.append(FeedEvent(
                venue=VENUE, kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=ts_recv, ts_end=ts_recv,
                connection=self.name, symbols=(), channel=ack.channel, detail=detail))
            now = time.monotonic()
            if now - self._foreign_logged >= REFUSAL_LOG_INTERVAL:
                self._foreign_logged = now
                log.error("%s: error ack about %r, not a channel of this recorder: %s", self.name,
                          ack.channel, err)
            return
        refusal = self._refused.get(ch.name)
        if refusal is None:
            span = FeedEvent(venue=VENUE, kind=FeedEventKind.SUBSCRIBE_REFUSED, ts_start=ts_recv, ts_end=None,
                             connection=self.name, symbols=(ch.symbol,), channel=ch.name,
                             detail=f"{detail}; retried with backoff")
            self._refused[ch.name] = _Refusal(span, ch, logged=time.monotonic())
            self._out.append(FeedEvent(
                venue=VENUE, kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=ts_recv, ts_end=ts_recv,
                connection=self.name, symbols=(ch.symbol,), channel=ch.name, detail=detail))
            self._out.append(span)
            log.error("%s: subscription to %s refused: %s; asking again with backoff%s", self.name, ch.name,
                      err, _unlisted_hint(ch.symbol))
        else:
            refusal.refusals += 1
            now = time.monotonic()
            if now - refusal.logged >= REFUSAL_LOG_INTERVAL:
                log.error("%s: subscription to %s still refused (%d refusals since %s): %s", self.name,
                          ch.name, refusal.refusals, refusal.span.ts_start.isoformat(), err)
                refusal.logged = now
        self._request(ch, ts_recv, remove_first=False)
        if self._round is not None:
            self._round.refuse(ch.name, detail)
            self._report_round(ts_recv)

    def _answered(self, channel: str | None, now: datetime) -> None:
        """An ack or the first data of ``channel``: one answer to the connection's subscriptions."""
        r = self._round
        if r is not None and channel is not None and channel not in r.confirmed:
            r.confirm(channel)
            self._report_round(now)

    def _report_round(self, now: datetime) -> None:
        """Log the outcome of the connection's subscriptions once every one is answered (or unanswered
        after :data:`~recorder.venue.SUBSCRIBE_PATIENCE` s)."""
        r = self._round
        assert r is not None
        outcome = r.outcome(now)
        if outcome is not None:
            self._round = None
            level, text = outcome
            log.log(level, "%s: %s", self.name, text)

    def _delivered(self, channel: str, ts_recv: datetime) -> None:
        """First data of a refused channel: its SUBSCRIBE_REFUSED span closes."""
        refusal = self._refused.pop(channel, None)
        if refusal is None:
            return
        detail = f"{refusal.span.detail}; first data after {refusal.refusals} refusal(s)"[:500]
        self._out.append(replace(refusal.span, ts_end=ts_recv, detail=detail))
        log.info("%s: %s delivers after %d refusal(s)", self.name, channel, refusal.refusals)
        self._delays.pop(channel, None)

    def _close_gap(self, ts: datetime) -> None:
        gap = self._gap
        assert gap is not None
        self._gap = None
        self._out.append(replace(gap, ts_end=ts))

    def _rejected(self, ts_recv: datetime, r: Rejected) -> None:
        self.counters.reject(r.channel, r.reason[:80])
        self.counters.quarantine(r.reason)
        self._out.append(QuarantinedFrame(venue=VENUE, ts_recv=ts_recv, connection=self.name,
                                          reason=r.reason[:500], payload=r.sample[:QUARANTINE_MAX_BYTES],
                                          channel=r.channel))
        self._log_bad(r.reason, r.sample)

    def _unasked(self, key: tuple[type, str, object]) -> str:
        """The channel name of ``key`` (an ``accepted`` key) when this connection did not subscribe
        it, else ``""`` (subscribed; a balance, whose push names currencies, not its channel; or a
        plan naming no channels, as a session opened on first use: it takes every channel)."""
        name = ""
        if self._channels and key[0] is not Balance:
            channel = channel_name_of(key)
            if channel is not None and channel not in self._channels:
                name = channel
        if len(self._unasked_keys) < UNASKED_CACHE:  # bounded: a server can send any number of keys
            self._unasked_keys[key] = name
        return name

    def _foreign(self, done: set[str] | None, name: str, ts_recv: datetime, frame: Frame) -> set[str]:
        """Data of channel ``name``, never subscribed on this connection: quarantined (stored, it
        would mix a stream into a dataset whose gaps say nothing about it), the frame as received
        once per channel; ``done`` holds the channels of this frame quarantined already."""
        done = set() if done is None else done
        if name in done:
            return done
        done.add(name)
        reason = f"not subscribed on this connection: {name}"
        self.counters.reject(name, "not subscribed on this connection")
        self.counters.quarantine(reason)
        payload = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
        self._out.append(QuarantinedFrame(venue=VENUE, ts_recv=ts_recv, connection=self.name,
                                          reason=reason[:500], payload=payload[:QUARANTINE_MAX_BYTES],
                                          channel=name))
        self._log_bad(reason, payload)
        return done

    def _malformed(self, ts_recv: datetime, frame: Frame, reason: str) -> None:
        self.counters.frames_malformed += 1
        self.counters.quarantine(reason)
        payload = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
        self._out.append(QuarantinedFrame(venue=VENUE, ts_recv=ts_recv, connection=self.name,
                                          reason=reason[:500], payload=payload[:QUARANTINE_MAX_BYTES]))
        self._out.append(FeedEvent(
            venue=VENUE, kind=FeedEventKind.MALFORMED_FRAME, ts_start=ts_recv, ts_end=ts_recv,
            connection=self.name, symbols=self._symbols, detail=f"{reason[:200]} ({len(payload)} bytes)"))
        self._log_bad(reason, payload)

    def _log_bad(self, reason: str, sample: bytes) -> None:
        now = time.monotonic()
        if now - self._quarantine_logged < self.settings.quarantine_log_interval:
            self._quarantine_unlogged += 1
            return
        unlogged = self._quarantine_unlogged
        more = f" (+{unlogged} more since the last report)" if unlogged else ""
        self._quarantine_logged = now
        self._quarantine_unlogged = 0
        log.warning("%s: bad frame quarantined: %s; sample %r%s", self.name, reason[:200], sample[:120], more)

    # -- the book audit (driven by recorder.collector.audit.BookAuditor) ------------------------------

    def audit_candidates(self, *, periodic: bool) -> list[tuple[str, int]]:
        """``(symbol, epoch)`` of the incremental books to audit now.

        The books rebuilt and not audited since; with ``periodic`` every whole one.
        Taking a rebuilt book clears its "due" mark.
        """
        out = []
        for (symbol, kind), st in self._books.items():
            if kind is not ChannelKind.DEPTH or not st.book.is_ready or not st.acked or st.await_remove:
                continue
            if st.audit_due or periodic:
                st.audit_due = False
                out.append((symbol, st.epoch))
        return out

    def audit_book(self, symbol: str, epoch: int, sent: datetime, answered: datetime, slack: timedelta,
                   rest: BookSnapshot, now: datetime) -> AuditOutcome | None:
        """Compare the REST ``depth.do`` answer ``rest`` with the book states held around it.

        The rule (docs/collector.md "Book audit"): the top ``snapshot_depth`` levels of the
        answer (asked at ``sent``, received at ``answered``, UTC) must equal, price and
        amount, those of one of the book states the recorder held at some moment of
        ``[sent - slack, answered + slack]``. "void" when the book was reset or rebuilt
        since (``epoch`` changed) or its history does not reach back to the window;
        "fail" emits a BOOK_AUDIT_FAILED span (from the book's last good moment to
        ``now``) and resubscribes the channel. None: ``symbol`` is no book of this connection.
        """
        st = self._books.get((symbol, ChannelKind.DEPTH))
        if st is None:
            return None
        self._now = now
        counters = self.counters.audits
        if st.epoch != epoch or not st.book.is_ready or not st.acked or not st.history:
            counters["void"] = counters.get("void", 0) + 1
            return AuditOutcome("void", "book reset or rebuilt meanwhile")
        depth = self.settings.snapshot_depth
        want_bids, want_asks = tuple(rest.bids[:depth]), tuple(rest.asks[:depth])
        lo, hi = sent - slack, answered + slack
        history = list(st.history)
        if history[0][0] > lo and len(history) == st.history.maxlen:
            counters["void"] = counters.get("void", 0) + 1
            return AuditOutcome("void", "book history does not reach back to the REST call")
        nearest = None
        for i, (since, bids, asks) in enumerate(history):
            until = history[i + 1][0] if i + 1 < len(history) else hi
            if until < lo or since > hi:
                continue
            if bids == want_bids and asks == want_asks:
                counters["pass"] = counters.get("pass", 0) + 1
                st.good_since = answered
                return AuditOutcome("pass")
            nearest = (bids, asks)
        counters["fail"] = counters.get("fail", 0) + 1
        detail = (f"REST depth.do top {depth} matches no book state held from {lo.isoformat()} to "
                  f"{hi.isoformat()}: {_first_difference(nearest, (want_bids, want_asks))}")
        start = st.good_since or now
        self._out.append(FeedEvent(venue=VENUE, kind=FeedEventKind.BOOK_AUDIT_FAILED,
                                   ts_start=min(start, now), ts_end=now, connection=self.name,
                                   symbols=(symbol,), channel=st.name, detail=detail[:500]))
        log.warning("%s: %s: book audit failed (%s); resubscribing", self.name, st.name, detail[:300])
        self._resubscribe(st, now, "book audit failed")
        return AuditOutcome("fail", detail)


def _first_difference(held: tuple[Any, Any] | None, rest: tuple[Any, Any]) -> str:
    if held is None:
        return "no book state in the window"
    for side, mine, theirs in (("bids", held[0], rest[0]), ("asks", held[1], rest[1])):
        for i in range(max(len(mine), len(theirs))):
            a = mine[i] if i < len(mine) else None
            b = theirs[i] if i < len(theirs) else None
            if a != b:
                return f"latest state in the window: {side}[{i}] book {_level(a)} vs REST {_level(b)}"
    return "equal"  # pragma: no cover - only called after a mismatch


def _level(level: Any) -> str:
    return "none" if level is None else f"{level[0]}x{level[1]}"

"""The ``okx_v5`` venue behind the venue seam (:mod:`recorder.venue`): plans and sessions.

:data:`VENUE` (exported by the package) satisfies :class:`recorder.venue.Venue`. Each
:class:`V5VenueSession` wraps the protocol core's :class:`~.session.V5Session` (a fresh one per
connection) and turns its output into venue-neutral records (:mod:`.neutral`) in the shell's
``out`` list. What it implements (PROTOCOL.md v5):

* Connections (§1, §2.4): market channels (``tickers``, ``books``, ``books5``, ``bbo-tbt``,
  ``trades``) on the public URL, candles on the business URL, spread with
  :func:`~.channels.plan_connections` (at most 29 deep books and 100 args per connection).
* Scales: a public connection carrying books first subscribes ``instruments`` (``instType``
  from the settings); the book args are subscribed once every instrument's ``tickSz``/``lotSz``
  is known (scales are kept across reconnects; a later push with a changed scale re-scales and
  resubscribes the books). Each configured instrument's :class:`~recorder.records.Instrument`
  is emitted when first seen and whenever it changes (state, sizes); the collector's pipeline
  writes it only when it differs from the last state stored or written of that instrument
  (:meth:`~recorder.collector.pipeline.FramePipeline.seed_instruments`). A configured instrument
  missing from the instruments data gets a ``SUBSCRIBE_REFUSED`` span (and a warning) for each
  of its books, open until it is listed and its book delivers.
* Keep-alive (§2.1): the text ``ping`` every ``ping_after`` s (< 30 s; the shell sends it every
  :attr:`~recorder.venue.SessionTiming.ping_interval`), the text ``pong`` counts as a pong; the
  server's own text ``ping`` is keep-alive too, answered ``pong`` (never quarantined, not logged).
* Pushes of an arg not in the plan (nor ``instruments`` on a book connection) are quarantined,
  ``not subscribed on this connection: <channel> <instId>``; a ticker or trade item whose
  ``instId`` differs from its ``arg.instId`` is quarantined as malformed.
* Books (§3.2): a sequence break, a non-zero checksum that fails, an update before the
  snapshot or an undecodable increment drops the book, opens a ``SEQUENCE_BREAK`` /
  ``CHECKSUM_MISMATCH`` / ``BOOK_RESET`` span and resubscribes the channel (unsubscribe +
  subscribe) after the backoff's next delay — the first within ``reconnect_initial`` s, growing
  while fresh books keep breaking, afresh once a book held ``reconnect_cap`` s; nothing of that
  book is stored until the fresh snapshot, which closes the span. A checksum of 0 is not
  checked. ``books`` snapshots are stored with v1's cadence (on a change of the top
  ``snapshot_depth`` levels and/or one per ``snapshot_interval_ms`` of exchange time);
  ``books5`` / ``bbo-tbt`` pushes are whole books, each stored.
* Notice 64008 (§2.6): a ``PLANNED_DISCONNECT`` span opens and the session asks the shell to
  replace the connection (:meth:`V5VenueSession.replace_reason`) before the server closes it;
  the first data on the new connection closes the span.
* Refused subscriptions (§2.2): a ``SUBSCRIBE_REFUSED`` span with the v5 code and its
  documented text, retried with :func:`recorder.backoff.backoff` until the channel delivers.
* Bad input never raises: a frame the core cannot decode (or a trade with a non-numeric id)
  becomes a :class:`~recorder.records.QuarantinedFrame`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import DecodeError, RecorderError
from recorder.records import (
    BookSnapshot,
    Deal,
    FeedEvent,
    FeedEventKind,
    Kline,
    QuarantinedFrame,
    Record,
    Ticker,
)
from recorder.venue import (
    FRAME_DATA,
    FRAME_PONG,
    FRAME_TAKEN,
    ConnectionPlan,
    FeedCounters,
    Frame,
    SessionTiming,
    SubscriptionRound,
)

from . import neutral
from . import records as v5
from .book import OrderBook, Scale
from .channels import Channel, ChannelArg, UrlKind, parse_channel
from .channels import plan_connections as plan_args
from .session import V5Session
from .settings import V5VenueSettings, parse_settings

__all__ = ["VENUE", "OkxV5Venue", "V5VenueSession"]

log = logging.getLogger(__name__)

_R = TypeVar("_R", Ticker, BookSnapshot)
_ONE_US = timedelta(microseconds=1)

MAX_QUARANTINE_BYTES = 64 * 1024
PLANNED_REPLACE = "notice 64008: service upgrade; replacing the connection before the server closes it"
_INSTRUMENT_FIELDS = ("inst_type", "base", "quote", "tick_size", "lot_size", "min_size", "state", "list_time",
                      "exp_time")  # fmt: skip


class OkxV5Venue:
    """The ``okx_v5`` :class:`~recorder.venue.Venue`."""

    name = "okx_v5"

    def parse_settings(self, table: Mapping[str, Any]) -> V5VenueSettings:
        """``[venues.okx_v5]`` → :class:`~.settings.V5VenueSettings` (ConfigError naming the key)."""
        return parse_settings(table)

    def symbols(self, settings: V5VenueSettings) -> tuple[str, ...]:
        return settings.instruments

    def rest_url(self, settings: V5VenueSettings) -> str:
        return settings.rest_url

    def plan_connections(self, settings: V5VenueSettings) -> list[ConnectionPlan]:
        """Public connections (market channels) then business ones (candles), named
        ``okx_v5-public-<n>`` / ``okx_v5-business-<n>``; ``data`` holds the args."""
        plans = plan_args(
            settings.args(),
            max_depth_channels=settings.max_depth_channels_per_connection,
            max_args=settings.max_args_per_connection,
        )
        out: list[ConnectionPlan] = []
        counts: dict[UrlKind, int] = {}
        for p in sorted(plans, key=lambda p: p.url_kind is not UrlKind.PUBLIC):
            n = counts.get(p.url_kind, 0)
            counts[p.url_kind] = n + 1
            out.append(
                ConnectionPlan(
                    venue=self.name,
                    name=f"okx_v5-{p.url_kind.value}-{n}",
                    url=settings.url(p.url_kind.value),
                    channels=tuple(dict.fromkeys(a.channel for a in p.args)),
                    symbols=tuple(dict.fromkeys(a.instId for a in p.args)),
                    data=p.args,
                )
            )
        return out

    def open_session(
        self, plan: ConnectionPlan, settings: V5VenueSettings, out: list[Record], counters: FeedCounters
    ) -> V5VenueSession:
        return V5VenueSession(plan, settings, out, counters)


VENUE = OkxV5Venue()


@dataclass(slots=True)
class _Cadence:
    last_top: tuple[Any, ...] | None = None
    last_bucket: int | None = None


@dataclass(slots=True)
class _Pace:
    """Resubscriptions of one dropped book, paced: ``due`` is the next one, ``good_since`` when
    its last fresh snapshot came (a book good for ``reconnect_cap`` s starts the backoff afresh)."""

    delays: Iterator[float]
    due: datetime | None = None
    good_since: datetime | None = None


@dataclass(slots=True)
class _Refusal:
    arg: ChannelArg
    count: int = 0
    due: datetime | None = None
    delays: Iterator[float] = field(default_factory=lambda: iter(()))


def _arg_name(arg: ChannelArg) -> str:
    """``books:BTC-USDT``; ``instruments`` (an arg without instId): the names the status uses."""
    return f"{arg.channel}:{arg.instId}" if arg.instId else arg.channel


WAIT_FOR_SCALES = "the instruments data (tick and lot sizes)"
NOT_LISTED = "the instrument is not in the exchange's instruments data"


def _is_book(arg: ChannelArg) -> bool:
    kind = parse_channel(arg.channel)
    return isinstance(kind, Channel) and kind.is_book


class V5VenueSession:
    """One planned connection's sans-I/O state across reconnects (:class:`recorder.venue.Session`)."""

    def __init__(
        self, plan: ConnectionPlan, settings: V5VenueSettings, out: list[Record], counters: FeedCounters
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.out = out
        self.counters = counters
        self.timing = SessionTiming(
            ping_interval=settings.ping_after,
            pong_timeout=settings.pong_timeout,
            stall_timeout=settings.stall_timeout,
            connect_timeout=settings.connect_timeout,
            reconnect_initial=settings.reconnect_initial,
            reconnect_cap=settings.reconnect_cap,
            ping_when_idle=True,  # §2.3: "ping" when nothing was received for N < 30 s
        )
        self.args: tuple[ChannelArg, ...] = tuple(plan.data or ())
        self.url_kind = UrlKind.BUSINESS if "/business" in plan.url else UrlKind.PUBLIC
        if any(a.url_kind is UrlKind.BUSINESS for a in self.args):
            self.url_kind = UrlKind.BUSINESS
        self.instruments = {a.instId for a in self.args}
        self.scales: dict[str, Scale] = {}
        self.known: dict[str, v5.Instrument] = {}
        self.core: V5Session | None = None
        self._waiting_books: list[ChannelArg] = []
        self._conn_span: FeedEvent | None = None  # DISCONNECTED / STALL / PLANNED_DISCONNECT
        self._book_spans: dict[tuple[str, str], FeedEvent] = {}
        self._refused_spans: dict[tuple[str, str], FeedEvent] = {}
        self._refusals: dict[tuple[str, str], _Refusal] = {}
        self._cadence: dict[tuple[str, str], _Cadence] = {}
        self._pace: dict[tuple[str, str], _Pace] = {}
        self._last_recv: dict[tuple[str, str], datetime] = {}  # see _distinct
        self._ack_due: dict[tuple[str, str], tuple[ChannelArg, datetime]] = {}
        """Other subscriptions just requested: by when the ack (or an error) must come."""
        self._snapshot_due: dict[tuple[str, str], datetime] = {}
        """Books subscribed (or resubscribed) whose snapshot has not come: by when it must
        (``stall_timeout`` after the request). Past it, the book is a gap and asked for again."""
        self._replace: str | None = None
        self._planned_pending = False  # a notice came on this connection: its span waits for the next one
        self._replace_at: datetime | None = None
        self._policy = BackoffPolicy(initial=settings.reconnect_initial, cap=settings.reconnect_cap)
        self._rng = random.Random()
        self._round: SubscriptionRound | None = None  # the subscriptions of this connection, until answered
        self._foreign_logged: set[tuple[str, str]] = set()  # args of foreign pushes logged on this connection

    # -- connection lifecycle -----------------------------------------------------------------------

    def start(self, now: datetime, detail: str = "") -> None:
        """A new connection: a fresh core session, subscribe (books wait for their scales)."""
        accept: set[tuple[str, str]] | None = {a.key for a in self.args} or None  # no plan: any arg
        if accept is not None and any(_is_book(a) for a in self.args):
            accept.add(ChannelArg("instruments", instType=self.settings.inst_type).key)
        self.core = V5Session(
            self.url_kind, scales=self.scales, config=self.settings.session_config(), now=now, accept=accept
        )
        self._foreign_logged.clear()
        self._cadence.clear()
        self._snapshot_due.clear()
        self._ack_due.clear()
        self._replace_at = None
        self._planned_pending = False
        for r in self._refusals.values():
            r.due = None
        for pace in self._pace.values():
            pace.due = None  # the new connection subscribes everything afresh
        books = [a for a in self.args if _is_book(a)]
        now_args = [a for a in self.args if not _is_book(a)]
        sent: list[ChannelArg] = []
        if books:  # stays subscribed: state and tick/lot size changes arrive as pushes (§3.5)
            sent.append(ChannelArg("instruments", instType=self.settings.inst_type))
            ready = [a for a in books if a.instId in self.scales]
            self._waiting_books = [a for a in books if a.instId not in self.scales]
            now_args += ready
            self._await_snapshots(ready, now)
        sent += now_args
        waiting = dict.fromkeys(map(_arg_name, self._waiting_books), WAIT_FOR_SCALES)
        self._round = SubscriptionRound(map(_arg_name, sent), now, waiting=waiting)
        self.out.append(FeedEvent(kind=FeedEventKind.CONNECTED, ts_start=now, ts_end=now,
                                  connection=self.plan.name, symbols=self.plan.symbols,
                                  detail=detail or self._round.sent_line(), venue=VENUE.name))  # fmt: skip
        if books:
            self.core.subscribe(sent[:1])
        if now_args:
            self.core.subscribe(now_args)
            self._await_acks([a for a in now_args if not _is_book(a)], now)

    def closed(self, now: datetime, reason: str, *, stall_since: datetime | None = None,
               dead_since: datetime | None = None) -> None:  # fmt: skip
        """The connection is gone: open its gap span (unless a planned one is open) and a
        ``BOOK_RESET`` span for each book that was held."""
        core, self.core = self.core, None
        self._round = None  # its outcome is moot: the next connection subscribes everything again
        self._snapshot_due.clear()  # the connection's own gap covers its books from here
        self._ack_due.clear()
        if self._conn_span is None:
            kind = FeedEventKind.STALL if stall_since is not None else FeedEventKind.DISCONNECTED
            start = stall_since or dead_since or now
            self._conn_span = self._open(FeedEvent(kind=kind, ts_start=start, ts_end=None,
                                                   connection=self.plan.name, symbols=self.plan.symbols,
                                                   detail=reason, venue=VENUE.name))  # fmt: skip
        if core is not None:
            for arg in self.args:
                if _is_book(arg) and arg.key not in self._book_spans and core.book(*arg.key) is not None:
                    self._book_spans[arg.key] = self._open(FeedEvent(
                        kind=FeedEventKind.BOOK_RESET, ts_start=now, ts_end=None, connection=self.plan.name,
                        symbols=(arg.instId,), channel=arg.channel, detail=f"connection lost: {reason}",
                        venue=VENUE.name))  # fmt: skip

    def stop(self, now: datetime) -> None:
        """Shutdown: close every open span at ``now``."""
        self._round = None
        for span in self.open_spans():
            self.out.append(neutral.close(_with_detail(span, " (still open at shutdown)"), now))
        self._conn_span = None
        self._book_spans.clear()
        self._refused_spans.clear()

    def replace_reason(self) -> str | None:
        reason, self._replace = self._replace, None
        return reason

    # -- timers -------------------------------------------------------------------------------------

    def on_timer(self, now: datetime) -> None:
        """Queue the retries of refused subscriptions now due; the planned replacement after a notice."""
        if self._round is not None:
            self._report_round(now)
        if self._replace_at is not None and now >= self._replace_at:
            self._replace_at = None
            self._replace = (
                "notice 64008: service upgrade, replacing the connection before the server closes it"
            )
        if self.core is None:
            return
        for key, pace in self._pace.items():
            if pace.due is not None and pace.due <= now:
                pace.due = None
                arg = next((a for a in self.args if a.key == key), None)
                if arg is not None:
                    self.core.resubscribe(arg)
                    self._await_snapshots([arg], now)
        due = [r for r in self._refusals.values() if r.due is not None and r.due <= now]
        for r in due:
            r.due = None
            if _is_book(r.arg) and r.arg.instId not in self.scales:
                self._waiting_books.append(r.arg)
            else:
                self.core.subscribe([r.arg])
                if _is_book(r.arg):
                    self._await_snapshots([r.arg], now)
                else:
                    self._await_acks([r.arg], now)
        late = [key for key, when in self._snapshot_due.items() if when <= now]
        for key in late:
            self._no_snapshot(key, now)
        for key in [k for k, (_, when) in self._ack_due.items() if when <= now]:
            self._no_ack(key, now)

    def next_deadline(self) -> datetime | None:
        times = [r.due for r in self._refusals.values() if r.due is not None]
        times += [p.due for p in self._pace.values() if p.due is not None]
        times += self._snapshot_due.values()
        times += [when for _, when in self._ack_due.values()]
        if self._replace_at is not None:
            times.append(self._replace_at)
        return min(times) if times else None

    def _await_snapshots(self, args: list[ChannelArg], now: datetime) -> None:
        """Book subscriptions just requested: each snapshot must come within ``stall_timeout``."""
        due = now + timedelta(seconds=self.settings.stall_timeout)
        for arg in args:
            self._snapshot_due[arg.key] = due

    def _await_acks(self, args: list[ChannelArg], now: datetime) -> None:
        """Subscriptions just requested (not books: see :meth:`_await_snapshots`): each must be
        answered (ack or error) within ``stall_timeout``."""
        due = now + timedelta(seconds=self.settings.stall_timeout)
        for arg in args:
            self._ack_due[arg.key] = (arg, due)

    def _no_ack(self, key: tuple[str, str], now: datetime) -> None:
        """A subscription was neither acked nor refused in time: the channel is not recorded. It is
        a ``subscribe_refused`` span from the request to the channel's first data, asked for again
        with the backoff, as a refusal is."""
        arg, due = self._ack_due.pop(key)
        if self.core is None or any(a.key == key for a in self.core.subscribed):
            return
        r = self._refusals.get(key)
        if r is None:
            r = self._refusals[key] = _Refusal(arg, delays=backoff(self._policy, self._rng))
        r.count += 1
        r.due = now + timedelta(seconds=next(r.delays))
        self.counters.reject(arg.channel, "no answer to subscribe")
        if key in self._refused_spans:  # still unanswered after a retry: the span stays open
            return
        detail = (f"{arg.channel} {arg.instId}: no answer to the subscription within "
                  f"{self.settings.stall_timeout:g} s (no ack, no error); asking again")
        asked = due - timedelta(seconds=self.settings.stall_timeout)
        self._refused_spans[key] = self._open(FeedEvent(
            kind=FeedEventKind.SUBSCRIBE_REFUSED, ts_start=asked, ts_end=None, connection=self.plan.name,
            symbols=(arg.instId,) if arg.instId else (), channel=arg.channel, detail=detail,
            venue=VENUE.name))  # fmt: skip
        log.warning("%s: %s", self.plan.name, detail)

    def _no_snapshot(self, key: tuple[str, str], now: datetime) -> None:
        """A book's snapshot did not come in time after its (re)subscription (no ack, or an ack and no
        data): that book was not watched since the request. It is a ``resubscribed`` span from the
        request (unless a gap of the book is open already) and it is asked for again with the backoff."""
        asked = self._snapshot_due.pop(key) - timedelta(seconds=self.settings.stall_timeout)
        if key in self._refused_spans or (self.core is not None and self.core.book(*key) is not None):
            return
        if key not in self._book_spans:
            channel, inst = key
            detail = (f"{channel} {inst}: no snapshot within {self.settings.stall_timeout:g} s of the "
                      "subscription (no answer, or an ack without data); subscribing again")
            self._book_spans[key] = self._open(FeedEvent(
                kind=FeedEventKind.RESUBSCRIBED, ts_start=asked, ts_end=None, connection=self.plan.name,
                symbols=(inst,), channel=channel, detail=detail, venue=VENUE.name))  # fmt: skip
            log.warning("%s: %s", self.plan.name, detail)
            self.counters.reject(channel, "no snapshot after subscribing")
        self._schedule_resubscribe(key, now)

    def data_to_send(self) -> list[Frame]:
        core = self.core
        if core is None:
            return []
        out = core.data_to_send()
        r = self._round
        if out and r is not None and not r.announced:  # the connection's subscriptions go out now
            r.announced = True
            log.info("%s: %s", self.plan.name, r.sent_line())
        return list(out)

    def ping(self) -> Frame:
        return "ping"

    def pong_only(self, frame: Frame) -> bool:
        """``pong``, or the server's own ``ping`` (keep-alive: its ``pong`` answer is queued here,
        since a frame asked about is not handed to :meth:`receive`)."""
        if frame in ("ping", b"ping"):
            if self.core is not None:
                self.core.answer_ping()
            return True
        return frame in ("pong", b"pong")

    # -- frames -------------------------------------------------------------------------------------

    def receive(self, frame: Frame, ts_recv: datetime) -> int:
        """One frame → neutral records in ``out``; never raises on bad input (quarantine)."""
        counters = self.counters
        counters.last_ts_recv = ts_recv
        if frame in ("pong", b"pong", "ping", b"ping"):  # keep-alive; a server's ping gets its pong
            counters.pong_frames += 1
            if self.core is not None:
                self.core.receive(frame, ts_recv)
            return FRAME_TAKEN | FRAME_PONG
        counters.frames += 1
        core = self.core
        if core is None:  # a frame after closed(): nothing to keep it in
            return FRAME_TAKEN | FRAME_DATA
        try:
            events = core.receive(frame, ts_recv)
        except DecodeError as exc:
            self._quarantine(frame, ts_recv, str(exc))
            events = core.take_deferred()
        listed = False
        for ev in events:
            listed = listed or isinstance(ev, v5.Instrument)
            try:
                self._event(ev, ts_recv)
            except DecodeError as exc:
                self._quarantine(frame, ts_recv, str(exc))
        if listed and self._waiting_books:
            self._unlisted(ts_recv)
        if listed and self._round is not None:
            self._answered("instruments", ts_recv)
        return FRAME_TAKEN | FRAME_DATA

    def _unlisted(self, ts_recv: datetime) -> None:
        """The instruments data came, and a configured instrument is not in it: its books cannot be
        subscribed (no tick/lot size). A ``SUBSCRIBE_REFUSED`` span says so until it is listed; it
        used to wait silently, the gap invisible."""
        for arg in self._waiting_books:
            if arg.instId in self.known:
                continue
            if self._round is not None:
                self._round.give_up(_arg_name(arg), NOT_LISTED)
            if arg.key in self._refused_spans:
                continue
            detail = (f"{arg.channel} {arg.instId}: the instrument is not in the exchange's "
                      f"instruments data (instType {self.settings.inst_type}); its book is subscribed "
                      "once it is listed")
            log.warning("%s: %s", self.plan.name, detail)
            self._refused_spans[arg.key] = self._open(FeedEvent(
                kind=FeedEventKind.SUBSCRIBE_REFUSED, ts_start=ts_recv, ts_end=None,
                connection=self.plan.name, symbols=(arg.instId,), channel=arg.channel, detail=detail,
                venue=VENUE.name))
            self.counters.reject(arg.channel, "instrument not listed")

    def _quarantine(self, frame: Frame, ts_recv: datetime, reason: str) -> None:
        payload = frame.encode() if isinstance(frame, str) else bytes(frame)
        self.counters.frames_malformed += 1
        self.counters.quarantine(reason)
        q = QuarantinedFrame(ts_recv=ts_recv, connection=self.plan.name, reason=reason[:500],
                             payload=payload[:MAX_QUARANTINE_BYTES], venue=VENUE.name)  # fmt: skip
        self.out.append(q)
        log.warning("%s: quarantined a frame: %s", self.plan.name, reason[:200])

    def _reject_item(self, item: v5.RejectedItem) -> None:
        """One bad item of a push (its neighbours were taken): a quarantine row of its own."""
        self.counters.quarantine(item.reason)
        self.counters.reject(item.channel, item.reason.split(":", 1)[0][:60])
        payload = item.payload[:MAX_QUARANTINE_BYTES]
        self.out.append(QuarantinedFrame(ts_recv=item.ts_recv, connection=self.plan.name,
                                         reason=item.reason[:500], payload=payload, venue=VENUE.name))
        log.warning("%s: quarantined one item of a %s push (the others are kept): %s", self.plan.name,
                    item.channel, item.reason[:200])

    def _foreign(self, push: v5.ForeignPush) -> None:
        """A push of an arg this connection never subscribed: quarantined (stored as data it would
        mix a stream into a dataset whose gaps say nothing about it); logged once per arg and
        connection."""
        reason = f"not subscribed on this connection: {push.channel} {push.instrument}".rstrip()
        self.counters.quarantine(reason)
        self.counters.reject(push.channel, "not subscribed on this connection")
        self.out.append(QuarantinedFrame(ts_recv=push.ts_recv, connection=self.plan.name, reason=reason[:500],
                                         payload=push.payload[:MAX_QUARANTINE_BYTES], channel=push.channel,
                                         venue=VENUE.name))  # fmt: skip
        key = (push.channel, push.instrument)
        if key not in self._foreign_logged:
            self._foreign_logged.add(key)
            log.warning("%s: quarantined a push of %s %s, not subscribed on this connection (further ones "
                        "on this connection are quarantined without a log line)", self.plan.name,
                        push.channel, push.instrument)

    def _accept(self, rtype: type, symbol: str, channel: str) -> None:
        key = (rtype, symbol, ("okx_v5", channel))
        acc = self.counters.accepted
        acc[key] = acc.get(key, 0) + 1

    def _data(self, channel: str, inst: str, ts_recv: datetime) -> None:
        """A data record of ``(channel, inst)`` arrived: close the connection gap and its refusal."""
        if self._round is not None:
            self._answered(f"{channel}:{inst}", ts_recv)
        if self._conn_span is not None and not self._planned_pending:
            self.out.append(neutral.close(self._conn_span, ts_recv))
            self._conn_span = None
        key = (channel, inst)
        self._ack_due.pop(key, None)  # data: subscribed, whether or not its ack came
        span = self._refused_spans.pop(key, None)
        if span is not None:
            self.out.append(neutral.close(span, ts_recv))
        self._refusals.pop(key, None)

    def _event(self, ev: object, ts_recv: datetime) -> None:
        out = self.out
        if isinstance(ev, v5.BookUpdate):
            self._data(ev.channel, ev.instrument, ts_recv)
            self._book_update(ev)
        elif isinstance(ev, v5.Trade):
            d = neutral.deal(ev)
            self._data("trades", ev.instrument, ts_recv)
            out.append(d)
            self._accept(Deal, ev.instrument, "trades")
        elif isinstance(ev, v5.V5Ticker):
            self._data("tickers", ev.instrument, ts_recv)
            out.append(self._distinct(("tickers", ev.instrument), neutral.ticker(ev)))
            self._accept(Ticker, ev.instrument, "tickers")
        elif isinstance(ev, v5.BookSnapshot):
            self._data(ev.channel, ev.instrument, ts_recv)
            self._book_snapshot(ev, ts_recv)
        elif isinstance(ev, v5.Candle):
            k = neutral.kline(ev)
            self._data("candle" + ev.bar, ev.instrument, ts_recv)
            out.append(k)
            self._accept(Kline, ev.instrument, "candle" + ev.bar)
        elif isinstance(ev, v5.BookGap):
            if ev.reason is not v5.GapReason.SUBSCRIBE_ERROR:  # refusals: see ErrorEvent
                key = (ev.channel, ev.instrument)
                self._cadence.pop(key, None)
                if ev.reason is v5.GapReason.CROSSED:  # as v1: the instant, then the span to the fresh book
                    self.counters.crossed_books += 1
                    out.append(FeedEvent(kind=FeedEventKind.CROSSED_BOOK, ts_start=ts_recv, ts_end=ts_recv,
                                         connection=self.plan.name, symbols=(ev.instrument,),
                                         channel=ev.channel, detail=ev.detail, venue=VENUE.name))  # fmt: skip
                if key not in self._book_spans:
                    self._book_spans[key] = self._open(neutral.gap_event(ev, self.plan.name))
                    log.warning("%s: %s %s: book dropped (%s: %s); subscribing again", self.plan.name,
                                ev.channel, ev.instrument, ev.reason.value, ev.detail[:200])
                self.counters.reject(ev.channel, f"book dropped: {ev.reason.value}")
                self._schedule_resubscribe(key, ts_recv)
        elif isinstance(ev, v5.RejectedItem):
            self._reject_item(ev)
        elif isinstance(ev, v5.ForeignPush):
            self._foreign(ev)
        elif isinstance(ev, v5.Instrument):
            self._instrument(ev)
        elif isinstance(ev, v5.ErrorEvent):
            self._error(ev)
        elif isinstance(ev, v5.Notice):
            self._notice(ev)
        elif isinstance(ev, v5.SubscribeAck) and self._round is not None:
            self._answered(_arg_name(ev.arg), ev.ts_recv)

    def _answered(self, name: str, now: datetime) -> None:
        """An ack or the first data of ``name``: one answer to the connection's subscriptions."""
        r = self._round
        if r is not None and name not in r.confirmed:
            r.confirm(name)
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
            log.log(level, "%s: %s", self.plan.name, text)

    def _schedule_resubscribe(self, key: tuple[str, str], now: datetime) -> None:
        """Resubscribe a dropped book after the backoff's next delay (§3.2 rule 6), so a feed that
        breaks every fresh book is not resubscribed in a tight loop (§2.4: 480 requests an hour)."""
        pace = self._pace.get(key)
        healthy = timedelta(seconds=self.settings.reconnect_cap)
        if pace is None or (pace.good_since is not None and now - pace.good_since >= healthy):
            pace = self._pace[key] = _Pace(backoff(self._policy, self._rng))
        pace.good_since = None
        if pace.due is None:
            pace.due = now + timedelta(seconds=next(pace.delays))

    def _distinct(self, key: tuple[str, str], record: _R) -> _R:
        """``record`` with a receive time after the last one of ``key`` (channel, instrument): the
        stores key tickers and snapshots by ``(symbol, ts_recv)``, so two of one frame (a push of
        two tickers of one instrument) would be one row in SQL. The later gets +1 µs, as on v1."""
        last = self._last_recv.get(key)
        if last is not None and record.ts_recv <= last:
            record = replace(record, ts_recv=last + _ONE_US)
        self._last_recv[key] = record.ts_recv
        return record

    def _open(self, span: FeedEvent) -> FeedEvent:
        self.out.append(span)
        return span

    # -- books --------------------------------------------------------------------------------------

    def _book_snapshot(self, s: v5.BookSnapshot, ts_recv: datetime) -> None:
        key = (s.channel, s.instrument)
        self._snapshot_due.pop(key, None)
        pace = self._pace.get(key)
        if pace is not None:
            pace.due = None  # a fresh snapshot came (e.g. the subscription's own): no resubscription due
            if pace.good_since is None:
                pace.good_since = ts_recv
        span = self._book_spans.pop(key, None)
        if span is not None:
            self.out.append(neutral.close(span, ts_recv))
        if s.channel == Channel.BOOKS.value:
            st = self._cadence[key] = _Cadence()
            depth = self.settings.snapshot_depth
            snap = neutral.book_snapshot(s, depth)
            book = self.core.book(s.channel, s.instrument) if self.core is not None else None
            st.last_top = _top(book, depth) if book is not None else None
            if self.settings.snapshot_interval_ms:
                st.last_bucket = int(s.ts_event.timestamp() * 1000) // self.settings.snapshot_interval_ms
            self.out.append(self._distinct(key, snap))
        else:
            self.out.append(self._distinct(key, neutral.book_snapshot(s)))
        self._accept(BookSnapshot, s.instrument, s.channel)

    def _book_update(self, u: v5.BookUpdate) -> None:
        core = self.core
        assert core is not None
        book = core.book(u.channel, u.instrument)
        if book is None:
            return
        key = (u.channel, u.instrument)
        st = self._cadence.setdefault(key, _Cadence())
        settings = self.settings
        take = False
        if settings.snapshot_interval_ms:
            bucket = int(u.ts_event.timestamp() * 1000) // settings.snapshot_interval_ms
            if bucket != st.last_bucket:
                st.last_bucket = bucket
                take = True
        depth = settings.snapshot_depth
        if settings.snapshot_on_change and (st.last_top is None or _touches_top(book, u, depth)):
            top = _top(book, depth)
            if top != st.last_top:
                st.last_top = top
                take = True
        if not take:
            return
        snap = book.snapshot(u.ts_recv, depth)
        self.out.append(self._distinct(key, neutral.book_snapshot(snap)))
        self._accept(BookSnapshot, u.instrument, u.channel)

    # -- reference data -----------------------------------------------------------------------------

    def _instrument(self, inst: v5.Instrument) -> None:
        if inst.instrument not in self.instruments:
            return
        old = self.known.get(inst.instrument)
        self.known[inst.instrument] = inst
        changed = old is None or any(getattr(old, f) != getattr(inst, f) for f in _INSTRUMENT_FIELDS)
        if changed and self.settings.record_instruments:
            self.out.append(neutral.instrument(inst))
        try:
            scale = Scale.from_sizes(str(inst.tick_size), str(inst.lot_size))
        except RecorderError as exc:
            log.warning("%s: instrument %s has unusable sizes: %s", self.plan.name, inst.instrument, exc)
            return
        if self.scales.get(inst.instrument) != scale:
            rescale = inst.instrument in self.scales
            self.scales[inst.instrument] = scale
            core = self.core
            if core is not None:
                core.set_scale(inst.instrument, scale)
                if rescale:  # books held at the old scale: fresh snapshots at the new one
                    for arg in self.args:
                        if _is_book(arg) and arg.instId == inst.instrument:
                            core.resubscribe(arg)
                            self._await_snapshots([arg], inst.ts_recv)
        core = self.core
        if core is not None and self._waiting_books:
            ready = [a for a in self._waiting_books if a.instId in self.scales]
            if ready:
                self._waiting_books = [a for a in self._waiting_books if a.instId not in self.scales]
                core.subscribe(ready)
                if self._round is not None:
                    self._round.send(map(_arg_name, ready))
                self._await_snapshots(ready, inst.ts_recv)

    # -- events -------------------------------------------------------------------------------------

    def _error(self, err: v5.ErrorEvent) -> None:
        self.counters.error_acks += 1
        if not err.args:
            detail = neutral.error_detail(err.code, err.msg)
            self.out.append(FeedEvent(kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=err.ts_recv,
                                      ts_end=err.ts_recv, connection=self.plan.name,
                                      symbols=self.plan.symbols, detail=detail, venue=VENUE.name))
            return
        for arg in err.args:
            key = arg.key
            self._snapshot_due.pop(key, None)  # the refusal has its own span and retry
            self._ack_due.pop(key, None)
            r = self._refusals.get(key)
            if r is None:
                r = self._refusals[key] = _Refusal(arg, delays=backoff(self._policy, self._rng))
            r.count += 1
            r.due = err.ts_recv + timedelta(seconds=next(r.delays))
            if key not in self._refused_spans:
                span = self._refused_spans[key] = self._open(
                    neutral.refused_event(err, arg.channel, arg.instId, self.plan.name)
                )
                log.warning("%s: subscription refused, retried with the backoff: %s", self.plan.name,
                            span.detail)
            code = "no code" if err.code is None else err.code
            self.counters.reject(arg.channel, f"subscribe refused: {code}")
            if self._round is not None:
                self._round.refuse(_arg_name(arg), neutral.error_detail(err.code, err.msg))
        if self._round is not None:
            self._report_round(err.ts_recv)

    def _notice(self, n: v5.Notice) -> None:
        if n.code != 64008:
            return
        self._planned_pending = True
        if self._conn_span is None:
            self._conn_span = self._open(neutral.notice_event(n, self.plan.name, self.plan.symbols,
                                                              ",".join(self.plan.channels)))  # fmt: skip
        self._replace_at = n.ts_recv + timedelta(seconds=self.settings.planned_reconnect_lead)
        if self.settings.planned_reconnect_lead == 0:
            self._replace_at = None
            self._replace = (
                "notice 64008: service upgrade, replacing the connection before the server closes it"
            )

    # -- status -------------------------------------------------------------------------------------

    def open_spans(self) -> list[FeedEvent]:
        spans = [] if self._conn_span is None else [self._conn_span]
        return spans + list(self._book_spans.values()) + list(self._refused_spans.values())

    def refused_subscriptions(self) -> dict[str, int]:
        refused = {f"{r.arg.channel}:{r.arg.instId}" if r.arg.instId else r.arg.channel: r.count
                   for r in self._refusals.values()}  # fmt: skip
        for channel, inst in self._refused_spans:  # books of an instrument not listed: never sent
            refused.setdefault(f"{channel}:{inst}", 0)
        return refused

    def channel_name(self, key: tuple[type, str, object]) -> str | None:
        extra = key[2]
        if isinstance(extra, tuple) and len(extra) == 2 and extra[0] == "okx_v5":
            return f"{extra[1]}:{key[1]}"
        return None


def _touches_top(book: OrderBook, u: v5.BookUpdate, depth: int) -> bool:
    """Whether ``u`` (already applied) may have changed the top ``depth`` levels: a level at or
    inside the ``depth``-th best price now (a deleted top level lowered that bound below it; a
    level inserted or deleted outside it changed nothing there). Cheap: most updates of a
    400-level book are outside the top 20, and those need no comparison of the top."""
    bid_ticks = book.bid_ticks
    if u.bids:
        if len(bid_ticks) < depth:
            return True
        bound = bid_ticks[-depth]
        if any(lv[0] >= bound for lv in u.bids):
            return True
    ask_ticks = book.ask_ticks
    if u.asks:
        if len(ask_ticks) < depth:
            return True
        bound = ask_ticks[depth - 1]
        if any(lv[0] <= bound for lv in u.asks):
            return True
    return False


def _top(book: OrderBook, depth: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """The top ``depth`` levels as ``(price_ticks, size_units)`` (order counts are not stored, so a
    change of a count alone is no change of the stored book)."""
    return (tuple(lv[:2] for lv in book.bids(depth)), tuple(lv[:2] for lv in book.asks(depth)))


def _with_detail(span: FeedEvent, suffix: str) -> FeedEvent:
    return replace(span, detail=span.detail + suffix)

"""The venue seam: what a venue package provides, and the registry that finds it by name.

A *venue* is one exchange API (``okex_v1``: the OKEx v1 WebSocket/REST API; ``okx_v5``: the
OKX v5 API). Everything that knows a venue's wire format lives in its package
``recorder.venues.<name>``; the collector (the connection shell, the hand-over to storage),
the poller and storage only see this module's types and the venue-neutral records of
:mod:`recorder.records` (which carry ``venue`` and the venue's own ``symbol``).

What a venue provides (:class:`Venue`):

* ``parse_settings(table)``: its ``[venues.<name>]`` TOML table (a plain mapping; the venue
  imports no config module) -> a frozen settings object of its own, or
  :class:`~recorder.errors.ConfigError`;
* ``plan_connections(settings)``: the WebSocket connections to open (:class:`ConnectionPlan`:
  name, URL, the channels each carries);
* ``open_session(plan, settings, out, counters)``: one sans-I/O :class:`Session` per plan,
  living across reconnects; the shell tells it about every (re)connection
  (:meth:`Session.start`) and loss (:meth:`Session.closed`);
* optional REST hooks (:class:`BookAuditSource`) for the book audit.

The session is sans-I/O (like ``h11`` / ``websockets``' protocol objects): it never reads a
socket, a clock or a file. Frames go in (:meth:`Session.receive`) with their receive time;
records come out into the ``out`` list given at :meth:`Venue.open_session` (appending to one
shared list keeps the hot path free of per-frame lists and keeps the records of all
connections in receive order); the messages the shell must send (subscribe, ping,
resubscribe, retried refused subscriptions) come out of :meth:`Session.data_to_send`.
Times are aware UTC :class:`~datetime.datetime` values supplied by the shell.

The registry (:data:`VENUES`, :func:`get_venue`) maps a name to ``"module:attribute"`` and
imports the module only when asked, so a venue that fails to import (not installed, broken)
only fails the configurations that name it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from recorder.errors import ConfigError
from recorder.records import BookSnapshot, FeedEvent, Record

__all__ = [
    "FRAME_DATA",
    "FRAME_PONG",
    "FRAME_TAKEN",
    "VENUES",
    "AuditOutcome",
    "AuditableSession",
    "BookAuditSource",
    "ConnectionPlan",
    "FeedCounters",
    "Frame",
    "Session",
    "SessionTiming",
    "SubscriptionRound",
    "Venue",
    "get_venue",
    "plans_by_name",
    "venue_names",
]

Frame = str | bytes
"""One WebSocket message as received (text, or binary, e.g. raw-DEFLATE compressed)."""

FRAME_TAKEN = 1
"""Bit of :meth:`Session.receive`'s answer: the frame was taken (0: not taken, never from a session)."""
FRAME_PONG = 2
"""Bit: the frame held a pong, as the venue's decoder defines one (the shell's liveness watch)."""
FRAME_DATA = 4
"""Bit: the frame held anything other than a pong (data, acks, or it was malformed)."""


@dataclass(frozen=True, slots=True)
class SessionTiming:
    """What the connection shell needs to know about a session's connection (seconds).

    ``ping_interval``: seconds between two pings (the shell asks :meth:`Session.ping` for the
    message); ``pong_timeout``: no pong that long after a ping and the connection is dead;
    ``stall_timeout``: no data that long and it is dead (a stall); ``connect_timeout``: the
    WebSocket opening handshake; ``reconnect_initial`` / ``reconnect_cap``: the reconnect
    backoff (:func:`recorder.backoff.backoff`); ``max_frame_bytes``: the largest frame accepted.
    ``ping_when_idle``: ping only once nothing at all was received for ``ping_interval`` s
    (OKX v5 §2.3) instead of every ``ping_interval`` s (OKEx v1).
    """

    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    stall_timeout: float = 60.0
    connect_timeout: float = 10.0
    reconnect_initial: float = 0.5
    reconnect_cap: float = 30.0
    max_frame_bytes: int = 16 * 1024 * 1024
    ping_when_idle: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """One WebSocket connection a venue wants open.

    ``name`` labels the connection in feed events (``feed_events.connection``), logs and the
    status (unique across venues in one process); ``url`` is the ``ws://`` / ``wss://`` URL;
    ``channels`` the venue's own channel names it carries (for logs, status and accounting);
    ``symbols`` the venue's instrument ids on it (feed events name them); ``data`` anything
    the venue's session needs beyond that (opaque to the shell, e.g. parsed channel objects).
    """

    venue: str
    name: str
    url: str
    channels: tuple[str, ...]
    symbols: tuple[str, ...] = ()
    data: Any = None

    @property
    def subscriptions(self) -> int:
        """The subscriptions this connection sends, one per channel of one instrument (v1
        ``ok_sub_spot_btc_usdt_ticker``, v5 ``books`` of ``BTC-USDT``): ``len(data)`` when ``data`` is a
        tuple or list (both venues plan one entry per subscription), else ``len(channels)``. The one
        unit the status counts for every venue (``channels`` is per symbol for v1, per name for v5)."""
        return len(self.data) if isinstance(self.data, tuple | list) else len(self.channels)


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """What a book audit concluded: ``result`` is "pass", "fail" or "void"; ``detail`` says why."""

    result: str
    detail: str = ""


@runtime_checkable
class Session(Protocol):
    """One connection's sans-I/O protocol state: frames in; records and messages to send out.

    Lives across reconnects of its connection. Not thread-safe: one thread (the shell's event
    loop) calls every method. Records are appended to the ``out`` list given at
    :meth:`Venue.open_session`; nothing is returned that the caller must copy.
    """

    plan: ConnectionPlan
    timing: SessionTiming

    def start(self, now: datetime, detail: str = "") -> None:
        """A new connection is open (a clean subscription boundary): queue the subscribe (and login)
        messages (:meth:`data_to_send`), reset what a new connection resets, record ``CONNECTED``."""

    def receive(self, frame: Frame, ts_recv: datetime) -> int:
        """Take one frame received at ``ts_recv`` (UTC, strictly increasing per connection).

        Decodes it (a compressed frame is inflated once, here), maps what it holds to
        venue-neutral records (market data, account data; ``FeedEvent`` spans for gaps, book
        resets, refusals; ``QuarantinedFrame`` for bad input, never an exception), keeps the
        order books and the snapshot cadence, and queues any message to send (a resubscription
        after a crossed or unproven book). Returns :data:`FRAME_TAKEN` or'ed with
        :data:`FRAME_PONG` / :data:`FRAME_DATA`.
        """

    def pong_only(self, frame: Frame) -> bool:
        """Whether ``frame`` holds only pongs (asked when the writer is behind: a pong is not dropped)."""

    def on_timer(self, now: datetime) -> None:
        """Let time pass: queue the retries (refused subscriptions, resubscriptions) now due.

        Retries of one channel are paced with :func:`recorder.backoff.backoff` (the reconnect
        policy of :attr:`timing`), coalesced while one is pending, and start from its first delay
        again once the channel delivers. The shell calls this at least every
        ``min(1 s, ping_interval / 4)`` while connected.
        """

    def next_deadline(self) -> datetime | None:
        """The earliest time :meth:`on_timer` has something to do (None: nothing pending)."""

    def data_to_send(self) -> list[Frame]:
        """The messages the shell must send now, in order (the session then counts them as sent)."""

    def ping(self) -> Frame:
        """The venue's keep-alive message (the shell sends it every ``timing.ping_interval`` s)."""

    def replace_reason(self) -> str | None:
        """Why the session wants its connection replaced (a clean boundary), or None; cleared on read."""

    def closed(self, now: datetime, reason: str, *, stall_since: datetime | None = None,
               dead_since: datetime | None = None) -> None:
        """The connection was lost (``reason``): open its ``DISCONNECTED`` span (``STALL`` when
        ``stall_since`` is given; from ``dead_since`` when nothing was received since then) and
        the ``BOOK_RESET`` spans of its books, which are thrown away. The first data after the
        next :meth:`start` closes them."""

    def stop(self, now: datetime) -> None:
        """Shutdown: close every open span at ``now`` (the shell records SHUTDOWN itself)."""

    def open_spans(self) -> list[FeedEvent]:
        """Feed-event spans open right now (connection gap, book resets, refused subscriptions)."""

    def refused_subscriptions(self) -> dict[str, int]:
        """Channels refused and not delivering yet -> refusals so far."""

    def channel_name(self, key: tuple[type, str, object]) -> str | None:
        """The channel name of an :attr:`FeedCounters.accepted` key, None when the key is not this
        venue's (the status asks each venue in turn)."""


@runtime_checkable
class BookAuditSource(Protocol):
    """Optional: a venue whose incremental books can be audited against a REST book.

    The collector's auditor asks the sessions for candidates and calls the REST endpoint the
    venue names; the comparison rule lives with the books (docs/collector.md "Book audit").
    """

    def audit_request(self, rest_url: str, symbol: str, depth: int) -> tuple[str, dict[str, str]]:
        """``(absolute URL, query parameters)`` of the REST call giving ``symbol``'s top ``depth``."""

    def audit_parse(self, body: bytes, symbol: str, answered: datetime) -> BookSnapshot:
        """The REST answer as a snapshot; raises :class:`~recorder.errors.RecorderError` when bad."""


class AuditableSession(Session, Protocol):
    """A session whose books the collector's auditor can check (see :class:`BookAuditSource`)."""

    def audit_candidates(self, *, periodic: bool) -> list[tuple[str, int]]:
        """``(symbol, epoch)`` of the books to audit now (rebuilt and not audited; all when periodic)."""

    def audit_book(self, symbol: str, epoch: int, sent: datetime, answered: datetime, slack: timedelta,
                   rest: BookSnapshot, now: datetime) -> AuditOutcome | None:
        """Compare ``rest`` with the book states held in ``[sent - slack, answered + slack]``;
        None when ``symbol`` is not a book of this session."""


class Venue(Protocol):
    """What a venue package exports (the registry's ``module:attribute``)."""

    name: str
    """The venue's name: the ``venue`` column of its records and its ``[venues.<name>]`` table."""

    def parse_settings(self, table: Mapping[str, Any]) -> Any:
        """The venue's frozen settings from its TOML table; raises ConfigError naming the key."""

    def symbols(self, settings: Any) -> tuple[str, ...]:
        """The instruments the settings record (the venue's own ids)."""

    def rest_url(self, settings: Any) -> str:
        """The REST base URL (book audit, poller)."""

    def plan_connections(self, settings: Any) -> list[ConnectionPlan]:
        """The connections to open for ``settings`` (at least one when anything is to be recorded)."""

    def open_session(self, plan: ConnectionPlan, settings: Any, out: list[Record],
                     counters: FeedCounters) -> Session:
        """A session for ``plan``; records go to ``out``, accounting to ``counters`` (shared)."""


VENUES: dict[str, str] = {
    "okex_v1": "recorder.venues.okex_v1:VENUE",
    "okx_v5": "recorder.venues.okx_v5:VENUE",
}
"""Venue name -> ``"module:attribute"`` of its :class:`Venue`; imported on first use."""

_LOADED: dict[str, Venue] = {}


def venue_names() -> tuple[str, ...]:
    """The registered venue names, in registration order."""
    return tuple(VENUES)


def get_venue(name: str) -> Venue:
    """The :class:`Venue` registered as ``name``; raises ConfigError when unknown or not importable."""
    venue = _LOADED.get(name)
    if venue is not None:
        return venue
    target = VENUES.get(name)
    if target is None:
        raise ConfigError(f"unknown venue {name!r}: known venues are {', '.join(VENUES)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        venue = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"venue {name!r} cannot be loaded ({target}): {exc}") from exc
    _LOADED[name] = venue
    return venue


@dataclass(slots=True)
class FeedCounters:
    """Accounting of the receive side, shared by every session of one process (status, metrics).

    ``accepted`` counts records taken per key ``(record type, symbol, extra)`` (cheap to build
    per message; :meth:`Session.channel_name` turns a key into the venue's channel name for the
    status); ``rejected`` counts per channel name and reason.
    """

    frames: int = 0
    frames_malformed: int = 0
    accepted: dict[tuple[type, str, object], int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)  # quarantine rows by reason (head)
    crossed_books: int = 0
    error_acks: int = 0
    pong_frames: int = 0  # frames that held only keep-alive: pongs, a server's ping (not in ``frames``)
    not_whole_books: int = 0  # first pushes refused as the whole book
    audits: dict[str, int] = field(default_factory=dict)  # pass / fail / void
    last_ts_recv: datetime | None = None

    MAX_REASONS = 50  # distinct reasons kept per channel (and quarantine heads); the rest count as "other"

    def quarantine(self, reason: str) -> None:
        """Count one quarantined row (a bad frame or message) by the head of its reason."""
        head = reason.split(":", 1)[0][:60] or "(none)"
        if head not in self.quarantined and len(self.quarantined) >= self.MAX_REASONS:
            head = "other"
        self.quarantined[head] = self.quarantined.get(head, 0) + 1

    def reject(self, channel: str, reason: str, n: int = 1) -> None:
        """Count ``n`` messages of ``channel`` rejected for ``reason``."""
        reasons = self.rejected.setdefault(channel or "(no channel)", {})
        if reason not in reasons and len(reasons) >= self.MAX_REASONS:
            reason = "other"
        reasons[reason] = reasons.get(reason, 0) + n


SUBSCRIBE_PATIENCE = 10.0
"""Seconds after a connection opened by which every subscription it sent should be answered; the
outcome of those still unanswered is then logged as unanswered."""


class SubscriptionRound:
    """The subscriptions one connection sends when it opens, and the exchange's answers to them.

    A session opens one at :meth:`Session.start` (``names``: the venue's channel names, e.g. v1
    ``ok_sub_spot_btc_usdt_depth``, v5 ``books:BTC-USDT``; ``waiting``: name -> why it is not sent
    yet), says :meth:`sent_line` when it hands them out ("sent N subscriptions": all that is true
    then), and then :meth:`confirm` (an ack, or the channel's first data) or :meth:`refuse` (an
    error reply) per name. :meth:`outcome` gives the line to log once every one is answered, or
    at ``now + patience`` s naming those still unanswered; None before, and after it was given.
    Retries of refused channels later on are not part of it.
    """

    __slots__ = ("announced", "confirmed", "deadline", "not_sent", "patience", "refused", "reported", "sent",
                 "waiting")

    def __init__(self, names: Iterable[str], now: datetime, *, waiting: Mapping[str, str] | None = None,
                 patience: float = SUBSCRIBE_PATIENCE) -> None:
        self.sent: dict[str, None] = dict.fromkeys(names)
        self.waiting: dict[str, str] = dict(waiting or {})
        self.not_sent: dict[str, str] = {}
        self.confirmed: set[str] = set()
        self.refused: dict[str, str] = {}
        self.patience = patience
        self.deadline = now + timedelta(seconds=patience)
        self.announced = False
        self.reported = False

    def sent_line(self) -> str:
        """``sent 4 subscriptions`` (``; 2 wait for …`` for those not sent yet)."""
        text = f"sent {_count(len(self.sent), 'subscription')}"
        if self.waiting:
            whys = sorted(set(self.waiting.values()))
            text += f"; {len(self.waiting)} wait{'s' if len(self.waiting) == 1 else ''} for {', '.join(whys)}"
        return text

    def send(self, names: Iterable[str]) -> None:
        """Subscriptions that waited are sent now."""
        for name in names:
            self.waiting.pop(name, None)
            self.sent.setdefault(name)

    def give_up(self, name: str, why: str) -> None:
        """A waiting subscription will not be sent on this connection (``why``)."""
        if self.waiting.pop(name, None) is not None:
            self.not_sent[name] = why

    def confirm(self, name: str) -> None:
        """An ack of ``name``, or its first data (a name not sent in this round is ignored)."""
        if name in self.sent and name not in self.refused:
            self.confirmed.add(name)

    def refuse(self, name: str, reason: str) -> None:
        """An error reply to the subscription of ``name`` (``reason``: the venue's code and text)."""
        if name in self.sent and name not in self.confirmed:
            self.refused.setdefault(name, reason)

    def outcome(self, now: datetime) -> tuple[int, str] | None:
        """``(log level, text)`` once every subscription is answered or at the deadline, else None."""
        if self.reported:
            return None
        unanswered = [n for n in self.sent if n not in self.confirmed and n not in self.refused]
        if (unanswered or self.waiting) and now < self.deadline:
            return None
        self.reported = True
        total = len(self.sent) + len(self.waiting) + len(self.not_sent)
        if not unanswered and not self.refused and not self.waiting and not self.not_sent:
            return logging.INFO, f"all {_count(total, 'subscription')} confirmed by the exchange"
        parts = [f"{len(self.confirmed)} of {_count(total, 'subscription')} confirmed"]
        if self.refused:
            parts.append(f"{len(self.refused)} refused ({_names(self.refused)}: asked again with the "
                         "backoff)")
        if unanswered:
            parts.append(f"{len(unanswered)} unanswered after {self.patience:g} s ({_names(unanswered)})")
        for names, what in ((self.waiting, "still waiting"), (self.not_sent, "not sent")):
            by_why: dict[str, list[str]] = {}
            for name, why in names.items():
                by_why.setdefault(why, []).append(name)
            parts.extend(f"{len(ns)} {what}: {why} ({_names(ns)})" for why, ns in by_why.items())
        return logging.WARNING, ", ".join(parts)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(names: Iterable[str], limit: int = 5) -> str:
    listed = list(names)
    text = ", ".join(listed[:limit])
    return text + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def plans_by_name(plans: Sequence[ConnectionPlan]) -> dict[str, ConnectionPlan]:
    """``plans`` by connection name; raises ConfigError on a name used twice."""
    out: dict[str, ConnectionPlan] = {}
    for plan in plans:
        if plan.name in out:
            raise ConfigError(f"two connections named {plan.name!r} ({out[plan.name].venue}, {plan.venue})")
        out[plan.name] = plan
    return out

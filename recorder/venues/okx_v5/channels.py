"""OKX v5 WebSocket channels, the URL that serves each, and subscription planning.

Implements PROTOCOL.md §1 (which URL carries what), §2.2 (subscription args),
§2.4 (limits) and §3 (public channels). Channels are an enum, never bare strings
compared around the code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from recorder.errors import ChannelError

__all__ = [
    "CANDLE_BARS",
    "DEFAULT_MAX_ARGS_PER_CONNECTION",
    "DEFAULT_MAX_DEPTH_CHANNELS_PER_CONNECTION",
    "MAX_REQUEST_BYTES",
    "Channel",
    "ChannelArg",
    "UrlKind",
    "candle_channel",
    "parse_channel",
    "plan_connections",
]


class UrlKind(enum.Enum):
    """The three WebSocket URLs of PROTOCOL.md §1."""

    PUBLIC = "public"
    BUSINESS = "business"
    PRIVATE = "private"


CANDLE_BARS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D", "2D", "3D", "5D", "1W", "1M",
    "3M", "6Hutc", "12Hutc", "1Dutc", "2Dutc", "3Dutc", "5Dutc", "1Wutc", "1Mutc", "3Mutc",
)  # fmt: skip
"""Every candle bar of PROTOCOL.md §3.4 (channel name = ``"candle" + bar``)."""


class Channel(enum.Enum):
    """The public channels the recorder uses (PROTOCOL.md §3). Candles: :func:`candle_channel`."""

    TICKERS = "tickers"
    BOOKS = "books"  # 400 levels, snapshot then incremental updates
    BOOKS5 = "books5"  # full 5-level snapshot each push
    BBO_TBT = "bbo-tbt"  # full 1-level snapshot each push
    BOOKS_L2_TBT = "books-l2-tbt"  # 400 levels incremental, login + fee tier
    BOOKS50_L2_TBT = "books50-l2-tbt"  # 50 levels incremental, login + fee tier
    TRADES = "trades"
    TRADES_ALL = "trades-all"
    INSTRUMENTS = "instruments"
    STATUS = "status"

    @property
    def url_kind(self) -> UrlKind:
        """The URL that serves this channel (§1); ``trades-all`` is on ``/business``."""
        return UrlKind.BUSINESS if self is Channel.TRADES_ALL else UrlKind.PUBLIC

    @property
    def is_book(self) -> bool:
        return self in _DEPTH

    @property
    def is_incremental_book(self) -> bool:
        """True for channels that send a snapshot then linked updates (§3.2 sequence rules)."""
        return self in _INCREMENTAL

    @property
    def depth(self) -> int:
        """Levels per side the channel carries (§3.2); 0 for non-book channels."""
        return _DEPTH.get(self, 0)


_DEPTH = {
    Channel.BOOKS: 400,
    Channel.BOOKS5: 5,
    Channel.BBO_TBT: 1,
    Channel.BOOKS_L2_TBT: 400,
    Channel.BOOKS50_L2_TBT: 50,
}
_INCREMENTAL = frozenset({Channel.BOOKS, Channel.BOOKS_L2_TBT, Channel.BOOKS50_L2_TBT})
# "fewer than 30 channels of 50/400 levels per connection" (§2.4) counts these.
_DEEP = frozenset({Channel.BOOKS, Channel.BOOKS_L2_TBT, Channel.BOOKS50_L2_TBT})


def candle_channel(bar: str) -> str:
    """``"candle" + bar`` after checking ``bar`` is one of :data:`CANDLE_BARS` (§3.4).

    Raises :class:`~recorder.errors.ChannelError` for an unknown bar.
    """
    if bar not in CANDLE_BARS:
        raise ChannelError(f"unknown OKX v5 candle bar {bar!r}; known: {', '.join(CANDLE_BARS)}")
    return "candle" + bar


def parse_channel(name: str) -> Channel | str:
    """The :class:`Channel` for ``name``, or the bar (``"1m"``) for a candle channel (§3, §3.4).

    Raises :class:`~recorder.errors.ChannelError` for any other name.
    """
    try:
        return Channel(name)
    except ValueError:
        pass
    if name.startswith("candle") and name[6:] in CANDLE_BARS:
        return name[6:]
    raise ChannelError(f"unknown OKX v5 channel {name!r}")


class ChannelArg(msgspec.Struct, frozen=True, omit_defaults=True):
    """One subscription ``arg`` exactly as on the wire (§2.2): ``channel`` plus ``instId``/``instType``.

    Encodes with the venue's field names, empty ones omitted.
    """

    channel: str
    instId: str = ""
    instType: str = ""
    instFamily: str = ""

    @property
    def url_kind(self) -> UrlKind:
        """The URL that serves this arg (§1): candles and ``trades-all`` on ``/business``."""
        kind = parse_channel(self.channel)
        return UrlKind.BUSINESS if isinstance(kind, str) else kind.url_kind

    @property
    def key(self) -> tuple[str, str]:
        """``(channel, instId)``: identifies one stream (and one book)."""
        return (self.channel, self.instId)


MAX_REQUEST_BYTES = 64 * 1024
"""Size limit of one subscribe request, all args (§2.4; close 1009 above it)."""

DEFAULT_MAX_DEPTH_CHANNELS_PER_CONNECTION = 29
"""§2.4 advises fewer than 30 channels of 50/400 levels per connection."""

DEFAULT_MAX_ARGS_PER_CONNECTION = 100
"""Our own cap on args per connection. The documented close codes 4008/4009 give no number
(**unconfirmed**), so this is a configurable, conservative default."""


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """The args one WebSocket connection subscribes, and the URL it connects to (§1, §2.4)."""

    url_kind: UrlKind
    args: tuple[ChannelArg, ...]


def plan_connections(
    args: Iterable[ChannelArg],
    *,
    max_depth_channels: int = DEFAULT_MAX_DEPTH_CHANNELS_PER_CONNECTION,
    max_args: int = DEFAULT_MAX_ARGS_PER_CONNECTION,
) -> list[ConnectionPlan]:
    """Spread ``args`` over connections within the limits of §2.4.

    Args are grouped by URL (public / business); each connection holds at most
    ``max_depth_channels`` 50/400-level book args and at most ``max_args`` args in
    all. Duplicates are dropped; order is kept. Raises
    :class:`~recorder.errors.ChannelError` for an unknown channel or a limit < 1.
    """
    if max_depth_channels < 1 or max_args < 1:
        raise ChannelError("connection limits must be at least 1")
    seen: set[ChannelArg] = set()
    plans: dict[UrlKind, list[list[ChannelArg]]] = {}
    for arg in args:
        if arg in seen:
            continue
        seen.add(arg)
        kind = arg.url_kind
        conns = plans.setdefault(kind, [[]])
        deep = _is_deep(arg)
        current = conns[-1]
        if len(current) >= max_args or (deep and sum(map(_is_deep, current)) >= max_depth_channels):
            current = []
            conns.append(current)
        current.append(arg)
    return [ConnectionPlan(kind, tuple(conn)) for kind, conns in plans.items() for conn in conns if conn]


def _is_deep(arg: ChannelArg) -> bool:
    kind = parse_channel(arg.channel)
    return isinstance(kind, Channel) and kind in _DEEP


def split_requests(
    args: Sequence[ChannelArg], *, max_bytes: int = MAX_REQUEST_BYTES
) -> list[list[ChannelArg]]:
    """Split ``args`` into groups whose subscribe request stays under ``max_bytes`` (§2.4)."""
    groups: list[list[ChannelArg]] = [[]]
    size = 64  # envelope: {"id":"...","op":"unsubscribe","args":[]}
    for arg in args:
        n = len(msgspec.json.encode(arg)) + 1
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 64
        groups[-1].append(arg)
        size += n
    return [g for g in groups if g]

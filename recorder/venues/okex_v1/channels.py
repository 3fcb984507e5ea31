"""Channel names ``ok_sub_spot_<base>_<quote>_<kind>`` and symbols (PROTOCOL.md "WebSocket").

Build them with :class:`Channel` and parse them with :func:`parse_channel`; symbols
are checked by :func:`validate_symbol` before they reach a channel name, a SQL
query or a file path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recorder.errors import ChannelError, SymbolError
from recorder.records import ChannelKind, KlinePeriod

CHANNEL_PREFIX = "ok_sub_spot_"
_SYMBOL_RE = re.compile(r"[a-z0-9]{1,16}_[a-z0-9]{1,16}")
_KIND_RE = re.compile(
    r"^ok_sub_spot_(?P<symbol>[a-z0-9]+_[a-z0-9]+)_"
    r"(?P<kind>ticker|depth_5|depth_10|depth_20|depth|deals|kline_(?P<period>[a-z0-9]+)|order|balance)$"
)


def validate_symbol(symbol: object, *, known_only: bool = False) -> str:
    """Return ``symbol`` if it is a well-formed lower-case ``base_quote`` pair, else raise.

    With ``known_only`` the pair must also be in the documented pairs table.
    Raises :class:`~recorder.errors.SymbolError` naming what is wrong.
    """
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol must be a string like 'btc_usdt', got {type(symbol).__name__}")
    if not _SYMBOL_RE.fullmatch(symbol):
        if symbol.lower() != symbol and _SYMBOL_RE.fullmatch(symbol.lower()):
            raise SymbolError(f"symbol {symbol!r} must be lower case ({symbol.lower()!r})")
        raise SymbolError(
            f"malformed symbol {symbol!r}: expected lower-case 'base_quote' such as 'btc_usdt'"
        )
    if known_only:
        from recorder.venues.okex_v1.pairs import pairs

        if symbol not in pairs():
            raise SymbolError(f"unknown symbol {symbol!r}: not in the OKEx v1 spot pairs table")
    return symbol


@dataclass(frozen=True, slots=True)
class Channel:
    """A spot channel: a symbol, a kind and, for klines, a period."""

    symbol: str
    kind: ChannelKind
    period: KlinePeriod | None = None

    def __post_init__(self) -> None:
        validate_symbol(self.symbol)
        if (self.kind is ChannelKind.KLINE) != (self.period is not None):
            raise ChannelError(f"a kline channel needs a period, other kinds none: {self!r}")

    @property
    def name(self) -> str:
        """The wire name, e.g. ``ok_sub_spot_bch_btc_kline_1min``."""
        suffix = self.kind.value
        if self.period is not None:
            suffix = f"kline_{self.period.value}"
        return f"{CHANNEL_PREFIX}{self.symbol}_{suffix}"

    def __str__(self) -> str:
        return self.name


def parse_channel(name: object) -> Channel:
    """Parse a wire channel name into a :class:`Channel`.

    Raises :class:`~recorder.errors.ChannelError` (or :class:`SymbolError`) saying
    what is wrong: not a string, not a spot channel, unknown kind or kline period.
    """
    if not isinstance(name, str):
        raise ChannelError(f"channel name must be a string, got {type(name).__name__}")
    if not name.startswith(CHANNEL_PREFIX):
        raise ChannelError(f"not a spot channel: {name!r} (expected 'ok_sub_spot_<symbol>_<kind>')")
    m = _KIND_RE.match(name)
    if m is None:
        rest = name[len(CHANNEL_PREFIX):]
        if not re.match(r"^[a-z0-9]+_[a-z0-9]+_", rest):
            raise SymbolError(f"malformed symbol in channel {name!r}")
        raise ChannelError(f"unknown channel kind in {name!r}")
    kind_text = m.group("kind")
    period: KlinePeriod | None = None
    if kind_text.startswith("kline_"):
        try:
            period = KlinePeriod(m.group("period"))
        except ValueError:
            raise ChannelError(f"unknown kline period in channel {name!r}") from None
        kind = ChannelKind.KLINE
    else:
        kind = ChannelKind(kind_text)
    return Channel(m.group("symbol"), kind, period)


def channel_name(symbol: str, kind: ChannelKind, period: KlinePeriod | None = None) -> str:
    """Shorthand for ``Channel(symbol, kind, period).name``."""
    return Channel(symbol, kind, period).name

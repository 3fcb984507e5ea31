"""The OKEx v1 venue's settings: its ``[venues.okex_v1]`` table (or the legacy ``[collector]`` keys).

:func:`parse_settings` turns a plain mapping (a TOML table; environment values arrive as
text) into a frozen :class:`V1Settings`, raising :class:`~recorder.errors.ConfigError` that
names the key (``venues.okex_v1.<key>``). This module imports no config module: the
application's config hands it the table.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from recorder.errors import ConfigError, SymbolError
from recorder.records import ChannelKind, KlinePeriod
from recorder.venue import SessionTiming
from recorder.venues.okex_v1.channels import Channel, validate_symbol

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "ChannelSpec", "V1Settings", "parse_settings"]

DEFAULT_WS_URL = "wss://real.okex.com:10440/ws/v1"
DEFAULT_REST_URL = "https://www.okex.com/api/v1"


@dataclass(frozen=True, slots=True, order=True)
class ChannelSpec:
    """One channel kind to subscribe for a symbol: ``ticker``, ``depth``, ``depth_20``, ``kline_1min``…"""

    kind: ChannelKind
    period: KlinePeriod | None = None

    @classmethod
    def parse(cls, text: str) -> ChannelSpec:
        """Parse ``ticker``, ``depth``, ``depth_5``/``10``/``20``, ``deals`` or ``kline_<period>``."""
        if text.startswith("kline_"):
            period = KlinePeriod.parse(text.removeprefix("kline_"))
            if period not in KlinePeriod.v1_periods():
                raise ValueError(f"unknown kline period {period.value!r} (OKEx v1 has "
                                 f"{', '.join(p.value for p in KlinePeriod.v1_periods())})")
            return cls(ChannelKind.KLINE, period)
        try:
            kind = ChannelKind(text)
        except ValueError:
            kind = None
        if kind is None or kind in (ChannelKind.KLINE, ChannelKind.ORDER, ChannelKind.BALANCE):
            raise ValueError(
                f"unknown channel {text!r} (expected ticker, depth, depth_5, depth_10, depth_20, "
                "deals or kline_<period> such as kline_1min)"
            )
        return cls(kind)

    def channel(self, symbol: str) -> Channel:
        """The concrete channel for ``symbol``."""
        return Channel(symbol, self.kind, self.period)

    def __str__(self) -> str:
        return f"kline_{self.period.value}" if self.period is not None else self.kind.value


_DEFAULT_CHANNELS = (ChannelSpec(ChannelKind.TICKER), ChannelSpec(ChannelKind.DEPTH))


@dataclass(frozen=True, slots=True)
class V1Settings:
    """What the OKEx v1 venue records and how (docs/collector.md; times in seconds unless ``_ms``).

    ``symbols``: lower-case ``base_quote`` pairs; ``channels`` per symbol unless
    ``symbol_channels`` overrides it; ``symbols_per_connection`` symbols share a connection
    (``ws-0``, ``ws-1``…); ``subscribe_batch`` addChannel objects per frame; ``compress`` asks
    for raw-DEFLATE binary frames; the snapshot cadence (``snapshot_on_change`` and/or one per
    ``snapshot_interval_ms`` of exchange time, ``snapshot_depth`` levels); ``audit_history``
    book states kept per incremental book for the book audit (0: no audit).
    """

    ws_url: str = DEFAULT_WS_URL
    rest_url: str = DEFAULT_REST_URL
    symbols: tuple[str, ...] = ("btc_usdt", "eth_usdt")
    channels: tuple[ChannelSpec, ...] = _DEFAULT_CHANNELS
    symbol_channels: Mapping[str, tuple[ChannelSpec, ...]] = field(default_factory=dict)
    symbols_per_connection: int = 20
    subscribe_batch: int = 50
    compress: bool = False
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    stall_timeout: float = 60.0
    connect_timeout: float = 10.0
    reconnect_initial: float = 0.5
    reconnect_cap: float = 30.0
    snapshot_on_change: bool = True
    snapshot_interval_ms: int = 0
    snapshot_depth: int = 20
    audit_history: int = 0
    quarantine_log_interval: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol_channels", types.MappingProxyType(dict(self.symbol_channels)))
        if self.reconnect_cap < self.reconnect_initial:
            object.__setattr__(self, "reconnect_cap", self.reconnect_initial)

    @property
    def timing(self) -> SessionTiming:
        """The connection shell's timing of every v1 connection."""
        return SessionTiming(ping_interval=self.ping_interval, pong_timeout=self.pong_timeout,
                             stall_timeout=self.stall_timeout, connect_timeout=self.connect_timeout,
                             reconnect_initial=self.reconnect_initial, reconnect_cap=self.reconnect_cap)

    def channels_for(self, symbol: str) -> tuple[Channel, ...]:
        """The concrete channels to subscribe for ``symbol`` (its override, else ``channels``)."""
        specs = self.symbol_channels.get(symbol, self.channels)
        return tuple(spec.channel(symbol) for spec in dict.fromkeys(specs))

    def connection_shares(self) -> list[tuple[str, ...]]:
        """The symbols split into consecutive groups of ``symbols_per_connection``."""
        n = self.symbols_per_connection
        return [self.symbols[i:i + n] for i in range(0, len(self.symbols), n)]


def _fail(prefix: str, key: str, why: str) -> ConfigError:
    return ConfigError(f"config: {prefix}.{key}: {why}")


def _symbol(prefix: str, key: str, value: object) -> str:
    try:
        return validate_symbol(value)
    except SymbolError as exc:
        raise _fail(prefix, key, str(exc)) from None


def _text_list(value: object) -> list[object]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError


def _specs(prefix: str, key: str, value: object) -> tuple[ChannelSpec, ...]:
    try:
        items = _text_list(value)
        specs = tuple(spec if isinstance(spec, ChannelSpec) else ChannelSpec.parse(str(spec))
                      for spec in items)
    except TypeError:
        raise _fail(prefix, key, f"expected a list of channel names, got {value!r:.60}") from None
    except ValueError as exc:
        raise _fail(prefix, key, str(exc)) from None
    if not specs:
        raise _fail(prefix, key, "must not be empty")
    return specs


def _scalar(prefix: str, key: str, value: object, kind: type) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise _fail(prefix, key, f"expected true or false, got {value!r:.60}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise _fail(prefix, key, f"expected an integer, got {value!r:.60}") from None
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise _fail(prefix, key, f"expected a number, got {value!r:.60}") from None
    if not isinstance(value, str):
        raise _fail(prefix, key, f"expected a string, got {value!r:.60}")
    return value


_KINDS: dict[str, type] = {name: hint for name, hint in typing.get_type_hints(V1Settings).items()
                           if name not in ("symbols", "channels", "symbol_channels")}


def parse_settings(table: Mapping[str, Any], prefix: str = "venues.okex_v1") -> V1Settings:
    """:class:`V1Settings` from a ``[venues.okex_v1]`` table; raises ConfigError naming the key.

    Lists may be given as comma-separated text (environment overrides). Unknown keys are refused.
    """
    known = {f.name for f in fields(V1Settings)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"config: unknown key '{prefix}.{key}'")
        if key == "symbols":
            try:
                items = _text_list(value)
            except TypeError:
                raise _fail(prefix, key, f"expected a list of symbols, got {value!r:.60}") from None
            values[key] = tuple(_symbol(prefix, key, s) for s in items)
        elif key == "channels":
            values[key] = _specs(prefix, key, value)
        elif key == "symbol_channels":
            if not isinstance(value, Mapping):
                raise _fail(prefix, key, "expected a table of symbol = [channels]")
            values[key] = {_symbol(prefix, key, s): _specs(prefix, f"{key}.{s}", v) for s, v in value.items()}
        else:
            values[key] = _scalar(prefix, key, value, _KINDS[key])
    settings = V1Settings(**values)
    _check(settings, prefix)
    return settings


def _check(s: V1Settings, prefix: str) -> None:
    if not s.ws_url.startswith(("ws://", "wss://")):
        raise _fail(prefix, "ws_url", f"must start with ws:// or wss://, got {s.ws_url!r}")
    if not s.rest_url.startswith(("http://", "https://")):
        raise _fail(prefix, "rest_url", f"must start with http:// or https://, got {s.rest_url!r}")
    if not s.symbols:
        raise _fail(prefix, "symbols", "must not be empty")
    if len(set(s.symbols)) != len(s.symbols):
        raise _fail(prefix, "symbols", "lists a symbol twice")
    for symbol in s.symbol_channels:
        if symbol not in s.symbols:
            raise _fail(prefix, f"symbol_channels.{symbol}", "not in symbols")
    for name in ("symbols_per_connection", "subscribe_batch", "ping_interval", "pong_timeout",
                 "stall_timeout", "connect_timeout", "reconnect_initial", "reconnect_cap", "snapshot_depth"):
        if getattr(s, name) <= 0:
            raise _fail(prefix, name, f"must be > 0, got {getattr(s, name)!r}")
    if s.snapshot_interval_ms < 0:
        raise _fail(prefix, "snapshot_interval_ms", "must be >= 0 (0 = off)")
    if s.snapshot_depth > 200:
        raise _fail(prefix, "snapshot_depth", "must be <= 200")
    if s.audit_history < 0:
        raise _fail(prefix, "audit_history", "must be >= 0 (0 = no audit)")
    if not s.snapshot_on_change and s.snapshot_interval_ms == 0:
        raise ConfigError(f"config: {prefix}: set snapshot_on_change = true or snapshot_interval_ms > 0")

"""Settings of the ``okx_v5`` venue: the ``[venues.okx_v5]`` TOML table (docs/venues/okx_v5.md).

:func:`parse_settings` takes the table as a plain mapping (this package imports no config
module) and returns a frozen :class:`V5VenueSettings`, or raises
:class:`~recorder.errors.ConfigError` naming the key (``venues.okx_v5.<key>``). Unknown keys
are refused with a "did you mean" hint. Every point PROTOCOL.md (v5) marks unconfirmed is a
setting here (§11): the REST host, the checksum mode, accepting a sequence reset, truncating
books beyond their depth, one arg per subscribe request, the args per connection.

Sub-tables (``[venues.okx_v5.poller]``...) are parsed by the functions registered in
:data:`SUBTABLES` (name -> parser of the sub-table's mapping); their results are in
:attr:`V5VenueSettings.extra`. The defaults are the live OKX endpoints.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from recorder.errors import ChannelError, ConfigError

from .book import ChecksumMode
from .channels import (
    DEFAULT_MAX_ARGS_PER_CONNECTION,
    DEFAULT_MAX_DEPTH_CHANNELS_PER_CONNECTION,
    Channel,
    ChannelArg,
    candle_channel,
)
from .session import SessionConfig

__all__ = ["DEFAULTS", "MARKET_CHANNELS", "SUBTABLES", "V5VenueSettings", "parse_settings"]

PREFIX = "venues.okx_v5"

MARKET_CHANNELS = ("tickers", "books", "books5", "bbo-tbt", "trades")
"""The public market channels the recorder records (candles: ``candle_bars``)."""


@dataclass(frozen=True, slots=True)
class V5VenueSettings:
    """The ``[venues.okx_v5]`` table, validated. Times in seconds unless named ``_ms``.

    * ``public_url`` / ``business_url`` / ``private_url``: the WebSocket URLs (§1); candles are
      on ``business_url``, the other market channels on ``public_url``.
    * ``rest_url``: REST base (``/api/v5/...`` is appended); ``https://www.okx.com`` as every SDK
      uses (the latest docs name ``openapi.okx.com``: unconfirmed, configurable); also the account
      poller's unless ``[venues.okx_v5.poller]`` sets its own (:data:`INHERITED`).
    * ``instruments``: SPOT instrument ids (``BTC-USDT``); ``channels``: of :data:`MARKET_CHANNELS`;
      ``candle_bars``: v5 bars (``1m``, ``1H``, ``1Dutc``...), one ``candle<bar>`` channel each.
    * ``ping_after``: idle seconds before the text ``ping`` (§2.1: < 30, the server closes idle
      connections at 30 s); ``pong_timeout``, ``stall_timeout``, ``connect_timeout``,
      ``reconnect_initial`` / ``reconnect_cap`` as for v1; ``stall_timeout`` also bounds the wait
      for a book's snapshot after its (re)subscription (then a ``resubscribed`` gap and a retry).
    * ``snapshot_on_change`` / ``snapshot_interval_ms`` / ``snapshot_depth``: the snapshot cadence
      of ``books`` (as v1's: on a change of the top ``snapshot_depth`` levels and/or one per N ms
      of exchange time); ``books5`` and ``bbo-tbt`` pushes are whole books, each stored.
    * ``checksum``: ``verify_nonzero`` (verify a non-zero checksum, skip 0) or ``off``;
      ``accept_sequence_reset``, ``truncate_books``, ``one_arg_per_request``,
      ``max_depth_channels_per_connection``, ``max_args_per_connection``: §3.2, §2.4, §11.
    * ``inst_type``: the ``instType`` of ``/api/v5/public/instruments`` fetched at start (SPOT).
    * ``planned_reconnect_lead``: seconds after a ``notice`` before the connection is replaced (the
      server closes it about 60 s after the notice).
    * ``record_instruments``: emit the configured instruments' reference data
      (:class:`~recorder.records.Instrument`, the ``instruments`` dataset) when seen and changed.
    """

    public_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    business_url: str = "wss://ws.okx.com:8443/ws/v5/business"
    private_url: str = "wss://ws.okx.com:8443/ws/v5/private"
    rest_url: str = "https://www.okx.com"
    instruments: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")
    channels: tuple[str, ...] = ("tickers", "books", "trades")
    candle_bars: tuple[str, ...] = ("1m",)
    ping_after: float = 20.0
    pong_timeout: float = 10.0
    stall_timeout: float = 60.0
    connect_timeout: float = 10.0
    reconnect_initial: float = 0.5
    reconnect_cap: float = 30.0
    snapshot_on_change: bool = True
    snapshot_interval_ms: int = 0
    snapshot_depth: int = 20
    checksum: str = "verify_nonzero"
    accept_sequence_reset: bool = True
    truncate_books: bool = True
    one_arg_per_request: bool = True
    max_depth_channels_per_connection: int = DEFAULT_MAX_DEPTH_CHANNELS_PER_CONNECTION
    max_args_per_connection: int = DEFAULT_MAX_ARGS_PER_CONNECTION
    inst_type: str = "SPOT"
    planned_reconnect_lead: float = 0.0
    record_instruments: bool = True
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        _check(self)

    def session_config(self) -> SessionConfig:
        """The protocol core's :class:`~.session.SessionConfig` for these settings."""
        return SessionConfig(
            ping_after=timedelta(seconds=self.ping_after),
            pong_timeout=timedelta(seconds=self.pong_timeout),
            one_arg_per_request=self.one_arg_per_request,
            checksum_mode=ChecksumMode(self.checksum),
            accept_sequence_reset=self.accept_sequence_reset,
            truncate_books=self.truncate_books,
            resubscribe_on_gap=False,  # the venue session paces resubscriptions with the backoff
        )

    def args(self) -> list[ChannelArg]:
        """Every subscription arg: each instrument's channels, then its candles (§2.2)."""
        out: list[ChannelArg] = []
        for inst in self.instruments:
            out += [ChannelArg(ch, inst) for ch in self.channels]
            out += [ChannelArg(candle_channel(bar), inst) for bar in self.candle_bars]
        return out

    def url(self, kind: str) -> str:
        """The WebSocket URL of ``kind`` (``public``, ``business``, ``private``)."""
        return {"public": self.public_url, "business": self.business_url, "private": self.private_url}[kind]

SUBTABLES: dict[str, Callable[[Mapping[str, Any]], Any]] = {}
"""Parsers of sub-tables (``[venues.okx_v5.<name>]``), registered by the parts that own them
(e.g. the poller's): name -> function(mapping) -> frozen settings, raising ConfigError."""

INHERITED: dict[str, tuple[str, ...]] = {"poller": ("rest_url",)}
"""Keys a sub-table takes from ``[venues.okx_v5]`` when it does not set them itself: the account
poller's ``rest_url`` is the venue's (pointing the venue at a simulator points its poller there too;
the poller used to go on asking the live ``https://www.okx.com``)."""

_TUPLES = ("instruments", "channels", "candle_bars")
_BOOLS = ("record_instruments", "snapshot_on_change", "accept_sequence_reset", "truncate_books",
          "one_arg_per_request")  # fmt: skip
_INTS = ("snapshot_interval_ms", "snapshot_depth", "max_depth_channels_per_connection",
         "max_args_per_connection")  # fmt: skip
_FLOATS = ("ping_after", "pong_timeout", "stall_timeout", "connect_timeout", "reconnect_initial",
           "reconnect_cap", "planned_reconnect_lead")  # fmt: skip
_STRS = ("public_url", "business_url", "private_url", "rest_url", "checksum", "inst_type")


def parse_settings(table: Mapping[str, Any] | None) -> V5VenueSettings:
    """``[venues.okx_v5]`` (a mapping, as read from TOML; None = all defaults) → settings.

    Lists may also be given as comma-separated strings (environment overrides). Raises
    :class:`~recorder.errors.ConfigError` naming ``venues.okx_v5.<key>`` for an unknown key or a
    bad value.
    """
    table = dict(table or {})
    known = {f.name for f in fields(V5VenueSettings)} - {"extra"}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in table.items():
        if key in SUBTABLES:
            if not isinstance(raw, Mapping):
                raise ConfigError(f"config: {PREFIX}.{key} must be a table")
            inherited = {k: table[k] for k in INHERITED.get(key, ()) if k in table and k not in raw}
            extra[key] = SUBTABLES[key]({**inherited, **raw})
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known | set(SUBTABLES)), n=1)
            raise ConfigError(
                f"config: unknown key '{PREFIX}.{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            )
        values[key] = _value(key, raw)
    values["extra"] = MappingProxyType(extra)
    return V5VenueSettings(**values)


def _value(key: str, raw: Any) -> Any:
    name = f"{PREFIX}.{key}"
    if key in _TUPLES:
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list | tuple) or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"config: {name} must be a list of strings")
        return tuple(raw)
    if key in _BOOLS:
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if not isinstance(raw, bool):
            raise ConfigError(f"config: {name} must be true or false")
        return raw
    if key in _INTS:
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"config: {name} must be an integer")
        return raw
    if key in _FLOATS:
        if isinstance(raw, str):
            try:
                raw = float(raw)
            except ValueError:
                raise ConfigError(f"config: {name} must be a number") from None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"config: {name} must be a number")
        return float(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"config: {name} must be a string")
    return raw


def _check(s: V5VenueSettings) -> None:
    for key in ("public_url", "business_url", "private_url"):
        url = getattr(s, key)
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"config: {PREFIX}.{key} must be a ws:// or wss:// URL, got {url!r}")
    if not s.rest_url.startswith(("http://", "https://")):
        raise ConfigError(f"config: {PREFIX}.rest_url must be an http(s):// URL, got {s.rest_url!r}")
    if not s.instruments:
        raise ConfigError(f"config: {PREFIX}.instruments must not be empty")
    for inst in s.instruments:
        base, dash, quote = inst.partition("-")
        if not dash or not base or not quote or "-" in quote or inst != inst.upper() or not inst.isascii() \
                or not (base + quote).isalnum():  # fmt: skip
            raise ConfigError(
                f"config: {PREFIX}.instruments: {inst!r} is not a SPOT instrument id like BTC-USDT"
            )
    if len(set(s.instruments)) != len(s.instruments):
        raise ConfigError(f"config: {PREFIX}.instruments has duplicates")
    for ch in s.channels:
        if ch not in MARKET_CHANNELS:
            known = ", ".join(MARKET_CHANNELS)
            raise ConfigError(f"config: {PREFIX}.channels: unknown channel {ch!r} (known: {known}; "
                              "candles: candle_bars)")  # fmt: skip
    for bar in s.candle_bars:
        try:
            candle_channel(bar)
        except ChannelError as exc:
            raise ConfigError(f"config: {PREFIX}.candle_bars: {exc}") from None
    if not s.channels and not s.candle_bars:
        raise ConfigError(f"config: {PREFIX}: no channels and no candle_bars: nothing to record")
    if not 0 < s.ping_after < 30:
        raise ConfigError(f"config: {PREFIX}.ping_after must be within 0..30 s (idle ones close at 30 s)")
    for key in ("pong_timeout", "stall_timeout", "connect_timeout", "reconnect_initial", "reconnect_cap"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"config: {PREFIX}.{key} must be > 0")
    if s.planned_reconnect_lead < 0:
        raise ConfigError(f"config: {PREFIX}.planned_reconnect_lead must be >= 0")
    if s.snapshot_interval_ms < 0:
        raise ConfigError(f"config: {PREFIX}.snapshot_interval_ms must be >= 0 (0 = off)")
    if not s.snapshot_on_change and s.snapshot_interval_ms == 0:
        raise ConfigError(f"config: {PREFIX}: set snapshot_on_change = true or snapshot_interval_ms > 0")
    if not 1 <= s.snapshot_depth <= Channel.BOOKS.depth:
        raise ConfigError(f"config: {PREFIX}.snapshot_depth must be within 1..{Channel.BOOKS.depth}")
    if s.checksum not in {m.value for m in ChecksumMode}:
        raise ConfigError(f"config: {PREFIX}.checksum must be 'verify_nonzero' or 'off', got {s.checksum!r}")
    if s.max_depth_channels_per_connection < 1 or s.max_args_per_connection < 1:
        raise ConfigError(f"config: {PREFIX}: connection limits must be >= 1")


DEFAULTS = V5VenueSettings()
"""Every default (the live OKX endpoints)."""

"""The frozen, typed configuration of the collector (``okex-recorder run``).

Sources, later ones winning:

1. the defaults below (a working setup: SQLite + Parquet under ``./data``);
2. a TOML file (``--config F``; the commented ``config.example.toml`` lists every key);
3. the environment: ``OKEX_RECORDER__<SECTION>__<KEY>=value`` (upper or lower case),
   e.g. ``OKEX_RECORDER__COLLECTOR__SYMBOLS=btc_usdt,eth_usdt``; lists are comma
   separated, booleans ``true``/``false``/``1``/``0``. ``OKEX_SQL_URL`` sets
   ``storage.sql_url`` (the usual place for a database password).

Unknown keys and bad values are rejected at start with one :class:`ConfigError`
line naming the key (``config: unknown key 'collector.symbol' (did you mean
'symbols'?)``). Secrets (API key, secret key) are never read from this file: see
:mod:`recorder.credentials`. Database URLs are masked in every repr.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from recorder.backoff import BackoffPolicy
from recorder.errors import ConfigError, SymbolError
from recorder.records import ChannelKind
from recorder.storage.bus_config import BusConfig
from recorder.venue import Venue, get_venue
from recorder.venues.okex_v1.channels import Channel, validate_symbol
from recorder.venues.okex_v1.settings import ChannelSpec

__all__ = [
    "ACCOUNT_ENDPOINTS",
    "DEFAULT_ENDPOINT_LIMITS",
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "ENV_PREFIX",
    "SQL_URL_ENV",
    "ChannelSpec",
    "CollectorConfig",
    "Config",
    "ExchangeConfig",
    "LogConfig",
    "LogLevel",
    "PlausibilityConfig",
    "PollerSettings",
    "RateLimit",
    "StorageConfig",
    "load_config",
    "mask_url",
    "venue_settings",
]

DEFAULT_WS_URL = "wss://real.okex.com:10440/ws/v1"
DEFAULT_REST_URL = "https://www.okex.com/api/v1"
ENV_PREFIX = "OKEX_RECORDER__"
SQL_URL_ENV = "OKEX_SQL_URL"
_SECRET_KEYS = frozenset({"api_key", "secret_key", "secret", "apikey", "password", "sign"})


_URL_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def mask_url(url: Any) -> str:
    """``url`` (text or a SQLAlchemy URL) with any password replaced by ``***``, also one given as a
    query parameter (``?password=``, libpq's ``sslpassword``): safe to print or log."""
    try:
        import sqlalchemy as sa

        parsed = url if isinstance(url, sa.URL) else sa.make_url(url)
        hidden = {k: "***" for k in parsed.query if k.lower() in _URL_SECRET_PARAMS}
        if hidden:
            parsed = parsed.update_query_dict(hidden)
        return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # not a SQLAlchemy URL: mask a user:password@ part by hand
        url = str(url)
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The :mod:`logging` level number."""
        import logging

        return int(logging.getLevelNamesMapping()[self.name])


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """Where the exchange is (PROTOCOL.md "WebSocket", "REST")."""

    ws_url: str = DEFAULT_WS_URL
    rest_url: str = DEFAULT_REST_URL

    def __post_init__(self) -> None:
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"config: exchange.ws_url must start with ws:// or wss://, got {self.ws_url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"config: exchange.rest_url must start with http:// or https://, got {self.rest_url!r}")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What to subscribe and how to watch the connections (docs/collector.md)."""

    symbols: tuple[str, ...] = ("btc_usdt", "eth_usdt")
    channels: tuple[ChannelSpec, ...] = (ChannelSpec(ChannelKind.TICKER), ChannelSpec(ChannelKind.DEPTH))
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
    book_audit_interval: float = 0.0
    book_audit_slack_ms: int = 1000
    book_audit_history: int = 512
    status_interval: float = 10.0
    status_file: Path = Path("data/status.json")
    id: str = ""  # Okex-Collector header, feed_events/quarantine.collector; "" = <hostname>-<pid>

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("config: collector.symbols must not be empty")
        for symbol in self.symbols:
            _check_symbol("collector.symbols", symbol)
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("config: collector.symbols lists a symbol twice")
        for symbol, specs in self.symbol_channels.items():
            _check_symbol("collector.symbol_channels", symbol)
            if symbol not in self.symbols:
                raise ConfigError(f"config: collector.symbol_channels.{symbol}: not in collector.symbols")
            if not specs:
                raise ConfigError(f"config: collector.symbol_channels.{symbol} must not be empty")
        object.__setattr__(self, "symbol_channels", types.MappingProxyType(dict(self.symbol_channels)))
        if not self.channels:
            raise ConfigError("config: collector.channels must not be empty")
        positive = ("symbols_per_connection", "subscribe_batch", "ping_interval", "pong_timeout",
                    "stall_timeout", "connect_timeout", "reconnect_initial", "reconnect_cap",
                    "snapshot_depth", "status_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"config: collector.{name} must be > 0, got {getattr(self, name)!r}")
        if self.snapshot_interval_ms < 0:
            raise ConfigError("config: collector.snapshot_interval_ms must be >= 0 (0 = off)")
        if self.book_audit_interval < 0:
            raise ConfigError("config: collector.book_audit_interval must be >= 0 (0 = off)")
        if self.book_audit_slack_ms < 0:
            raise ConfigError("config: collector.book_audit_slack_ms must be >= 0")
        if self.book_audit_history < 2:
            raise ConfigError("config: collector.book_audit_history must be >= 2")
        if self.snapshot_depth > 200:
            raise ConfigError("config: collector.snapshot_depth must be <= 200")
        if not self.snapshot_on_change and self.snapshot_interval_ms == 0:
            raise ConfigError("config: collector: set snapshot_on_change = true or snapshot_interval_ms > 0")

    def channels_for(self, symbol: str) -> tuple[Channel, ...]:
        """The concrete channels to subscribe for ``symbol`` (its override, else ``channels``)."""
        specs = self.symbol_channels.get(symbol, self.channels)
        return tuple(spec.channel(symbol) for spec in dict.fromkeys(specs))

    def connection_shares(self) -> list[tuple[str, ...]]:
        """The symbols split into consecutive groups of ``symbols_per_connection``."""
        n = self.symbols_per_connection
        return [self.symbols[i:i + n] for i in range(0, len(self.symbols), n)]


# What storage.sql_url may start with: the databases and drivers the project ships (pyproject.toml).
SUPPORTED_SQL_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"})


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where and how records are persisted (docs/collector.md "Storage")."""

    sql_url: str = "sqlite:///data/recording.sqlite"
    parquet_root: str | Path = Path("data/parquet")  # a local directory (Path) or "s3://bucket/prefix" (str)
    flush_interval: float = 1.0
    batch_size: int = 5000
    max_pending_rows: int = 500_000
    writer_queue_rows: int = 200_000
    spill_dir: Path = Path("data/spill")
    parquet_journal_dir: Path = Path("data/parquet-journal")
    parquet_roll_rows: int = 1_000_000
    parquet_roll_seconds: float = 300.0
    auto_upgrade_sqlite: bool = True
    # automatic compaction of Parquet partitions (docs/storage.md "Compaction")
    compact: bool = True
    compact_max_files: int = 48
    compact_closed_after: float = 600.0
    compact_step_bytes: int = 8 * 1024 * 1024
    compact_grace: float = 60.0
    # the storage writer in a second process (docs/operations.md "Writer process")
    writer_process: bool = False
    # PostgreSQL batches by ADBC bulk ingest (COPY) + INSERT ... SELECT (docs/storage.md "Bulk SQL");
    # ignored on SQLite
    sql_bulk: bool = True

    def __post_init__(self) -> None:
        root = str(self.parquet_root)
        if not root:
            raise ConfigError("config: storage.parquet_root must be a local path or s3://bucket[/prefix]")
        if "://" not in root:
            object.__setattr__(self, "parquet_root", Path(root))
        elif not root.startswith("s3://") or len(root) <= len("s3://"):
            raise ConfigError(f"config: storage.parquet_root must be a local path or s3://bucket[/prefix], "
                              f"got {root.split('?', 1)[0][:80]!r}")
        if "://" not in self.sql_url:
            raise ConfigError(f"config: storage.sql_url is not a database URL: {mask_url(self.sql_url)!r}")
        scheme = self.sql_url.split("://", 1)[0].lower()
        if scheme not in SUPPORTED_SQL_SCHEMES:
            pg = scheme.split("+")[0] in ("postgres", "postgresql")
            hint = ("write it postgresql+psycopg://user@host:5432/db" if pg else
                    "supported: sqlite:///path/to/file.sqlite or postgresql+psycopg://user@host:5432/db")
            raise ConfigError(f"config: storage.sql_url: unsupported database URL scheme {scheme + '://'!r} "
                              f"in {mask_url(self.sql_url)!r}; {hint}")
        for name in ("flush_interval", "batch_size", "max_pending_rows", "writer_queue_rows",
                     "parquet_roll_rows", "parquet_roll_seconds", "compact_step_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config: storage.{name} must be > 0, got {getattr(self, name)!r}")
        if self.compact_max_files < 2:
            raise ConfigError(
                f"config: storage.compact_max_files must be >= 2, got {self.compact_max_files!r}")
        for name in ("compact_closed_after", "compact_grace"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: storage.{name} must be >= 0, got {getattr(self, name)!r}")

    def __repr__(self) -> str:
        return (f"StorageConfig(sql_url={mask_url(self.sql_url)!r}, parquet_root={str(self.parquet_root)!r}, "
                f"flush_interval={self.flush_interval}, batch_size={self.batch_size})")

    @property
    def is_default_sqlite(self) -> bool:
        """True for an embedded SQLite file (may be upgraded automatically when allowed)."""
        return self.sql_url.startswith("sqlite:")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The opt-in Prometheus endpoint (docs/operations.md "Metrics"): off unless ``enabled``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"config: metrics.port must be 0..65535, got {self.port!r}")
        if not self.host:
            raise ConfigError("config: metrics.host must not be empty")


@dataclass(frozen=True, slots=True)
class PlausibilityConfig:
    """How far an exchange time may lie from its receive time (``[plausibility]``, docs/storage.md).

    A record whose exchange time falls outside its window is quarantined (never stored as
    true) with the reason, and counted. Windows, against ``ts_recv`` (local receive time):

    * ticker, book snapshot: ``ts_event`` in [ts_recv - ``max_behind_seconds``,
      ts_recv + ``max_ahead_seconds``];
    * deal (``HH:MM:SS`` in UTC+8, dated by ``deal_timestamp`` to the instant nearest the
      receipt, so always within 12 h): the same window widened by the 1 s resolution;
    * kline (``ts_event`` = the period's open): in [ts_recv - period - ``kline_slack_seconds``,
      ts_recv + ``max_ahead_seconds``];
    * order (``ts_event`` = create date, may be days old): in [``orders_not_before``,
      ts_recv + ``max_ahead_seconds``].

    ``enabled = false`` turns the time checks off (the storage checks stay).
    """

    enabled: bool = True
    max_behind_seconds: float = 300.0
    max_ahead_seconds: float = 60.0
    kline_slack_seconds: float = 60.0
    orders_not_before: str = "2013-01-01"

    def __post_init__(self) -> None:
        for name in ("max_behind_seconds", "max_ahead_seconds", "kline_slack_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: plausibility.{name} must be >= 0, got {getattr(self, name)!r}")
        try:
            date.fromisoformat(self.orders_not_before)
        except ValueError:
            raise ConfigError("config: plausibility.orders_not_before must be a date YYYY-MM-DD, "
                              f"got {self.orders_not_before!r}") from None

    @property
    def orders_earliest(self) -> datetime:
        """``orders_not_before`` as an aware UTC datetime (midnight)."""
        d = date.fromisoformat(self.orders_not_before)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)


# --------------------------------------------------------------------------- [poller]
# The poller's settings (the ``[poller]`` table). Defaults follow the documented limits
# (PROTOCOL.md "REST"): ``userinfo.do`` and ``wallet_info.do`` 6 requests per 2 s, the other
# endpoints 20 per 2 s, and at most 3000 requests per 5 minutes per IP; an IP past that is
# banned for an hour. Kept here (not in recorder.poller) so that the configuration imports no
# part it configures: the poller imports its settings from here.

ACCOUNT_ENDPOINTS = frozenset({"userinfo.do", "wallet_info.do"})
_LIMIT_RE = re.compile(r"(?P<n>[0-9]+)\s*/\s*(?P<s>[0-9]+(?:\.[0-9]+)?)\s*s?")


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` calls in any window of ``per_seconds`` seconds."""

    requests: int
    per_seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.requests, int) or isinstance(self.requests, bool) or self.requests < 1:
            raise ConfigError(f"rate limit requests must be a positive integer, got {self.requests!r}")
        if not _positive_number(self.per_seconds):
            raise ConfigError(f"rate limit window must be > 0 seconds, got {self.per_seconds!r}")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"20/2s"`` (or ``"3000/300"``) -> ``RateLimit(20, 2.0)``; ValueError if malformed."""
        match = _LIMIT_RE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"expected a rate limit such as '20/2s', got {text!r:.40}")
        try:
            return cls(int(match["n"]), float(match["s"]))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def __str__(self) -> str:
        return f"{self.requests}/{self.per_seconds:g}s"


DEFAULT_ENDPOINT_LIMITS: Mapping[str, RateLimit] = {
    "userinfo.do": RateLimit(6, 2.0),
    "wallet_info.do": RateLimit(6, 2.0),
    "order_info.do": RateLimit(20, 2.0),
    "orders_info.do": RateLimit(20, 2.0),
    "order_history.do": RateLimit(20, 2.0),
    "ticker.do": RateLimit(20, 2.0),
    "depth.do": RateLimit(20, 2.0),
    "trades.do": RateLimit(20, 2.0),
    "kline.do": RateLimit(20, 2.0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PollerSettings:
    """What the poller polls, how often, and how politely (the ``[poller]`` table).

    Rate limits are written ``"6/2s"`` (requests per seconds) in TOML:
    ``account_limit`` applies to ``userinfo.do`` and ``wallet_info.do``,
    ``endpoint_limit`` to every other endpoint, ``ip_limit`` to all calls together.
    """

    balance_interval: float = 10.0  # seconds between userinfo.do polls
    order_interval: float = 5.0  # seconds between order sweeps (open orders + history)
    symbols: tuple[str, ...] = ()  # whose orders to sync; empty: balances only
    include_wallet: bool = False  # also poll wallet_info.do
    page_length: int = 200  # order_history.do page size (<= 200)
    account_limit: RateLimit = RateLimit(6, 2.0)
    endpoint_limit: RateLimit = RateLimit(20, 2.0)
    ip_limit: RateLimit = RateLimit(3000, 300.0)
    ban_seconds: float = 3600.0  # how long every REST call stops after HTTP 403
    request_timeout: float = 10.0  # seconds, per HTTP request
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    credentials_file: Path | None = None  # owner-only TOML with api_key, secret_key

    def __post_init__(self) -> None:
        for name in ("balance_interval", "order_interval", "ban_seconds", "request_timeout"):
            if not _positive_number(getattr(self, name)):
                raise ConfigError(f"config: poller.{name} must be > 0, got {getattr(self, name)!r}")
        if isinstance(self.page_length, bool) or not isinstance(self.page_length, int) \
                or not 1 <= self.page_length <= 200:
            raise ConfigError(f"config: poller.page_length must be in 1..200, got {self.page_length!r}")
        if not isinstance(self.include_wallet, bool):
            raise ConfigError("config: poller.include_wallet must be true or false")
        for symbol in self.symbols:
            try:
                validate_symbol(symbol)
            except SymbolError as exc:
                raise ConfigError(f"config: poller.symbols: {exc}") from None
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("config: poller.symbols lists a symbol twice")

    def limit_for(self, endpoint: str) -> RateLimit:
        """The per-endpoint limit for ``endpoint`` (``userinfo.do`` ...)."""
        return self.account_limit if endpoint in ACCOUNT_ENDPOINTS else self.endpoint_limit

    def all_limits(self) -> dict[str, RateLimit]:
        """Every known endpoint's effective limit."""
        return {name: self.limit_for(name) for name in DEFAULT_ENDPOINT_LIMITS}


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; every field has a working default."""

    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    poller: PollerSettings = field(default_factory=PollerSettings)
    plausibility: PlausibilityConfig = field(default_factory=PlausibilityConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    bus: BusConfig = field(default_factory=BusConfig)  # [bus]: publish to NATS JetStream (docs/scale-out.md)
    venues: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [venues.<name>], each venue's own


LEGACY_VENUE = "okex_v1"
"""The venue the ``[exchange]`` and ``[collector]`` keys configure (the layout before ``[venues.<name>]``)."""


def _legacy_table(config: Config) -> dict[str, Any]:
    """The ``[venues.okex_v1]`` keys that ``[exchange]`` and ``[collector]`` give (backward compatible)."""
    c = config.collector
    return {
        "ws_url": config.exchange.ws_url, "rest_url": config.exchange.rest_url, "symbols": list(c.symbols),
        "channels": list(c.channels), "symbol_channels": {k: list(v) for k, v in c.symbol_channels.items()},
        "symbols_per_connection": c.symbols_per_connection, "subscribe_batch": c.subscribe_batch,
        "compress": c.compress, "ping_interval": c.ping_interval, "pong_timeout": c.pong_timeout,
        "stall_timeout": c.stall_timeout, "connect_timeout": c.connect_timeout,
        "reconnect_initial": c.reconnect_initial, "reconnect_cap": c.reconnect_cap,
        "snapshot_on_change": c.snapshot_on_change, "snapshot_interval_ms": c.snapshot_interval_ms,
        "snapshot_depth": c.snapshot_depth,
        "audit_history": c.book_audit_history if c.book_audit_interval > 0 else 0,
    }


def venue_settings(config: Config) -> list[tuple[Venue, Any]]:
    """The enabled venues and their settings, in order: ``okex_v1`` (from ``[exchange]`` +
    ``[collector]``, overridden by ``[venues.okex_v1]``), then every other ``[venues.<name>]``.

    A table with ``enabled = false`` is skipped. Each venue parses its own table
    (:meth:`recorder.venue.Venue.parse_settings`); raises ConfigError naming the bad key.
    """
    tables: dict[str, Mapping[str, Any]] = {LEGACY_VENUE: {}}
    tables.update(config.venues)
    out: list[tuple[Venue, Any]] = []
    for name, raw in tables.items():
        table = dict(raw)
        enabled = table.pop("enabled", True)
        if isinstance(enabled, str):
            enabled = enabled.strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(enabled, bool):
            raise ConfigError(f"config: venues.{name}.enabled must be true or false, got {enabled!r}")
        if not enabled:
            continue
        try:
            venue = get_venue(name)
        except ConfigError as exc:
            raise ConfigError(f"config: venues.{name}: {exc}") from None
        if name == LEGACY_VENUE:
            table = {**_legacy_table(config), **table}
        out.append((venue, venue.parse_settings(table)))
    if not out:
        raise ConfigError("config: no venue is enabled (venues.<name>.enabled): nothing to record")
    return out


def _check_symbol(key: str, symbol: object) -> None:
    try:
        validate_symbol(symbol)
    except SymbolError as exc:
        raise ConfigError(f"config: {key}: {exc}") from None


# --- the generic loader -------------------------------------------------------------------------


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the :class:`Config` from defaults, the TOML file at ``path``, ``env`` and ``overrides``.

    ``env`` defaults to :data:`os.environ` (only ``OKEX_RECORDER__*`` and ``OKEX_SQL_URL``
    are read). ``overrides`` is a nested dict applied last (used by ``demo`` and tests).
    Raises :class:`ConfigError` with one line naming the first bad key or value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"config: cannot read {p}: {exc.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {p} is not valid TOML: {exc}") from None
    _merge(data, _from_env(os.environ if env is None else env))
    if overrides:
        _merge(data, overrides)
    result: Config = _build(Config, data, "")
    if not result.poller.symbols:  # orders are synced for the recorded symbols unless told otherwise
        result = replace(result, poller=replace(result.poller, symbols=result.collector.symbols))
    venue_settings(result)  # every venue's table is checked at start
    return result


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


class _EnvText(str):
    """A value read from the environment: converted from text by the target type."""

    var: str


def _env_value(var: str, text: str) -> _EnvText:
    value = _EnvText(text)
    value.var = var
    return value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, text in env.items():
        if var.upper().startswith(ENV_PREFIX):
            parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
            if len(parts) < 2 or not all(parts):
                raise ConfigError(
                    f"config: environment variable {var}: expected {ENV_PREFIX}<SECTION>__<KEY>")
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"config: environment variable {var} conflicts with another one")
            node[parts[-1]] = _env_value(var, text)
        elif var.upper().startswith(ENV_PREFIX[:-1]):  # OKEX_RECORDER_COLLECTOR_SYMBOLS: was ignored
            raise ConfigError(
                f"config: environment variable {var} is not an override: write {ENV_PREFIX}<SECTION>__<KEY> "
                f"with double underscores, e.g. {ENV_PREFIX}COLLECTOR__SYMBOLS")
    if SQL_URL_ENV in env:
        out.setdefault("storage", {})["sql_url"] = _env_value(SQL_URL_ENV, env[SQL_URL_ENV])
    return out


def _where(name: str, value: object) -> str:
    if isinstance(value, _EnvText):
        return f"{name} (from {value.var})"
    return name


def _build(cls: Any, data: object, prefix: str) -> Any:
    section = prefix.rstrip(".") or "the file"
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {section} must be a table")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in names:
            if str(key).lower() in _SECRET_KEYS:
                raise ConfigError(
                    f"config: {name!r}: secrets never go in the config file; set OKEX_API_KEY and "
                    "OKEX_SECRET_KEY in the environment or use an owner-only credentials file")
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            source = f" (from {value.var})" if isinstance(value, _EnvText) else ""
            raise ConfigError(f"config: unknown key {name!r}{source}{hint}")
        kwargs[key] = _convert(hints[key], value, name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config: bad value in {section}: {exc}") from None


def _bad(name: str, value: object, expected: str) -> ConfigError:
    shown = str(value) if isinstance(value, _EnvText) else repr(value)
    if name.endswith("sql_url"):
        shown = mask_url(str(value))
    return ConfigError(f"config: {_where(name, value)} must be {expected}, got {shown[:80]}")


def _convert(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:  # a venue's own table: the venue parses it
        return value
    if dataclasses.is_dataclass(hint) and not hasattr(hint, "parse"):
        return _build(hint, value, f"{name}.")
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value == "" and type(None) in args):
            return None
        return _convert(inner[0], value, name)
    if origin is tuple:
        item = args[0]
        if isinstance(value, _EnvText):
            value = [_env_value(value.var, v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise _bad(name, value, "a list")
        return tuple(_convert(item, v, name) for v in value)
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise _bad(name, value, "a table")
        return {str(k): _convert(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, _EnvText):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise _bad(name, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, _EnvText):
            try:
                return int(value.strip())
            except ValueError:
                raise _bad(name, value, "an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, _EnvText):
            try:
                return float(value.strip())
            except ValueError:
                raise _bad(name, value, "a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(name, value, "a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _bad(name, value, "a string")
        return str(value)
    if hint is Path:
        if not isinstance(value, str | Path) or str(value) == "":
            raise _bad(name, value, "a path")
        return Path(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise _bad(name, value, f"one of {allowed}") from None
    if isinstance(hint, type) and hasattr(hint, "parse"):
        if isinstance(value, hint):
            return value
        if not isinstance(value, str):
            raise _bad(name, value, "a string")
        try:
            return hint.parse(value.strip())
        except ValueError as exc:
            raise ConfigError(f"config: {_where(name, value)}: {exc}") from None
    raise ConfigError(f"config: {name}: unsupported setting type {hint!r}")  # pragma: no cover


"""The simulator's frozen, typed settings (docs/simulator.md "Settings").

:class:`SimulatorSettings` holds everything: the seed, the symbols and their update
rate, the WebSocket behaviour (compression, idle window), the REST rate limits,
the simulated accounts, the faults and the ground-truth output.
:func:`load_settings` builds it from a TOML file or a dict and rejects unknown
keys with :class:`~recorder.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from recorder.errors import ConfigError
from recorder.venues.okex_v1.channels import validate_symbol

DEMO_API_KEY = "0d3m0000-okex-4sim-8dem-0acc0un7key00"
"""The demo account's api_key (public: documented in docs/simulator.md)."""

DEMO_SECRET = "DEMO-SECRET-0KEX-SIMULATOR-NOT-A-REAL-SECRET"
"""The demo account's secret. Documented in docs/simulator.md; it only opens the simulator."""

DEFAULT_SYMBOLS = ("btc_usdt", "eth_usdt", "ltc_btc", "bch_btc", "eth_btc")

DEFAULT_DEMO_BALANCES: Mapping[str, Decimal] = types.MappingProxyType(
    {
        "btc": Decimal("2.5"),
        "usdt": Decimal("25000"),
        "eth": Decimal("40"),
        "ltc": Decimal("150"),
        "bch": Decimal("30"),
        "okb": Decimal("0"),
    }
)


class FrameFault(enum.Enum):
    """Kinds of broken WebSocket frames the simulator can send (faults.py)."""

    MALFORMED_JSON = "malformed_json"  # a text frame that is not JSON
    TRUNCATED = "truncated"  # the first half of a real push
    OVERSIZED = "oversized"  # a valid JSON push larger than ``oversized_bytes``
    BAD_DEFLATE = "bad_deflate"  # a binary frame that is not raw DEFLATE data


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Faults on demand (docs/simulator.md "Faults"). All off by default.

    Rates are probabilities per push (WebSocket) or per request (REST), drawn from
    the simulator's seeded fault RNG.
    """

    close_after_messages: int | None = None  # close each connection after N data pushes
    close_every_seconds: float | None = None  # close each connection T s after it opened
    frame_fault: FrameFault | None = None  # which broken frame to send
    frame_fault_rate: float = 0.0  # probability per push of an extra broken frame
    frame_fault_count: int = 0  # or: the next N pushes each get one broken frame first
    oversized_bytes: int = 2 * 1024 * 1024
    rest_error_rate: float = 0.0  # answer {"result": false, "error_code": 10002}
    rest_5xx_rate: float = 0.0  # answer HTTP 500/502/503
    ws_latency: float = 0.0  # seconds added before every WebSocket frame
    rest_latency: float = 0.0  # seconds added before every REST answer

    def __post_init__(self) -> None:
        for name in ("frame_fault_rate", "rest_error_rate", "rest_5xx_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"faults.{name} must be within 0..1, got {value!r}")
        for name in ("ws_latency", "rest_latency", "frame_fault_count", "oversized_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"faults.{name} must not be negative")
        if self.close_after_messages is not None and self.close_after_messages < 1:
            raise ConfigError("faults.close_after_messages must be >= 1")
        if self.close_every_seconds is not None and self.close_every_seconds <= 0:
            raise ConfigError("faults.close_every_seconds must be > 0")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """REST limits (PROTOCOL.md "REST"): per endpoint and IP, and per IP overall."""

    endpoint_requests: int = 20  # per endpoint_window seconds
    account_requests: int = 6  # userinfo.do and wallet_info.do
    endpoint_window: float = 2.0
    ip_requests: int = 3000  # per ip_window seconds; one more -> banned
    ip_window: float = 300.0
    ban_seconds: float = 3600.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"rate_limits.{f.name} must be > 0")


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """A simulated account: its key pair and starting balances (free, per currency)."""

    api_key: str
    secret: str = field(repr=False)
    balances: Mapping[str, Decimal] = field(default_factory=lambda: DEFAULT_DEMO_BALANCES)
    seed_history: bool = True  # deterministic order history within the last days

    def __post_init__(self) -> None:
        if not self.api_key or not self.secret:
            raise ConfigError("an account needs a non-empty api_key and secret")
        object.__setattr__(self, "balances", types.MappingProxyType(dict(self.balances)))


DEMO_ACCOUNT = AccountSettings(api_key=DEMO_API_KEY, secret=DEMO_SECRET)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Everything the simulator needs; every field has a working default."""

    seed: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    updates_per_second: float = 5.0  # market steps per second per symbol; 0 = only sim.advance()
    book_depth: int = 200  # levels per side at most
    exponent_prices: bool = False  # write tiny prices as "1E-8" like the real service sometimes did
    compress_always: bool = False  # every frame raw DEFLATE, as the service did from late 2018
    ping_timeout: float = 35.0  # close a connection that sent no ping for this long (30 s + grace)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    accounts: tuple[AccountSettings, ...] = (DEMO_ACCOUNT,)
    account_activity: bool = True  # the demo account places and cancels orders by itself
    account_activity_interval: float = 5.0  # seconds between two activity steps
    faults: FaultSettings = field(default_factory=FaultSettings)
    truth_path: Path | None = None  # JSON lines of every push sent
    truth_memory: int = 100_000  # pushes kept in memory (0 = none)
    host: str = "127.0.0.1"
    ws_port: int = 0  # 0 = a free port
    rest_port: int = 0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("symbols must not be empty")
        for symbol in self.symbols:
            try:
                validate_symbol(symbol, known_only=True)
            except Exception as exc:
                raise ConfigError(f"symbols: {exc}") from None
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("symbols: duplicates")
        if self.updates_per_second < 0:
            raise ConfigError("updates_per_second must not be negative")
        if not 20 <= self.book_depth <= 200:
            raise ConfigError("book_depth must be within 20..200")
        if self.ping_timeout <= 0:
            raise ConfigError("ping_timeout must be > 0")
        if self.account_activity_interval <= 0:
            raise ConfigError("account_activity_interval must be > 0")
        if self.truth_memory < 0:
            raise ConfigError("truth_memory must not be negative")
        keys = [a.api_key for a in self.accounts]
        if len(set(keys)) != len(keys):
            raise ConfigError("accounts: duplicate api_key")
        for port_name in ("ws_port", "rest_port"):
            if not 0 <= getattr(self, port_name) <= 65535:
                raise ConfigError(f"{port_name} must be within 0..65535")

    def account(self, api_key: str) -> AccountSettings | None:
        """The account with ``api_key``, or None."""
        for acc in self.accounts:
            if acc.api_key == api_key:
                return acc
        return None


def load_settings(
    source: Path | str | Mapping[str, Any] | None = None, **overrides: Any
) -> SimulatorSettings:
    """Build :class:`SimulatorSettings` from a TOML file path or a dict, then ``overrides``.

    The file may hold the keys at top level or under a ``[simulator]`` table. Nested
    tables: ``[rate_limits]``, ``[faults]``, ``[[accounts]]`` (``api_key``, ``secret``,
    ``balances``). Raises :class:`~recorder.errors.ConfigError` naming an unknown key
    or a bad value; a secret value is never part of the message.
    """
    data: dict[str, Any]
    if source is None:
        data = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        try:
            data = tomllib.loads(path.read_text("utf-8"), parse_float=Decimal)  # balances stay exact
        except OSError as exc:
            raise ConfigError(f"cannot read simulator config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"simulator config {path} is not valid TOML: {exc}") from None
        if "simulator" in data:
            extra = sorted(set(data) - {"simulator"})
            if extra:
                raise ConfigError(f"unknown key {extra[0]!r} beside [simulator] in {path}")
            data = dict(data["simulator"])
    data.update(overrides)
    return _build(SimulatorSettings, data, "")


def _build(cls: Any, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'settings'} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown simulator setting {prefix}{key!r}")
        kwargs[key] = _convert(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad simulator setting in {prefix or 'settings'}: {exc}") from None


def _convert(hint: Any, value: Any, name: str) -> Any:
    if isinstance(value, FaultSettings | RateLimits | AccountSettings | Path | FrameFault):
        return value
    if hint is RateLimits or hint is FaultSettings:
        return _build(hint, value, f"{name}.")
    if hint == tuple[AccountSettings, ...]:
        return tuple(
            a if isinstance(a, AccountSettings) else _build(AccountSettings, a, f"{name}[{i}].")
            for i, a in enumerate(value)
        )
    if hint == tuple[str, ...]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(value)
    if hint == Mapping[str, Decimal]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table of currency = amount")
        try:
            return {str(k): Decimal(str(v)) for k, v in value.items()}
        except InvalidOperation:
            raise ConfigError(f"{name}: amounts must be numbers") from None
    if hint == Path | None:
        return None if value in (None, "") else Path(value)
    if hint == FrameFault | None:
        if value is None:
            return None
        try:
            return FrameFault(value)
        except ValueError:
            raise ConfigError(f"{name}: unknown frame fault {value!r}") from None
    base = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    if value is None and type(None) in typing.get_args(hint):
        return None
    target = base[0]
    if target is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if target is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer")
        return value
    if target is float:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ConfigError(f"{name} must be a number")
        return float(value)
    if target is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return value
    return value

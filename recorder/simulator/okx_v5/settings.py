"""Settings of the OKX v5 simulator (docs/simulator.md "OKX v5 mode").

Frozen dataclasses with working defaults. Points PROTOCOL.md (v5) marks
unconfirmed are settings: the checksum mode (§3.2), whether client pings keep a
connection alive (§2.1), the REST clock window (§6), the close code after a
``notice`` (§2.6) and whether notices reach ``/business``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from recorder.errors import ConfigError
from recorder.simulator.okx_v5.wire import inst_to_symbol
from recorder.venues.okex_v1.pairs import pairs

DEMO_API_KEY = "5d3m05v5-0kx5-4sim-8dem-0acc0un7key05"
"""The v5 demo account's API key (public: documented in docs/simulator.md)."""

DEMO_SECRET = "DEMO-SECRET-OKX-V5-SIMULATOR-NOT-A-REAL-SECRET"
"""The v5 demo account's secret. Documented; it only opens the simulator."""

DEMO_PASSPHRASE = "Demo-Passphrase-v5"
"""The v5 demo account's passphrase. Documented; it only opens the simulator."""

DEFAULT_INSTRUMENTS = ("BTC-USDT", "ETH-USDT", "ETH-BTC")

DEFAULT_BALANCES: Mapping[str, Decimal] = types.MappingProxyType(
    {"BTC": Decimal("2.5"), "USDT": Decimal("25000"), "ETH": Decimal("40")}
)

# PROTOCOL.md v5 §7.1: requests per 2 s, per endpoint (public: per IP; private: per user).
DEFAULT_RATE_LIMITS: Mapping[str, int] = types.MappingProxyType(
    {
        "market/ticker": 20,
        "market/tickers": 20,
        "market/books": 40,
        "market/trades": 100,
        "market/history-trades": 20,
        "market/candles": 40,
        "market/history-candles": 20,
        "public/instruments": 20,
        "public/time": 10,
        "system/status": 1,  # per 5 s on the real service; the window here is rate_window
        "asset/currencies": 3,
        "account/balance": 10,
        "trade/orders-pending": 60,
        "trade/orders-history": 40,
        "trade/orders-history-archive": 20,
        "trade/order": 60,
        "trade/fills": 60,
        "trade/fills-history": 10,
    }
)

CHECKSUM_MODES = ("zero", "crc32")


@dataclass(frozen=True, slots=True)
class V5Account:
    """A simulated v5 account: key, secret, passphrase, starting cash balances (upper-case ccy)."""

    api_key: str
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)
    balances: Mapping[str, Decimal] = field(default_factory=lambda: DEFAULT_BALANCES)
    seed_history: bool = True  # ~3 months of seeded orders and fills

    def __post_init__(self) -> None:
        if not self.api_key or not self.secret or not self.passphrase:
            raise ConfigError("a v5 account needs a non-empty api_key, secret and passphrase")
        balances = {k.upper(): Decimal(v) for k, v in self.balances.items()}
        object.__setattr__(self, "balances", types.MappingProxyType(balances))


DEMO_ACCOUNT = V5Account(DEMO_API_KEY, DEMO_SECRET, DEMO_PASSPHRASE)


@dataclass(frozen=True, slots=True)
class V5Settings:
    """Everything the v5 simulator needs; every field has a working default."""

    seed: int = 1
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS  # SPOT ids; pairs of the v1 pair list
    updates_per_second: float = 10.0  # market steps per instrument per second (0 = advance() only)
    checksum: Literal["zero", "crc32"] = "zero"  # books checksum: 0 (current live) or legacy CRC32
    idle_timeout: float = 30.0  # close 4004 after this long without a subscription/push (§2.1)
    pings_keep_alive: bool = True  # a client "ping" (and our "pong") counts as traffic for idle_timeout
    book_heartbeat: float = 60.0  # books: empty update with seqId == prevSeqId after this long unchanged
    candle_interval: float = 1.0  # candle channels: push the forming candle this often (s)
    tbt_allowed: bool = False  # the account's fee tier allows books-l2-tbt/books50-l2-tbt (else 64003)
    ws_requests_per_hour: int = 480  # subscribe+unsubscribe+login per connection (60014 beyond)
    login_window: float = 30.0  # WS login timestamp age limit, s (60006)
    clock_window: float = 30.0  # REST OK-ACCESS-TIMESTAMP max distance from server time, s (50102)
    before_page: Literal["nearest", "latest"] = "nearest"  # orders/fills page for `before` alone
    demo_trading: bool = False  # keys are demo-trading keys: signed requests need x-simulated-trading: 1
    clock_skew_ms: int = 0  # the server's clock minus real time (a skewed exchange clock)
    rate_window: float = 2.0  # REST limit window, s
    rate_limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_RATE_LIMITS)
    notice_close_after: float = 60.0  # s between a notice (64008) and the close
    notice_close_code: int = 4006  # close code after a notice (unconfirmed, §11)
    notice_on_business: bool = False  # notices on /business too (undocumented)
    accounts: tuple[V5Account, ...] = (DEMO_ACCOUNT,)
    truth_memory: int = 50_000  # pushes (and REST answers) kept in memory
    truth_path: Path | None = None  # JSON lines of everything sent
    host: str = "127.0.0.1"
    port: int = 0  # one port serves REST (/api/v5/...) and the three WebSocket paths

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ConfigError("instruments must not be empty")
        known = pairs()
        for inst in self.instruments:
            if inst != inst.upper() or inst.count("-") != 1 or inst_to_symbol(inst) not in known:
                raise ConfigError(f"instruments: unknown SPOT instrument {inst!r} (use e.g. BTC-USDT)")
        if len(set(self.instruments)) != len(self.instruments):
            raise ConfigError("instruments: duplicates")
        if self.before_page not in ("nearest", "latest"):
            raise ConfigError(f"before_page must be 'nearest' or 'latest', got {self.before_page!r}")
        if self.checksum not in CHECKSUM_MODES:
            raise ConfigError(f"checksum must be one of {CHECKSUM_MODES}, got {self.checksum!r}")
        for name in (
            "idle_timeout",
            "book_heartbeat",
            "candle_interval",
            "login_window",
            "clock_window",
            "rate_window",
            "notice_close_after",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.updates_per_second < 0:
            raise ConfigError("updates_per_second must not be negative")
        if self.truth_memory < 0:
            raise ConfigError("truth_memory must not be negative")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be within 0..65535")
        keys = [a.api_key for a in self.accounts]
        if len(set(keys)) != len(keys):
            raise ConfigError("accounts: duplicate api_key")
        object.__setattr__(self, "rate_limits", types.MappingProxyType(dict(self.rate_limits)))

    def account(self, api_key: str) -> V5Account | None:
        """The account with ``api_key``, or None."""
        return next((a for a in self.accounts if a.api_key == api_key), None)

    def replace(self, **changes: Any) -> V5Settings:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)

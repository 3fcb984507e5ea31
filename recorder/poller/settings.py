"""The poller's frozen, typed settings (the ``[poller]`` section of the configuration).

Defaults follow the documented limits (PROTOCOL.md "REST"): ``userinfo.do`` and
``wallet_info.do`` 6 requests per 2 s, the other endpoints 20 per 2 s, and at most
3000 requests per 5 minutes per IP; an IP past that is banned for an hour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recorder.backoff import BackoffPolicy
from recorder.errors import ConfigError, SymbolError
from recorder.okex.channels import validate_symbol

__all__ = ["ACCOUNT_ENDPOINTS", "DEFAULT_ENDPOINT_LIMITS", "PollerSettings", "RateLimit"]

ACCOUNT_ENDPOINTS = frozenset({"userinfo.do", "wallet_info.do"})
_LIMIT_RE = re.compile(r"(?P<n>[0-9]+)\s*/\s*(?P<s>[0-9]+(?:\.[0-9]+)?)\s*s?")


def _positive(value: object) -> bool:
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
        if not _positive(self.per_seconds):
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
            if not _positive(getattr(self, name)):
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

"""OKX v5 REST records -> the venue-neutral records of :mod:`recorder.records` (docs/venues/okx_v5.md).

Sans-I/O: the signed REST poller (:mod:`recorder.poller.okx_v5`) fetches with
:mod:`.rest` and maps here, per the table of ``docs/venues/okx_v5.md``:

* ``Balance`` -> neutral ``Balance`` with ``account = "trading"`` (v5 unified account),
  ``free = availBal``, ``frozen = frozenBal`` (``None`` sent as ``""`` becomes 0);
* ``Order`` -> neutral ``Order``: ``order_id`` as int (19-digit numeric string),
  ``state`` -> :class:`~recorder.records.OrderStatus` (``live`` OPEN, ``partially_filled``
  PARTIALLY_FILLED, ``filled`` FILLED, ``canceled``/``mmp_canceled`` CANCELLED), raw state
  kept in ``raw_status``, ``ordType`` in ``raw_type``; ``type`` from ``side`` + market or not;
  ``ts_event`` = ``cTime``, ``ts_updated`` = ``uTime`` (all UTC);
* ``Fill`` -> neutral ``Fill``: ``liquidity`` ``maker`` (``execType`` ``M``) / ``taker`` (``T``);
* ``Instrument`` -> neutral ``Instrument`` (``symbol`` = ``instId``, e.g. ``BTC-USDT``).

:class:`V5AccountSource` is what the generic REST poller (:mod:`recorder.poller.rest`) drives:
the endpoints with their §7.1 limits, request building and signing (§6), the server-time
path, the jobs (balances; orders pending/history/archive + fills; instruments) that
``await fetch(path, params, parse)`` — the poller's injected I/O — and return neutral records.
Credentials (:func:`load_v5_credentials`): ``OKX_API_KEY`` / ``OKX_API_SECRET`` /
``OKX_API_PASSPHRASE`` in the environment, or an owner-only TOML file.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import stat
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from recorder import records as N
from recorder.backoff import BackoffPolicy
from recorder.errors import ConfigError, ExchangeError

from . import neutral, rest
from .errors import likely_cause
from .records import VENUE, Balance, Fill, Instrument, Order, OrderState, Side
from .signing import V5Credentials
from .tracking import InstrumentTracker

__all__ = [
    "ACCOUNT",
    "ENV_API_KEY",
    "ENV_CREDENTIALS_FILE",
    "ENV_PASSPHRASE",
    "ENV_SECRET",
    "STATUS_OF",
    "V5AccountSource",
    "V5PollSettings",
    "instrument_of",
    "load_v5_credentials",
    "neutral_balance",
    "neutral_fill",
    "neutral_instrument",
    "neutral_order",
    "neutral_status",
]

ACCOUNT = "trading"
"""``Balance.account`` of every v5 balance (the unified trading account, ``/api/v5/account/balance``)."""

STATUS_OF: dict[OrderState, N.OrderStatus] = {
    OrderState.LIVE: N.OrderStatus.OPEN,
    OrderState.PARTIALLY_FILLED: N.OrderStatus.PARTIALLY_FILLED,
    OrderState.FILLED: N.OrderStatus.FILLED,
    OrderState.CANCELED: N.OrderStatus.CANCELLED,
    OrderState.MMP_CANCELED: N.OrderStatus.CANCELLED,
}
"""v5 ``state`` (§5.2) -> neutral status."""

_MARKET_TYPES = frozenset({"market", "optimal_limit_ioc"})
_ZERO = Decimal(0)


def neutral_status(state: OrderState) -> N.OrderStatus:
    """The neutral status of a v5 order ``state``."""
    return STATUS_OF[state]


def neutral_balance(b: Balance) -> N.Balance:
    """One currency of the trading account: ``free`` = available, ``frozen`` = frozen (0 when ``""``)."""
    return N.Balance(
        venue=VENUE,
        ts_recv=b.ts_recv,
        account=ACCOUNT,
        currency=b.currency,
        free=b.available if b.available is not None else _ZERO,
        frozen=b.frozen if b.frozen is not None else _ZERO,
    )


def neutral_order(o: Order) -> N.Order:
    """A v5 order as the neutral ``Order`` (see the module docstring for the mapping)."""
    market = o.order_type in _MARKET_TYPES
    if o.side is Side.BUY:
        type_ = N.OrderType.BUY_MARKET if market else N.OrderType.BUY
    else:
        type_ = N.OrderType.SELL_MARKET if market else N.OrderType.SELL
    return N.Order(
        venue=VENUE,
        order_id=int(o.order_id),
        symbol=o.instrument,
        type=type_,
        price=o.price,
        amount=o.size,
        deal_amount=o.filled_size if o.filled_size is not None else _ZERO,
        avg_price=o.avg_price,
        status=neutral_status(o.state),
        ts_event=o.ts_created,
        ts_recv=o.ts_recv,
        raw_status=o.state.value,
        raw_type=o.order_type,
        client_order_id=o.client_order_id,
        ts_updated=o.ts_updated,
    )


_LIQUIDITY = {"M": "maker", "T": "taker"}


def neutral_fill(f: Fill) -> N.Fill:
    """A v5 fill as the neutral ``Fill``; ``bill_id`` is required (it is the fill's unique id)."""
    return N.Fill(
        venue=VENUE,
        symbol=f.instrument,
        bill_id=f.bill_id or f"trade:{f.trade_id}",
        trade_id=f.trade_id,
        order_id=int(f.order_id),
        side=N.Side.BUY if f.side is Side.BUY else N.Side.SELL,
        price=f.price,
        amount=f.size,
        fee=f.fee,
        fee_currency=f.fee_ccy,
        liquidity=_LIQUIDITY.get(f.liquidity or "", f.liquidity),
        ts_event=f.ts_event,
        ts_recv=f.ts_recv,
    )


neutral_instrument = neutral.instrument
"""A v5 instrument as the neutral ``Instrument`` (state kept raw): the mapping of :mod:`.neutral`."""


def instrument_of(i: N.Instrument) -> Instrument:
    """The v5 ``Instrument`` a stored neutral one was made from (inverse of :data:`neutral_instrument`)."""
    return Instrument(instrument=i.symbol, inst_type=i.inst_type, base=i.base, quote=i.quote,
                      tick_size=i.tick_size, lot_size=i.lot_size, min_size=i.min_size, state=i.state,
                      list_time=i.ts_listed, exp_time=i.ts_expiry, ts_recv=i.ts_recv, venue=i.venue)


# --- the REST account poll source (sans-I/O: the generic poller fetches) -----------------------

ENV_API_KEY = "OKX_API_KEY"
ENV_SECRET = "OKX_API_SECRET"
ENV_PASSPHRASE = "OKX_API_PASSPHRASE"
ENV_CREDENTIALS_FILE = "OKX_CREDENTIALS_FILE"
_FILE_KEYS = frozenset({"api_key", "secret_key", "passphrase"})

PENDING = "/api/v5/trade/orders-pending"
HISTORY = "/api/v5/trade/orders-history"
ARCHIVE = "/api/v5/trade/orders-history-archive"
FILLS = "/api/v5/trade/fills"
FILLS_HISTORY = "/api/v5/trade/fills-history"
FILLS_WINDOW = timedelta(days=3)
"""What ``/trade/fills`` serves (``fills-history``: 3 months)."""
RESUME_MARGIN = timedelta(hours=1)
"""A restart reads ``/trade/fills`` instead of ``fills-history`` only when the newest stored fill is
younger than :data:`FILLS_WINDOW` minus this (clock skew, fills published late)."""
BALANCE = "/api/v5/account/balance"
INSTRUMENTS = "/api/v5/public/instruments"
TIME = "/api/v5/public/time"


@dataclass(frozen=True, slots=True)
class V5PollSettings:
    """The ``[venues.okx_v5.poller]`` table. Intervals in seconds."""

    enabled: bool = False
    rest_url: str = rest.DEFAULT_BASE_URL
    balance_interval: float = 10.0
    order_interval: float = 5.0
    instruments_interval: float = 600.0
    time_sync_interval: float = 300.0
    archive_at_start: bool = True  # walk orders-history-archive and fills-history at the first round
    simulated_trading: bool = False  # demo-trading keys (x-simulated-trading: 1)
    request_timeout: float = 10.0
    ban_seconds: float = 60.0
    credentials_file: Path | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        for name in ("balance_interval", "order_interval", "instruments_interval", "time_sync_interval",
                     "request_timeout", "ban_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ConfigError(f"config: venues.okx_v5.poller.{name} must be > 0, got {v!r}")
        for name in ("enabled", "archive_at_start", "simulated_trading"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config: venues.okx_v5.poller.{name} must be true or false")

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> V5PollSettings:
        """Parse the ``[venues.okx_v5.poller]`` table; unknown keys raise :class:`ConfigError`."""
        names = {f for f in cls.__dataclass_fields__ if f != "backoff"}
        unknown = sorted(set(table) - names)
        if unknown:
            raise ConfigError(f"config: venues.okx_v5.poller: unknown key(s) {', '.join(unknown)}")
        values = dict(table)
        if values.get("credentials_file") is not None:
            values["credentials_file"] = Path(str(values["credentials_file"])).expanduser()
        return cls(**values)


def _read_credentials_file(path: str | os.PathLike[str]) -> V5Credentials:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ConfigError(f"OKX credentials file {p} does not exist or cannot be read") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"OKX credentials file {p} is not a regular file")
    if os.name == "posix":
        if st.st_mode & 0o077:
            raise ConfigError(f"OKX credentials file {p} is accessible by group or others; "
                              f"run `chmod 600 {p}`")
        if st.st_uid != os.getuid():
            raise ConfigError(f"OKX credentials file {p} is not owned by the current user")
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise ConfigError(f"OKX credentials file {p} is not valid UTF-8 TOML") from None
    if set(data) != _FILE_KEYS or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"OKX credentials file {p}: expected exactly the strings "
                          "api_key, secret_key, passphrase")
    return V5Credentials(data["api_key"], data["secret_key"], data["passphrase"])


def load_v5_credentials(
    config_file: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> V5Credentials | None:
    """OKX v5 credentials from ``OKX_API_KEY``/``OKX_API_SECRET``/``OKX_API_PASSPHRASE`` (all three or
    none), else the owner-only TOML file in ``OKX_CREDENTIALS_FILE`` or ``config_file`` (keys
    ``api_key``, ``secret_key``, ``passphrase``). None when nothing is configured; raises
    :class:`ConfigError` (naming no value) when half-configured or the file is bad."""
    env = os.environ if environ is None else environ
    names = (ENV_API_KEY, ENV_SECRET, ENV_PASSPHRASE)
    values = [env.get(n, "") for n in names]
    if any(values):
        if not all(values):
            missing = ", ".join(n for n, v in zip(names, values, strict=True) if not v)
            raise ConfigError(f"OKX v5 credentials: {missing} not set "
                              f"(set all of {', '.join(names)}, or none)")
        return V5Credentials(*values)
    file = env.get(ENV_CREDENTIALS_FILE, "") or (str(config_file) if config_file else "")
    return _read_credentials_file(file) if file else None


T = TypeVar("T")
Params = Mapping[str, str | int] | None
Fetch = Callable[[str, Params, Callable[[int, bytes, datetime], T]], Awaitable[T | None]]
"""What the generic poller hands each job: ``fetch(path, params, parse)`` -> parsed answer, or
None when the step was skipped (logged); it raises to end polling on an auth failure."""

Job = tuple[str, float, Callable[[Any], Awaitable[list[Any]]]]


class V5AccountSource:
    """What the generic REST poller needs from OKX v5 (§4.5, §4.6, §5, §6, §7.1, §7.3).

    * :attr:`limits`: per-endpoint ``(requests, seconds)`` (``rest.ENDPOINTS``);
    * :meth:`prepare`: the signed request of an allowlisted GET at ``epoch_ms`` (local + offset);
    * :attr:`time_path` / :meth:`parse_server_ms`: the server clock; :attr:`clock_skew_codes`: 50102;
    * :meth:`jobs`: ``(name, interval, run(fetch))``; each ``run`` returns neutral records
      (Balance, Order, Fill, Instrument); Instruments only when changed (InstrumentTracker;
      a vanished instrument is written once with ``state = "gone"``);
    * :meth:`auth_message`: the one sentence for an auth failure (names the setting, never a value).
    """

    venue = VENUE
    time_path = TIME
    clock_skew_codes = frozenset({50102})

    def __init__(self, settings: V5PollSettings, credentials: V5Credentials) -> None:
        self.settings = settings
        self._credentials = credentials
        self.limits = {p: (e.limit, float(e.window_s)) for p, e in rest.ENDPOINTS.items()}
        self.tracker = InstrumentTracker()
        self.order_rounds = 0
        self.fills_stored_until: datetime | None = None  # see resume()

    def __repr__(self) -> str:
        return f"V5AccountSource({self.settings.rest_url}, {self._credentials!r})"

    @property
    def rest_url(self) -> str:
        return self.settings.rest_url

    def is_private(self, path: str) -> bool:
        endpoint = rest.ENDPOINTS.get(path)
        return endpoint is not None and endpoint.private

    def prepare(self, path: str, params: Params, epoch_ms: int) -> rest.PreparedRequest:
        """The GET to send (path+query exactly as signed, headers). ConfigError if not allowlisted."""
        return rest.build_request(path, params, credentials=self._credentials, epoch_ms=epoch_ms,
                                  simulated_trading=self.settings.simulated_trading)

    @staticmethod
    def parse_server_ms(status: int, body: bytes) -> int:
        return rest.parse_server_time_ms(status, body)

    def auth_message(self, exc: ExchangeError) -> str:
        cause = likely_cause(exc.code) or "the API credentials were rejected"
        return (f"OKX v5 rejected the API credentials ({self._credentials!r}): error {exc.code} "
                f"\u201c{exc.message_en}\u201d: likely cause: {cause}. OKX v5 polling stopped; fix the "
                "credentials and restart (everything else keeps recording).")

    def resume(self, *, instruments: Iterable[N.Instrument] = (), newest_fill: datetime | None = None,
               now: datetime) -> None:
        """Start from what storage holds (a restart; docs/poller.md "Restarts").

        ``instruments``: the last stored state of each (neutral; ``state = "gone"`` ones are not
        listed): the first refresh then emits only real changes, including instruments that
        vanished while the poller was down. ``newest_fill``: the newest stored fill's
        ``ts_event`` (UTC); when it is younger than 3 days minus :data:`RESUME_MARGIN` at ``now``,
        the first round reads ``/trade/fills`` (3 days, newest first) instead of walking the
        3-month ``fills-history`` again: every fill after the newest stored one is within those 3
        days. Fills are emitted oldest first in one batch, so a stored fill implies the older
        ones of its walk were stored (the poller still drops any ``bill_id`` already stored).
        """
        known = [i for i in instruments if i.state != "gone"]
        self.tracker.update([instrument_of(i) for i in known], complete=False)
        if newest_fill is not None and newest_fill > now - FILLS_WINDOW + RESUME_MARGIN:
            self.fills_stored_until = newest_fill

    def jobs(self) -> list[Job]:
        s = self.settings
        return [("instruments", s.instruments_interval, self.refresh_instruments),
                ("balances", s.balance_interval, self.poll_balances),
                ("orders", s.order_interval, self.sync_orders)]

    # --- the jobs -----------------------------------------------------------------------------

    async def _pages(self, fetch: Fetch[list[T]], path: str, params: Mapping[str, str | int],
                     parse: Callable[[int, bytes, datetime], list[T]]) -> list[T] | None:
        """Every page of ``path`` walking back (``after`` = oldest cursor of a full page, §5.4)."""
        out: list[T] = []
        query: dict[str, str | int] | None = {**params, "limit": str(rest.MAX_PAGE_LIMIT)}
        while query is not None:
            page = await fetch(path, query, parse)
            if page is None:
                return None
            out.extend(page)
            query = rest.next_older_params(path, query, page)  # type: ignore[arg-type]
        return out

    async def poll_balances(self, fetch: Fetch[Any]) -> list[Any]:
        """``/account/balance`` -> one neutral Balance per currency (account ``trading``)."""
        balances = await fetch(BALANCE, None, rest.parse_balance)
        return [neutral_balance(b) for b in balances or ()]

    async def sync_orders(self, fetch: Fetch[Any]) -> list[Any]:
        """Open orders, the 7-day history (and the 3-month archive at the first round), then fills
        (``fills-history`` at the first round unless :meth:`resume` found recent stored fills,
        ``fills`` after): neutral Orders and Fills."""
        first = self.order_rounds == 0 and self.settings.archive_at_start
        out: list[Any] = []
        for path in (PENDING, HISTORY, *((ARCHIVE,) if first else ())):
            orders = await self._pages(fetch, path, {"instType": "SPOT"}, rest.parse_orders)
            out.extend(neutral_order(o) for o in orders or ())
        history = first and self.fills_stored_until is None
        fills = await self._pages(fetch, FILLS_HISTORY if history else FILLS, {"instType": "SPOT"},
                                  rest.parse_fills)
        out.extend(neutral_fill(f) for f in reversed(fills or ()))
        self.order_rounds += 1
        return out

    async def refresh_instruments(self, fetch: Fetch[Any]) -> list[Any]:
        """``/public/instruments?instType=SPOT`` (a full list) -> Instruments that changed."""
        items = await fetch(INSTRUMENTS, {"instType": "SPOT"}, rest.parse_instruments)
        if items is None:
            return []
        ts = items[0].ts_recv if items else None
        out: list[N.Instrument] = []
        for change in self.tracker.update(items, complete=True):
            if change.new is not None:
                out.append(neutral_instrument(change.new))
            elif change.old is not None:
                gone = neutral_instrument(change.old)
                out.append(dataclasses.replace(gone, state="gone", ts_recv=ts or gone.ts_recv))
        return out


def _register_subtable() -> None:
    """Let the venue's own settings parser (``settings.SUBTABLES``, branch v5collector) accept
    ``[venues.okx_v5.poller]``; a no-op where that module does not exist yet."""
    try:
        settings = importlib.import_module(f"{__package__}.settings")
    except ModuleNotFoundError:
        return
    subtables = getattr(settings, "SUBTABLES", None)
    if isinstance(subtables, dict):
        subtables.setdefault("poller", V5PollSettings.from_table)


_register_subtable()

"""The OKX v5 poller vs the v5 simulator with real signing: what it emits equals the simulator's truth."""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import recorder.poller
from recorder.backoff import BackoffPolicy
from recorder.errors import ConfigError
from recorder.poller.loop import PollerOutcome
from recorder.poller.ratelimit import RateLimit, RateLimiter
from recorder.poller.rest import RestPoller
from recorder.records import (
    Balance,
    FeedEvent,
    FeedEventKind,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderStatusChange,
)
from recorder.simulator.okx_v5 import Simulator, V5Account, V5Settings
from recorder.venues.okx_v5 import rest
from recorder.venues.okx_v5.poll import V5AccountSource, V5PollSettings, load_v5_credentials
from recorder.venues.okx_v5.signing import V5Credentials

# A fixed key: the simulator seeds the account history from it, so the history (and its page
# counts) is the same every run; a random key gave 192-232 orders, now and then not 2 pages.
KEY = "v5poll-6f1d2c0b9e8a47d3b5c4a1e0f9d8c7b6"
SECRET = "V5-POLLER-SECRET-" + uuid.uuid4().hex
PASSPHRASE = "V5-PASSPHRASE-" + uuid.uuid4().hex[:10]
CREDS = V5Credentials(KEY, SECRET, PASSPHRASE)
ACCOUNT = V5Account(KEY, SECRET, PASSPHRASE)
FAST = BackoffPolicy(initial=0.02, factor=1.5, cap=0.1, jitter=0.5)
DAY_MS = 86_400_000
STATUS = {"live": OrderStatus.OPEN, "partially_filled": OrderStatus.PARTIALLY_FILLED,
          "filled": OrderStatus.FILLED, "canceled": OrderStatus.CANCELLED}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(V5Settings(seed=7, updates_per_second=0.0, accounts=(ACCOUNT,))) as s:
        yield s


def make_poller(sim: Simulator, out: list[Any], creds: V5Credentials = CREDS, **kw: Any) -> RestPoller:
    settings = V5PollSettings(rest_url=sim.rest_url, backoff=FAST, **kw)
    limiter = RateLimiter({p: RateLimit(e.limit, float(e.window_s)) for p, e in rest.ENDPOINTS.items()},
                          RateLimit(10_000, 2.0))
    return RestPoller(V5AccountSource(settings, creds), out.extend, policy=FAST, limiter=limiter)


def of(out: list[Any], t: type) -> list[Any]:
    return [r for r in out if type(r) is t]


def account(sim: Simulator) -> Any:
    acct = sim.accounts.get(KEY)
    assert acct is not None
    return acct


def expected_orders(sim: Simulator) -> dict[int, tuple[str, str, OrderStatus, Decimal, Decimal | None]]:
    acct = account(sim)
    visible = acct.open_orders() + acct.finished_orders(sim.now_ms(), 90 * DAY_MS)
    return {o.ord_id: (o.inst_id, o.state, STATUS[o.state], o.acc_fill_sz, o.px) for o in visible}


def got_orders(out: list[Any]) -> dict[int, tuple[str, str, OrderStatus, Decimal, Decimal | None]]:
    return {o.order_id: (o.symbol, o.raw_status, o.status, o.deal_amount, o.price) for o in of(out, Order)}


def expected_fills(sim: Simulator) -> dict[str, tuple[int, str, Decimal, Decimal, Decimal]]:
    acct = account(sim)
    return {str(f.bill_id): (f.ord_id, f.inst_id, f.px, f.sz, f.fee)
            for f in acct.recent_fills(sim.now_ms(), 90 * DAY_MS)}


def got_fills(out: list[Any]) -> dict[str, tuple[int, str, Decimal, Decimal, Decimal | None]]:
    return {f.bill_id: (f.order_id, f.symbol, f.price, f.amount, f.fee) for f in of(out, Fill)}


async def test_first_round_equals_the_simulator_truth(sim: Simulator) -> None:
    out: list[Any] = []
    poller = make_poller(sim, out)
    assert await poller.run_once() is PollerOutcome.RUNNING
    await poller.aclose()
    # balances: one per currency, account "trading", free = cash - frozen
    acct = account(sim)
    frozen = acct.frozen()
    want = {c: (v - frozen.get(c, Decimal(0)), frozen.get(c, Decimal(0))) for c, v in acct.cash.items() if v}
    assert {b.currency: (b.free, b.frozen) for b in of(out, Balance)} == want
    assert {(b.venue, b.account) for b in of(out, Balance)} == {("okx_v5", "trading")}
    # orders: open + 7-day history + archive, exactly once each, more than one page
    truth = expected_orders(sim)
    assert len(acct.finished_orders(sim.now_ms(), 7 * DAY_MS)) > rest.MAX_PAGE_LIMIT  # history pages
    assert got_orders(out) == truth
    assert len(of(out, Order)) == len(truth)
    assert {c.order_id for c in of(out, OrderStatusChange)} == set(truth)
    assert all(c.previous_status is None for c in of(out, OrderStatusChange))
    # fills: every fill of 3 months, once
    assert got_fills(out) == expected_fills(sim)
    assert len(of(out, Fill)) == len(expected_fills(sim)) > 100
    # instruments: the full list at start
    assert {i.symbol for i in of(out, Instrument)} == set(sim.settings.instruments)
    assert not of(out, FeedEvent)


async def test_later_rounds_emit_only_changes(sim: Simulator) -> None:
    out: list[Any] = []
    poller = make_poller(sim, out)
    await poller.run_once()
    out.clear()
    await poller.jobs()[2].run()
    await poller.jobs()[0].run()
    assert out == []  # nothing changed: nothing written
    inst = sim.settings.instruments[0]
    price = sim.feeds[inst].instrument()["tickSz"]
    placed = sim.place_order(inst, "buy", Decimal(price) * 1000, "0.01")
    await poller.jobs()[2].run()
    changes = of(out, OrderStatusChange)
    assert [(c.order_id, c.status, c.previous_status) for c in changes] == [
        (int(placed["ordId"]), OrderStatus.OPEN, None)]
    out.clear()
    sim.fill_order(placed["ordId"], "0.01")
    await poller.jobs()[2].run()
    changes = of(out, OrderStatusChange)
    assert [(c.status, c.previous_status) for c in changes] == [(OrderStatus.FILLED, OrderStatus.OPEN)]
    assert got_orders(out) == {k: v for k, v in expected_orders(sim).items() if k == int(placed["ordId"])}
    assert [f.order_id for f in of(out, Fill)] == [int(placed["ordId"])]
    await poller.aclose()


async def test_a_restart_resumes_from_the_known_order_states(sim: Simulator) -> None:
    out: list[Any] = []
    first = make_poller(sim, out)
    await first.run_once()
    await first.aclose()
    inst = sim.settings.instruments[0]
    placed = sim.place_order(inst, "sell", "1000000", "0.01")
    again: list[Any] = []
    settings = V5PollSettings(rest_url=sim.rest_url, backoff=FAST)
    second = RestPoller(V5AccountSource(settings, CREDS), again.extend, policy=FAST, known_orders=first.known)
    await second.run_once()
    await second.aclose()
    assert [(o.order_id, o.status) for o in of(again, Order)] == [(int(placed["ordId"]), OrderStatus.OPEN)]
    assert [c.order_id for c in of(again, OrderStatusChange)] == [int(placed["ordId"])]


async def test_instrument_state_change_is_recorded_once(sim: Simulator) -> None:
    out: list[Any] = []
    poller = make_poller(sim, out)
    await poller.jobs()[0].run()
    out.clear()
    inst = sim.settings.instruments[1]
    sim.set_instrument_state(inst, "suspend")
    await poller.jobs()[0].run()
    await poller.jobs()[0].run()
    assert [(i.symbol, i.state) for i in out] == [(inst, "suspend")]
    await poller.aclose()


@pytest.mark.parametrize("skew_ms", [120_000, -120_000])
async def test_server_clock_skew_never_gives_50102(sim: Simulator, skew_ms: int) -> None:
    sim.set_clock_skew(skew_ms)  # beyond the 30 s window
    out: list[Any] = []
    poller = make_poller(sim, out)
    assert await poller.run_once() is PollerOutcome.RUNNING
    assert abs(poller.offset_ms - skew_ms) < 2_000
    assert got_orders(out) == expected_orders(sim)
    assert not [e for e in of(out, FeedEvent) if e.kind is FeedEventKind.AUTH_FAILURE]
    # the skew changes while running: one resync, still no auth failure
    sim.set_clock_skew(-skew_ms)
    out.clear()
    await poller.jobs()[1].run()
    assert of(out, Balance) and poller.loop.outcome is PollerOutcome.RUNNING
    await poller.aclose()


async def test_the_per_endpoint_limiter_keeps_within_the_server_windows() -> None:
    tight = {"trade/orders-history": 1, "trade/orders-history-archive": 1, "trade/fills-history": 1,
             "trade/orders-pending": 1, "account/balance": 1, "public/instruments": 1, "public/time": 1}
    settings = V5Settings(seed=7, updates_per_second=0.0, accounts=(ACCOUNT,), rate_window=0.25,
                          rate_limits=tight)
    async with Simulator(settings) as sim:
        out: list[Any] = []
        limiter = RateLimiter({f"/api/v5/{p}": RateLimit(n, 0.25) for p, n in tight.items()},
                              RateLimit(10_000, 2.0), slack=0.05)
        poller = RestPoller(V5AccountSource(V5PollSettings(rest_url=sim.rest_url, backoff=FAST), CREDS),
                            out.extend, policy=FAST, limiter=limiter)
        assert await poller.run_once() is PollerOutcome.RUNNING
        await poller.aclose()
        assert not of(out, FeedEvent)  # not one 50011: every request waited for its own window
        assert got_orders(out) == expected_orders(sim)
        assert got_fills(out) == expected_fills(sim)


@pytest.mark.parametrize("http_status", [429, 200])
async def test_rate_limit_storm_is_backed_off_and_nothing_is_lost(sim: Simulator, http_status: int) -> None:
    sim.rate_limit_storm(requests=8, http_status=http_status)
    out: list[Any] = []
    poller = make_poller(sim, out)
    assert await poller.run_once() is PollerOutcome.RUNNING
    limited = [e for e in of(out, FeedEvent) if e.kind is FeedEventKind.RATE_LIMITED]
    assert len(limited) == 8 and all(e.venue == "okx_v5" for e in limited)
    assert got_orders(out) == expected_orders(sim)
    assert got_fills(out) == expected_fills(sim)
    await poller.aclose()


@pytest.mark.parametrize(
    ("creds", "code", "cause"),
    [
        (V5Credentials("no-such-key-" + uuid.uuid4().hex, SECRET, PASSPHRASE), 50111, "API key is wrong"),
        (V5Credentials(KEY, "WRONG-SECRET-" + uuid.uuid4().hex, PASSPHRASE), 50113, "secret key is wrong"),
        (V5Credentials(KEY, SECRET, "WRONG-PASS-" + uuid.uuid4().hex), 50105, "passphrase is wrong"),
    ],
)
async def test_auth_failure_stops_with_one_message(
    sim: Simulator, creds: V5Credentials, code: int, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out: list[Any] = []
    poller = make_poller(sim, out, creds, balance_interval=0.05, order_interval=0.05)
    outcome = await poller.run()
    assert outcome is PollerOutcome.AUTH_FAILED
    events = [e for e in of(out, FeedEvent) if e.kind is FeedEventKind.AUTH_FAILURE]
    assert len(events) == 1 and f"error {code}" in events[0].detail and cause in events[0].detail
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and cause in errors[0].getMessage()
    # the public instruments refresh ran first and is kept
    assert {i.symbol for i in of(out, Instrument)} == set(sim.settings.instruments)
    assert not of(out, Balance) and not of(out, Order)
    for secret in (creds.secret, creds.passphrase):
        assert secret not in caplog.text and secret not in repr(out)


async def test_secrets_never_in_logs_reprs_exceptions_or_records(sim: Simulator,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out: list[Any] = []
    poller = make_poller(sim, out)
    sim.rate_limit_storm(requests=2)
    await poller.run_once()
    texts = [caplog.text, repr(out), repr(poller), repr(CREDS), str(CREDS), repr(poller.source)]
    try:
        load_v5_credentials(environ={"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET})
    except ConfigError as exc:
        texts.append(str(exc))
    for text in texts:
        for secret in (SECRET, PASSPHRASE, KEY):
            assert secret not in text
    await poller.aclose()


def test_credentials_from_the_environment_or_an_owner_only_file(tmp_path: Path) -> None:
    env = {"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET, "OKX_API_PASSPHRASE": PASSPHRASE}
    assert load_v5_credentials(environ=env) == CREDS
    assert load_v5_credentials(environ={}) is None
    with pytest.raises(ConfigError, match="OKX_API_PASSPHRASE not set"):
        load_v5_credentials(environ={k: v for k, v in env.items() if k != "OKX_API_PASSPHRASE"})
    f = tmp_path / "okx.toml"
    f.write_text(f'api_key = "{KEY}"\nsecret_key = "{SECRET}"\npassphrase = "{PASSPHRASE}"\n')
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_v5_credentials(f, environ={})
    assert SECRET not in str(info.value)
    f.chmod(0o600)
    assert load_v5_credentials(f, environ={}) == CREDS
    assert load_v5_credentials(environ={"OKX_CREDENTIALS_FILE": str(f)}) == CREDS


def test_settings_from_the_venues_okx_v5_poller_table() -> None:
    s = V5PollSettings.from_table({"enabled": True, "balance_interval": 3, "instruments_interval": 60,
                                     "credentials_file": "~/okx.toml"})
    assert s.enabled and s.balance_interval == 3 and s.instruments_interval == 60
    assert s.credentials_file == Path("~/okx.toml").expanduser()
    with pytest.raises(ConfigError, match="unknown"):
        V5PollSettings.from_table({"symbols": []})
    with pytest.raises(ConfigError, match="order_interval"):
        V5PollSettings.from_table({"order_interval": 0})


def test_v5_allowlist_is_read_only_and_no_trading_path_exists() -> None:
    forbidden = re.compile(r"cancel|amend|batch|withdraw|transfer|close-position|place|set-|order-algo")
    assert all(not forbidden.search(p) for p in rest.ENDPOINTS)
    assert all(p.startswith("/api/v5/") for p in rest.ENDPOINTS)
    with pytest.raises(ConfigError):
        rest.build_request("/api/v5/trade/cancel-order", {}, credentials=CREDS, epoch_ms=0)
    sources = [Path(recorder.poller.__file__).parent / n for n in ("rest.py", "loop.py")]
    sources.append(Path(rest.__file__).parent / "poll.py")
    post = re.compile(r"\.post\(|\.put\(|\.delete\(|\"POST\"|cancel-order|withdrawal")
    for path in sources:
        assert not post.search(path.read_text("utf-8")), path


async def test_stored_fills_are_exact_and_no_secret_is_stored(sim: Simulator, tmp_path: Path) -> None:
    """The poller's records through the real StorageWriter into SQLite + Parquet: the stored
    fills equal the simulator's truth, and no file holds the key, secret or passphrase."""
    import sqlite3

    from recorder.storage import migrate
    from recorder.storage.consume import open_stores
    from recorder.storage.writer import StorageWriter

    out: list[Any] = []
    poller = make_poller(sim, out)
    await poller.run_once()
    await poller.aclose()
    db = tmp_path / "rec.sqlite"
    migrate.upgrade(f"sqlite:///{db}")
    stores = open_stores(f"sqlite:///{db}", str(tmp_path / "parquet"))
    writer = StorageWriter(stores["sql"], stores["parquet"])
    writer.write(out)
    writer.close()
    truth = expected_fills(sim)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT bill_id, order_id, symbol, price, amount, fee FROM fills WHERE venue = 'okx_v5'"
        )
        stored = {
            bill: (oid, sym, Decimal(px), Decimal(sz), None if fee is None else Decimal(fee))
            for bill, oid, sym, px, sz, fee in rows
        }
    assert stored == truth
    for f in [db, *tmp_path.rglob("*.parquet")]:
        data = f.read_bytes()
        for secret in (SECRET, PASSPHRASE, KEY):
            assert secret.encode() not in data, f


async def test_a_network_error_names_the_path_once(caplog: pytest.LogCaptureFixture) -> None:
    """The retry warning says the endpoint once: ``okx_v5 <path>: network error (ConnectError)``, not
    ``okx_v5 <path>: <path>: network error`` (the transport error's own text starts with the path)."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, content=b'{"code":"0","data":[]}')

    settings = V5PollSettings(rest_url="http://exchange.test", backoff=FAST)
    poller = RestPoller(V5AccountSource(settings, CREDS), [].extend, policy=FAST,
                        transport=httpx.MockTransport(handle), rng=random.Random(1))
    try:
        with caplog.at_level(logging.WARNING, "recorder.poller"):
            body = await poller.fetch("/api/v5/public/instruments", {"instType": "SPOT"},
                                      lambda status, body, ts: body)
    finally:
        await poller.aclose()
    assert body == b'{"code":"0","data":[]}'
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert re.fullmatch(r"okx_v5 /api/v5/public/instruments: network error \(ConnectError\); "
                        r"retrying in \d+\.\d\d s", warnings[0]), warnings

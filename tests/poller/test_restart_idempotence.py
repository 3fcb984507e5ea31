"""A poller started, stopped and started again against the same account: every reader a user has
(plain SQL, ``analysis.load`` on SQL and on Parquet, ``analysis.lazy.scan``, the DuckDB views)
shows each order, status change, fill and instrument state exactly once, equal to the
simulator's truth; a restart re-emits nothing that is already stored (docs/poller.md "Restarts").

Each start goes through the project's own wiring (``recorder.app.okx_v5_poller`` / the v1
``Poller`` with ``state_url``) into the normal storage writer (``recorder.app.open_storage``):
a real SQLite file and Parquet datasets under ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analysis import duck, load
from recorder.app import okx_v5_poller, open_storage, prepare_storage
from recorder.config import Config, load_config
from recorder.poller.service import Poller
from recorder.poller.state import OrderState, StoredAccount, load_account_state
from recorder.records import Fill, Instrument, Order, OrderStatus
from recorder.simulator import Simulator as V1Simulator
from recorder.simulator.okx_v5 import SimulatorThread, V5Settings
from recorder.storage.sql import SqlStore
from recorder.venues.okx_v5.poll import (
    FILLS,
    FILLS_HISTORY,
    FILLS_WINDOW,
    INSTRUMENTS,
    RESUME_MARGIN,
    V5AccountSource,
    V5PollSettings,
    instrument_of,
)
from recorder.venues.okx_v5.signing import V5Credentials
from tests.fixtures.storage import v5_records
from tests.poller.conftest import CREDS as V1_CREDS
from tests.poller.conftest import Trader, poller_settings, servable_orders
from tests.poller.test_okx_v5 import ACCOUNT, KEY, PASSPHRASE, SECRET, expected_fills, expected_orders

ENV = {"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET, "OKX_API_PASSPHRASE": PASSPHRASE}
ACCOUNT_DATASETS = ("orders", "order_status_changes", "fills", "instruments")


@pytest.fixture
def v5thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(V5Settings(seed=7, updates_per_second=0.0, accounts=(ACCOUNT,))) as thread:
        yield thread


def _config(tmp_path: Path, v5_rest_url: str = "http://127.0.0.1:1", v1_rest_url: str = "") -> Config:
    path = tmp_path / "poll.toml"
    v1 = f'[exchange]\nrest_url = "{v1_rest_url}"\n' if v1_rest_url else ""
    v5 = "true" if not v1_rest_url else "false"
    path.write_text(f"""{v1}
[storage]
sql_url = "sqlite:///{tmp_path / 'rec.sqlite'}"
parquet_root = "{tmp_path / 'parquet'}"
spill_dir = "{tmp_path / 'spill'}"

[venues.okx_v5.poller]
enabled = {v5}
rest_url = "{v5_rest_url}"
""", "utf-8")
    config = load_config(path)
    prepare_storage(config)
    return config


async def _start_v5(config: Config, rounds: int = 2) -> list[str]:
    """One start of the OKX v5 poller as `poll`/`run` make it: ``rounds`` rounds of every job
    into a fresh storage writer, then stop (flush, close). Returns the paths requested."""
    writer = open_storage(config)
    poller = okx_v5_poller(config, writer.write)
    assert poller is not None
    paths: list[str] = []
    fetch = poller.fetch

    async def recording(path: str, params: Any, parse: Any) -> Any:
        paths.append(path)
        return await fetch(path, params, parse)

    poller.fetch = recording  # type: ignore[method-assign]
    try:
        for _ in range(rounds):
            for job in poller.jobs():
                await job.run()
    finally:
        await poller.aclose()
        writer.flush()
        writer.close()
    return paths


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def _readers(tmp_path: Path, name: str, columns: str, venue: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of ``name`` (``columns``, comma-separated) of one venue in every reader."""
    cols = [c.strip() for c in columns.split(",")]
    sql_url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    root = tmp_path / "parquet"
    loader = getattr(load, f"load_{name}")

    def frame_rows(frame: Any) -> list[tuple[Any, ...]]:
        frame = frame.reset_index()
        return [tuple(r) for r in frame[cols].itertuples(index=False, name=None)]

    out = {
        "sql": _sql(tmp_path / "rec.sqlite", f"SELECT {columns} FROM {name} WHERE venue = '{venue}'"),
        "load(sql)": frame_rows(loader(sql_url, venues=[venue], exact=True)),
        "load(parquet)": frame_rows(loader(root, venues=[venue], exact=True)),
    }
    with duck.connect(root) as con:
        out["duckdb"] = con.execute(f"SELECT {columns} FROM {name} WHERE venue = ?", [venue]).fetchall()
    try:
        from analysis.lazy import scan
    except ImportError:  # pragma: no cover - polars is in the dev extra
        return out
    import polars as pl

    frame = scan(root, name).filter(pl.col("venue") == venue).select(cols).collect()
    out["lazy.scan"] = [tuple(r) for r in frame.iter_rows()]
    return out


def _norm(value: Any) -> Any:
    """One spelling per value across readers: SQLite keeps decimals as text, frames as Decimal."""
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, str):
        try:
            return Decimal(value).normalize()
        except ArithmeticError:
            return value
    if value is None or value != value:  # None, NaN
        return None
    return value


def _each_once(rows: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(_norm(v) for v in row) for row in rows)


def _assert_every_reader(tmp_path: Path, name: str, columns: str, venue: str,
                         truth: set[tuple[Any, ...]]) -> None:
    want = Counter({tuple(_norm(v) for v in row): 1 for row in truth})
    for reader, rows in _readers(tmp_path, name, columns, venue).items():
        got = _each_once(rows)
        dups = {k: n for k, n in got.items() if n > 1}
        assert not dups, f"{name} in {reader}: {len(dups)} row(s) more than once, e.g. {next(iter(dups))}"
        assert got == want, f"{name} in {reader}: {sorted(set(got) ^ set(want), key=repr)[:3]}"


def _stored_parquet_copies(tmp_path: Path, name: str) -> int:
    with duck.connect(tmp_path / "parquet") as con:
        return int(con.execute(f"SELECT count(*) FROM {name}_raw").fetchall()[0][0])


async def test_v5_restarts_store_each_order_change_fill_and_instrument_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v5thread: SimulatorThread
) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    config = _config(tmp_path, v5thread.sim.rest_url)
    sim = v5thread.sim
    inst = sim.settings.instruments[0]

    async def truth() -> tuple[Any, Any]:
        return expected_orders(sim), expected_fills(sim)

    async def place() -> dict[str, Any]:
        return sim.place_order(inst, "sell", "1000000", "0.02")

    async def fill(ord_id: str, size: str) -> dict[str, Any]:
        return sim.fill_order(ord_id, size)

    async def suspend() -> None:
        sim.set_instrument_state(sim.settings.instruments[1], "suspend")

    # start 1: everything is new
    first_paths = await _start_v5(config)
    orders_at_start, _ = v5thread.run(truth())
    changes: set[tuple[int, str, str | None]] = {(k, v[2].value, None) for k, v in orders_at_start.items()}
    stored = [_stored_parquet_copies(tmp_path, name) for name in ACCOUNT_DATASETS]
    # start 2 (nothing changed on the account): nothing new is written, fills-history is not walked again
    again = await _start_v5(config)
    assert [_stored_parquet_copies(tmp_path, name) for name in ACCOUNT_DATASETS] == stored
    assert FILLS_HISTORY in first_paths and FILLS_HISTORY not in again and FILLS in again
    # the account moves between starts: a new order, a partial fill, a full fill, a suspension
    placed = v5thread.run(place())
    oid = int(placed["ordId"])
    await _start_v5(config)
    changes.add((oid, "open", None))
    v5thread.run(fill(placed["ordId"], "0.01"))
    v5thread.run(suspend())
    await _start_v5(config)
    changes.add((oid, "partially_filled", "open"))
    v5thread.run(fill(placed["ordId"], "0.01"))
    await _start_v5(config)
    changes.add((oid, "filled", "partially_filled"))

    orders, fills = v5thread.run(truth())
    assert len(orders) > 200 and len(fills) > 300
    venue = "okx_v5"
    _assert_every_reader(tmp_path, "orders", "order_id, symbol, status, deal_amount", venue,
                         {(k, v[0], v[2].value, v[3]) for k, v in orders.items()})
    _assert_every_reader(tmp_path, "order_status_changes", "order_id, status, previous_status", venue,
                         changes)
    _assert_every_reader(tmp_path, "fills", "bill_id, order_id, symbol, price, amount", venue,
                         {(b, f[0], f[1], f[2], f[3]) for b, f in fills.items()})
    instruments = {(i, "live") for i in sim.settings.instruments}
    instruments.add((sim.settings.instruments[1], "suspend"))
    _assert_every_reader(tmp_path, "instruments", "symbol, state", venue, instruments)
    # and the Parquet files hold no copies a restart made (only the new states were written)
    assert _stored_parquet_copies(tmp_path, "fills") == len(fills)
    assert _stored_parquet_copies(tmp_path, "order_status_changes") == len(changes)
    assert _stored_parquet_copies(tmp_path, "instruments") == len(instruments)
    assert _stored_parquet_copies(tmp_path, "orders") == len(orders) + 2  # the new order: 2 more states


async def test_v1_restarts_store_each_order_and_change_once(
    tmp_path: Path, simulator: V1Simulator, trader: Trader
) -> None:
    """The v1 poller (``Poller(state_url=...)``, as ``run``/``poll`` build it): three starts, the
    account changing in between; orders and status changes once each in every reader."""
    config = _config(tmp_path, v1_rest_url=simulator.rest_url)

    async def start() -> None:
        writer = open_storage(config)
        poller = Poller(poller_settings(), V1_CREDS, writer.write, rest_url=simulator.rest_url,
                        state_url=config.storage.sql_url)
        try:
            await poller.load_known_orders(config.storage.sql_url)
            await poller.poll_balances()
            await poller.sync_orders()
            await poller.sync_orders()
        finally:
            await poller.aclose()
            writer.flush()
            writer.close()

    await start()
    changes: set[tuple[int, str, str | None]] = {
        (k, o.status.value, None) for k, o in servable_orders(simulator).items()}
    await start()
    oid = await trader.place("btc_usdt", "sell", "1000000", "0.01")
    await start()
    changes.add((oid, "open", None))
    await trader.cancel("btc_usdt", oid)
    await start()
    changes.add((oid, "cancelled", "open"))
    orders = servable_orders(simulator)
    assert len(orders) > 10
    _assert_every_reader(tmp_path, "orders", "order_id, symbol, status, deal_amount", "okex_v1",
                         {(k, o.symbol, o.status.value, o.deal_amount) for k, o in orders.items()})
    _assert_every_reader(tmp_path, "order_status_changes", "order_id, status, previous_status", "okex_v1",
                         changes)
    assert _stored_parquet_copies(tmp_path, "order_status_changes") == len(changes)
    assert _stored_parquet_copies(tmp_path, "orders") == len(orders) + 1  # + the placed order's 2nd state


def test_the_stored_account_is_read_for_one_venue(migrated_db_url: str) -> None:
    """``load_account_state`` (SQLite and PostgreSQL): that venue's order states, fill ids, newest
    fill time (aware UTC) and the latest stored row of each instrument, ``gone`` included."""
    records = [r for r in v5_records() if isinstance(r, Order | Fill | Instrument)]
    order = next(r for r in records if isinstance(r, Order))
    fill = next(r for r in records if isinstance(r, Fill))
    inst = next(r for r in records if isinstance(r, Instrument))
    later = inst.ts_recv + timedelta(minutes=5)
    newer_fill = dataclasses.replace(fill, bill_id="b-2", ts_event=fill.ts_event + timedelta(hours=1))
    suspended = dataclasses.replace(inst, ts_recv=later, state="suspend")
    gone = dataclasses.replace(inst, symbol="ETH-USDT", ts_recv=later, state="gone")
    v1_order = dataclasses.replace(order, venue="okex_v1", symbol="btc_usdt", status=OrderStatus.FILLED)
    other = dataclasses.replace(fill, venue="other", bill_id="b-3")
    store = SqlStore(migrated_db_url)
    try:
        store.write_batch([*records, newer_fill, suspended, gone, v1_order, other])
    finally:
        store.close()
    stored = load_account_state(migrated_db_url, "okx_v5")
    assert stored.orders == {order.order_id: OrderState.of(order)}
    assert stored.fill_ids == {fill.bill_id, "b-2"}
    assert stored.newest_fill == newer_fill.ts_event and stored.newest_fill.utcoffset() is not None
    assert stored.instruments == {"BTC-USDT": suspended, "ETH-USDT": gone}
    assert load_account_state(migrated_db_url, "okex_v1").orders == {order.order_id: OrderState.of(v1_order)}
    assert load_account_state(migrated_db_url, "nobody") == StoredAccount()


async def test_resume_seeds_the_instruments_and_picks_the_fills_endpoint() -> None:
    """An instrument stored live that vanished while the poller was stopped is written once as
    ``gone``; an unchanged one not at all; the first round reads ``/trade/fills`` only when the
    newest stored fill is younger than 3 days minus the margin."""
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    stored = [Instrument(venue="okx_v5", symbol=s, ts_recv=now - timedelta(days=1), base=s[:3], quote="USDT",
                         tick_size=Decimal("0.1"), lot_size=Decimal("0.0001"), min_size=Decimal("0.001"),
                         state="live") for s in ("BTC-USDT", "ETH-USDT")]
    listed = [instrument_of(dataclasses.replace(stored[0], ts_recv=now))]

    async def fetch(path: str, params: Any, parse: Any) -> Any:
        paths.append(path)
        return listed if path == INSTRUMENTS else []

    for newest, want in ((None, FILLS_HISTORY), (now - FILLS_WINDOW + RESUME_MARGIN, FILLS_HISTORY),
                         (now - FILLS_WINDOW + RESUME_MARGIN + timedelta(seconds=1), FILLS)):
        paths: list[str] = []
        source = V5AccountSource(V5PollSettings(), V5Credentials("k", "s", "p"))
        source.resume(instruments=stored, newest_fill=newest, now=now)
        changed = await source.refresh_instruments(fetch)
        assert [(i.symbol, i.state, i.ts_recv) for i in changed] == [("ETH-USDT", "gone", now)]
        await source.sync_orders(fetch)
        assert [p for p in paths if "fills" in p] == [want]
        await source.sync_orders(fetch)
        assert [p for p in paths if "fills" in p] == [want, FILLS]

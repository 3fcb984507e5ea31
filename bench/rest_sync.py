"""REST sync: record a large order history from the simulator through the poller, vs the rate-limit bound.

The simulator (a background thread) holds N open orders of one symbol placed just
now (plus its seeded history); one :meth:`Poller.sync_symbol` fetches the open orders
(``order_info.do``) and every ``order_history.do`` page (status 0 then 1, 200 per
page) and hands the records to a :class:`StorageWriter` (SQLite), flushed per page.

The bound: ``order_history.do`` allows 20 requests per 2 s (sliding window, per
endpoint), so P pages cannot take less than ``2 * floor((P - 1) / 20)`` seconds (the
first 20 go at once, request 20k waits k windows). Ratio = bound / measured time; target
>= 0.9. 10001 answers are counted by an httpx transport wrapped around the client's.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.harness import BenchResult
from recorder.config import PollerSettings
from recorder.credentials import Credentials
from recorder.poller.service import Poller
from recorder.records import OrderType
from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, AccountSettings, SimulatorSettings, SimulatorThread
from recorder.storage.migrate import upgrade
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter

SIZES = {"tiny": 1_000, "small": 6_000, "full": 20_000}
SYMBOL = "btc_usdt"
PAGE = 200
LIMIT, WINDOW = 20, 2.0
TARGET = 0.9


class CountingTransport(httpx.AsyncHTTPTransport):
    """Counts requests and ``{"result": false, "error_code": 10001}`` answers."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[str, int] = {}
        self.rate_limited = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        name = request.url.path.rsplit("/", 1)[-1]
        self.requests[name] = self.requests.get(name, 0) + 1
        body = await response.aread()
        if b"10001" in body and b'"result": false' in body.replace(b'"result":false', b'"result": false'):
            self.rate_limited += 1
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)


def run(size: str) -> BenchResult:
    n_orders = SIZES[size]
    result = BenchResult("rest_sync", size)
    balances = {"usdt": Decimal(10**9), "btc": Decimal(1000)}
    account = AccountSettings(DEMO_API_KEY, DEMO_SECRET, balances=balances)
    settings = SimulatorSettings(symbols=(SYMBOL, "eth_usdt"), updates_per_second=1.0, account_activity=False,
                                 truth_memory=0, accounts=(account,))
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp, SimulatorThread(settings) as sim:
        def place_all() -> int:
            account = sim.sim.demo_account
            now = sim.sim._now_ms()
            for i in range(n_orders):
                sim.sim.accounts.place(account, SYMBOL, OrderType.BUY, Decimal("1000") + i % 500,
                                       Decimal("0.01"), now)
            oldest = now - 2 * 86_400_000  # order_history.do answers the last two days only
            return len([o for o in account.orders.values()
                        if o.symbol == SYMBOL and (o.create_ms >= oldest or o.is_open)])

        total_orders = sim.call(place_all)
        url = f"sqlite:///{Path(tmp) / 'rest.sqlite'}"
        upgrade(url)
        writer = StorageWriter(SqlStore(url), None)
        transport = CountingTransport()

        def sink(records: Any) -> None:
            writer.write(records)
            writer.flush()

        poller = Poller(PollerSettings(symbols=(SYMBOL,), page_length=PAGE),
                        Credentials(DEMO_API_KEY, DEMO_SECRET), sink, rest_url=sim.rest_url,
                        transport=transport)

        async def go() -> float:
            t0 = time.perf_counter()
            await poller.sync_symbol(SYMBOL)
            seconds = time.perf_counter() - t0
            await poller.aclose()
            return seconds

        seconds = asyncio.run(go())
        writer.close()
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(sa.table("orders"))).scalar_one()
        engine.dispose()
    pages = transport.requests.get("order_history.do", 0)
    bound = WINDOW * math.floor((pages - 1) / LIMIT) if pages else 0.0
    ratio = bound / seconds if bound else 1.0
    result.add("orders recorded", stored, "orders", f"== {total_orders}", stored == total_orders)
    result.add("time to record", seconds, "s")
    result.add("bound from the documented limits", bound, "s")
    result.add("orders/s", stored / seconds, "orders/s")
    result.add("allowed orders/s (20 pages / 2 s x 200)", LIMIT / WINDOW * PAGE, "orders/s")
    result.add("ratio bound / time", ratio, "", ">= 0.9", ratio >= TARGET)
    result.add("10001 answers", transport.rate_limited, "", "== 0", transport.rate_limited == 0)
    result.notes.append(
        f"{n_orders:,} open orders placed + the seeded history of {SYMBOL}; requests {transport.requests}; "
        f"bound = 2 s x floor(({pages} pages - 1) / 20)")
    return result


if __name__ == "__main__":
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))

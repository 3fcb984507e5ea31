"""Balances at the edge of what the stores hold, through the simulator and the real recorder + poller.

The simulator account holds ``99999999999999999999.999999999999999999`` btc (the largest value of
Parquet's decimal128(38, 18)) and ``123456789012345678901.5`` ltc (21 integer digits: beyond it).
The simulator must send both exactly as configured (it used to round to 28 digits, which made the
btc balance unstorable and, with it, every Parquet flush fail). The recorder stores the btc balance
exactly in both stores, quarantines the ltc one (and the wallet's tenth of the btc balance, 19
fractional digits) with the reason and the exact text, and keeps every other row: Parquet holds
the same balances and feed events as SQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.app import open_storage
from recorder.collector.app import Recorder
from recorder.credentials import Credentials
from recorder.simulator import Simulator, SimulatorSettings
from recorder.simulator.settings import DEMO_API_KEY, DEMO_SECRET, AccountSettings, load_settings
from recorder.storage import migrate
from tests.collector.conftest import sim_config
from tests.collector.helpers import stored, wait_until
from tests.faults.helpers import parquet_rows

pytestmark = pytest.mark.faults

EDGE = "99999999999999999999.999999999999999999"
BEYOND = "123456789012345678901.5"
WALLET_TENTH = "9999999999999999999.9999999999999999999"


def test_simulator_settings_keep_configured_balances_exactly(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        f'updates_per_second = 2.5\n[[accounts]]\napi_key = "k"\nsecret = "s"\n'
        f'balances = {{ btc = {EDGE}, eth = "{BEYOND}" }}\n'
    )
    settings = load_settings(path)
    assert dict(settings.accounts[0].balances) == {"btc": Decimal(EDGE), "eth": Decimal(BEYOND)}
    assert str(settings.accounts[0].balances["btc"]) == EDGE and settings.updates_per_second == 2.5


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    account = AccountSettings(
        api_key=DEMO_API_KEY,
        secret=DEMO_SECRET,
        seed_history=False,
        balances={"btc": Decimal(EDGE), "ltc": Decimal(BEYOND), "usdt": Decimal("25000.5")},
    )
    return dataclasses.replace(simulator_settings, accounts=(account,))


async def test_balances_are_sent_exactly_and_stored_or_quarantined_never_rounded(
    simulator: Simulator, tmp_path: Path
) -> None:
    account = simulator.accounts[DEMO_API_KEY]
    assert (str(account.free["btc"]), str(account.wallet_free["btc"])) == (EDGE, WALLET_TENTH)
    config = sim_config(tmp_path, simulator.ws_url, simulator.rest_url)
    config = dataclasses.replace(
        config, poller=dataclasses.replace(config.poller, balance_interval=0.3, include_wallet=True)
    )
    migrate.upgrade(config.storage.sql_url)
    recorder = Recorder(
        config,
        await asyncio.to_thread(open_storage, config),
        credentials=Credentials(DEMO_API_KEY, DEMO_SECRET),
        rest_url=simulator.rest_url,
    )
    task = asyncio.create_task(recorder.run())
    try:
        await wait_until(
            lambda: recorder.poller is not None and (recorder.poller.balance_polls or 0) >= 3,
            timeout=60,
            what="three balance polls",
        )
    finally:
        recorder.request_stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    url, root = config.storage.sql_url, tmp_path / "parquet"

    in_sql = stored(url, "balances")
    in_parquet = parquet_rows(root, "balances")
    assert Counter(in_sql) == Counter(in_parquet) and in_sql
    spot_btc = [b.free for b in in_sql if (b.account, b.currency) == ("spot", "btc")]
    assert spot_btc and all(str(v) == EDGE for v in spot_btc)  # exact, never 1E+20
    unstorable = {("spot", "ltc"), ("wallet", "btc")}
    assert not [b for b in in_sql if (b.account, b.currency) in unstorable]
    assert {str(b.free) for b in in_sql if (b.account, b.currency) == ("wallet", "ltc")} == {
        "12345678901234567890.15"
    }  # a tenth of the ltc balance fits: stored exactly
    assert {(b.account, b.currency) for b in in_sql} >= {
        ("spot", "btc"),
        ("spot", "usdt"),
        ("wallet", "usdt"),
    }

    # the unstorable ones: quarantined with the reason and the exact text, the same in both stores
    q_sql = [q for q in stored(url, "quarantine") if q.connection == "storage"]
    assert Counter((q.reason, q.payload) for q in q_sql) == Counter(
        (q.reason, q.payload) for q in parquet_rows(root, "quarantine") if q.connection == "storage"
    )
    texts = Counter(
        (json.loads(q.payload)["values"]["currency"], json.loads(q.payload)["values"]["free"]) for q in q_sql
    )
    assert set(texts) == {("ltc", BEYOND), ("btc", WALLET_TENTH)}
    reasons = result.status["quarantine"]["by_reason"]
    assert reasons == {
        "balances.free: more than 20 integer digits (Parquet decimal128(38, 18))": texts[("ltc", BEYOND)],
        "balances.free: more than 18 fractional digits (Parquet decimal128(38, 18))": texts[
            ("btc", WALLET_TENTH)
        ],
    }

    # Parquet kept up with SQL: feed events too; status: healthy, produced = stored + quarantined
    assert Counter(e.event_id for e in stored(url, "feed_events", order_by="ts_start")) == Counter(
        {e.event_id: 1 for e in parquet_rows(root, "feed_events")}
    )
    rows = result.status["rows"]
    for dataset, produced in rows["produced"].items():
        for store in ("sql", "parquet"):
            assert (
                rows["written_by_store"][store].get(dataset, 0) + rows["quarantined"].get(dataset, 0)
                == produced
            ), (dataset, store)
    assert all(st["healthy"] for st in result.status["storage"]["stores"].values())

"""V5Settings validation, secrets out of reprs, accounts without funds."""

from __future__ import annotations

import pytest

from recorder.errors import ConfigError
from recorder.simulator.okx_v5 import DEMO_PASSPHRASE, DEMO_SECRET, Simulator, V5Account, V5Settings


def test_secrets_are_not_in_reprs() -> None:
    settings = V5Settings()
    text = repr(settings) + repr(settings.accounts[0])
    assert DEMO_SECRET not in text and DEMO_PASSPHRASE not in text
    assert "5d3m05v5" in text  # the key itself is not a secret


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"instruments": ("btc_usdt",)}, "unknown SPOT instrument"),
        ({"instruments": ("BTC-USDT", "BTC-USDT")}, "duplicates"),
        ({"instruments": ()}, "must not be empty"),
        ({"checksum": "md5"}, "checksum"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"before_page": "oldest"}, "before_page"),
        ({"port": 70000}, "port"),
    ],
)
def test_bad_settings(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        V5Settings(**changes)  # type: ignore[arg-type]


def test_account_needs_all_three_credentials() -> None:
    with pytest.raises(ConfigError):
        V5Account("key", "secret", "")


async def test_an_account_without_funds_still_gets_a_history() -> None:
    poor = V5Account("k-poor", "s-poor", "p-poor", balances={})
    async with Simulator(V5Settings(updates_per_second=0, accounts=(poor,))) as sim:
        account = sim.demo_account
        assert account.cash == {} and len(account.orders) > 100 and account.open_orders()
        assert sim.accounts.get("k-poor") is account

"""Settings: frozen, typed, unknown keys rejected by name."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from recorder.errors import ConfigError
from recorder.simulator import DEMO_API_KEY, FrameFault, load_settings


def test_defaults_have_the_documented_limits_and_demo_account() -> None:
    s = load_settings()
    assert s.host == "127.0.0.1" and s.ws_port == 0 and s.book_depth == 200
    assert (
        s.rate_limits.endpoint_requests,
        s.rate_limits.account_requests,
        s.rate_limits.endpoint_window,
    ) == (20, 6, 2.0)
    assert (s.rate_limits.ip_requests, s.rate_limits.ip_window, s.rate_limits.ban_seconds) == (
        3000,
        300.0,
        3600.0,
    )
    assert [a.api_key for a in s.accounts] == [DEMO_API_KEY]
    assert "secret" not in repr(s.accounts[0]).lower().replace("secret=", "x") or "DEMO-SECRET" not in repr(s)


def test_toml_file_with_nested_tables(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        '[simulator]\nseed = 9\nsymbols = ["ltc_btc"]\n'
        '[simulator.faults]\nframe_fault = "truncated"\nrest_error_rate = 0.5\n'
        "[simulator.rate_limits]\nip_requests = 10\n"
        '[[simulator.accounts]]\napi_key = "k1"\nsecret = "s1"\nbalances = { btc = "1.5" }\n'
    )
    s = load_settings(path, updates_per_second=2)
    assert (s.seed, s.symbols, s.updates_per_second) == (9, ("ltc_btc",), 2.0)
    assert s.faults.frame_fault is FrameFault.TRUNCATED and s.faults.rest_error_rate == 0.5
    assert s.rate_limits.ip_requests == 10
    assert s.accounts[0].api_key == "k1" and dict(s.accounts[0].balances) == {"btc": Decimal("1.5")}
    assert "s1" not in repr(s)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sede": 1}, "'sede'"),
        ({"faults": {"stal": 1}}, "faults.'stal'"),
        ({"rate_limits": {"ip_request": 1}}, "rate_limits.'ip_request'"),
        ({"symbols": ["xrp_xyz"]}, "xrp_xyz"),
        ({"seed": "one"}, "seed"),
        ({"faults": {"rest_5xx_rate": 3}}, "rest_5xx_rate"),
        ({"accounts": [{"api_key": "k", "secret": "s", "balance": {}}]}, "'balance'"),
    ],
)
def test_bad_settings_are_rejected_naming_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(data)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)

"""The configuration: defaults, TOML, environment overrides, one clear line per bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.config import ChannelSpec, load_config
from recorder.errors import ConfigError
from recorder.records import ChannelKind, KlinePeriod


def _error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text
    return text


def test_defaults_record_into_data_with_the_documented_urls() -> None:
    c = load_config(env={})
    assert c.exchange.ws_url == "wss://real.okex.com:10440/ws/v1"
    assert c.exchange.rest_url == "https://www.okex.com/api/v1"
    assert c.storage.sql_url == "sqlite:///data/recording.sqlite"
    assert c.storage.parquet_root == Path("data/parquet")
    assert c.collector.ping_interval == 30.0


def test_toml_file_is_read_and_channels_are_typed(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[collector]\nsymbols = ["btc_usdt", "ltc_btc"]\nchannels = ["ticker", "depth_20", '
        '"kline_1min"]\nsymbols_per_connection = 1\n[collector.symbol_channels]\nltc_btc = ["deals"]\n'
    )
    c = load_config(f, env={})
    assert c.collector.channels == (
        ChannelSpec(ChannelKind.TICKER),
        ChannelSpec(ChannelKind.DEPTH_20),
        ChannelSpec(ChannelKind.KLINE, KlinePeriod.MIN_1),
    )
    assert [ch.name for ch in c.collector.channels_for("ltc_btc")] == ["ok_sub_spot_ltc_btc_deals"]
    assert c.collector.connection_shares() == [("btc_usdt",), ("ltc_btc",)]


def test_unknown_key_names_the_key_and_suggests_the_right_one() -> None:
    assert _error(env={}, overrides={"collector": {"symbol": ["btc_usdt"]}}) == (
        "config: unknown key 'collector.symbol' (did you mean 'symbols'?)"
    )


def test_bad_value_names_the_key() -> None:
    assert _error(env={}, overrides={"collector": {"ping_interval": "often"}}) == (
        "config: collector.ping_interval must be a number, got 'often'"
    )
    assert "collector.symbols" in _error(env={}, overrides={"collector": {"symbols": ["../etc"]}})
    assert "unknown channel 'tickr'" in _error(env={}, overrides={"collector": {"channels": ["tickr"]}})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[collector]\nsymbols = ["btc_usdt"]\n')
    c = load_config(
        f,
        env={
            "OKEX_RECORDER__COLLECTOR__SYMBOLS": "eth_btc,ltc_btc",
            "OKEX_RECORDER__COLLECTOR__COMPRESS": "true",
            "OKEX_SQL_URL": "postgresql+psycopg://rec:hunter2@db/okex",
        },
    )
    assert c.collector.symbols == ("eth_btc", "ltc_btc")
    assert c.collector.compress is True
    assert c.storage.sql_url == "postgresql+psycopg://rec:hunter2@db/okex"
    assert "hunter2" not in repr(c)


def test_bad_environment_value_names_the_variable() -> None:
    assert _error(env={"OKEX_RECORDER__COLLECTOR__PONG_TIMEOUT": "soon"}) == (
        "config: collector.pong_timeout (from OKEX_RECORDER__COLLECTOR__PONG_TIMEOUT) "
        "must be a number, got soon"
    )


def test_secrets_are_refused_in_the_file() -> None:
    assert "secrets never go in the config file" in _error(env={}, overrides={"poller": {"secret_key": "x"}})


def test_poller_section_uses_the_poller_settings() -> None:
    c = load_config(
        env={"OKEX_RECORDER__POLLER__BALANCE_INTERVAL": "3"},
        overrides={"poller": {"symbols": ["btc_usdt"], "ip_limit": "100/10s"}},
    )
    assert c.poller.balance_interval == 3.0
    assert c.poller.ip_limit.requests == 100


def test_bad_toml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[collector\n")
    assert _error(path=f, env={}).startswith(f"config: {f} is not valid TOML")


def test_the_commented_example_is_valid_and_shows_the_defaults() -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    assert load_config(example, env={}) == load_config(env={})

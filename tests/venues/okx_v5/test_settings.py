"""``[venues.okx_v5]``: defaults, parsing, refusals naming the key, plans."""

from __future__ import annotations

from typing import Any

import pytest

from recorder.errors import ConfigError
from recorder.venue import get_venue
from recorder.venues.okx_v5.book import ChecksumMode
from recorder.venues.okx_v5.settings import DEFAULTS, SUBTABLES, parse_settings


def test_defaults_are_the_live_endpoints() -> None:
    s = parse_settings({})
    assert s == DEFAULTS
    assert s.public_url == "wss://ws.okx.com:8443/ws/v5/public"
    assert s.business_url == "wss://ws.okx.com:8443/ws/v5/business"
    assert s.rest_url == "https://www.okx.com"
    assert s.ping_after < 30 and s.checksum == "verify_nonzero"
    c = s.session_config()
    assert c.checksum_mode is ChecksumMode.VERIFY_NONZERO and c.resubscribe_on_gap is False


def test_environment_strings_are_accepted() -> None:
    s = parse_settings({"instruments": "BTC-USDT, ETH-BTC", "ping_after": "15", "truncate_books": "false",
                        "snapshot_depth": "5"})  # fmt: skip
    assert s.instruments == ("BTC-USDT", "ETH-BTC") and s.ping_after == 15.0
    assert s.truncate_books is False and s.snapshot_depth == 5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"instrument": ["BTC-USDT"]}, "key 'venues.okx_v5.instrument' (did you mean 'instruments'?)"),
        ({"instruments": ["btc_usdt"]}, "venues.okx_v5.instruments: 'btc_usdt' is not a SPOT instrument id"),
        ({"instruments": []}, "venues.okx_v5.instruments must not be empty"),
        ({"channels": ["books400"]}, "venues.okx_v5.channels: unknown channel 'books400'"),
        ({"candle_bars": ["7m"]}, "venues.okx_v5.candle_bars: unknown OKX v5 candle bar '7m'"),
        ({"ping_after": 30}, "venues.okx_v5.ping_after must be within 0..30 s"),
        ({"public_url": "https://ws.okx.com"}, "venues.okx_v5.public_url must be a ws:// or wss:// URL"),
        ({"checksum": "always"}, "venues.okx_v5.checksum must be 'verify_nonzero' or 'off'"),
        ({"snapshot_on_change": False}, "set snapshot_on_change = true or snapshot_interval_ms > 0"),
        ({"snapshot_depth": 401}, "venues.okx_v5.snapshot_depth must be within 1..400"),
        ({"ping_after": True}, "venues.okx_v5.ping_after must be a number"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(table)
    assert message in str(err.value)


def test_subtables_are_parsed_by_their_registered_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    # setitem restores the registered parser afterwards (deleting it broke every later test of the
    # session that configures [venues.okx_v5.poller]: "unknown key 'venues.okx_v5.poller'")
    monkeypatch.setitem(SUBTABLES, "poller", lambda t: dict(t))
    s = parse_settings({"poller": {"balance_interval": 5}})
    assert s.extra["poller"] == {"balance_interval": 5}
    with pytest.raises(ConfigError, match=r"venues\.okx_v5\.poller must be a table"):
        parse_settings({"poller": 5})


def test_the_poller_uses_the_venue_rest_url_unless_it_sets_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `[venues.okx_v5]` table pointing at the simulator left its poller asking the live
    https://www.okx.com (retrying network errors for ever) unless the poller table repeated it."""
    from recorder.venues.okx_v5.poll import V5PollSettings

    sim = "http://127.0.0.1:18780"
    monkeypatch.setitem(SUBTABLES, "poller", V5PollSettings.from_table)
    inherited = parse_settings({"rest_url": sim, "poller": {"enabled": True}}).extra["poller"]
    assert inherited.rest_url == sim and inherited.enabled
    own = parse_settings({"rest_url": sim, "poller": {"rest_url": "http://127.0.0.1:9"}}).extra["poller"]
    assert own.rest_url == "http://127.0.0.1:9"
    assert parse_settings({"poller": {}}).extra["poller"].rest_url == "https://www.okx.com"


def test_plans_public_market_channels_and_business_candles() -> None:
    venue = get_venue("okx_v5")
    table = {"instruments": ["BTC-USDT", "ETH-USDT"], "channels": ["books", "tickers"],
             "candle_bars": ["1m", "1Dutc"], "max_depth_channels_per_connection": 1}  # fmt: skip
    s = venue.parse_settings(table)
    plans = venue.plan_connections(s)
    assert [(p.name, p.url.rsplit("/", 1)[1], p.channels, p.symbols) for p in plans] == [
        ("okx_v5-public-0", "public", ("books", "tickers"), ("BTC-USDT",)),
        ("okx_v5-public-1", "public", ("books", "tickers"), ("ETH-USDT",)),
        ("okx_v5-business-0", "business", ("candle1m", "candle1Dutc"), ("BTC-USDT", "ETH-USDT")),
    ]
    assert all(p.venue == "okx_v5" for p in plans)
    assert venue.symbols(s) == ("BTC-USDT", "ETH-USDT") and venue.rest_url(s) == "https://www.okx.com"

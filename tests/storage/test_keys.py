"""Storage's own symbol rule (recorder.storage.keys): safe as a path component, fits its column."""

from __future__ import annotations

import pytest

from recorder.errors import SymbolError
from recorder.storage.keys import SYMBOL_LENGTH, check_symbol, check_venue


@pytest.mark.parametrize("symbol", ["btc_usdt", "eth_btc", "btc-usdt", "BTC-USDT", "ETH_USDT", "a", "x1.y2",
                                    "a" * SYMBOL_LENGTH])
def test_path_safe_values_pass_unchanged(symbol: str) -> None:
    assert check_symbol(symbol) == symbol


@pytest.mark.parametrize("symbol", [
    "", ".", "..", "a..b", "../etc", "btc_usdt/../../x", "a/b", "a\\b", "btc_usdt\x00", "x=y", "%2e%2e",
    "btc_usdt'; drop table deals;--", " btc_usdt", "-x", "_x", "a" * (SYMBOL_LENGTH + 1), "é",
])
def test_values_that_could_escape_or_collide_are_refused(symbol: str) -> None:
    with pytest.raises(SymbolError, match="malformed symbol"):
        check_symbol(symbol)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(SymbolError, match="must be a string, got int"):
        check_symbol(5)


def test_a_venue_is_a_path_component_too() -> None:
    assert check_venue("okx_v5") == "okx_v5"
    with pytest.raises(SymbolError, match="malformed venue"):
        check_venue("../x")
    with pytest.raises(SymbolError, match="malformed venue"):
        check_venue("")

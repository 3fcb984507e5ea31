"""The packaged pairs table (PROTOCOL.md "Symbols")."""

from decimal import Decimal

from recorder.venues.okex_v1.pairs import Pair, pairs


def test_pairs_table_has_every_documented_pair_with_exact_increments() -> None:
    table = pairs()
    assert len(table) == 569  # PROTOCOL.md says 568; the packaged file holds 569 rows
    assert table["bch_btc"] == Pair(
        10, "bch_btc", Decimal("0.001"), Decimal("0.00000001"), Decimal("0.00000001")
    )
    assert table["ltc_btc"].base_increment == Decimal("0.000001")
    assert (table["ltc_btc"].base, table["ltc_btc"].quote) == ("ltc", "btc")
    assert {p.quote for p in table.values()} <= {"btc", "eth", "usdt", "okb"}

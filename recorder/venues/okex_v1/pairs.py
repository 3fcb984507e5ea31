"""The documented spot pairs with their minimum size and increments (``data/pairs_increment.csv``)."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources


@dataclass(frozen=True, slots=True)
class Pair:
    product_id: int
    symbol: str
    min_size: Decimal  # minimum order amount, base currency
    base_increment: Decimal  # amount precision
    quote_increment: Decimal  # price precision

    @property
    def base(self) -> str:
        return self.symbol.split("_", 1)[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("_", 1)[1]


@functools.cache
def pairs() -> dict[str, Pair]:
    """Every documented pair, keyed by symbol, in file order."""
    text = resources.files("recorder.venues.okex_v1").joinpath("data/pairs_increment.csv").read_text("utf-8")
    rows = csv.reader(io.StringIO(text))
    next(rows)  # header
    out: dict[str, Pair] = {}
    for pid, symbol, min_size, base_inc, quote_inc in rows:
        out[symbol] = Pair(int(pid), symbol, Decimal(min_size), Decimal(base_inc), Decimal(quote_inc))
    return out

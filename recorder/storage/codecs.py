"""The one exact-decimal codec and the one UTC-time codec of storage.

Every place that turns a :class:`~decimal.Decimal` or a UTC :class:`~datetime.datetime` into
text (SQLite columns, book levels as JSON, SQLite bind tuples built from Arrow columns) goes
through here, so the stored text is the same whichever path wrote it:

* :func:`decimal_text` -- canonical plain text: no exponent, no trailing fractional zeros
  (``1E-8`` -> ``0.00000001``, ``1.50`` -> ``1.5``); :func:`decimal_texts` the same for an
  Arrow ``decimal128`` column; :func:`level_text` keeps the digits as given (``1.50``) and
  only rewrites exponent forms (book levels keep the exchange's text).
* :func:`utc_text` -- ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (fixed width, sorts correctly);
  :func:`utc_texts` the same for an Arrow timestamp column.

All raise ValueError for NaN/infinite decimals and naive datetimes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "decimal_text",
    "decimal_texts",
    "level_text",
    "levels_from_json",
    "levels_to_json",
    "to_utc",
    "utc_text",
    "utc_texts",
]

Level = tuple[Decimal, Decimal]


def decimal_text(value: Decimal) -> str:
    """The canonical plain string of a finite Decimal: no exponent, no trailing fractional zeros.

    ``Decimal("1E-8")`` -> ``"0.00000001"``; ``Decimal("1.50")`` -> ``"1.5"``;
    ``Decimal("100")`` -> ``"100"``. Raises ValueError for NaN and infinities.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def decimal_texts(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """:func:`decimal_text` of every value of an Arrow decimal column (None stays None)."""
    # Arrow prints decimal128(38, 18) with all 18 fractional digits ("1.500000000000000000"):
    # trim the zeros and the point. Below 1E-6 (and 0) it prints an exponent ("0E-18"): those few
    # values take the Python path.
    text = column.cast(pa.string())
    out: list[str | None] = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".").to_pylist()
    exponent = pc.match_substring(text, "E")
    if pc.any(exponent).as_py():
        for i in pc.indices_nonzero(exponent).to_pylist():
            out[i] = decimal_text(Decimal(text[i].as_py()))
    return out


def level_text(value: Decimal) -> str:
    """Exact text of a book level value, digits as given (``1.50`` stays); exponents written out."""
    text = str(value)
    if "E" in text or "N" in text or "I" in text:
        return decimal_text(value)
    return text


_levels_encoder = msgspec.json.Encoder(decimal_format="string")


def levels_to_json(levels: tuple[Level, ...]) -> str:
    """``((price, amount), ...)`` -> ``'[["price","amount"],...]'``: exact decimals without exponent.

    Digits are kept as given (``1.50`` stays ``"1.50"``); ``1E-8`` becomes ``"0.00000001"``.
    Raises ValueError for NaN and infinities.
    """
    # The hot path of a book snapshot: msgspec writes str() of every value at C level; then
    # one look for the letters only exponents (E), NaN (N) and Infinity (I) produce.
    text = _levels_encoder.encode(levels).decode()
    if "E" in text or "N" in text or "I" in text:
        t = level_text
        return "[" + ",".join([f'["{t(p)}","{t(a)}"]' for p, a in levels]) + "]"
    return text


def levels_from_json(text: str) -> tuple[Level, ...]:
    """Inverse of :func:`levels_to_json`."""
    return tuple((Decimal(p), Decimal(a)) for p, a in json.loads(text))


def to_utc(value: Any) -> datetime:
    """``value`` (a timezone-aware datetime) in UTC; raises ValueError for anything else."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` of an aware datetime, in UTC (how SQLite holds timestamps)."""
    return to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_texts(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """:func:`utc_text` of every value of an Arrow ``timestamp(tz="UTC")`` column (None stays None)."""
    # Arrow's cast of a naive timestamp[us] to string prints "YYYY-MM-DD HH:MM:SS.ffffff" (fixed width).
    naive = column.cast(pa.timestamp(column.type.unit)).cast(pa.timestamp("us"))
    out: list[str | None] = naive.cast(pa.string()).to_pylist()
    return out

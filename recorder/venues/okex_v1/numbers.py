"""Exact numbers from the wire (PROTOCOL.md "WebSocket" and "REST": prices and amounts).

OKEx sends prices and amounts as strings (``"33.15"``, ``"1E-8"``) or as JSON
numbers. JSON is decoded with ``float_hook=Decimal`` (see :mod:`.parse`), so a
JSON number arrives here as an ``int`` or a :class:`~decimal.Decimal`, never as a
binary float. :func:`parse_decimal` turns any of these into an exact Decimal.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from recorder.errors import DecodeError

__all__ = ["parse_decimal", "parse_int"]

_SPACE = frozenset(" \t\r\n\f\v")


def parse_decimal(value: object) -> Decimal:
    """Return ``value`` (a ``str``, ``int`` or ``Decimal``) as an exact, finite Decimal.

    ``"1E-8"`` and ``"0.00000001"`` give equal Decimals (equal hash too). Raises
    :class:`~recorder.errors.DecodeError` for ``float`` (inexact by nature),
    ``bool``, ``None``, NaN, infinities, empty or malformed strings (including
    surrounding whitespace and ``_`` digit separators, which :class:`Decimal`
    itself would accept but the exchange never sends).
    """
    # Ordered by frequency on the hot path: strings first.
    if type(value) is str:
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise DecodeError(f"not a decimal number: {value!r:.80}") from None
        if not d.is_finite():
            raise DecodeError(f"not a finite number: {value!r:.80}")
        if "_" in value or value[0] in _SPACE or value[-1] in _SPACE:
            raise DecodeError(f"not a plain decimal number: {value!r:.80}")
        return d
    if type(value) is Decimal:
        if not value.is_finite():
            raise DecodeError(f"not a finite number: {value!r}")
        return value
    if type(value) is int:
        return Decimal(value)
    if isinstance(value, Decimal):  # a subclass
        return parse_decimal(Decimal(value))
    raise DecodeError(f"expected a decimal number (string or JSON number), got {type(value).__name__}")


def parse_int(value: object) -> int:
    """Return ``value`` (an ``int`` or a string of decimal digits, optionally signed) as an int.

    Used for ids, error codes and millisecond timestamps. Raises
    :class:`~recorder.errors.DecodeError` for ``bool``, ``float``, ``None``,
    fractional Decimals and anything that is not a plain integer.
    """
    if type(value) is int:
        return value
    if type(value) is str:
        digits = value[1:] if value[:1] == "-" else value
        if digits.isascii() and digits.isdigit():
            return int(value)
        raise DecodeError(f"not an integer: {value!r:.80}")
    if type(value) is Decimal:
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        raise DecodeError(f"not an integer: {value}")
    raise DecodeError(f"expected an integer (number or string), got {type(value).__name__}")

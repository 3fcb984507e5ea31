"""Exact numbers from the wire (recorder.venues.okex_v1.numbers)."""

from decimal import Decimal

import pytest

from recorder.errors import DecodeError
from recorder.venues.okex_v1.numbers import parse_decimal, parse_int


def test_exponent_form_and_plain_form_are_the_same_decimal() -> None:
    a, b = parse_decimal("1E-8"), parse_decimal("0.00000001")
    assert a == b
    assert hash(a) == hash(b)
    assert {a: "level"}[b] == "level"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10532696.39199642", Decimal("10532696.39199642")),
        ("33.15", Decimal("33.15")),
        ("0", Decimal(0)),
        ("-1.5", Decimal("-1.5")),
        (787, Decimal(787)),
        (Decimal("787.1"), Decimal("787.1")),
        (Decimal("1E-8"), Decimal("0.00000001")),
    ],
)
def test_strings_ints_and_decimals_become_exact_decimals(raw: object, expected: Decimal) -> None:
    value = parse_decimal(raw)
    assert type(value) is Decimal
    assert value == expected


def test_long_amount_keeps_every_digit() -> None:
    assert str(parse_decimal("10532696.39199642")) == "10532696.39199642"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "got bool"),
        (None, "got NoneType"),
        (0.1, "got float"),
        ([1], "got list"),
        ("NaN", "not a finite number"),
        ("inf", "not a finite number"),
        ("-Infinity", "not a finite number"),
        (Decimal("NaN"), "not a finite number"),
        ("", "not a decimal number"),
        ("abc", "not a decimal number"),
        ("1.2.3", "not a decimal number"),
        (" 1", "not a plain decimal number"),
        ("1_000", "not a plain decimal number"),
    ],
)
def test_non_numbers_are_rejected_with_decode_error(raw: object, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_decimal(raw)


def test_integers_from_numbers_strings_and_integral_decimals() -> None:
    assert parse_int(230433) == 230433
    assert parse_int("230433") == 230433
    assert parse_int("-1") == -1
    assert parse_int(Decimal("10015")) == 10015


@pytest.mark.parametrize(
    "raw", [True, None, 1.0, "1.5", "", "-", "1e3", "١٢", Decimal("1.5"), Decimal("NaN")]
)
def test_non_integers_are_rejected_with_decode_error(raw: object) -> None:
    with pytest.raises(DecodeError):
        parse_int(raw)

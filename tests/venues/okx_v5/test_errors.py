"""Error-code lookup and classification (PROTOCOL.md §7.2, §7.3)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.errors import (
    ErrorClass,
    ExchangeError,
    Transport,
    is_auth_failure,
    is_rate_limit,
    is_retryable,
)
from recorder.venues.okx_v5.errors import CODES, classify, exchange_error, likely_cause, lookup

RETRY = [50001, 50004, 50013, 50026, 64007]
RATE = [50011, 60014]
AUTH = [
    50101,
    50102,
    50103,
    50104,
    50105,
    50106,
    50107,
    50110,
    50111,
    50112,
    50113,
    50114,
    60004,
    60005,
    60006,
    60007,
    60009,
    60024,
    60032,
]
BAD = [50014, 51000, 60012, 60013, 60018, 60019]


@pytest.mark.parametrize(
    ("codes", "cls"),
    [
        (RETRY, ErrorClass.RETRY_LATER),
        (RATE, ErrorClass.RATE_LIMITED),
        (AUTH, ErrorClass.AUTH),
        (BAD, ErrorClass.BAD_REQUEST),
    ],
)
def test_documented_classification(codes: list[int], cls: ErrorClass) -> None:
    for code in codes:
        assert classify(code) is cls, code
        assert lookup(code) is not None


def test_every_documented_code_has_text_and_http_status_where_rest() -> None:
    assert len(CODES) >= 45
    for code, entry in CODES.items():
        assert entry.code == code and entry.text
        if code < 60000:
            assert entry.http_status is not None


def test_rest_auth_error_names_the_likely_cause_and_server_text() -> None:
    exc = exchange_error(
        "50113", Transport.REST, msg="Invalid Sign", http_status=401, context="/api/v5/account/balance"
    )
    assert isinstance(exc, ExchangeError)
    assert exc.code == 50113 and exc.message_en == "invalid signature"
    assert is_auth_failure(exc) and not is_retryable(exc)
    assert "secret" in str(exc) and "Invalid Sign" in str(exc) and "/api/v5/account/balance" in str(exc)
    assert "passphrase" in (likely_cause(50105) or "")
    assert "API key" in (likely_cause(50111) or "")
    assert "clock" in (likely_cause(50102) or "")


def test_rate_limit_is_retryable_and_pickles() -> None:
    exc = exchange_error(50011, Transport.REST, msg="Too Many Requests", http_status=429)
    assert is_rate_limit(exc) and is_retryable(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.code, back.error_class, str(back)) == (50011, ErrorClass.RATE_LIMITED, str(exc))


def test_undocumented_code_classified_by_http_status() -> None:
    assert classify(59999, 429) is ErrorClass.RATE_LIMITED
    assert classify(59999, 503) is ErrorClass.RETRY_LATER
    assert classify(59999, 200) is ErrorClass.BAD_REQUEST
    exc = exchange_error(59999, Transport.WEBSOCKET)
    assert "undocumented error code 59999" in str(exc)


def test_non_numeric_code_does_not_crash() -> None:
    exc = exchange_error("abc", Transport.REST)
    assert exc.code == -1 and "abc" in str(exc)


@given(
    st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from([None, 200, 400, 401, 429, 500, 503])
)
def test_lookup_and_classify_are_total(code: int, status: int | None) -> None:
    assert isinstance(classify(code, status), ErrorClass)
    exc = exchange_error(code, Transport.REST, http_status=status)
    assert exc.code == code

"""Error codes per transport (recorder.venues.okex_v1.errors, data/error-codes.csv)."""

import csv
import io
import pickle
from importlib import resources

import pytest

from recorder.errors import (
    ErrorClass,
    ExchangeError,
    Transport,
    is_auth_failure,
    is_ban,
    is_rate_limit,
    is_retryable,
)
from recorder.venues.okex_v1.errors import HTTP_403_CODE, classify, error_table, exchange_error, lookup


def _csv_rows() -> list[dict[str, str]]:
    text = resources.files("recorder.venues.okex_v1").joinpath("data/error-codes.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_every_numbered_csv_row_is_in_the_table_with_both_texts() -> None:
    rows = _csv_rows()
    numbered = [r for r in rows if r["code"].removeprefix("HTTP ").isdigit()]
    assert len(numbered) == len(rows) - 1  # only "Request timed out (no ping)" has no number
    for row in numbered:
        transport = Transport(row["transport"])
        code = int(row["code"].removeprefix("HTTP "))
        entry = lookup(code, transport)
        assert entry is not None, row
        assert (entry.message_en, entry.message_zh) == (row["message_en"], row["message_zh"])
        error = exchange_error(code, transport)
        assert (error.code, error.transport) == (code, transport)
        # A few rows lack one text; the error then repeats the other so neither is empty.
        assert error.message_en == (row["message_en"] or row["message_zh"])
        assert error.message_zh == (row["message_zh"] or row["message_en"])
        assert str(error).startswith(f"OKEx {transport.value} error {code}: {error.message_en}")
    assert len(error_table()) == len(numbered)
    assert sum(1 for t, _ in error_table() if t is Transport.REST) == 110
    assert sum(1 for t, _ in error_table() if t is Transport.WEBSOCKET) == 98


def test_rest_10001_and_websocket_10001_mean_different_things() -> None:
    rest = exchange_error(10001, Transport.REST)
    ws = exchange_error(10001, Transport.WEBSOCKET)
    assert rest.message_en == "Request frequency too high to exceed the limit allowed"
    assert rest.message_zh == "用户请求频率过快，超过该接口允许的限额"
    assert ws.message_en == "Illegal parameters"
    assert ws.message_zh == "参数错误"
    assert rest.error_class is ErrorClass.RATE_LIMITED
    assert ws.error_class is ErrorClass.BAD_REQUEST
    assert is_rate_limit(rest) and is_retryable(rest)
    assert not is_rate_limit(ws) and not is_retryable(ws)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (10001, ErrorClass.RATE_LIMITED),
        (10002, ErrorClass.RETRY_LATER),
        (10004, ErrorClass.RETRY_LATER),
        (10005, ErrorClass.AUTH),
        (10006, ErrorClass.AUTH),
        (10007, ErrorClass.AUTH),
        (10017, ErrorClass.AUTH),
        (10008, ErrorClass.BAD_REQUEST),
        (10009, ErrorClass.BAD_REQUEST),
        (HTTP_403_CODE, ErrorClass.BANNED),
    ],
)
def test_rest_codes_are_classified(code: int, expected: ErrorClass) -> None:
    assert classify(code, Transport.REST) is expected
    assert exchange_error(code, Transport.REST).error_class is expected


def test_classification_helpers_answer_what_to_do() -> None:
    auth = exchange_error(10007, Transport.REST)
    assert is_auth_failure(auth) and not is_retryable(auth) and not is_ban(auth)
    banned = exchange_error(HTTP_403_CODE, Transport.REST)
    assert banned.message_en == "Too many requests, IP is shielded"
    assert banned.message_zh == "用户请求过快，IP被屏蔽"
    assert is_ban(banned) and not is_retryable(banned)
    system = exchange_error(10002, Transport.REST)
    assert is_retryable(system) and not is_auth_failure(system)
    bad = exchange_error(10008, Transport.REST)
    assert not is_retryable(bad) and not is_auth_failure(bad) and not is_ban(bad)
    ws_auth = exchange_error(10017, Transport.WEBSOCKET)
    assert ws_auth.message_en == "WebSocket authorization error" and is_auth_failure(ws_auth)


def test_row_with_only_chinese_text_still_gives_a_readable_error() -> None:
    error = exchange_error(10056, Transport.REST)
    assert (error.message_en, error.message_zh) == ("划转受限", "划转受限")
    assert str(error) == "OKEx rest error 10056: 划转受限"


def test_unknown_code_still_names_itself() -> None:
    error = exchange_error(99999, Transport.WEBSOCKET, context="ok_sub_spot_bch_btc_ticker")
    assert isinstance(error, ExchangeError)
    assert error.code == 99999
    assert error.message_en == "undocumented error code 99999"
    assert str(error) == (
        "OKEx websocket error 99999: undocumented error code 99999 (ok_sub_spot_bch_btc_ticker)"
    )
    assert lookup(99999, Transport.REST) is None


def test_exchange_error_survives_pickling_with_every_field() -> None:
    error = exchange_error(10015, Transport.WEBSOCKET, context="ok_sub_spot_x_y_depth")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.transport, copy.message_en, copy.message_zh, copy.error_class, copy.context) == (
        10015,
        Transport.WEBSOCKET,
        "Channel subscription temporally not available",
        "暂不支持此channel订阅",
        ErrorClass.BAD_REQUEST,
        "ok_sub_spot_x_y_depth",
    )
    assert str(copy) == str(error)

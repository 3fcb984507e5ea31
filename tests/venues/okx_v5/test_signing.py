"""Signing (PROTOCOL.md §6, §2.5) against the documented vectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from recorder.errors import ConfigError
from recorder.venues.okx_v5.signing import (
    V5Credentials,
    clock_offset_ms,
    iso_timestamp,
    prehash,
    rest_headers,
    sign,
    ws_login_args,
)

from .frames import LOGIN_REQUEST, SECRET_A, SIGNING_VECTORS

R1_MS = int(datetime(2020, 12, 8, 9, 8, 57, 715000, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("name", sorted(SIGNING_VECTORS))
def test_sign_matches_documented_vector(name: str) -> None:
    secret, text, expected = SIGNING_VECTORS[name]
    assert sign(secret, text) == expected


def test_prehash_of_r1_r2_r3_is_the_documented_string() -> None:
    assert (
        prehash("2020-12-08T09:08:57.715Z", "get", "/api/v5/account/balance?ccy=BTC")
        == SIGNING_VECTORS["R1"][1]
    )
    body = '{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}'
    assert (
        prehash("2020-12-08T09:08:57.715Z", "POST", "/api/v5/account/set-leverage", body)
        == (SIGNING_VECTORS["R3"][1])
    )


def test_iso_timestamp_has_milliseconds_and_z() -> None:
    assert iso_timestamp(R1_MS) == "2020-12-08T09:08:57.715Z"
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert iso_timestamp(R1_MS - 715 + 7) == "2020-12-08T09:08:57.007Z"


def test_rest_headers_for_r1_are_the_documented_request() -> None:
    creds = V5Credentials("my-api-key-0000", SECRET_A, "my passphrase")
    headers = rest_headers(creds, "GET", "/api/v5/account/balance?ccy=BTC", epoch_ms=R1_MS)
    assert headers == {
        "OK-ACCESS-KEY": "my-api-key-0000",
        "OK-ACCESS-SIGN": "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=",
        "OK-ACCESS-TIMESTAMP": "2020-12-08T09:08:57.715Z",
        "OK-ACCESS-PASSPHRASE": "my passphrase",
        "Content-Type": "application/json",
    }
    demo = rest_headers(
        creds, "GET", "/api/v5/account/balance?ccy=BTC", epoch_ms=R1_MS, simulated_trading=True
    )
    assert demo["x-simulated-trading"] == "1"


def test_ws_login_args_match_the_documented_login() -> None:
    creds = V5Credentials("<key>", SECRET_A, "<passphrase>")
    assert ws_login_args(creds, "1538054050") == json.loads(LOGIN_REQUEST)["args"][0]


def test_credentials_never_show_secret_or_passphrase() -> None:
    creds = V5Credentials("c821db84-6fbd-11e4-a9e3-c86000d26d7c", "TOPSECRETVALUE123", "PASSPHRASE-XYZ")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "TOPSECRETVALUE123" not in text
        assert "PASSPHRASE-XYZ" not in text
        assert "c821db84-6fbd-11e4-a9e3-c86000d26d7c" not in text
        assert "c821…6d7c" in text


@pytest.mark.parametrize("field", ["api_key", "secret", "passphrase"])
def test_empty_credential_is_a_config_error_naming_it(field: str) -> None:
    values = {"api_key": "k" * 16, "secret": "s", "passphrase": "p"}
    values[field] = ""
    with pytest.raises(ConfigError, match=field):
        V5Credentials(**values)


def test_clock_offset_uses_the_round_trip_midpoint() -> None:
    # local clock 5 s behind: sent at 1000, received at 1200, server said 6100 at the midpoint (1100)
    assert clock_offset_ms(1000, 6100, 1200) == 5000
    assert clock_offset_ms(10_000, 9_000, 10_000) == -1000

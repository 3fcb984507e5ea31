"""Signing: the documented test vectors (PROTOCOL.md "Signing", the seed's 参数签名)."""

from recorder.venues.okex_v1.signing import sign, signed_params, signing_payload, verify

API_KEY = "c821db84-6fbd-11e4-a9e3-c86000d26d7c"


def test_documented_vector_with_order_parameters() -> None:
    params = {"api_key": API_KEY, "symbol": "btc_cny", "type": "buy", "price": "680", "amount": "1.0"}
    assert signing_payload(params) == (
        "amount=1.0&api_key=c821db84-6fbd-11e4-a9e3-c86000d26d7c&price=680&symbol=btc_cny&type=buy"
    )
    assert sign(params, "secretKey") == "305C4C9942D0D48EDFA4601D50FB6602"


def test_documented_vector_api_key_only() -> None:
    assert sign({"api_key": API_KEY}, "secretKey") == "E866BBB88E0E685D3F4BBC2723E2CAF9"


def test_values_are_signed_exactly_as_sent() -> None:
    base = {"api_key": API_KEY, "amount": "1.0"}
    assert sign(base, "s") != sign({**base, "amount": "1"}, "s")


def test_sign_parameter_itself_is_not_signed_and_secret_never_travels() -> None:
    out = signed_params({"symbol": "ltc_btc"}, API_KEY, "topsecret")
    assert set(out) == {"symbol", "api_key", "sign"}
    assert "topsecret" not in repr(out)
    assert sign(out, "topsecret") == out["sign"]
    assert verify(out, "topsecret")
    assert verify({**out, "sign": out["sign"].lower()}, "topsecret")
    assert not verify(out, "other")
    assert not verify({k: v for k, v in out.items() if k != "sign"}, "topsecret")

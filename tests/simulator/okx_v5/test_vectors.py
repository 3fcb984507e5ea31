"""PROTOCOL.md (v5) §6 signing vectors and §9 checksum example, against the simulator's wire module."""

from __future__ import annotations

import pytest

from recorder.simulator.okx_v5.wire import checksum, iso_ms, parse_iso_ms, sign

SECRET = "22582BD0CFF14C41EDBF1AB98506286D"
TS = "2020-12-08T09:08:57.715Z"


@pytest.mark.parametrize(
    ("secret", "prehash", "expected"),
    [
        (SECRET, f"{TS}GET/api/v5/account/balance?ccy=BTC", "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="),
        (
            SECRET,
            f"{TS}GET/api/v5/trade/orders-history?instType=SPOT&instId=BTC-USDT&limit=100",
            "JmohICXF2D245f/mWWxzsUEnwZrzHV0l48yR9QOjeKI=",
        ),
        (
            SECRET,
            f'{TS}POST/api/v5/account/set-leverage{{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}}',
            "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8=",
        ),
        (
            "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO",
            f"{TS}GET/api/v5/account/balance",
            "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k=",
        ),
        (SECRET, "1538054050GET/users/self/verify", "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="),
    ],
    ids=["R1", "R2", "R3", "R4", "WS"],
)
def test_signing_vectors(secret: str, prehash: str, expected: str) -> None:
    assert sign(secret, prehash) == expected


SNAP_BIDS = [["3366.1", "7.0", "0", "3"], ["3366", "0.0000001", "0", "1"], ["3365.5", "2", "0", "1"]]
SNAP_ASKS = [["3366.8", "9", "0", "2"], ["3368", "0.5", "0", "1"]]


def test_checksum_worked_example() -> None:
    assert checksum(SNAP_BIDS, SNAP_ASKS) == -1667895914
    after_bids = [SNAP_BIDS[0], SNAP_BIDS[2]]
    after_asks = [SNAP_ASKS[0], ["3367.2", "1.25", "0", "1"], SNAP_ASKS[1]]
    assert checksum(after_bids, after_asks) == -1828079305


def test_checksum_uses_strings_as_received() -> None:
    assert checksum([["3366.1", "7"], SNAP_BIDS[1], SNAP_BIDS[2]], SNAP_ASKS) == 725225026
    assert checksum([SNAP_BIDS[0], ["3366", "1e-07"], SNAP_BIDS[2]], SNAP_ASKS) == -1791111323
    assert checksum([SNAP_BIDS[0], ["3366", "1E-7"], SNAP_BIDS[2]], SNAP_ASKS) == 1510893281


def test_checksum_legacy_strings() -> None:
    assert checksum([["3366.1", "7"], ["3366", "6"]], [["3366.8", "9"], ["3368", "8"]]) == -1881014294
    assert checksum([["3366.1", "7"]], [["3366.8", "9"], ["3368", "8"], ["3372", "8"]]) == 831078360


def test_iso_timestamps() -> None:
    assert iso_ms(1607418537715) == TS
    assert parse_iso_ms(TS) == 1607418537715
    for bad in ("2020-12-08 09:08:57.715Z", "1607418537715", "2020-12-08T09:08:57.715", ""):
        assert parse_iso_ms(bad) is None

"""``python -m recorder.simulator.okx_v5``: prints URLs and demo credentials, serves, stops on SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

from recorder.simulator.okx_v5 import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET
from tests.simulator.helpers import serving

from .helpers import signed_headers


def test_module_entry_point_serves_and_stops() -> None:
    argv = ["-m", "recorder.simulator.okx_v5", "--seed", "5", "--rate", "2",
            "--instruments", "BTC-USDT,ETH-BTC"]
    with serving(argv) as (proc, lines):
        text = "".join(lines)
        rest = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)", text)
        assert rest is not None, text
        for path in ("public", "business", "private"):
            assert f"{rest.group(1).replace('http', 'ws')}/ws/v5/{path}" in text
        for secret in (DEMO_API_KEY, DEMO_SECRET, DEMO_PASSPHRASE):
            assert secret in text  # the public demo credentials are printed on purpose
        with httpx.Client(base_url=rest.group(1), timeout=10) as client:
            items = client.get("/api/v5/public/instruments?instType=SPOT").json()["data"]
            assert [i["instId"] for i in items] == ["BTC-USDT", "ETH-BTC"]
            path = "/api/v5/account/balance"
            assert client.get(path, headers=signed_headers(path)).json()["code"] == "0"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_module_entry_point_rejects_bad_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "recorder.simulator.okx_v5", "--instruments", "btc_usdt"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "unknown SPOT instrument 'btc_usdt'" in out.stderr


def test_settings_from_the_v1_simulate_namespace() -> None:
    import argparse

    from recorder.simulator.okx_v5.__main__ import settings_from_args

    ns = argparse.Namespace(host=None, port=None, rest_port=None, config=None, seed=9, rate=None,
                            symbols="BTC-USDT,ETH-BTC", compress=False)  # fmt: skip
    s = settings_from_args(ns)
    assert (s.seed, s.instruments, s.host, s.port, s.updates_per_second) == (
        9,
        ("BTC-USDT", "ETH-BTC"),
        "127.0.0.1",
        0,
        10.0,
    )

"""SimulatorThread for sync code, and the ``okex-recorder simulate`` command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from websockets.sync.client import connect

from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, SimulatorThread
from tests.simulator.helpers import decode, md5_sign


def test_thread_serves_both_apis_and_hooks_are_thread_safe(simulator_thread: SimulatorThread) -> None:
    sim = simulator_thread
    with connect(sim.ws_url) as ws:
        ws.send(
            json.dumps(
                {
                    "event": "login",
                    "parameters": {
                        "api_key": DEMO_API_KEY,
                        "sign": md5_sign({"api_key": DEMO_API_KEY}, DEMO_SECRET),
                    },
                }
            )
        )
        assert decode(ws.recv(timeout=10)) == [{"channel": "login", "data": {"result": True}}]
        order = sim.place_order("ltc_btc", "sell", "0.0095", "1")
        pushed = decode(ws.recv(timeout=10))
        assert pushed[0]["data"]["orderId"] == order.order_id
        assert sim.fill_order(order.order_id, "1").status == 2
        assert decode(ws.recv(timeout=10))[0]["data"]["status"] == 2
        assert sim.drop_connections() == 1
    body = {"api_key": DEMO_API_KEY, "symbol": "ltc_btc", "order_id": str(order.order_id)}
    body["sign"] = md5_sign(body, DEMO_SECRET)
    r = httpx.post(f"{sim.rest_url}/order_info.do", data=body, timeout=10)
    assert r.json()["orders"][0]["status"] == 2


@pytest.mark.faults
def test_simulate_command_prints_urls_and_stops_on_sigterm() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli",
            "simulate",
            "--symbols",
            "ltc_btc",
            "--rate",
            "2",
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        ws_url = re.search(r"ws://127\.0\.0\.1:\d+/ws/v1", text)
        rest_url = re.search(r"http://127\.0\.0\.1:\d+/api/v1", text)
        assert ws_url and rest_url and DEMO_API_KEY in text and DEMO_SECRET not in text
        r = httpx.get(f"{rest_url.group(0)}/ticker.do", params={"symbol": "ltc_btc"}, timeout=10)
        assert "ticker" in r.json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

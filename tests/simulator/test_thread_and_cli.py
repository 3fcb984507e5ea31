"""SimulatorThread for sync code, and the ``okex-recorder simulate`` command."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import pytest
from websockets.sync.client import connect

from recorder.records import OrderStatus
from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, SimulatorThread
from tests.simulator.helpers import decode, md5_sign, serving


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
        assert sim.fill_order(order.order_id, "1").status is OrderStatus.FILLED
        assert decode(ws.recv(timeout=10))[0]["data"]["status"] == 2
        assert sim.drop_connections() == 1
    body = {"api_key": DEMO_API_KEY, "symbol": "ltc_btc", "order_id": str(order.order_id)}
    body["sign"] = md5_sign(body, DEMO_SECRET)
    r = httpx.post(f"{sim.rest_url}/order_info.do", data=body, timeout=10)
    assert r.json()["orders"][0]["status"] == 2


@pytest.mark.faults
def test_simulate_command_prints_urls_and_stops_on_sigterm() -> None:
    argv = ["-m", "recorder.cli", "simulate", "--symbols", "ltc_btc", "--rate", "2", "--seed", "3"]
    with serving(argv) as (proc, lines):
        text = "".join(lines)
        ws_url = re.search(r"ws://127\.0\.0\.1:\d+/ws/v1", text)
        rest_url = re.search(r"http://127\.0\.0\.1:\d+/api/v1", text)
        assert ws_url and rest_url and DEMO_API_KEY in text
        r = httpx.get(f"{rest_url.group(0)}/ticker.do", params={"symbol": "ltc_btc"}, timeout=10)
        assert "ticker" in r.json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def _free_port_pair() -> int:
    """A port P with P and P + 1 both free on loopback (bound, then released)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port: int = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no free pair of loopback ports")


@pytest.mark.parametrize("rest_option", [False, True])
def test_simulate_port_sets_both_urls_and_prints_the_demo_secret(rest_option: bool) -> None:
    """--port N: WebSocket on N, REST on N + 1 (or --rest-port); the demo key and its secret are printed."""
    port = _free_port_pair()
    rest_port = port + 1
    argv = ["-m", "recorder.cli", "simulate", "--symbols", "ltc_btc", "--rate", "2", "--port", str(port)]
    if rest_option:
        rest_port = _free_port_pair()
        argv += ["--rest-port", str(rest_port)]
    with serving(argv) as (proc, lines):
        text = "".join(lines)
        assert f"  WebSocket  ws://127.0.0.1:{port}/ws/v1\n" in text, text
        assert f"  REST       http://127.0.0.1:{rest_port}/api/v1\n" in text, text
        key_line = next(x for x in lines if DEMO_API_KEY in x)
        secret_line = lines[lines.index(key_line) + 1]
        assert secret_line.split()[:2] == ["secret", DEMO_SECRET]
        assert "the simulator's public demo secret" in secret_line and "not a real one" in secret_line
        # The printed REST root answers, signed with the printed secret.
        body = {"api_key": DEMO_API_KEY}
        body["sign"] = md5_sign(body, secret_line.split()[1])
        r = httpx.post(f"http://127.0.0.1:{rest_port}/api/v1/userinfo.do", data=body, timeout=10)
        assert r.json()["result"] is True
        with connect(f"ws://127.0.0.1:{port}/ws/v1") as ws:
            ws.send(json.dumps({"event": "ping"}))
            assert decode(ws.recv(timeout=10)) == {"event": "pong"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_port_65535_without_rest_port_is_one_line() -> None:
    from recorder.errors import ConfigError
    from recorder.simulator.server import rest_port_for
    from recorder.simulator.settings import SimulatorSettings

    with pytest.raises(ConfigError, match="set rest_port"):
        rest_port_for(SimulatorSettings(ws_port=65535))
    assert rest_port_for(SimulatorSettings(ws_port=65535, rest_port=8000)) == 8000
    assert rest_port_for(SimulatorSettings()) == 0


def test_simulate_venue_okx_v5_serves_v5_on_one_port() -> None:
    """``simulate --venue okx_v5 --port N``: REST and the three WebSocket paths on N; v5 answers there."""
    port = _free_port_pair()
    argv = ["-m", "recorder.cli", "simulate", "--venue", "okx_v5", "--symbols", "BTC-USDT",
            "--rate", "2", "--seed", "5", "--port", str(port)]
    with serving(argv) as (proc, lines):
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text and f"ws://127.0.0.1:{port}/ws/v5/public" in text, text
        r = httpx.get(f"http://127.0.0.1:{port}/api/v5/market/ticker", params={"instId": "BTC-USDT"},
                      timeout=10)
        body = r.json()
        assert body["code"] == "0" and body["data"][0]["instId"] == "BTC-USDT"
        with connect(f"ws://127.0.0.1:{port}/ws/v5/public") as ws:
            ws.send("ping")
            assert ws.recv(timeout=10) == "pong"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_simulate_venue_okx_v5_refuses_a_v1_only_option() -> None:
    argv = [sys.executable, "-m", "recorder.cli", "simulate", "--venue", "okx_v5", "--compress"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "does not take --compress" in err[0], proc.stderr

"""``okex-recorder simulate``: run the local exchange in the foreground (docs/simulator.md).

Prints the WebSocket and REST URLs and, when the simulator runs its demo account,
that account's api_key and secret (the simulator's public demo secret, documented in
docs/simulator.md: it opens nothing but this simulator; no other account's secret is
printed). ``--port N`` puts the WebSocket server on N and REST on N + 1 unless
``--rest-port`` says otherwise. Listens on loopback by default, and stops cleanly on
SIGINT/SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from recorder.errors import ConfigError
from recorder.simulator.server import Simulator
from recorder.simulator.settings import DEMO_API_KEY, DEMO_SECRET, SimulatorSettings, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options."""
    parser.add_argument("--venue", choices=("okex_v1", "okx_v5"), default="okex_v1",
                        help="which exchange to simulate (default okex_v1; okx_v5: one port for REST and "
                        "the public, business and private WebSocket URLs)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="WebSocket port (default: a free port)")
    parser.add_argument("--rest-port", type=int,
                        help="REST port (default: --port + 1 when --port is given, else a free port)")
    parser.add_argument("--config", help="TOML file with simulator settings (keys as in docs/simulator.md)")
    parser.add_argument("--seed", type=int, help="market seed (same seed -> same stream)")
    parser.add_argument("--rate", type=float, help="market updates per second per symbol")
    parser.add_argument("--symbols", help="comma-separated symbols, e.g. btc_usdt,ltc_btc")
    parser.add_argument("--compress", action="store_true", help="send every frame as raw DEFLATE")


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The settings: the config file (if any), then the command-line options. Raises ConfigError."""
    overrides: dict[str, Any] = {}
    for attr, key in (
        ("host", "host"),
        ("port", "ws_port"),
        ("rest_port", "rest_port"),
        ("seed", "seed"),
        ("rate", "updates_per_second"),
        ("symbols", "symbols"),
    ):
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "compress", False):
        overrides["compress_always"] = True
    return load_settings(getattr(args, "config", None), **overrides)


_V1_ONLY = (("rest_port", "--rest-port"), ("config", "--config"), ("compress", "--compress"))


def run(args: argparse.Namespace) -> int:
    """Run the simulator until SIGINT/SIGTERM; exit code 0 on a clean stop. Raises ConfigError for an
    option the chosen venue does not take."""
    if getattr(args, "venue", "okex_v1") == "okx_v5":
        for attr, flag in _V1_ONLY:
            if getattr(args, attr, None):
                raise ConfigError(f"simulate --venue okx_v5 does not take {flag} (one port serves REST and "
                                  "WebSocket; see docs/simulator.md, 'OKX v5 mode')")
        from recorder.simulator.okx_v5.__main__ import run as run_v5

        return run_v5(args)
    settings = settings_from_args(args)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: SimulatorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(settings) as sim:
        print(f"okex-recorder simulate: seed {settings.seed}, symbols {','.join(settings.symbols)}")
        print(f"  WebSocket  {sim.ws_url}")
        print(f"  REST       {sim.rest_url}")
        keys = [a.api_key for a in settings.accounts]
        demo = settings.account(DEMO_API_KEY)
        if demo is not None and demo.secret == DEMO_SECRET:
            print(f"  demo account  api_key {DEMO_API_KEY}")
            print(f"                secret  {DEMO_SECRET}  (the simulator's public demo secret: "
                  "not a real one, it opens only this simulator)")
        elif demo is not None:
            print(f"  demo api_key {DEMO_API_KEY} (with the secret from the configuration, not printed)")
        others = [k for k in keys if k != DEMO_API_KEY]
        if others:
            print(f"  accounts from the configuration: {len(others)} (keys and secrets not printed)")
        print("  Ctrl-C to stop", flush=True)
        await stop.wait()
    print("okex-recorder simulate: stopped", file=sys.stderr, flush=True)

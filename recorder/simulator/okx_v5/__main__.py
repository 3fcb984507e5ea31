"""``python -m recorder.simulator.okx_v5 [--host H] [--port N] [--seed S] [--rate R] [--checksum crc32]``.

Runs the OKX v5 simulator in the foreground, prints its REST base, the three
WebSocket URLs and the demo credentials (the documented, public demo key,
secret and passphrase that only open the simulator; configured accounts are
never printed), and stops cleanly on SIGINT/SIGTERM with exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from recorder.errors import ConfigError
from recorder.simulator.okx_v5.server import Simulator
from recorder.simulator.okx_v5.settings import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET, V5Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m recorder.simulator.okx_v5", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port for REST and WebSocket (default: a free port)")
    p.add_argument("--seed", type=int, default=1, help="market seed (same seed -> same stream)")
    p.add_argument("--rate", type=float, default=10.0, help="market updates per second per instrument")
    p.add_argument("--instruments", help="comma-separated SPOT ids, e.g. BTC-USDT,ETH-BTC")
    p.add_argument("--checksum", choices=("zero", "crc32"), default="zero", help="books checksum mode")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> V5Settings:
    """Settings from the options; also accepts ``okex-recorder simulate``'s namespace (``symbols`` as
    instrument ids, None for unset options). Raises ConfigError for a bad value."""
    changes: dict[str, Any] = {}
    for attr, key in (("seed", "seed"), ("host", "host"), ("port", "port"), ("rate", "updates_per_second"),
                      ("checksum", "checksum")):  # fmt: skip
        value = getattr(args, attr, None)
        if value is not None:
            changes[key] = value
    ids = getattr(args, "instruments", None) or getattr(args, "symbols", None)
    if ids:
        changes["instruments"] = tuple(i.strip() for i in ids.split(",") if i.strip())
    return V5Settings(**changes)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (for ``okex-recorder simulate --venue okx_v5``); 0 on a clean stop.
    Raises ConfigError for bad options."""
    asyncio.run(serve(settings_from_args(args)))
    return 0


async def serve(settings: V5Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(settings) as sim:
        print(f"okx v5 simulator: seed {settings.seed}, instruments {','.join(settings.instruments)}")
        print(f"  REST         {sim.rest_url}  (paths /api/v5/...)")
        print(f"  WS public    {sim.public_url}")
        print(f"  WS business  {sim.business_url}")
        print(f"  WS private   {sim.private_url}")
        if settings.account(DEMO_API_KEY) is not None:
            print(f"  demo api key     {DEMO_API_KEY}")
            print(f"  demo secret      {DEMO_SECRET}")
            print(f"  demo passphrase  {DEMO_PASSPHRASE}")
        print("  Ctrl-C to stop", flush=True)
        await stop.wait()
    print("okx v5 simulator: stopped", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

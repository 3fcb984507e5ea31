"""The local OKX v5 exchange simulator (docs/simulator.md "OKX v5 mode").

``Simulator`` (async context manager) serves the v5 REST API (``/api/v5/...``)
and the public, business and private WebSocket URLs (``/ws/v5/...``) on one
loopback port, around the shared seeded market model (depth 400), with a demo
account that has three months of history, faults on demand and the ground truth
of everything sent. Run it with ``python -m recorder.simulator.okx_v5``.
"""

from recorder.simulator.okx_v5.server import Simulator, SimulatorThread
from recorder.simulator.okx_v5.settings import (
    DEMO_API_KEY,
    DEMO_PASSPHRASE,
    DEMO_SECRET,
    V5Account,
    V5Settings,
)

__all__ = [
    "DEMO_API_KEY",
    "DEMO_PASSPHRASE",
    "DEMO_SECRET",
    "Simulator",
    "SimulatorThread",
    "V5Account",
    "V5Settings",
]

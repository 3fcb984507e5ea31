"""The local OKEx v1 exchange simulator (docs/simulator.md).

``Simulator`` (async context manager) and ``SimulatorThread`` (sync, background
thread) serve the WebSocket and REST APIs of PROTOCOL.md on loopback, around a
seeded market model (:mod:`.market`) and simulated accounts (:mod:`.accounts`),
with faults on demand (:mod:`.faults`) and the ground truth of what was sent
(:mod:`.truth`).
"""

from recorder.simulator.server import Simulator, SimulatorThread
from recorder.simulator.settings import (
    DEMO_API_KEY,
    DEMO_SECRET,
    AccountSettings,
    FaultSettings,
    FrameFault,
    RateLimits,
    SimulatorSettings,
    load_settings,
)

__all__ = [
    "DEMO_API_KEY",
    "DEMO_SECRET",
    "AccountSettings",
    "FaultSettings",
    "FrameFault",
    "RateLimits",
    "Simulator",
    "SimulatorSettings",
    "SimulatorThread",
    "load_settings",
]

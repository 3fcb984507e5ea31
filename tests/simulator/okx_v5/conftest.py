"""Fixtures for the v5 simulator's tests: a fixed seed, a hand-driven market (``advance()``), fast timers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from recorder.simulator.okx_v5 import Simulator, V5Settings

TEST_SEED = 20260101


def v5_settings(**changes: object) -> V5Settings:
    base: dict[str, object] = {"seed": TEST_SEED, "updates_per_second": 0.0, "idle_timeout": 30.0}
    base.update(changes)
    return V5Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def v5_sim_settings(request: pytest.FixtureRequest) -> V5Settings:
    """Override by indirect parametrisation with a dict of changes."""
    return v5_settings(**getattr(request, "param", {}))


@pytest.fixture
async def v5sim(v5_sim_settings: V5Settings) -> AsyncIterator[Simulator]:
    async with Simulator(v5_sim_settings) as sim:
        yield sim

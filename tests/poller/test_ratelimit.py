"""The sliding-window limiter, driven by an injected clock (no real sleeps)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.config import PollerSettings, RateLimit
from recorder.errors import ConfigError
from recorder.poller.ratelimit import RateLimiter, process_limiter


class FakeClock:
    """Monotonic seconds that only move when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _limiter(clock: FakeClock, **kwargs: object) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, slack=0.0, **kwargs)  # type: ignore[arg-type]


def test_userinfo_allows_six_per_two_seconds_then_waits_for_the_oldest_to_expire() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    assert [limiter.reserve("userinfo.do") for _ in range(6)] == [0.0] * 6
    assert limiter.reserve("userinfo.do") == pytest.approx(2.0)
    clock.now += 0.5
    assert limiter.reserve("userinfo.do") == pytest.approx(1.5)
    clock.now += 1.5
    assert limiter.reserve("userinfo.do") == 0.0  # the first grant left the window


def test_endpoints_have_separate_windows() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    for _ in range(6):
        assert limiter.reserve("userinfo.do") == 0.0
    assert limiter.reserve("userinfo.do") > 0
    assert [limiter.reserve("order_info.do") for _ in range(20)] == [0.0] * 20
    assert limiter.reserve("order_info.do") == pytest.approx(2.0)
    assert limiter.reserve("order_history.do") == 0.0


def test_ip_limit_caps_all_endpoints_together() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, ip_limit=RateLimit(25, 300.0))
    granted = 0
    for endpoint in ("order_info.do", "order_history.do", "ticker.do"):
        while limiter.reserve(endpoint) == 0.0:
            granted += 1
    assert granted == 25  # 20 order_info + 5 order_history; ticker waits for the IP window
    assert limiter.reserve("ticker.do") == pytest.approx(300.0)


def test_slack_widens_every_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep, slack=0.1)
    for _ in range(6):
        limiter.reserve("userinfo.do")
    assert limiter.reserve("userinfo.do") == pytest.approx(2.1)


def test_a_refused_reservation_takes_nothing() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, ip_limit=RateLimit(6, 300.0))
    for _ in range(6):
        limiter.reserve("userinfo.do")
    for _ in range(100):
        assert limiter.reserve("userinfo.do") > 0
    clock.now += 2.0
    assert limiter.reserve("order_info.do") > 0  # still only 6 in the IP window, all taken


def test_ban_stops_every_endpoint_until_it_ends() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    end = limiter.ban(3600)
    assert end == clock.now + 3600
    assert limiter.reserve("ticker.do") == pytest.approx(3600)
    assert limiter.banned_for == pytest.approx(3600)
    clock.now += 3600
    assert limiter.banned_for == 0.0
    assert limiter.reserve("ticker.do") == 0.0


async def test_acquire_sleeps_exactly_until_a_slot_is_free() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    start = clock.now
    for _ in range(60):
        await limiter.acquire("order_info.do")
    # 20 at t=0, 20 at t=2, 20 at t=4: the bound of 20 / 2 s, not slower.
    assert clock.now - start == pytest.approx(4.0)


async def test_acquire_waits_out_a_ban() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.ban(10)
    await limiter.acquire("userinfo.do")
    assert clock.slept == [pytest.approx(10.0)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1.0), min_size=1, max_size=120))
def test_no_window_ever_holds_more_than_the_limit(gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    times: list[float] = []

    async def drive() -> None:
        for gap in gaps:
            clock.now += gap
            await limiter.acquire("userinfo.do")
            times.append(clock.now)

    asyncio.run(drive())
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 2.0) <= 6


def test_settings_limits_and_parsing() -> None:
    settings_ = PollerSettings(account_limit=RateLimit.parse("3/1s"))
    assert settings_.limit_for("userinfo.do") == RateLimit(3, 1.0)
    assert settings_.limit_for("wallet_info.do") == RateLimit(3, 1.0)
    assert settings_.limit_for("order_history.do") == RateLimit(20, 2.0)
    assert RateLimit.parse("3000/300") == RateLimit(3000, 300.0)
    assert str(RateLimit(20, 2.0)) == "20/2s"
    with pytest.raises(ValueError, match="20/2s"):
        RateLimit.parse("twenty")
    with pytest.raises(ConfigError):
        RateLimit(0, 2.0)


def test_process_limiter_is_one_instance() -> None:
    assert process_limiter() is process_limiter(PollerSettings())

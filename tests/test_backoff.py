"""The one backoff (recorder.backoff)."""

import itertools
import random

import pytest

from recorder.backoff import BackoffPolicy, backoff


def _nominal(policy: BackoffPolicy, count: int) -> list[float]:
    """The un-jittered delays after the first: initial, initial*factor, ... capped."""
    out, delay = [], policy.initial
    for _ in range(count):
        out.append(delay)
        delay = min(delay * policy.factor, policy.cap)
    return out


def test_first_delay_is_random_within_zero_and_initial() -> None:
    policy = BackoffPolicy(initial=2.0)
    firsts = [next(backoff(policy, random.Random(seed))) for seed in range(200)]
    assert all(0 <= d <= 2.0 for d in firsts)
    assert len(set(firsts)) == 200  # really random, not a constant
    assert min(firsts) < 0.2 and max(firsts) > 1.8


def test_delays_grow_geometrically_and_stay_within_jitter_bounds() -> None:
    policy = BackoffPolicy(initial=0.5, factor=2.0, cap=60.0, jitter=0.5)
    delays = list(itertools.islice(backoff(policy, random.Random(7)), 1, 13))
    nominal = _nominal(policy, 12)
    assert nominal[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    for got, d in zip(delays, nominal, strict=True):
        assert d * 0.5 <= got <= d


def test_delays_are_capped_forever() -> None:
    policy = BackoffPolicy(initial=1.0, factor=3.0, cap=10.0, jitter=0.0)
    delays = list(itertools.islice(backoff(policy, random.Random(1)), 1, 50))
    assert delays[:4] == [1.0, 3.0, 9.0, 10.0]
    assert delays[3:] == [10.0] * 46


def test_without_jitter_the_sequence_is_exact_and_with_jitter_it_varies() -> None:
    policy = BackoffPolicy(initial=1.0, factor=2.0, cap=8.0, jitter=0.0)
    assert list(itertools.islice(backoff(policy, random.Random(3)), 1, 6)) == [1.0, 2.0, 4.0, 8.0, 8.0]
    jittered = BackoffPolicy(initial=1.0, factor=2.0, cap=8.0, jitter=1.0)
    a = list(itertools.islice(backoff(jittered, random.Random(3)), 20))
    b = list(itertools.islice(backoff(jittered, random.Random(4)), 20))
    assert a != b
    assert all(0 <= d <= 8.0 for d in a + b)


def test_same_seed_gives_the_same_delays() -> None:
    policy = BackoffPolicy()
    assert list(itertools.islice(backoff(policy, random.Random(42)), 10)) == list(
        itertools.islice(backoff(policy, random.Random(42)), 10)
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": -1}, {"cap": 0}, {"factor": 0.5}, {"jitter": -0.1}, {"jitter": 1.5}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid backoff policy"):
        BackoffPolicy(**kwargs)

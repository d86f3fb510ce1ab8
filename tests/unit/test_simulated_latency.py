"""The simulated provider's latency distributions: parsed strictly, drawn as described."""

from __future__ import annotations

import random
import statistics

import pytest
from pydantic import ValidationError

from shared.settings import Settings
from shared.simulated_latency import parse_latency


def test_each_distribution_draws_what_it_says() -> None:
    rng = random.Random(16)
    assert parse_latency("constant:6000").sample(rng) == 6.0
    uniform = [parse_latency("uniform:2000:10000").sample(rng) for _ in range(20_000)]
    assert min(uniform) >= 2.0 and max(uniform) <= 10.0
    assert statistics.mean(uniform) == pytest.approx(6.0, abs=0.1)
    lognormal = parse_latency("lognormal:3000:30000")
    draws = sorted(lognormal.sample(rng) for _ in range(100_000))
    assert draws[50_000] == pytest.approx(3.0, rel=0.05)  # the median
    assert draws[99_000] == pytest.approx(30.0, rel=0.1)  # the 99th percentile
    assert statistics.mean(draws) == pytest.approx(lognormal.mean_seconds(), rel=0.05)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "lognormal",
        "lognormal:3000",
        "lognormal:30000:3000",
        "uniform:10:2",
        "gamma:1:2",
        "constant:-5",
        "constant:nan",
        "uniform:a:b",
    ],
)
def test_a_bad_distribution_is_refused_with_the_formats(spec: str) -> None:
    with pytest.raises(ValueError, match="constant:MS, uniform:MIN_MS:MAX_MS or lognormal"):
        parse_latency(spec)


def test_a_bad_setting_stops_the_process_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_SIMULATED_LATENCY", "lognormal:3000")
    with pytest.raises(ValidationError, match="simulated latency 'lognormal:3000'"):
        Settings()
    monkeypatch.setenv("JOBYARD_SIMULATED_LATENCY", " uniform:2000:10000 ")
    assert Settings().simulated_latency == "uniform:2000:10000"

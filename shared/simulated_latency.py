"""The simulated provider's latency: constant, uniform, or lognormal with a long tail.

``JOBYARD_SIMULATED_LATENCY`` names a distribution, in milliseconds:

- ``constant:6000`` — every call takes 6 s;
- ``uniform:2000:10000`` — 2 s + U[0, 8 s];
- ``lognormal:3000:30000`` — median 3 s, 99th percentile 30 s (real answers with web
  search: most take seconds, a few take half a minute).

Parsed where settings are read, so a bad value stops the process at start-up with a
message saying what is expected.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist

FORMATS = "constant:MS, uniform:MIN_MS:MAX_MS or lognormal:MEDIAN_MS:P99_MS"
# z of the 99th percentile of the standard normal distribution.
Z99 = NormalDist().inv_cdf(0.99)


@dataclass(frozen=True)
class LatencyDistribution:
    """Seconds a simulated call takes, drawn per call."""

    kind: str
    first_ms: float
    second_ms: float = 0.0

    def sample(self, rng: random.Random | None = None) -> float:
        draw = rng or random
        if self.kind == "constant":
            return self.first_ms / 1000
        if self.kind == "uniform":
            return draw.uniform(self.first_ms, self.second_ms) / 1000
        # lognormal: ln(latency) ~ N(mu, sigma), median e^mu, p99 e^(mu + z99 sigma)
        mu = math.log(self.first_ms)
        sigma = (math.log(self.second_ms) - mu) / Z99
        return draw.lognormvariate(mu, sigma) / 1000

    def mean_seconds(self) -> float:
        """The distribution's mean (what the latency bound of a benchmark divides by)."""
        if self.kind == "constant":
            return self.first_ms / 1000
        if self.kind == "uniform":
            return (self.first_ms + self.second_ms) / 2000
        mu = math.log(self.first_ms)
        sigma = (math.log(self.second_ms) - mu) / Z99
        return math.exp(mu + sigma * sigma / 2) / 1000


def parse_latency(spec: str) -> LatencyDistribution:
    """``kind:ms[:ms]`` as a distribution; ValueError naming the formats otherwise."""
    kind, _, rest = spec.strip().partition(":")
    try:
        numbers = [float(part) for part in rest.split(":")] if rest else []
    except ValueError:
        raise ValueError(f"simulated latency {spec!r}: expected {FORMATS}") from None
    if any(not math.isfinite(n) or n < 0 for n in numbers):
        raise ValueError(
            f"simulated latency {spec!r}: milliseconds are finite and >= 0 ({FORMATS})"
        )
    if kind == "constant" and len(numbers) == 1:
        return LatencyDistribution(kind, numbers[0])
    if kind == "uniform" and len(numbers) == 2 and numbers[0] <= numbers[1]:
        return LatencyDistribution(kind, numbers[0], numbers[1])
    if kind == "lognormal" and len(numbers) == 2 and 0 < numbers[0] < numbers[1]:
        return LatencyDistribution(kind, numbers[0], numbers[1])
    raise ValueError(
        f"simulated latency {spec!r}: expected {FORMATS} "
        "(uniform's MIN <= MAX; lognormal's 0 < MEDIAN < P99)"
    )

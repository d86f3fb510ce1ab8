"""The simulated provider: offline, deterministic answers for development and benchmarks.

It never calls anything. Its answer depends only on the query, model and run (so it is
repeatable), mentions some of the project's brands, cites a few URLs, and every result
written from it says ``simulated: true``. Latency and failure rate come from settings:
``JOBYARD_SIMULATED_LATENCY`` (a distribution: constant, uniform or lognormal, see
:mod:`shared.simulated_latency`), else ``JOBYARD_SIMULATED_LATENCY_MS`` plus up to
``JOBYARD_SIMULATED_LATENCY_JITTER_MS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from shared.settings import Settings
from shared.simulated_latency import LatencyDistribution, parse_latency
from worker.providers.base import AiAnswer, AiRequest, ProviderError, Served, WebSearch
from worker.providers.common import distinct, web_source

SOURCE_DOMAINS = (
    "en.wikipedia.org",
    "www.reddit.com",
    "www.g2.com",
    "www.trustpilot.com",
    "www.forbes.com",
    "techcrunch.com",
    "www.capterra.com",
    "news.ycombinator.com",
)


class SimulatedProvider:
    """Answers every model offline; see the module docstring."""

    name = "simulated"

    def __init__(self, settings: Settings) -> None:
        self.latency: LatencyDistribution
        if settings.simulated_latency:
            self.latency = parse_latency(settings.simulated_latency)
        else:
            low = settings.simulated_latency_ms
            high = low + settings.simulated_latency_jitter_ms
            self.latency = LatencyDistribution("uniform", low, high)
        self.failure_rate = settings.simulated_failure_rate

    def prepare(self) -> None:
        """Nothing to build: the simulation calls nobody."""

    async def answer(self, request: AiRequest) -> AiAnswer:
        latency = self.latency.sample()
        if latency:
            await asyncio.sleep(latency)
        # Failures vary per attempt (so a retry can succeed); answers do not.
        fate = random.Random(f"{request.seed}:{request.attempt}")
        if self.failure_rate and fate.random() < self.failure_rate:
            raise ProviderError("simulated provider failure (HTTP 503)", retryable=True)
        rng = random.Random(hashlib.sha256(request.seed.encode()).hexdigest())
        brands = [b for b in request.brand_names if rng.random() < 0.6]
        rng.shuffle(brands)
        domains = rng.sample(SOURCE_DOMAINS, k=rng.randint(1, 3))
        slug = "-".join(request.query.lower().split()[:4]) or "answer"
        citations = [f"https://{d}/{slug}-{rng.randint(100, 999)}" for d in domains]
        lines = [
            f"[simulated answer from {request.model}; {request.language}-{request.country}]",
            f"Asked: {request.query}",
        ]
        if brands:
            lines.append("Options often recommended: " + ", ".join(brands) + ".")
            lines.append(f"{brands[0]} is frequently cited for reliability.")
        else:
            lines.append("No specific brand stands out in the sources reviewed.")
        lines.append("Sources: " + " ".join(citations))
        sources = distinct(web_source(url) for url in citations)
        return AiAnswer(
            text="\n".join(lines),
            provider=self.name,
            model=request.model,
            cited=sources,
            retrieved=sources,
            served=Served(model=f"simulated:{request.model}"),
            web_search=WebSearch.ON if request.web_search else WebSearch.OFF,
            simulated=True,
        )

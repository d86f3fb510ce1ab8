"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample: (name, labels, value)."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0: none)."""
    return sum(
        v
        for n, got, v in samples(text)
        if n == name and all(got.get(k) == want for k, want in labels.items())
    )


def has(text: str, name: str, **labels: str) -> bool:
    return any(
        n == name and all(got.get(k) == want for k, want in labels.items())
        for n, got, _ in samples(text)
    )


def scrape(port: int, timeout: float = 10) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        body: bytes = r.read()
    return body.decode()

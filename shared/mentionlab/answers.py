"""What an AI answer says about a project: the brands it mentions and the sources it cites."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

URL_PATTERN = re.compile(r"https?://[^\s)\]>\"'}]+", re.IGNORECASE)


@dataclass(frozen=True)
class Brand:
    """A name to look for: the project's own (primary, with its aliases) or a competitor."""

    display_name: str
    aliases: tuple[str, ...]
    is_primary: bool


def project_brands(name: str, aliases: list[str], competitors: list[str]) -> list[Brand]:
    """The project itself (with its aliases) followed by each competitor."""
    brands = [Brand(name, tuple(a for a in aliases if a), True)]
    brands += [Brand(c, (), False) for c in competitors if c]
    return brands


@lru_cache(maxsize=4096)
def _pattern(brand: Brand) -> re.Pattern[str]:
    names = sorted({brand.display_name, *brand.aliases}, key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names if n)
    # Word boundaries that also work for names ending in punctuation ("Acme Inc.").
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def find_mentions(text: str, brands: list[Brand]) -> list[dict[str, Any]]:
    """Per brand: mentioned or not, how often, and its rank among brands by first mention."""
    found = []
    for brand in brands:
        matches = list(_pattern(brand).finditer(text))
        found.append((brand, len(matches), matches[0].start() if matches else None))
    order = sorted((offset, i) for i, (_, _, offset) in enumerate(found) if offset is not None)
    rank = {i: position for position, (_, i) in enumerate(order, start=1)}
    return [
        {
            "displayName": brand.display_name,
            "isPrimary": brand.is_primary,
            "mentioned": count > 0,
            "mentionCount": count,
            "position": rank.get(i),
        }
        for i, (brand, count, _) in enumerate(found)
    ]


def extract_sources(text: str, citations: list[str] | None = None) -> list[dict[str, str]]:
    """Cited sources as ``{domain, url}``: the provider's citations, else links in the text."""
    urls = (
        citations if citations else [m.group(0).rstrip(".,;:") for m in URL_PATTERN.finditer(text)]
    )
    sources, seen = [], set()
    for url in urls:
        domain = urlsplit(url).hostname or ""
        if url in seen or not domain:
            continue
        seen.add(url)
        sources.append({"domain": domain.removeprefix("www."), "url": url})
    return sources


@dataclass(frozen=True)
class AiContext:
    """What an AI execution needs besides its claim: the question and the brands to find."""

    query_text: str
    brands: list[Brand]
    web_search: bool | None = None  # the project's choice (None: the provider's setting)

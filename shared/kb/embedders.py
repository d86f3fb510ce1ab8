"""Embedders: text → unit vectors (float32), chosen per knowledge base by name.

``hashing`` (the default) is offline and deterministic: feature hashing of normalised word
unigrams and bigrams and of character trigrams (within words) into 1,024 signed buckets,
weighted by log term frequency, L2-normalised. No model and no download: it finds rows
that share words and word pieces with the query, which suits product and order data; a
semantic embedder can be plugged in under another name.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from shared.errors import InvalidInput

HASHING_DIMENSIONS = 1024
_WORD = re.compile(r"\w+", re.UNICODE)

Embed = Callable[[Sequence[str]], np.ndarray]


def normalise(text: str) -> str:
    """Lower case, accents folded (café → cafe)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def features(text: str) -> Counter[str]:
    words = _WORD.findall(normalise(text))
    grams: Counter[str] = Counter(f"w:{w}" for w in words)
    grams.update(f"b:{a} {b}" for a, b in itertools.pairwise(words))
    for word in words:
        padded = f"<{word}>"
        grams.update(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    return grams


@lru_cache(maxsize=262_144)  # words repeat: hashing each once per process halves the cost
def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % HASHING_DIMENSIONS, 1.0 if (value >> 63) & 1 else -1.0


def hashing(texts: Sequence[str]) -> np.ndarray:
    """One row per text, unit length (a text with no words is the zero vector)."""
    matrix = np.zeros((len(texts), HASHING_DIMENSIONS), dtype=np.float32)
    for row, text in enumerate(texts):
        counted = features(text)
        if not counted:
            continue
        buckets = [_bucket(f) for f in counted]
        indices = np.fromiter((b[0] for b in buckets), dtype=np.int64, count=len(buckets))
        signs = np.fromiter((b[1] for b in buckets), dtype=np.float32, count=len(buckets))
        counts = np.fromiter(counted.values(), dtype=np.float32, count=len(buckets))
        np.add.at(matrix[row], indices, signs * (1.0 + np.log(counts)))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


EMBEDDERS: dict[str, tuple[Embed, int]] = {"hashing": (hashing, HASHING_DIMENSIONS)}


def embedder(name: str) -> tuple[Embed, int]:
    """The embedder called ``name`` and its dimensions (InvalidInput for an unknown one)."""
    try:
        return EMBEDDERS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise InvalidInput(
            f"unknown embedder {name!r}: one of {known}", details=["embedder: unknown"]
        ) from None

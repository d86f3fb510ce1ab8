"""OpenAI's embeddings endpoint, faked: ``POST <base_url>/embeddings`` (``base_url`` ends
in ``/v1`` like the real one), in the wire format of the API reference and the SDK's types.

Like the other fakes it checks the bearer key (401 ``invalid_api_key``) and the model
(404 ``model_not_found``) before anything else, then what OpenAI refuses with a 400: an
input that is not text or a list of at most 2,048 non-empty texts, a text longer than
8,192 tokens, ``dimensions`` for ``text-embedding-ada-002`` or above the model's own, an
unknown ``encoding_format``. Scripted behaviours work as everywhere: ``RateLimited()`` is
OpenAI's 429, ``Fail(500)`` its server error, ``Empty()`` a list without data.

**The vectors are not semantic.** Each is the built-in ``hashing`` embedder's vector (word,
word-pair and character-trigram features) turned by a fixed random rotation into the
model's native dimensions (1,536 or 3,072), which keeps every inner product, so search
ranks exactly as with ``hashing``; a smaller ``dimensions`` keeps the first coordinates
and normalises them again, as OpenAI documents for shortening. Every answer carries an
``x-jobyard-fake`` header saying so.
"""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache
from typing import Any

import numpy as np

from shared.kb.embedders import HASHING_DIMENSIONS, hashing
from tests.fakes.behaviours import Refusal, Reply, Truncated
from tests.fakes.server import RecordedRequest, Response
from tests.fakes.vendors import FakeOpenAI, tokens

FAKE_HEADER = "x-jobyard-fake"
FAKE_NOTE = "hashing features, rotated: lexical, not semantic"
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)


@lru_cache(maxsize=4)
def rotation(native: int) -> np.ndarray:
    """A ``native`` x 1,024 matrix with orthonormal columns, the same in every process
    (seeded): it maps the hashing space into the model's without changing any angle."""
    shape = (native, HASHING_DIMENSIONS)
    gaussian = np.random.default_rng(native).standard_normal(shape, dtype=np.float32)
    q, _ = np.linalg.qr(gaussian)  # a second or two, once per process and model size
    return q


def fake_vectors(texts: list[str], native: int, dimensions: int | None = None) -> np.ndarray:
    """The fake's vectors for ``texts`` (unit rows, float32): what a test can expect."""
    vectors = hashing(texts) @ rotation(native).T
    if dimensions is not None and dimensions < native:
        vectors = np.ascontiguousarray(vectors[:, :dimensions])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors.astype(np.float32)


class FakeOpenAIEmbeddings(FakeOpenAI):
    """OpenAI embeddings (``POST <base_url>/embeddings``); see the module's docstring.

    ``ignore_encoding_format = True`` answers floats even when base64 is asked for, as
    some OpenAI-compatible servers do.
    """

    routes = ("/embeddings",)
    #: Each model's own dimensions (OpenAI's model pages); ada-002 cannot be shortened.
    NATIVE = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
    FIXED = {"text-embedding-ada-002": 1536}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_encoding_format = False

    @classmethod
    def models(cls) -> frozenset[str]:
        return frozenset({*cls.NATIVE, *cls.FIXED})

    @staticmethod
    def inputs(request: RecordedRequest) -> list[str]:
        """The texts a request asked to embed (a lone string is one text)."""
        body = request.json if isinstance(request.json, dict) else {}
        value = body.get("input")
        return [value] if isinstance(value, str) else list(value or [])

    def rejection(self, request: RecordedRequest) -> Response | None:
        refused = super().rejection(request)  # the key, then the model
        if refused is not None:
            return refused
        body: dict[str, Any] = request.json
        value = body.get("input")
        texts = [value] if isinstance(value, str) else value
        if (
            not isinstance(texts, list)
            or not 0 < len(texts) <= MAX_INPUTS
            or not all(isinstance(t, str) and t for t in texts)  # token arrays: text only here
        ):
            return self.error(400, _INVALID_INPUT, {}, request)
        longest = max(tokens(t) for t in texts)
        if longest > MAX_INPUT_TOKENS:
            message = (
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however "
                f"you requested {longest} tokens (input). Please reduce your prompt."
            )
            return self.error(400, message, {}, request)
        model, dimensions = body["model"], body.get("dimensions")
        if dimensions is not None:
            if model in self.FIXED:
                return self.error(
                    400, "This model does not support specifying dimensions.", {}, request
                )
            if not isinstance(dimensions, int) or not 1 <= dimensions <= self.NATIVE[model]:
                message = (
                    f"Invalid value for 'dimensions' = {dimensions}: 1 to {self.NATIVE[model]}."
                )
                return self.error(400, message, {}, request)
        if body.get("encoding_format", "float") not in ("float", "base64"):
            message = f"Invalid value for 'encoding_format' = {body['encoding_format']}."
            return self.error(400, message, {}, request)
        return None

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return super().error(status, message, {**headers, FAKE_HEADER: FAKE_NOTE}, request)

    def embeddings(self, request: RecordedRequest, data: list[dict[str, Any]]) -> Response:
        texts = self.inputs(request)
        used = sum(tokens(t) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": request.json["model"],
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
        headers = {"x-request-id": f"req_{secrets.token_hex(16)}", FAKE_HEADER: FAKE_NOTE}
        return Response.json(200, payload, headers)

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        body: dict[str, Any] = request.json
        model = body["model"]
        native = self.NATIVE.get(model) or self.FIXED[model]
        vectors = fake_vectors(self.inputs(request), native, body.get("dimensions"))
        as_base64 = body.get("encoding_format") == "base64" and not self.ignore_encoding_format
        data = [
            {
                "object": "embedding",
                "index": i,
                # base64 of the little-endian float32 bytes, as the SDK decodes it
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if as_base64
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        return self.embeddings(request, data)

    def empty(self, request: RecordedRequest) -> Response:
        return self.embeddings(request, [])

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        raise NotImplementedError("an embedding is never truncated: script Fail or Raw instead")

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        raise NotImplementedError("the embeddings endpoint never refuses: script Fail instead")

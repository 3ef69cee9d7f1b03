"""OpenAI Embeddings, as the simulator answers it (`POST /v1/embeddings`). It never streams.

Each input (a string, or a token array) gets a unit vector of `dimensions` floats (default 8),
a pure function of the seed, the model and the input; ``encoding_format="base64"`` packs it
as little-endian float32, as the API (and the openai SDK's default) does. Tokens: a string
costs ``max(1, ceil(bytes / 4))``, a token array its length.
"""

from __future__ import annotations

import base64
import math
import random
import struct
import zlib
from typing import Any

from holysheep_lab.sim.text import compact
from holysheep_lab.sim.wire import Call, envelope_problem, openai_error

__all__ = ["DEFAULT_DIMENSIONS", "EMBEDDINGS", "EmbeddingsFormat", "embed", "embedding_tokens"]

DEFAULT_DIMENSIONS = 8
_MAX_DIMENSIONS = 4096


def _inputs(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if raw and all(type(t) is int for t in raw):
        return [raw]  # one token array
    return list(raw)


def embedding_tokens(raw: Any) -> int:
    """The simulated prompt tokens of a valid `input`."""
    return sum(len(item) if isinstance(item, list) else max(1, (len(item.encode("utf-8", "surrogatepass")) + 3) // 4)
               for item in _inputs(raw))


def embed(seed: int, model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The unit vector of one input: deterministic."""
    data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else compact(item)
    rng = random.Random(zlib.crc32(data, zlib.crc32(f"{seed}\0{model}".encode())))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class EmbeddingsFormat:
    name: str = "embeddings"
    paths: tuple[str, ...] = ("/v1/embeddings", "/embeddings")

    def validate(self, body: Any) -> str | None:
        if (problem := envelope_problem(body)) is not None:
            return problem
        raw = body.get("input")
        ok = (isinstance(raw, str) and raw != "") or (
            isinstance(raw, list) and bool(raw) and (
                all(type(t) is int for t in raw)
                or all((isinstance(i, str) and i != "") or (isinstance(i, list) and bool(i)
                                                              and all(type(t) is int for t in i)) for i in raw)
            )
        )
        if not ok:
            return "'input' must be a non-empty string, an array of them, an array of tokens or of token arrays"
        dims = body.get("dimensions")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int)
                                 or not 1 <= dims <= _MAX_DIMENSIONS):
            return f"dimensions must be an integer between 1 and {_MAX_DIMENSIONS}"
        if body.get("encoding_format") not in (None, "float", "base64"):
            return "encoding_format must be 'float' or 'base64'"
        return None

    def answer(self, call: Call) -> dict[str, Any]:
        body = call.body
        dims = body.get("dimensions") or DEFAULT_DIMENSIONS
        packed = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(_inputs(body["input"])):
            vector = embed(call.cfg.seed, call.model, item, dims)
            value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if packed else vector
            data.append({"object": "embedding", "index": index, "embedding": value})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": call.model}
        if call.fault != "no_usage":
            tokens = embedding_tokens(body["input"])
            if call.fault == "negative_usage":
                tokens = -tokens
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
            cost = call.cfg.relay_cost(call.model, tokens, 0, 0)
            if cost is not None:
                answer["usage"]["cost"] = cost
        return answer

    def stream(self, call: Call) -> list[bytes] | None:
        return None

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
        return openai_error(status, code, message, kind)


EMBEDDINGS = EmbeddingsFormat()

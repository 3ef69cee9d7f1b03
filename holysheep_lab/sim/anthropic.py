"""Anthropic Messages, as the simulator answers it (`POST /v1/messages`, also `/messages`).

Input tokens: ``ceil(b / 4) + 4`` per message and for the system prompt (an image block counts
as IMAGE_TOKENS), plus ``ceil(b / 4)`` of the tools' JSON. Of that total,
``floor(total * cached_ratio)`` is reported as `cache_read_input_tokens` and
``floor(total * cache_write_ratio)`` as `cache_creation_input_tokens`; `input_tokens` is the
rest (Anthropic's usage counts them apart). `cache_creation` splits the writes by TTL: all
1-hour when a block of the request asks for ``cache_control: {"ttl": "1h"}``, else 5-minute.
`max_tokens` is required, as in the API. Streams carry the input usage in `message_start` and
the final, cumulative counts in `message_delta`, then `message_stop`. Errors have Anthropic's shape (``{"type": "error", "error": {...}}``).
"""

from __future__ import annotations

from typing import Any

from holysheep_lab.sim.text import SimulatedCompletion, compact, pieces, simulate_answer, text_bytes
from holysheep_lab.sim.wire import Call, cut, envelope_problem, sse

__all__ = ["ANTHROPIC", "AnthropicFormat", "total_input_tokens"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
                504: "timeout_error"}


def _turns(body: Any) -> list[Any]:
    system = body.get("system")
    messages = list(body.get("messages") or ())
    return [{"role": "system", "content": system}, *messages] if system else messages


def _asks_1h(body: Any) -> bool:
    """Whether a block of the request (system, messages, tools) asks for a 1-hour cache."""
    blocks: list[Any] = [body.get("system"), body.get("tools")]
    blocks += [m.get("content") for m in body.get("messages") or () if isinstance(m, dict)]
    stack = [b for b in blocks if isinstance(b, list)]
    while stack:
        for block in stack.pop():
            if isinstance(block, dict):
                control = block.get("cache_control")
                if isinstance(control, dict) and control.get("ttl") == "1h":
                    return True
    return False


def total_input_tokens(body: Any) -> int:
    """All the input tokens of a valid request (uncached, cache reads and cache writes)."""
    tokens = sum((text_bytes(turn) + 3) // 4 + 4 for turn in _turns(body))
    if body.get("tools"):
        tokens += (len(compact(body["tools"])) + 3) // 4
    return tokens


class AnthropicFormat:
    name: str = "anthropic.messages"
    paths: tuple[str, ...] = ("/v1/messages", "/messages")

    def validate(self, body: Any) -> str | None:
        if (problem := envelope_problem(body, "model: Field required")) is not None:
            return problem
        cap = body.get("max_tokens")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            return "max_tokens: Field required (an integer >= 1)"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: Field required (a non-empty array)"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            if not isinstance(m.get("content"), str | list):
                return f"messages.{i}.content: Input should be a string or an array of blocks"
        if not isinstance(body.get("system"), str | list | None):
            return "system: Input should be a string or an array of text blocks"
        if not isinstance(body.get("stream", False), bool | None):
            return "stream: Input should be a valid boolean"
        return None

    def _result(self, call: Call) -> SimulatedCompletion:
        body, cfg = call.body, call.cfg
        said = (body.get("system") or "", body["messages"])
        return simulate_answer(call.model, said, total_input_tokens(body), body["max_tokens"], seed=cfg.seed,
                               cached_ratio=cfg.cached_ratio, reasoning_ratio=cfg.reasoning_ratio)

    def _input_usage(self, result: SimulatedCompletion, call: Call) -> dict[str, Any]:
        total, reads = result.prompt_tokens, result.cached_tokens
        writes = call.cfg.cache_writes(total, reads)
        hour = writes if _asks_1h(call.body) else 0
        return {"input_tokens": total - reads - writes, "cache_creation_input_tokens": writes,
                "cache_read_input_tokens": reads,
                "cache_creation": {"ephemeral_5m_input_tokens": writes - hour, "ephemeral_1h_input_tokens": hour}}

    def _output(self, result: SimulatedCompletion, call: Call) -> int:
        return -result.completion_tokens if call.fault == "negative_usage" else result.completion_tokens

    def _usage(self, result: SimulatedCompletion, call: Call) -> dict[str, Any]:
        usage: dict[str, Any] = {**self._input_usage(result, call), "output_tokens": self._output(result, call)}
        if result.reasoning_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": result.reasoning_tokens}
        cost = call.cfg.relay_cost(call.model, result.prompt_tokens - result.cached_tokens, result.cached_tokens,
                                   usage["output_tokens"])
        if cost is not None:
            usage["cost"] = cost
        return usage

    @staticmethod
    def _stop(result: SimulatedCompletion) -> str:
        return "max_tokens" if result.finish_reason == "length" else "end_turn"

    def answer(self, call: Call) -> dict[str, Any]:
        result = self._result(call)
        answer: dict[str, Any] = {
            "id": f"msg_{call.call_id}", "type": "message", "role": "assistant", "model": call.model,
            "content": [{"type": "text", "text": result.text}] if result.text else [],
            "stop_reason": self._stop(result), "stop_sequence": None,
        }
        if call.fault != "no_usage":
            answer["usage"] = self._usage(result, call)
        return answer

    def stream(self, call: Call) -> list[bytes] | None:
        if not call.body.get("stream"):
            return None
        result = self._result(call)
        usage = None if call.fault == "no_usage" else self._usage(result, call)
        message: dict[str, Any] = {"id": f"msg_{call.call_id}", "type": "message", "role": "assistant",
                                   "model": call.model, "content": [], "stop_reason": None, "stop_sequence": None}
        if usage is not None:
            message["usage"] = {**self._input_usage(result, call), "output_tokens": 1}
        events = [
            sse("message_start", {"type": "message_start", "message": message}),
            sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}),
            sse("ping", {"type": "ping"}),
        ]
        events += [sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}})
                    for piece in pieces(result.text, call.cfg.stream_chunk_words)]
        if call.fault in ("cut_stream", "malformed"):
            return cut(events, call.fault, [], 3)
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": self._stop(result), "stop_sequence": None}}
        if usage is not None:
            delta["usage"] = usage  # cumulative, input counts included (as the API sends them today)
        events.append(sse("message_delta", delta))
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


ANTHROPIC = AnthropicFormat()

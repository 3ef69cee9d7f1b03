"""OpenAI Chat Completions, as the simulator answers it (`POST /v1/chat/completions`)."""

from __future__ import annotations

from typing import Any

from holysheep_lab.sim.text import SimulatedCompletion, pieces, simulate_completion
from holysheep_lab.sim.wire import Call, cut, envelope_problem, openai_error, sse_data

__all__ = ["CHAT", "ChatFormat", "chat_usage"]


def chat_usage(result: SimulatedCompletion, call: Call) -> dict[str, Any] | None:
    """The `usage` object of Chat Completions (and legacy Completions); None for no_usage."""
    if call.fault == "no_usage":
        return None
    completion = result.completion_tokens
    if call.fault == "negative_usage":
        completion = -completion
    usage: dict[str, Any] = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": result.prompt_tokens + completion,
        "prompt_tokens_details": _prompt_details(result, call),
        "completion_tokens_details": {
            "reasoning_tokens": result.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    cost = call.cfg.relay_cost(call.model, result.prompt_tokens - result.cached_tokens, result.cached_tokens,
                               completion)
    if cost is not None:
        usage["cost"] = cost
    return usage


def _prompt_details(result: SimulatedCompletion, call: Call) -> dict[str, int]:
    details = {"cached_tokens": result.cached_tokens, "audio_tokens": 0}
    if call.cfg.cache_write_ratio:  # as OpenRouter reports them: a part of prompt_tokens
        details["cache_write_tokens"] = call.cfg.cache_writes(result.prompt_tokens, result.cached_tokens)
    return details


def _validate_caps(body: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"{name} must be an integer >= 1"
    if not isinstance(body.get("stream", False), bool | None):
        return "stream must be a boolean"
    return None


class ChatFormat:
    name: str = "chat.completions"
    paths: tuple[str, ...] = ("/v1/chat/completions", "/chat/completions")

    def validate(self, body: Any) -> str | None:
        """The reason a chat request is invalid, or None (messages mirror OpenAI's wording)."""
        if (problem := envelope_problem(body)) is not None:
            return problem
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' is a required property and must be a non-empty array"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                return f"messages[{i}] must be an object with a string 'role'"
            if not isinstance(m.get("content"), str | list | None):
                return f"messages[{i}].content must be a string, an array or null"
        return _validate_caps(body, "max_tokens", "max_completion_tokens")

    def _result(self, call: Call) -> SimulatedCompletion:
        cfg = call.cfg
        return simulate_completion(call.body, seed=cfg.seed, cached_ratio=cfg.cached_ratio,
                                   reasoning_ratio=cfg.reasoning_ratio)

    def answer(self, call: Call) -> dict[str, Any]:
        result = self._result(call)
        usage = chat_usage(result, call)
        return {
            "id": f"chatcmpl-{call.call_id}",
            "object": "chat.completion",
            "created": call.created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            **({} if usage is None else {"usage": usage}),
            "system_fingerprint": "fp_holysheep_sim",
        }

    def stream(self, call: Call) -> list[bytes] | None:
        body = call.body
        if not body.get("stream"):
            return None
        result = self._result(call)
        usage = chat_usage(result, call)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        head = {"id": f"chatcmpl-{call.call_id}", "object": "chat.completion.chunk", "created": call.created,
                "model": call.model, "system_fingerprint": "fp_holysheep_sim"}
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse_data({**head, "choices": [choice], **extra})

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in pieces(result.text, call.cfg.stream_chunk_words)]
        if call.fault in ("cut_stream", "malformed"):
            return cut(events, call.fault, [b"data: [DONE]\n\n"])
        events.append(chunk({}, result.finish_reason))
        if include_usage and usage is not None:
            events.append(sse_data({**head, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
        return openai_error(status, code, message, kind)


CHAT = ChatFormat()

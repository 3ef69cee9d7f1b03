"""The OpenAI Responses API, as the simulator answers it (`POST /v1/responses`).

Input tokens: ``ceil(b / 4) + 4`` per input item and for the instructions (``b``: the UTF-8
size of their text; an image part counts as IMAGE_TOKENS), plus ``ceil(b / 4)`` of the tools'
and the output format's JSON. The cap is `max_output_tokens` (default 256); an answer that
reaches it is `incomplete` (`max_output_tokens`), as in the API. Streams are named events
ending with `response.completed` (or `response.incomplete`), which carries the usage; there
is no `[DONE]`.
"""

from __future__ import annotations

from typing import Any

from holysheep_lab.sim.text import DEFAULT_MAX_TOKENS, SimulatedCompletion, compact, pieces, simulate_answer, text_bytes
from holysheep_lab.sim.wire import Call, cut, envelope_problem, openai_error, sse

__all__ = ["RESPONSES", "ResponsesFormat", "input_tokens"]


def _items(body: Any) -> list[Any]:
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or ())
    instructions = body.get("instructions")
    return [{"role": "developer", "content": instructions}, *items] if instructions else items


def input_tokens(body: Any) -> int:
    """The simulated input tokens of a valid Responses API request."""
    tokens = sum((text_bytes(item) + 3) // 4 + 4 for item in _items(body))
    for extra in (body.get("tools"), body.get("text")):
        if extra:
            tokens += (len(compact(extra)) + 3) // 4
    return tokens


class ResponsesFormat:
    name: str = "responses"
    paths: tuple[str, ...] = ("/v1/responses", "/responses")

    def validate(self, body: Any) -> str | None:
        if (problem := envelope_problem(body)) is not None:
            return problem
        raw = body.get("input")
        if not (isinstance(raw, str) or (isinstance(raw, list) and raw)):
            return "'input' must be a string or a non-empty array of input items"
        if isinstance(raw, list) and not all(isinstance(item, dict) for item in raw):
            return "every input item must be an object"
        if not isinstance(body.get("instructions"), str | None):
            return "'instructions' must be a string"
        cap = body.get("max_output_tokens")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            return "max_output_tokens must be an integer >= 1"
        if not isinstance(body.get("stream", False), bool | None):
            return "stream must be a boolean"
        return None

    def _result(self, call: Call) -> SimulatedCompletion:
        body, cfg = call.body, call.cfg
        limit = body.get("max_output_tokens") or DEFAULT_MAX_TOKENS
        said = (body.get("instructions") or "", body.get("input"))
        return simulate_answer(call.model, said, input_tokens(body), limit, seed=cfg.seed,
                               cached_ratio=cfg.cached_ratio, reasoning_ratio=cfg.reasoning_ratio)

    def _usage(self, result: SimulatedCompletion, call: Call) -> dict[str, Any] | None:
        if call.fault == "no_usage":
            return None
        out = -result.completion_tokens if call.fault == "negative_usage" else result.completion_tokens
        inp, cached = result.prompt_tokens, result.cached_tokens
        writes = call.cfg.cache_writes(inp, cached)
        usage: dict[str, Any] = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": writes},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
            "total_tokens": inp + out,
        }
        cost = call.cfg.relay_cost(call.model, inp - cached, cached, out)
        if cost is not None:
            usage["cost"] = cost
        return usage

    def _response(self, call: Call, result: SimulatedCompletion, *, done: bool) -> dict[str, Any]:
        body = call.body
        incomplete = result.finish_reason == "length"
        output: list[dict[str, Any]] = []
        if done:
            if result.reasoning_tokens:
                output.append({"id": f"rs_{call.call_id}", "type": "reasoning", "summary": []})
            output.append(self._message(call, result.text, "incomplete" if incomplete else "completed"))
        return {
            "id": f"resp_{call.call_id}",
            "object": "response",
            "created_at": call.created,
            "status": ("incomplete" if incomplete else "completed") if done else "in_progress",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": call.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.get("store", True)),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self._usage(result, call) if done else None,
            "metadata": {},
        }

    @staticmethod
    def _message(call: Call, text: str, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {"id": f"msg_{call.call_id}", "type": "message", "status": status, "role": "assistant",
                "content": [part] if status != "in_progress" else []}

    def answer(self, call: Call) -> dict[str, Any]:
        return self._response(call, self._result(call), done=True)

    def stream(self, call: Call) -> list[bytes] | None:
        if not call.body.get("stream"):
            return None
        result = self._result(call)
        item_id = f"msg_{call.call_id}"
        seq = iter(range(1 << 30))

        def event(kind: str, **fields: Any) -> bytes:
            return sse(kind, {"type": kind, "sequence_number": next(seq), **fields})

        start = self._response(call, result, done=False)
        events = [event("response.created", response=start), event("response.in_progress", response=start)]
        index = 1 if result.reasoning_tokens else 0
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        events.append(event("response.output_item.added", output_index=index,
                            item=self._message(call, "", "in_progress")))
        events.append(event("response.content_part.added", **where,
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
        events += [event("response.output_text.delta", **where, delta=piece, logprobs=[])
                   for piece in pieces(result.text, call.cfg.stream_chunk_words)]
        if call.fault in ("cut_stream", "malformed"):
            return cut(events, call.fault, [], 4)
        final = self._response(call, result, done=True)
        message = final["output"][-1]
        events.append(event("response.output_text.done", **where, text=result.text, logprobs=[]))
        events.append(event("response.content_part.done", **where, part=message["content"][0]))
        events.append(event("response.output_item.done", output_index=index, item=message))
        terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        events.append(event(terminal, response=final))
        return events

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
        return openai_error(status, code, message, kind)


RESPONSES = ResponsesFormat()

"""OpenAI legacy Completions, as the simulator answers it (`POST /v1/completions`).

`prompt` is a string, a list of strings, a token array or a list of token arrays; each prompt
gets `n` choices, and `best_of` generations are billed (all of them, returned or not). A
string prompt costs ``ceil(bytes / 4)`` tokens, a token array its length; `max_tokens`
defaults to 16, as in the API.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from holysheep_lab.sim.chat import chat_usage
from holysheep_lab.sim.text import SimulatedCompletion, pieces, simulate_answer
from holysheep_lab.sim.wire import Call, cut, envelope_problem, openai_error, sse_data

__all__ = ["COMPLETIONS", "DEFAULT_MAX_TOKENS", "CompletionsFormat"]

DEFAULT_MAX_TOKENS = 16


def _prompts(prompt: Any) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(type(t) is int for t in prompt):
        return [prompt]  # one token array
    return list(prompt)


def _tokens(prompt: str | list[int]) -> int:
    return len(prompt) if isinstance(prompt, list) else (len(prompt.encode("utf-8", "surrogatepass")) + 3) // 4


class CompletionsFormat:
    name: str = "completions"
    paths: tuple[str, ...] = ("/v1/completions", "/completions")

    def validate(self, body: Any) -> str | None:
        if (problem := envelope_problem(body)) is not None:
            return problem
        prompt = body.get("prompt", "")
        ok = isinstance(prompt, str) or (
            isinstance(prompt, list) and bool(prompt) and (
                all(type(t) is int for t in prompt)
                or all(isinstance(p, str) or (isinstance(p, list) and all(type(t) is int for t in p)) for p in prompt)
            )
        )
        if not ok:
            return "'prompt' must be a string, an array of strings, an array of tokens or an array of token arrays"
        for name in ("max_tokens", "n", "best_of"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                return f"{name} must be an integer >= 1"
        if body.get("best_of") is not None and body["best_of"] < (body.get("n") or 1):
            return "best_of must be greater than or equal to n"
        if not isinstance(body.get("stream", False), bool | None):
            return "stream must be a boolean"
        return None

    def _results(self, call: Call) -> tuple[list[SimulatedCompletion], SimulatedCompletion]:
        """The choices returned (n per prompt) and the bill's totals (best_of per prompt)."""
        body, cfg = call.body, call.cfg
        limit = body.get("max_tokens") or DEFAULT_MAX_TOKENS
        n, best_of = body.get("n") or 1, body.get("best_of") or body.get("n") or 1
        prompts = _prompts(body.get("prompt", ""))
        returned: list[SimulatedCompletion] = []
        prompt_total = completion_total = reasoning_total = 0
        for i, prompt in enumerate(prompts):
            tokens = _tokens(prompt)
            prompt_total += tokens
            for g in range(best_of):
                r = simulate_answer(call.model, (prompt, body.get("suffix") or "", f"{i}:{g}"), tokens, limit,
                                    seed=cfg.seed, reasoning_ratio=cfg.reasoning_ratio)
                completion_total += r.completion_tokens
                reasoning_total += r.reasoning_tokens
                if g < n:
                    returned.append(r)
        cached = int(prompt_total * cfg.cached_ratio)
        bill = replace(returned[0], prompt_tokens=prompt_total, completion_tokens=completion_total,
                       cached_tokens=cached, reasoning_tokens=reasoning_total)
        return returned, bill

    def answer(self, call: Call) -> dict[str, Any]:
        returned, bill = self._results(call)
        usage = chat_usage(bill, call)
        choices = [{"text": r.text, "index": i, "logprobs": None, "finish_reason": r.finish_reason}
                   for i, r in enumerate(returned)]
        return {"id": f"cmpl-{call.call_id}", "object": "text_completion", "created": call.created,
                "model": call.model, "choices": choices, **({} if usage is None else {"usage": usage})}

    def stream(self, call: Call) -> list[bytes] | None:
        if not call.body.get("stream"):
            return None
        returned, bill = self._results(call)
        usage = chat_usage(bill, call)
        options = call.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        head = {"id": f"cmpl-{call.call_id}", "object": "text_completion", "created": call.created,
                "model": call.model}
        extra = {"usage": None} if include_usage else {}

        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            return sse_data({**head, "choices": [choice], **extra})

        events: list[bytes] = []
        for index, r in enumerate(returned):
            events += [chunk(index, piece) for piece in pieces(r.text, call.cfg.stream_chunk_words)]
            events.append(chunk(index, "", r.finish_reason))
        if call.fault in ("cut_stream", "malformed"):
            return cut(events, call.fault, [b"data: [DONE]\n\n"], 0)
        if include_usage and usage is not None:
            events.append(sse_data({**head, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
        return openai_error(status, code, message, kind)


COMPLETIONS = CompletionsFormat()

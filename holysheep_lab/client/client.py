"""hs.Client: the friendly front. It builds requests and results; the transport does the rest."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2

from holysheep_lab.client.batch import run_batch
from holysheep_lab.client.experiment import Experiment
from holysheep_lab.client.loop import run_sync
from holysheep_lab.client.results import ChatResult, Estimate, Messages
from holysheep_lab.core import fastjson as fast_json
from holysheep_lab.core.budget import Budget
from holysheep_lab.core.limits import RateLimit, Retry
from holysheep_lab.core.metering import PAYLOAD_EXTENSION, PROJECT_HEADER, Metering
from holysheep_lab.core.money import NANOS_PER_USD
from holysheep_lab.core.pricing import PriceTable, Usage
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.errors import ConfigError, HolySheepError, ResponseFormatError
from holysheep_lab.ledger.base import Ledger
from holysheep_lab.transports.metered import AsyncMeteredTransport, MeteredTransport, outcome_of

__all__ = ["DEFAULT_BASE_URL", "ChatStream", "Client"]

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"

def _normalise(messages: Messages) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        return [dict(messages)]
    out = [dict(m) for m in messages]
    if not out:
        raise ConfigError("messages is empty: pass a prompt string or a list of {role, content}.")
    return out


def _result(response: Any) -> ChatResult:
    """Turn a metered response into a ChatResult, or raise the meter's error for it."""
    outcome = outcome_of(response)
    assert outcome is not None and outcome.record is not None, "chat calls always pass the meter"
    if outcome.error is not None:
        raise outcome.error
    record, raw = outcome.record, outcome.payload
    try:
        text = raw["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ResponseFormatError("The completion has no choices[0].message; the call is logged.") from exc
    usage = Usage(record.input_tokens, record.output_tokens, record.cached_input_tokens,
                  record.reasoning_tokens, record.relay_cost_usd)
    return ChatResult(text, usage, record.cost_usd, raw.get("model", record.model), record.latency_ms or 0.0, raw, record)


class ChatStream:
    """Iterate text deltas as they arrive; `.result` is the ChatResult once the stream ends.

    Closing early (break, or `close()`) settles the call on what arrived and marks its row partial.
    """

    def __init__(self, response: Any, model: str) -> None:
        self._response = response
        self._model = model
        self.parts: list[str] = []
        self.result: ChatResult | None = None

    def _chunk_text(self, line: str) -> str | None:
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        try:
            chunk = fast_json.loads(data)
        except ValueError:
            return None
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                return str(content)
        return None

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._response.iter_lines():
                piece = self._chunk_text(line)
                if piece:
                    self.parts.append(piece)
                    yield piece
        finally:
            self.close()

    def close(self) -> None:
        if self.result is None:
            self._response.close()
            self.result = self._finish()

    def _finish(self) -> ChatResult:
        outcome = outcome_of(self._response)
        assert outcome is not None and outcome.record is not None, "a closed stream is settled"
        record = outcome.record
        usage = Usage(record.input_tokens, record.output_tokens, record.cached_input_tokens, record.reasoning_tokens)
        text = "".join(self.parts)
        raw = {"model": self._model, "choices": [{"message": {"role": "assistant", "content": text}}]}
        return ChatResult(text, usage, record.cost_usd, self._model, record.latency_ms or 0.0, raw, record)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(ChatStream):
    """`async for` twin of ChatStream."""

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for line in self._response.aiter_lines():
                piece = self._chunk_text(line)
                if piece:
                    self.parts.append(piece)
                    yield piece
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self.result is None:
            await self._response.aclose()
            self.result = self._finish()


class Client:
    """A metered, budget-guarded client for an OpenAI-compatible relay.

    Every call is priced, checked against the budget before it is sent, retried, logged to
    Parquet under `log_dir`, and reported to the alert manager. The API key comes from
    `api_key` or $HOLYSHEEP_API_KEY and is never logged or shown.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        budget: Budget | None = None,
        log_dir: str | Path | None = None,
        ledger: Ledger | None = None,
        alerts: Any = None,
        rate_limit: RateLimit | None = None,
        retry: Retry | None = None,
        prices: PriceTable | Mapping[str, Any] | str | Path | None = None,
        project: str | None = None,
        allow_unpriced: bool = False,
        log_content: bool = False,
        timeout: float = 120.0,
        transport: httpx2.BaseTransport | None = None,
        async_transport: Callable[[], httpx2.AsyncBaseTransport] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("HOLYSHEEP_API_KEY")
        url = (base_url or os.environ.get("HOLYSHEEP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not key and url == DEFAULT_BASE_URL:
            raise ConfigError(
                "No API key: set HOLYSHEEP_API_KEY or pass api_key=. To work offline, use "
                "`with hs.Simulator() as sim: hs.Client(base_url=sim.base_url)`."
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, not {url[:40]!r}.")
        options: dict[str, Any] = dict(budget=budget, log_dir=log_dir, ledger=ledger, alerts=alerts,
                                       rate_limit=rate_limit, retry=retry, prices=prices, project=project,
                                       allow_unpriced=allow_unpriced, log_content=log_content,
                                       secrets=(key,) if key else ())
        if clock is not None:
            options["clock"] = clock
        self.metering = Metering(**options)
        self.base_url = url
        # Built once: merging a relative path into base_url re-parses both URLs on every call.
        self._chat_url = httpx2.URL(f"{url}/chat/completions")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx2.Timeout(timeout, connect=min(10.0, timeout))
        self._http = httpx2.Client(base_url=url, headers=self._headers, timeout=self._timeout,
                                   transport=MeteredTransport(transport, metering=self.metering))
        self._async_transport = async_transport
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = weakref.WeakKeyDictionary()
        self._closed = False

    # -- calls ---------------------------------------------------------------------------------

    def _body(self, model: str, messages: Messages, max_tokens: int | None, temperature: float | None,
              stream: bool, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty string such as 'gpt-4.1'.")
        body: dict[str, Any] = {"model": model, "messages": _normalise(messages)}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if stream:
            body["stream"] = True
        body.update(params)
        return body

    def _project_headers(self, project: str | None) -> dict[str, str]:
        return {PROJECT_HEADER: project} if project else {}

    def chat(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024,
             temperature: float | None = 0.7, *, project: str | None = None, stream: bool = False,
             **params: Any) -> Any:
        """One chat completion -> ChatResult (or a ChatStream of text deltas with stream=True).

        Raises BudgetExceededError (nothing sent) when the worst case could pass a budget,
        UnknownModelError for an unpriced model, APIError subclasses for failed answers.
        """
        self._check_open()
        body = self._body(model, messages_or_prompt, max_tokens, temperature, stream, params)
        request = self._http.build_request("POST", self._chat_url, json=body, headers=self._project_headers(project),
                                           extensions={PAYLOAD_EXTENSION: body})
        if stream:
            return ChatStream(self._http.send(request, stream=True), model)
        return _result(self._http.send(request))

    async def achat(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024,
                    temperature: float | None = 0.7, *, project: str | None = None, stream: bool = False,
                    **params: Any) -> Any:
        """Async `chat`. Works at top level in Jupyter (`await client.achat(...)`)."""
        self._check_open()
        body = self._body(model, messages_or_prompt, max_tokens, temperature, stream, params)
        http = self._async_client()
        request = http.build_request("POST", self._chat_url, json=body, headers=self._project_headers(project),
                                     extensions={PAYLOAD_EXTENSION: body})
        if stream:
            return AsyncChatStream(await http.send(request, stream=True), model)
        return _result(await http.send(request))

    async def achat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                         progress: bool = False, **params: Any) -> list[ChatResult | BaseException]:
        """Run many calls at once; results in prompt order, an exception in place of each failure."""
        async def call(prompt: Messages) -> ChatResult:
            result: ChatResult = await self.achat(model, prompt, **params)
            return result

        return await run_batch(call, prompts, concurrency=concurrency, progress=progress)

    def chat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                  progress: bool = True, **params: Any) -> list[ChatResult | BaseException]:
        """Sync batch on the private event loop (works inside Jupyter). Ctrl-C safe."""
        self._check_open()
        return run_sync(self.achat_many(prompts, model, concurrency=concurrency, progress=progress, **params))

    def estimate(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024, **params: Any) -> Estimate:
        """The worst-case cost the guard would reserve for this call, without sending it."""
        body = self._body(model, messages_or_prompt, max_tokens, None, False, params)
        plan = self.metering.preview(CHAT_COMPLETIONS, body)
        return Estimate(model, plan.input_bound, plan.output_bound, plan.estimate_nanos / NANOS_PER_USD)

    def experiment(self, name: str, budget: float | str | None = None) -> Experiment:
        """A named run of calls, capped by `budget` (USD) before sending, its rows tagged
        ``experiment=name``: ``with client.experiment("rag-v2", budget=0.50) as exp: ...``, then
        ``exp.cost_usd``, ``exp.calls``, ``exp.summary()`` (see holysheep_lab.client.experiment)."""
        return Experiment(self.metering, name, budget)

    def _async_client(self) -> httpx2.AsyncClient:
        loop = asyncio.get_running_loop()
        http = self._async.get(loop)
        if http is None:
            if self._async_transport is not None:
                inner = self._async_transport()
            else:
                # aiohttp's pool scales where httpcore2's does not (issue 5); imported lazily so
                # `import holysheep_lab` stays free of aiohttp.
                from holysheep_lab.transports.aio import AiohttpTransport

                inner = AiohttpTransport()
            http = httpx2.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                      transport=AsyncMeteredTransport(inner, metering=self.metering),
                                      limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64))
            self._async[loop] = http
        return http

    # -- reporting -----------------------------------------------------------------------------

    def usage_report(self, days: int = 7) -> dict[str, Any]:
        """The seed's report over the last `days` days (from the log: all processes' calls)."""
        from holysheep_lab.reports.usage import usage_report

        return usage_report(self.metering, days)

    def budget_status(self) -> list[dict[str, Any]]:
        """Every budget line now, from the ledger: spent, in flight, limit, remaining, flags, reset
        time (the columns of df.hs.budget_status(); see holysheep_lab.reports.budget)."""
        from holysheep_lab.reports.budget import ledger_status

        return ledger_status(self.metering)

    def meter(self) -> Any:
        """A live ipywidgets budget meter (hs.BudgetMeter) that moves while calls run."""
        from holysheep_lab.notebook import BudgetMeter

        return BudgetMeter(self)

    # -- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HolySheepError("This client is closed; create a new hs.Client.")

    def close(self) -> None:
        """Close connections, roll the log into Parquet, flush pending alerts."""
        if self._closed:
            return
        self._closed = True
        self._http.close()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, http in list(self._async.items()):
            # Another thread's loop (the private one): close its client there. This thread's
            # loop would deadlock on .result(); `aclose()` is the way out of async code.
            if loop is current or loop.is_closed():
                continue  # a closed loop closed its sockets; this thread's needs `aclose()`
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(http.aclose(), loop).result(timeout=5)
                else:  # a finished loop (e.g. after asyncio.run or a test): close on it here
                    loop.run_until_complete(http.aclose())
            except (RuntimeError, TimeoutError, asyncio.CancelledError):
                pass  # the loop is stopping under us: its sockets close with it
        self._async.clear()
        self.metering.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        http = self._async.pop(loop, None)
        if http is not None:
            await http.aclose()
        self.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<hs.Client {self.base_url} budget={self.metering.budget!r} log_dir={str(self.metering.log_dir)!r} {state}>"


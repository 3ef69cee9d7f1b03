"""hs.Client: the friendly front. It builds requests and results; the transport does the rest."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx2

from holysheep_lab.client.batch import BatchInterrupted, Outcome, batch_frame, check_concurrency, run_batch
from holysheep_lab.client.experiment import Experiment
from holysheep_lab.client.loop import run_sync
from holysheep_lab.client.progress import BatchProgress
from holysheep_lab.client.results import BatchEstimate, BudgetStatus, ChatResult, Estimate, Messages
from holysheep_lab.core import fastjson as fast_json
from holysheep_lab.core.budget import Budget
from holysheep_lab.core.limits import RateLimit, Retry
from holysheep_lab.core.metering import MAX_INPUT_HEADER, PAYLOAD_EXTENSION, PROJECT_HEADER, Metering
from holysheep_lab.core.money import NANOS_PER_USD
from holysheep_lab.core.pricing import RELAY_COST_TOLERANCE, PriceTable, Usage
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.errors import ConfigError, HolySheepError, ResponseFormatError, safe_url
from holysheep_lab.ledger.base import Ledger
from holysheep_lab.log.schema import CallRecord
from holysheep_lab.transports.metered import AsyncMeteredTransport, MeteredTransport, outcome_of

if TYPE_CHECKING:
    from holysheep_lab.alerts import AlertManager
    from holysheep_lab.client.frames import ReadableFrame

__all__ = ["DEFAULT_BASE_URL", "ChatStream", "Client"]

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"
# httpx2's JSON encoding of request bodies (compact, UTF-8, no NaN).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# A key with whitespace or a line break would split or forge the Authorization header.
_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")

def _normalise(messages: Messages) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        return [dict(messages)]
    out = [dict(m) for m in messages]
    if not out:
        raise ConfigError("messages is empty: pass a prompt string or a list of {role, content}.")
    return out


def _usage(record: CallRecord) -> Usage:
    """The usage a logged call was charged for."""
    return Usage(record.input_tokens, record.output_tokens, record.cached_input_tokens, record.reasoning_tokens,
                 record.relay_cost_usd, record.cache_write_tokens, record.cache_write_1h_tokens)


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
    usage = _usage(record)
    return ChatResult(text, usage, record.cost_usd, raw.get("model", record.model), record.latency_ms or 0.0, raw, record)


def _streaming(response: Any) -> Any:
    """The response of a stream request, or the meter's error for it: an error answer (HTTP >= 400,
    already read and logged) must raise like a plain call, not iterate as an empty stream."""
    outcome = outcome_of(response)
    if outcome is not None and outcome.error is not None:
        raise outcome.error
    return response


def _batch_out(prompts: list[Messages], results: list[Outcome | None], model: str, as_frame: bool) -> Any:
    if as_frame:
        return batch_frame(prompts, results, model)
    return [r for r in results if r is not None]


def _model_names(model: str | None, models: Sequence[str] | None) -> list[str]:
    if (model is None) == (models is None):
        raise ConfigError("Pass model='gpt-4.1' or models=['gpt-4.1', ...] (one of the two).")
    names = [model] if model is not None else list(models or [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"models must be non-empty model names, not {models!r}.")
    return list(dict.fromkeys(names))


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
        usage = _usage(record)
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
        alerts: AlertManager | None = None,
        rate_limit: RateLimit | None = None,
        retry: Retry | None = None,
        prices: PriceTable | Mapping[str, Any] | str | Path | None = None,
        project: str | None = None,
        allow_unpriced: bool = False,
        log_content: bool = False,
        relay_cost_tolerance: float | None = RELAY_COST_TOLERANCE,
        timeout: float = 120.0,
        transport: httpx2.BaseTransport | None = None,
        async_transport: Callable[[], httpx2.AsyncBaseTransport] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("HOLYSHEEP_API_KEY")
        if key is not None and (not isinstance(key, str) or _CONTROL_OR_SPACE.search(key)):
            raise ConfigError("api_key must be a string without spaces or line breaks (the key alone, "
                              "without 'Bearer ').")
        raw_url = base_url or os.environ.get("HOLYSHEEP_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(raw_url, str):
            raise ConfigError(f"base_url must be a string such as 'https://api.holysheep.ai/v1', "
                              f"not {type(raw_url).__name__}.")
        url = raw_url.rstrip("/")
        if not key and url == DEFAULT_BASE_URL:
            raise ConfigError(
                "No API key: set HOLYSHEEP_API_KEY or pass api_key=. To work offline, use "
                "`with hs.Simulator() as sim: hs.Client(base_url=sim.base_url)`."
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, not {safe_url(url, 60)!r}.")
        try:
            parsed = httpx2.URL(url)
        except httpx2.InvalidURL:
            raise ConfigError(f"base_url {safe_url(url, 60)!r} is not a valid URL.") from None
        if not parsed.host:
            raise ConfigError(f"base_url {safe_url(url, 60)!r} has no host: use https://host/v1.")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ConfigError(f"base_url {safe_url(url, 60)!r} has port {parsed.port}: ports are 1-65535.")
        timeout = positive_seconds("Client timeout", timeout)
        if transport is not None and not isinstance(transport, httpx2.BaseTransport):
            raise ConfigError(f"transport must be an httpx2.BaseTransport (httpx2.HTTPTransport()), "
                              f"not {type(transport).__name__}.")
        if async_transport is not None and not callable(async_transport):
            raise ConfigError("async_transport must be a callable returning an httpx2.AsyncBaseTransport "
                              "(one per event loop), such as httpx2.AsyncHTTPTransport.")
        options: dict[str, Any] = dict(budget=budget, log_dir=log_dir, ledger=ledger, alerts=alerts,
                                       rate_limit=rate_limit, retry=retry, prices=prices, project=project,
                                       allow_unpriced=allow_unpriced, log_content=log_content,
                                       relay_cost_tolerance=relay_cost_tolerance, secrets=(key,) if key else ())
        if clock is not None:
            options["clock"] = clock
        self.metering = Metering(**options)
        self.base_url = url
        # Built once: merging a relative path into base_url re-parses both URLs on every call.
        self._chat_url = httpx2.URL(f"{url}/chat/completions")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx2.Timeout(timeout, connect=min(10.0, timeout))
        self._transport = MeteredTransport(transport, metering=self.metering)
        self._http = httpx2.Client(base_url=url, headers=self._headers, timeout=self._timeout,
                                   transport=self._transport)
        # What the client would send with every chat POST (its default headers, our key, the
        # JSON type), taken from the client once: `chat` then hands its request straight to the
        # transport, skipping the client's per-call URL, header, auth and redirect machinery.
        probe = self._http.build_request("POST", self._chat_url, content=b"",
                                         headers={"Content-Type": "application/json"})
        self._chat_headers = [(k, v) for k, v in probe.headers.raw if k.lower() != b"content-length"]
        self._timeout_extension = probe.extensions["timeout"]
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
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
                raise ConfigError(f"temperature must be a finite number such as 0.7 (or None), not {temperature!r}.")
            body["temperature"] = temperature
        if stream:
            body["stream"] = True
        body.update(params)
        return body

    def _project_headers(self, project: str | None, max_input_tokens: int | None = None) -> dict[str, str]:
        headers = {PROJECT_HEADER: project} if project else {}
        if max_input_tokens is not None:
            headers[MAX_INPUT_HEADER] = str(max_input_tokens)
        return headers

    def chat(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024,
             temperature: float | None = 0.7, *, project: str | None = None, stream: bool = False,
             max_input_tokens: int | None = None, **params: Any) -> Any:
        """One chat completion -> ChatResult (or a ChatStream of text deltas with stream=True).

        `max_input_tokens`: your bound on the whole input, needed when a part cannot be measured
        before sending (a file_id, a PDF). Raises BudgetExceededError (nothing sent) when the
        worst case could pass a budget, UnknownModelError for an unpriced model, APIError
        subclasses for failed answers.
        """
        self._check_open()
        body = self._body(model, messages_or_prompt, max_tokens, temperature, stream, params)
        try:
            if stream or self._http.cookies:  # a relay's cookies: the client's jar sends them back
                request = self._http.build_request("POST", self._chat_url, json=body,
                                                   headers=self._project_headers(project, max_input_tokens),
                                                   extensions={PAYLOAD_EXTENSION: body})
                if stream:
                    return ChatStream(_streaming(self._http.send(request, stream=True)), model)
                return _result(self._http.send(request))
            return _result(self._post(body, project, max_input_tokens))
        except HolySheepError as exc:
            raise exc.with_traceback(None) from exc.__cause__  # the trace ends here, not 15 frames into httpx2

    def _post(self, body: dict[str, Any], project: str | None, max_input_tokens: int | None) -> httpx2.Response:
        """POST a chat body through the metered transport, as `self._http.send` would (same
        headers, timeouts, transport; JSON encoded as httpx2 encodes it) minus its per-call work."""
        content = _JSON.encode(body).encode()
        headers = [*self._chat_headers, (b"Content-Length", str(len(content)).encode())]
        if project or max_input_tokens is not None:
            headers += [(k.encode(), v.encode()) for k, v in self._project_headers(project, max_input_tokens).items()]
        request = httpx2.Request("POST", self._chat_url, headers=headers, stream=httpx2.ByteStream(content),
                                 extensions={"timeout": self._timeout_extension, PAYLOAD_EXTENSION: body})
        response = self._transport.handle_unkept(request, content)
        response.request = request
        if "set-cookie" in response.headers:
            self._http.cookies.extract_cookies(response)
        return response

    async def achat(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024,
                    temperature: float | None = 0.7, *, project: str | None = None, stream: bool = False,
                    max_input_tokens: int | None = None, **params: Any) -> Any:
        """Async `chat`. Works at top level in Jupyter (`await client.achat(...)`)."""
        self._check_open()
        body = self._body(model, messages_or_prompt, max_tokens, temperature, stream, params)
        http = self._async_client()
        request = http.build_request("POST", self._chat_url, json=body,
                                     headers=self._project_headers(project, max_input_tokens),
                                     extensions={PAYLOAD_EXTENSION: body})
        try:
            if stream:
                return AsyncChatStream(_streaming(await http.send(request, stream=True)), model)
            return _result(await http.send(request))
        except HolySheepError as exc:
            raise exc.with_traceback(None) from exc.__cause__  # the trace ends here, not in httpx2

    @overload
    async def achat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                         progress: bool = False, as_frame: Literal[False] = False,
                         **params: Any) -> list[ChatResult | BaseException]: ...

    @overload
    async def achat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                         progress: bool = False, as_frame: Literal[True], **params: Any) -> ReadableFrame: ...

    @overload
    async def achat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                         progress: bool = False, as_frame: bool,
                         **params: Any) -> list[ChatResult | BaseException] | ReadableFrame: ...

    async def achat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                         progress: bool = False, as_frame: bool = False, **params: Any) -> Any:
        """Async `chat_many` (same results; `progress` off by default). A task.cancel() raises
        CancelledError; a KeyboardInterrupt inside raises BatchInterrupted (`await exc.resume()`)."""
        self._check_open()
        check_concurrency(concurrency)
        batch = list(prompts)
        return await self._arun_many(batch, [None] * len(batch), model, concurrency, progress, as_frame, params)

    async def _arun_many(self, prompts: list[Messages], results: list[Outcome | None], model: str, concurrency: int,
                         progress: bool, as_frame: bool, params: dict[str, Any]) -> Any:
        bar = BatchProgress(sum(r is None for r in results)) if progress else None
        try:
            await run_batch(self._batch_call(model, params), prompts, concurrency=concurrency, progress=bar,
                            results=results)
        except KeyboardInterrupt:
            raise BatchInterrupted(results, lambda: self._arun_many(
                prompts, results, model, concurrency, progress, as_frame, params)) from None
        finally:
            if bar is not None:
                bar.close()
        return _batch_out(prompts, results, model, as_frame)

    @overload
    def chat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                  progress: bool = True, as_frame: Literal[False] = False,
                  **params: Any) -> list[ChatResult | BaseException]: ...

    @overload
    def chat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                  progress: bool = True, as_frame: Literal[True], **params: Any) -> ReadableFrame: ...

    @overload
    def chat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                  progress: bool = True, as_frame: bool,
                  **params: Any) -> list[ChatResult | BaseException] | ReadableFrame: ...

    def chat_many(self, prompts: Sequence[Messages], model: str, *, concurrency: int = 8,
                  progress: bool = True, as_frame: bool = False, **params: Any) -> Any:
        """Many calls at once on the private event loop (works inside Jupyter), at most
        `concurrency` in flight: results in prompt order, a refusal or failure (exception) in
        place of each prompt that got no answer.

        `as_frame=True` returns one row per prompt instead (prompt, text, model, input/output
        tokens, cost_usd, latency_ms, error). `progress` shows answered, refused and failed calls
        and their cost. Ctrl-C raises BatchInterrupted, which holds every finished answer
        (`exc.results`) and runs the rest on `exc.resume()`.
        """
        self._check_open()
        check_concurrency(concurrency)
        batch = list(prompts)
        return self._run_many(batch, [None] * len(batch), model, concurrency, progress, as_frame, params)

    def _run_many(self, prompts: list[Messages], results: list[Outcome | None], model: str, concurrency: int,
                  progress: bool, as_frame: bool, params: dict[str, Any]) -> Any:
        self._check_open()
        # Made and closed on this (the caller's) thread: in a notebook, the cell's output.
        bar = BatchProgress(sum(r is None for r in results)) if progress else None
        try:
            run_sync(run_batch(self._batch_call(model, params), prompts, concurrency=concurrency, progress=bar,
                               results=results))
        except KeyboardInterrupt:
            raise BatchInterrupted(results, lambda: self._run_many(
                prompts, results, model, concurrency, progress, as_frame, params)) from None
        finally:
            if bar is not None:
                bar.close()
        return _batch_out(prompts, results, model, as_frame)

    def _batch_call(self, model: str, params: dict[str, Any]) -> Callable[[Messages], Any]:
        async def call(prompt: Messages) -> ChatResult:
            result: ChatResult = await self.achat(model, prompt, **params)
            return result

        return call

    def estimate(self, model: str, messages_or_prompt: Messages, max_tokens: int | None = 1024, *,
                 max_input_tokens: int | None = None, **params: Any) -> Estimate:
        """The worst-case cost the guard would reserve for this call, without sending it."""
        body = self._body(model, messages_or_prompt, max_tokens, None, False, params)
        try:
            plan = self.metering.preview(CHAT_COMPLETIONS, body, self._project_headers(None, max_input_tokens))
        except HolySheepError as exc:
            raise exc.with_traceback(None) from exc.__cause__
        return Estimate(model, plan.input_bound, plan.output_bound, plan.estimate_nanos / NANOS_PER_USD)

    def estimate_many(self, prompts: Sequence[Messages], model: str | None = None, *,
                      models: Sequence[str] | None = None, max_tokens: int | None = 1024,
                      project: str | None = None, **params: Any) -> BatchEstimate:
        """What a batch would cost, per model, without sending anything: the worst case (what the
        guard reserves, so the most it can cost) and the expected total (the worst case calibrated
        by what this model's logged calls cost of their worst case), and whether it fits what is
        left of each budget line (global and `project`'s) now."""
        from holysheep_lab.client.estimates import estimate_batch

        names = _model_names(model, models)
        batch = list(prompts)
        if not batch:
            raise ConfigError("prompts is empty: pass the batch's prompts.")
        bodies = [self._body(name, p, max_tokens, None, False, params) for name in names for p in batch]
        try:
            return estimate_batch(self.metering, names, len(batch), bodies, self.budget_status(), project)
        except HolySheepError as exc:
            raise exc.with_traceback(None) from exc.__cause__

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

    def budget_status(self) -> BudgetStatus:
        """Every budget line now, from the ledger: spent, in flight, limit, remaining, flags, reset
        time (the columns of df.hs.budget_status(); see holysheep_lab.reports.budget), one dict per
        line (exact floats), shown as a readable table; `.to_frame()` for pandas."""
        from holysheep_lab.reports.budget import ledger_status

        return BudgetStatus(ledger_status(self.metering))

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
        return f"<hs.Client {safe_url(self.base_url)} budget={self.metering.budget!r} log_dir={str(self.metering.log_dir)!r} {state}>"


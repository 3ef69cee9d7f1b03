"""The built-in simulator: a real HTTP server on loopback that speaks every wire format the
client meters, so the demo, the notebooks, the tests and the benchmarks run offline.

It is deterministic (same request, same usage), cheap per request, and able to misbehave on
demand.

    with hs.Simulator(latency=0.05, cached_ratio=0.5) as sim:
        client = hs.Client(api_key="x", base_url=sim.base_url)

Endpoints (each also without the ``/v1`` prefix): ``POST /v1/chat/completions``,
``POST /v1/responses``, ``POST /v1/embeddings``, ``POST /v1/completions`` (legacy),
``POST /v1/messages`` (Anthropic); ``GET /v1/models``, ``GET /health``. Each wire format is a
module of its own (`chat`, `responses`, `embeddings`, `completions`, `anthropic`, behind
`wire.WireFormat`); usage is a pure function of the request (see `text`), e.g. for chat:

- ``prompt_tokens`` = sum over messages of ``ceil(b / 4) + 4``, where ``b`` is the UTF-8 size of
  the message's text content. It never exceeds the UTF-8 size of ``json.dumps(messages)`` (in
  any serialisation), so a client's byte-based worst case is always an upper bound.
- ``completion_tokens`` = ``1 + crc32(seed, model, roles, contents, limit) % limit``, with
  ``limit`` = ``max_completion_tokens`` or ``max_tokens`` or 256.
- ``cached_tokens`` = ``floor(prompt_tokens * cached_ratio)`` (part of the prompt),
  ``reasoning_tokens`` = ``floor(completion_tokens * reasoning_ratio)`` (part of the completion).

This module is the server: lifecycle, routing, auth, latency, fault selection, counters and
writing answers (whole, truncated or cut). Faults (`FAULTS`) come from the ``X-Sim-Fault``
request header (one call) or from the simulator's configuration (``fault``, ``fail_first``,
``fault_rate``, ``seed``), which can be changed while it runs with `Simulator.configure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from holysheep_lab.sim.anthropic import ANTHROPIC
from holysheep_lab.sim.chat import CHAT
from holysheep_lab.sim.completions import COMPLETIONS
from holysheep_lab.sim.config import BODY_FAULTS, DEFAULT_FAULT_MIX, FAULTS, SimConfig, configure
from holysheep_lab.sim.embeddings import EMBEDDINGS
from holysheep_lab.sim.responses import RESPONSES
from holysheep_lab.sim.text import (
    DEFAULT_MAX_TOKENS,
    SimulatedCompletion,
    count_prompt_tokens,
    dumps,
    simulate_completion,
)
from holysheep_lab.sim.wire import Call, WireFormat

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FAULTS",
    "SimulatedCompletion",
    "Simulator",
    "count_prompt_tokens",
    "serve",
    "simulate_completion",
]

#: Every wire format the simulator speaks.
FORMATS: tuple[WireFormat, ...] = (CHAT, RESPONSES, EMBEDDINGS, COMPLETIONS, ANTHROPIC)
_ROUTES: dict[str, WireFormat] = {path: fmt for fmt in FORMATS for path in fmt.paths}
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_JSON = {"Content-Type": "application/json"}
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_PORTAL_200 = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    b"<h1>Please sign in to continue</h1><form method='post'><input name='user'></form>"
    b"</body></html>"
)


def _error(
    fmt: WireFormat,
    status: int,
    code: str | None,
    message: str,
    type_: str = "invalid_request_error",
    **headers: str,
) -> web.Response:
    """An error in the format's shape (OpenAI's ``{"error": {...}}``, or Anthropic's)."""
    from aiohttp import web

    body = dumps(fmt.error(status, code, message, type_)).encode()
    return web.Response(status=status, body=body, headers={**_JSON, **headers})


def _authorised(request: web.BaseRequest, api_key: str) -> bool:
    """`Authorization: Bearer <key>` (OpenAI) or `x-api-key: <key>` (Anthropic), compared in
    constant time."""
    bearer = request.headers.get("Authorization", "").encode()
    x_api_key = request.headers.get("x-api-key", "").encode()
    ok_bearer = hmac.compare_digest(bearer, f"Bearer {api_key}".encode())
    ok_x = hmac.compare_digest(x_api_key, api_key.encode())
    return ok_bearer or ok_x


class Simulator:
    """An OpenAI- (and Anthropic-) compatible server on its own event-loop thread.

    Use it as ``with Simulator() as sim`` (or ``async with``), or call `start` / `stop`.
    ``port=0`` (the default) takes a free port; `base_url` is ``http://HOST:PORT/v1``.

    Options (all but host, port and history can be changed later with `configure`):
    ``api_key`` (require ``Authorization: Bearer <api_key>`` or ``x-api-key: <api_key>``; None:
    no auth), ``latency`` and ``jitter`` (seconds: each answer of a billable endpoint waits
    latency + uniform(0, jitter)), ``stream_delay``
    (seconds between SSE chunks), ``stream_chunk_words``, ``hang`` (how long ``timeout`` stalls),
    ``retry_after`` (seconds advertised by ``rate_limit``), ``fault`` (a name from `FAULTS` or a
    list to draw from), ``fail_first`` (only the first N valid requests fail),
    ``fault_rate`` (each request fails with this probability, from a RNG seeded by ``seed``),
    ``cached_ratio``, ``cache_write_ratio`` (Anthropic's cache writes; Responses' and Chat's
    ``cache_write_tokens``, as OpenRouter reports them), ``reasoning_ratio``, ``report_cost`` (add ``usage.cost`` in USD) with
    ``prices`` ({model: (input, output[, cached_input])} USD per 1M tokens, or hs.Price values;
    default: the seed's four models) and ``cost_factor`` (scale it, to simulate drift),
    ``models`` (what ``/v1/models`` lists; any model is accepted).

    With ``fault`` set and neither ``fail_first`` nor ``fault_rate``, every request fails;
    ``fault_rate`` without ``fault`` draws from rate_limit / server_error / unavailable.
    The ``X-Sim-Fault: <name>`` header overrides all of that for one request (``none``: no fault).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 100,
        **options: Any,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._config = configure(SimConfig(), options)
        # Counters and the fault RNG are touched by the loop thread and read by callers.
        self._lock = threading.Lock()
        self._requests = 0
        self._completed = 0
        self._by_model: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._fault_seq = 0
        self._fault_rng = random.Random(self._config.seed)
        self._jitter_rng = random.Random(self._config.seed)
        self._ids = 0
        self._id_prefix = secrets.token_hex(4)
        # Run state: guarded by _state_lock (start/stop may come from any thread).
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._port: int | None = None

    # ---- public surface

    @property
    def port(self) -> int:
        """The port being served (raises RuntimeError when not running)."""
        if self._port is None:
            raise RuntimeError("the simulator is not running; call start() or use `with`")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, without the ``/v1`` prefix."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://HOST:PORT/v1``."""
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._port is not None

    @property
    def requests(self) -> int:
        """Requests to billable endpoints received (including rejected and faulted ones)."""
        return self._requests

    @property
    def completed(self) -> int:
        """Requests answered with a whole 200 answer (incl. no_usage/negative_usage)."""
        return self._completed

    @property
    def by_model(self) -> dict[str, int]:
        """Valid requests per model."""
        with self._lock:
            return dict(self._by_model)

    @property
    def by_endpoint(self) -> dict[str, int]:
        """Requests received per wire format (e.g. ``{"chat.completions": 3, "responses": 1}``)."""
        with self._lock:
            return dict(self._by_endpoint)

    @property
    def faults(self) -> dict[str, int]:
        """Faults injected, by name."""
        with self._lock:
            return dict(self._faults)

    @property
    def last_requests(self) -> list[dict[str, Any]]:
        """Parsed bodies of the latest valid requests, oldest first (at most `history`)."""
        with self._lock:
            return list(self._history)

    @property
    def options(self) -> dict[str, Any]:
        """The current options (the API key masked)."""
        cfg = self._config
        out = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        out["api_key"] = None if cfg.api_key is None else "***"
        return out

    def configure(self, **options: Any) -> None:
        """Change options while running (thread-safe; in-flight requests keep the old ones).

        Setting any of fault, fail_first, fault_rate or seed restarts the fault schedule:
        ``fail_first`` counts from here and the RNG is re-seeded.
        """
        with self._lock:
            self._config = configure(self._config, options)
            if options.keys() & {"fault", "fail_first", "fault_rate", "seed"}:
                self._fault_seq = 0
                self._fault_rng = random.Random(self._config.seed)

    def reset(self) -> None:
        """Zero the counters and history, and restart the fault schedule."""
        with self._lock:
            self._requests = self._completed = self._fault_seq = 0
            self._by_model.clear()
            self._by_endpoint.clear()
            self._faults.clear()
            self._history.clear()
            self._fault_rng = random.Random(self._config.seed)

    def start(self) -> Simulator:
        """Serve on a daemon thread; return once the port accepts connections (no-op if running)."""
        with self._state_lock:
            if self._thread is not None:
                return self
            import aiohttp.web  # noqa: F401 - pay the import here, not on the server's loop

            ready = threading.Event()
            outcome: list[BaseException | None] = []

            def on_ready(error: BaseException | None) -> None:
                outcome.append(error)
                ready.set()

            thread = threading.Thread(
                target=self._thread_main, args=(on_ready,), name="holysheep-sim", daemon=True
            )
            thread.start()
            ready.wait()
            if outcome[0] is not None:
                thread.join()
                raise outcome[0]
            self._thread = thread
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent). Hanging requests are released."""
        with self._state_lock:
            thread, loop, stop_event = self._thread, self._loop, self._stop_event
            if thread is None:
                return
            if loop is not None and stop_event is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed in between: the thread is ending
                    loop.call_soon_threadsafe(stop_event.set)
            thread.join()
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        # start/stop block briefly on the server thread; keep the caller's loop responsive.
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<Simulator {where}>"

    # ---- running

    def _thread_main(self, on_ready: Callable[[BaseException | None], None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(on_ready))
        except BaseException as exc:
            on_ready(exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _serve(
        self,
        on_ready: Callable[[BaseException | None], None],
        *,
        foreground: bool = False,
    ) -> None:
        from aiohttp import web

        loop = asyncio.get_running_loop()
        stop_event = asyncio.Event()
        self._closing = asyncio.Event()
        # The low-level server: no router or middleware to walk per request.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
            self._port = runner.addresses[0][1]
            self._loop, self._stop_event = loop, stop_event
            if foreground:
                import signal

                with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, or not the main thread
                    loop.add_signal_handler(signal.SIGTERM, stop_event.set)
            on_ready(None)
            await stop_event.wait()
        finally:
            self._closing.set()
            self._port = None
            self._loop = self._stop_event = None
            await runner.cleanup()

    # ---- request handling (on the server's loop)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        fmt = _ROUTES.get(path)
        if fmt is not None:
            if request.method != "POST":
                return _error(fmt, 405, None, f"Use POST for {fmt.name}.")
            return await self._call(request, fmt)
        from aiohttp import web

        if request.method == "GET" and path in _MODELS_PATHS:
            data = [
                {"id": m, "object": "model", "created": 1735689600, "owned_by": "holysheep-sim"}
                for m in self._config.models
            ]
            payload = dumps({"object": "list", "data": data}).encode()
            return web.Response(body=payload, headers=_JSON)
        if request.method == "GET" and path in ("/health", "/v1/health"):
            return web.Response(body=b'{"status":"ok"}', headers=_JSON)
        return _error(CHAT, 404, "unknown_url", f"Unknown request URL: {request.method} {path}.")

    def _pick_fault(self, cfg: SimConfig, header: str | None) -> str | None:
        """Called under the lock: the fault for this request, from the header or the schedule."""
        seq = self._fault_seq
        self._fault_seq += 1
        mix = cfg.fault or (DEFAULT_FAULT_MIX if cfg.fault_rate is not None else ())
        # Draw for every request while the options need the RNG, so the k-th request's fate is
        # fixed by the seed whatever the header or fail_first did to earlier ones.
        draw = self._fault_rng.random() if cfg.fault_rate is not None else None
        pick = self._fault_rng.random() if len(mix) > 1 else 0.0
        if header is not None:
            return None if header == "none" else header
        if not mix:
            return None
        name = mix[int(pick * len(mix))]
        if cfg.fail_first is not None and seq < cfg.fail_first:
            return name
        if draw is not None:
            return name if draw < cfg.fault_rate else None  # type: ignore[operator]
        return name if cfg.fail_first is None else None

    async def _call(self, request: web.BaseRequest, fmt: WireFormat) -> web.StreamResponse:
        """One request to a billable endpoint: the same steps for every wire format."""
        cfg = self._config
        with self._lock:
            self._requests += 1
            self._by_endpoint[fmt.name] += 1
        if cfg.api_key is not None and not _authorised(request, cfg.api_key):
            return _error(fmt, 401, "invalid_api_key", "Incorrect API key provided.")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:  # includes JSONDecodeError and bad UTF-8
            return _error(fmt, 400, "invalid_json", "We could not parse the JSON body of your request.")
        problem = fmt.validate(body)
        if problem is not None:
            return _error(fmt, 400, "invalid_request", problem)
        header = request.headers.get("X-Sim-Fault")
        if header is not None:
            header = header.strip().lower()
            if header != "none" and header not in FAULTS:
                known = ", ".join(sorted(FAULTS))
                message = f"unknown X-Sim-Fault {header!r}; choose from none, {known}"
                return _error(fmt, 400, "unknown_fault", message)
        with self._lock:
            cfg = self._config
            self._by_model[body["model"]] += 1
            self._history.append(body)
            fault = self._pick_fault(cfg, header)
            if fault is not None:
                self._faults[fault] += 1
            self._ids += 1
            call_id = f"sim{self._id_prefix}{self._ids:08x}"
            jitter = self._jitter_rng.random() * cfg.jitter if cfg.jitter else 0.0
        if cfg.latency or jitter:
            await asyncio.sleep(cfg.latency + jitter)
        if fault is not None and fault not in BODY_FAULTS:
            return await self._fail(request, fault, cfg, fmt)
        call = Call(body, call_id, int(time.time()), cfg, fault)
        events = fmt.stream(call)
        if events is not None:
            return await self._write_stream(request, events, cfg, fault)
        return await self._write_answer(request, dumps(fmt.answer(call)).encode(), fault)

    async def _write_answer(self, request: web.BaseRequest, payload: bytes, fault: str | None) -> web.StreamResponse:
        from aiohttp import web

        if fault == "malformed":
            return web.Response(body=payload[: len(payload) // 2], headers=_JSON)
        if fault == "cut_stream":
            # Promise the whole body, send half, hang up: the client sees an incomplete read.
            response = web.StreamResponse(headers=_JSON)
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            return self._hang_up(request, response)
        with self._lock:
            self._completed += 1
        return web.Response(body=payload, headers=_JSON)

    async def _write_stream(self, request: web.BaseRequest, events: list[bytes], cfg: SimConfig,
                            fault: str | None) -> web.StreamResponse:
        from aiohttp import web

        response = web.StreamResponse(headers=_SSE)
        await response.prepare(request)
        delay = cfg.stream_delay
        closing = self._closing
        if delay:
            for event in events:
                if closing is not None and closing.is_set():
                    break
                await response.write(event)
                await asyncio.sleep(delay)
        else:
            await response.write(b"".join(events))  # one write: fewer syscalls and chunks
        if fault == "cut_stream":
            return self._hang_up(request, response)
        await response.write_eof()
        if fault != "malformed":
            with self._lock:
                self._completed += 1
        return response

    async def _fail(self, request: web.BaseRequest, fault: str, cfg: SimConfig,
                    fmt: WireFormat) -> web.StreamResponse:
        from aiohttp import web

        if fault == "rate_limit":
            wait = cfg.retry_after
            return _error(
                fmt,
                429,
                "rate_limit_exceeded",
                f"Rate limit reached for requests (simulated). Please try again in {wait:g}s.",
                "requests",
                **{
                    # Retry-After is whole seconds by RFC 9110; retry-after-ms carries the exact
                    # value, as OpenAI sends it.
                    "Retry-After": str(math.ceil(wait)),
                    "retry-after-ms": str(round(wait * 1000)),
                    "x-ratelimit-limit-requests": "60",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{wait:g}s",
                    "x-ratelimit-limit-tokens": "150000",
                    "x-ratelimit-remaining-tokens": "149000",
                    "x-ratelimit-reset-tokens": "0s",
                },
            )
        if fault == "server_error":
            message = "The server had an error while processing your request (simulated)."
            return _error(fmt, 500, "server_error", message, "server_error")
        if fault == "unavailable":
            message = "The engine is currently overloaded, please try again later (simulated)."
            return _error(fmt, 503, "service_unavailable", message, "server_error")
        if fault == "html":
            return web.Response(status=502, body=_NGINX_502, headers=_HTML)
        if fault == "html_200":
            return web.Response(body=_PORTAL_200, headers=_HTML)
        if fault == "disconnect":
            return self._hang_up(request, None)
        # timeout: stall until `hang` passes, the client hangs up (the handler is cancelled) or
        # the simulator stops (so stop() never waits for a stalled request).
        assert fault == "timeout"
        closing = self._closing
        assert closing is not None
        try:
            await asyncio.wait_for(closing.wait(), cfg.hang)
        except TimeoutError:
            return _error(fmt, 504, "timeout", "Gateway timeout (simulated).", "server_error")
        return _error(fmt, 503, "shutting_down", "The simulator is shutting down.", "server_error")

    @staticmethod
    def _hang_up(
        request: web.BaseRequest, response: web.StreamResponse | None
    ) -> web.StreamResponse:
        """Close the connection now; whatever was sent stays incomplete."""
        from aiohttp import web

        transport = request.transport
        if transport is not None:
            transport.close()
        # aiohttp needs a response object; nothing more reaches the (closed) socket.
        return response if response is not None else web.Response(status=500)

def serve(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Run a simulator in the foreground until Ctrl-C (or SIGTERM); prints its base URL."""
    sim = Simulator(host=host, port=port, **options)

    def on_ready(error: BaseException | None) -> None:
        if error is None:
            print(f"holysheep-lab simulator: {sim.base_url}  (Ctrl-C to stop)", flush=True)
            print(f"  export HOLYSHEEP_BASE_URL={sim.base_url}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sim._serve(on_ready, foreground=True))

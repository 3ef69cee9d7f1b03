"""The built-in simulator: a real OpenAI-compatible HTTP server on loopback.

It is the embedded default for the demo, the notebooks, the tests and the benchmarks, so it is
deterministic (same request, same usage), cheap per request, and able to misbehave on demand.

    with hs.Simulator(latency=0.05, cached_ratio=0.5) as sim:
        client = hs.Client(api_key="x", base_url=sim.base_url)

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET /v1/models``,
``GET /health``.

Usage is a pure function of the request (see `count_prompt_tokens` and `simulate_completion`):

- ``prompt_tokens`` = sum over messages of ``ceil(b / 4) + 4``, where ``b`` is the UTF-8 size of
  the message's text content. It never exceeds the UTF-8 size of ``json.dumps(messages)`` (in
  any serialisation), so a client's byte-based worst case is always an upper bound.
- ``completion_tokens`` = ``1 + crc32(seed, model, roles, contents, limit) % limit``, with
  ``limit`` = ``max_completion_tokens`` or ``max_tokens`` or 256.
- ``cached_tokens`` = ``floor(prompt_tokens * cached_ratio)`` (part of the prompt),
  ``reasoning_tokens`` = ``floor(completion_tokens * reasoning_ratio)`` (part of the completion).

Faults (`FAULTS`) come from the ``X-Sim-Fault`` request header (one call) or from the
simulator's configuration (``fault``, ``fail_first``, ``fault_rate``, ``seed``), which can be
changed while it runs with `Simulator.configure`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import random
import secrets
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

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

DEFAULT_MAX_TOKENS = 256
FAULTS: frozenset[str] = frozenset(
    {
        "rate_limit",  # 429 + Retry-After, retry-after-ms and x-ratelimit-* headers
        "server_error",  # 500
        "unavailable",  # 503
        "timeout",  # no answer for `hang` seconds (or until the client gives up), then 504
        "malformed",  # 200 with a truncated JSON body (streaming: a truncated data line)
        "html",  # 502 with an nginx-style HTML error page
        "html_200",  # 200 with an HTML page (a captive portal or a proxy's login page)
        "no_usage",  # a valid completion without `usage` (streaming: no usage chunk)
        "negative_usage",  # a valid completion whose completion_tokens is negative
        "cut_stream",  # the connection closes mid-body: no usage, no [DONE]
        "disconnect",  # the connection closes before any response
    }
)
# What `fault_rate` draws from when no `fault` is named: the faults a client should retry.
_DEFAULT_FAULT_MIX = ("rate_limit", "server_error", "unavailable")
# Faults that still produce a completion body (mangled or not); the rest answer without one.
_BODY_FAULTS = frozenset({"no_usage", "negative_usage", "malformed", "cut_stream"})
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_DEFAULT_MODELS = (
    "gpt-4.1",
    "claude-sonnet-4.5",
    "gemini-2.5-flash",
    "deepseek-v3.2",
    "gpt-4.1-mini",
    "gpt-4o-mini",
    "o4-mini",
)
# The relay's own price list for `report_cost=True` (USD per 1M tokens: input, output, cached).
# It is deliberately the simulator's own: a real relay's figure is independent of the client's.
_DEFAULT_PRICES = {
    "gpt-4.1": (8, 8),
    "claude-sonnet-4.5": (15, 15),
    "gemini-2.5-flash": (2.5, 2.5),
    "deepseek-v3.2": (0.42, 0.42),
}
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

_Price = tuple[Decimal, Decimal, Decimal]
# Compact JSON from one reusable encoder: json.dumps with options builds a new one per call.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_MILLION = Decimal(1_000_000)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class _Config:
    """One immutable snapshot; `Simulator.configure` swaps it whole, so handlers never see a mix."""

    api_key: str | None = None
    latency: float = 0.0
    jitter: float = 0.0
    stream_delay: float = 0.0
    stream_chunk_words: int = 4
    hang: float = 30.0
    retry_after: float = 1.0
    fault: tuple[str, ...] = ()
    fail_first: int | None = None
    fault_rate: float | None = None
    seed: int = 0
    cached_ratio: float = 0.0
    reasoning_ratio: float = 0.0
    report_cost: bool = False
    prices: Mapping[str, _Price] = field(default_factory=dict)
    cost_factor: float = 1.0
    models: tuple[str, ...] = _DEFAULT_MODELS


_OPTION_NAMES = frozenset(f.name for f in fields(_Config))


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _ratio(name: str, value: Any) -> float:
    value = _non_negative(name, value)
    if value > 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return value


def _fault_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    names = () if value is None else (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; choose from {', '.join(sorted(FAULTS))}")
    return names


def _price(model: str, value: Any) -> _Price:
    """Accept (input, output[, cached]), a mapping with those keys, or an hs.Price-like object."""
    if isinstance(value, Mapping):
        parts = (value.get("input"), value.get("output"), value.get("cached_input"))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3):
        parts = (value[0], value[1], value[2] if len(value) == 3 else None)
    else:
        parts = tuple(getattr(value, a, None) for a in ("input", "output", "cached_input"))
    if parts[0] is None or parts[1] is None:
        raise ValueError(f"price for {model!r} needs input and output (USD per 1M tokens)")
    inp, out = Decimal(str(parts[0])), Decimal(str(parts[1]))
    return inp, out, inp if parts[2] is None else Decimal(str(parts[2]))


def _configure(base: _Config, options: Mapping[str, Any]) -> _Config:
    """Validate `options` and return `base` with them applied (ValueError names the bad one)."""
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown simulator option(s): {', '.join(sorted(unknown))}")
    o = dict(options)
    for name in ("latency", "jitter", "stream_delay", "hang", "retry_after", "cost_factor"):
        if name in o:
            o[name] = _non_negative(name, o[name])
    for name in ("cached_ratio", "reasoning_ratio"):
        if name in o:
            o[name] = _ratio(name, o[name])
    if o.get("fault_rate") is not None:
        o["fault_rate"] = _ratio("fault_rate", o["fault_rate"])
    if "fault" in o:
        o["fault"] = _fault_names(o["fault"])
    for name, low in (("fail_first", 0), ("stream_chunk_words", 1), ("seed", None)):
        value = o.get(name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (low is not None and value < low)
        ):
            raise ValueError(f"{name} must be an int{'' if low is None else f' >= {low}'}")
    if "prices" in o:
        o["prices"] = {m: _price(m, p) for m, p in (o["prices"] or {}).items()}
    if "models" in o:
        o["models"] = tuple(o["models"] or ())
    if o.get("api_key") == "":
        raise ValueError("api_key must be a non-empty string or None")
    cfg = replace(base, **o)
    if cfg.report_cost and not cfg.prices:
        cfg = replace(cfg, prices={m: _price(m, p) for m, p in _DEFAULT_PRICES.items()})
    return cfg


# --------------------------------------------------------------------------- usage and text


def _content_bytes(content: Any) -> int:
    """UTF-8 size of a message's text (non-text parts count as their compact JSON)."""
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass"))
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"].encode("utf-8", "surrogatepass"))
            else:
                total += len(_compact(part))
        return total
    return 0


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The simulator's prompt tokens: sum of ``ceil(content_bytes / 4) + 4`` per message.

    Always <= the UTF-8 size of the messages' JSON: each message object costs at least
    ``{"role":"","content":""}`` (24 bytes) around its content, more than the 4-token overhead.
    """
    return sum((_content_bytes(m.get("content")) + 3) // 4 + 4 for m in messages)


@dataclass(frozen=True, slots=True)
class SimulatedCompletion:
    """What the simulator answers to one request (see `simulate_completion`)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    text: str
    finish_reason: str


def simulate_completion(
    body: Mapping[str, Any],
    *,
    seed: int = 0,
    cached_ratio: float = 0.0,
    reasoning_ratio: float = 0.0,
) -> SimulatedCompletion:
    """The completion the simulator answers to a validated request `body`: a pure function."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    messages = body["messages"]
    # Hash what the caller said (not stream flags or ids), so the stream and the plain call agree.
    h = zlib.crc32(f"{seed}\0{body['model']}\0{limit}".encode())
    prompt = 0
    for m in messages:
        content = m.get("content")
        h = zlib.crc32(str(m.get("role")).encode("utf-8", "surrogatepass"), h)
        if isinstance(content, str):
            data = content.encode("utf-8", "surrogatepass")
            h = zlib.crc32(data, h)
            size = len(data)
        else:
            size = _content_bytes(content)
            h = zlib.crc32(size.to_bytes(8, "little"), h)
        prompt += (size + 3) // 4 + 4
    completion = 1 + h % limit
    reasoning = math.floor(completion * reasoning_ratio)
    visible = completion - reasoning
    # About 0.75 words per token, the usual rule of thumb for English text.
    words = max(1, round(visible * 0.75)) if visible else 0
    return SimulatedCompletion(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=math.floor(prompt * cached_ratio),
        reasoning_tokens=reasoning,
        text=_lorem().text((h >> 8) * 2654435761, words),
        finish_reason="length" if completion == limit else "stop",
    )


_VOCAB = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo", "consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum", "fugiat", "nulla", "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui", "officia", "deserunt", "mollit", "anim", "id", "est", "laborum", "the", "model", "answers", "a", "question", "about", "cost", "budget", "tokens", "data"]


class _Lorem:
    """A fixed lorem-ipsum corpus with word offsets, so any text is one slice (no per-call work)."""

    __slots__ = ("_ends", "_sentences", "_starts", "_text", "_words")

    def __init__(self, words: int = 4096) -> None:
        rng = random.Random(20240601)
        out: list[str] = []
        self._sentences: list[int] = []
        while len(out) < words:
            self._sentences.append(len(out))
            length = rng.randint(6, 14)
            sentence = [rng.choice(_VOCAB) for _ in range(length)]
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "."
            out.extend(sentence)
        out = out[:words]
        self._words = len(out)
        # Twice over, so a slice that starts near the end needs no wrap-around.
        doubled = out + out
        self._text = " ".join(doubled)
        self._starts: list[int] = []
        self._ends: list[int] = []
        pos = 0
        for w in doubled:
            self._starts.append(pos)
            pos += len(w)
            self._ends.append(pos)
            pos += 1

    def text(self, key: int, words: int) -> str:
        """`words` words starting at a sentence chosen by `key`."""
        if words <= 0:
            return ""
        start = self._sentences[key % len(self._sentences)]
        full, rest = divmod(words, self._words)
        if not full:
            return self._text[self._starts[start] : self._ends[start + words - 1]]
        # Longer than the corpus (max_tokens in the thousands): repeat it; rare, so plain joins.
        cycle = self._text[self._starts[start] : self._ends[start + self._words - 1]]
        tail = self._text[self._starts[start] : self._ends[start + rest - 1]] if rest else ""
        return " ".join([cycle] * full + ([tail] if tail else []))


@cache
def _lorem() -> _Lorem:
    return _Lorem()


# --------------------------------------------------------------------------- the server


def _error(
    status: int,
    code: str | None,
    message: str,
    type_: str = "invalid_request_error",
    **headers: str,
) -> web.Response:
    """An OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}``."""
    from aiohttp import web

    body = _dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    ).encode()
    return web.Response(status=status, body=body, headers={**_JSON, **headers})


def _validate(body: Any) -> str | None:
    """The reason a chat request is invalid, or None (messages mirror OpenAI's wording)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' is a required property and must be a non-empty array"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}] must be an object with a string 'role'"
        if not isinstance(m.get("content"), str | list | None):
            return f"messages[{i}].content must be a string, an array or null"
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            return f"{name} must be an integer >= 1"
    if not isinstance(body.get("stream", False), bool | None):
        return "stream must be a boolean"
    return None


class Simulator:
    """An OpenAI-compatible server on its own event-loop thread.

    Use it as ``with Simulator() as sim`` (or ``async with``), or call `start` / `stop`.
    ``port=0`` (the default) takes a free port; `base_url` is ``http://HOST:PORT/v1``.

    Options (all but host, port and history can be changed later with `configure`):
    ``api_key`` (require ``Authorization: Bearer <api_key>``; None: no auth), ``latency`` and
    ``jitter`` (seconds: each chat answer waits latency + uniform(0, jitter)), ``stream_delay``
    (seconds between SSE chunks), ``stream_chunk_words``, ``hang`` (how long ``timeout`` stalls),
    ``retry_after`` (seconds advertised by ``rate_limit``), ``fault`` (a name from `FAULTS` or a
    list to draw from), ``fail_first`` (only the first N valid chat requests fail),
    ``fault_rate`` (each request fails with this probability, from a RNG seeded by ``seed``),
    ``cached_ratio``, ``reasoning_ratio``, ``report_cost`` (add ``usage.cost`` in USD) with
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
        self._config = _configure(_Config(), options)
        # Counters and the fault RNG are touched by the loop thread and read by callers.
        self._lock = threading.Lock()
        self._requests = 0
        self._completed = 0
        self._by_model: Counter[str] = Counter()
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
        """Chat-completion requests received (including rejected and faulted ones)."""
        return self._requests

    @property
    def completed(self) -> int:
        """Chat requests answered with a whole 200 completion (incl. no_usage/negative_usage)."""
        return self._completed

    @property
    def by_model(self) -> dict[str, int]:
        """Valid chat requests per model."""
        with self._lock:
            return dict(self._by_model)

    @property
    def faults(self) -> dict[str, int]:
        """Faults injected, by name."""
        with self._lock:
            return dict(self._faults)

    @property
    def last_requests(self) -> list[dict[str, Any]]:
        """Parsed bodies of the latest valid chat requests, oldest first (at most `history`)."""
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
            self._config = _configure(self._config, options)
            if options.keys() & {"fault", "fail_first", "fault_rate", "seed"}:
                self._fault_seq = 0
                self._fault_rng = random.Random(self._config.seed)

    def reset(self) -> None:
        """Zero the counters and history, and restart the fault schedule."""
        with self._lock:
            self._requests = self._completed = self._fault_seq = 0
            self._by_model.clear()
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
                try:
                    loop.call_soon_threadsafe(stop_event.set)
                except RuntimeError:  # the loop closed in between: the thread is ending anyway
                    pass
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

                try:
                    loop.add_signal_handler(signal.SIGTERM, stop_event.set)
                except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                    pass
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
        if path in _CHAT_PATHS:
            if request.method != "POST":
                return _error(405, None, "Use POST for chat completions.")
            return await self._chat(request)
        from aiohttp import web

        if request.method == "GET" and path in _MODELS_PATHS:
            data = [
                {"id": m, "object": "model", "created": 1735689600, "owned_by": "holysheep-sim"}
                for m in self._config.models
            ]
            payload = _dumps({"object": "list", "data": data}).encode()
            return web.Response(body=payload, headers=_JSON)
        if request.method == "GET" and path in ("/health", "/v1/health"):
            return web.Response(body=b'{"status":"ok"}', headers=_JSON)
        return _error(404, "unknown_url", f"Unknown request URL: {request.method} {path}.")

    def _pick_fault(self, cfg: _Config, header: str | None) -> str | None:
        """Called under the lock: the fault for this request, from the header or the schedule."""
        seq = self._fault_seq
        self._fault_seq += 1
        mix = cfg.fault or (_DEFAULT_FAULT_MIX if cfg.fault_rate is not None else ())
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

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        cfg = self._config
        with self._lock:
            self._requests += 1
        if cfg.api_key is not None:
            auth = request.headers.get("Authorization", "")
            if not hmac.compare_digest(auth.encode(), f"Bearer {cfg.api_key}".encode()):
                return _error(401, "invalid_api_key", "Incorrect API key provided.")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:  # includes JSONDecodeError and bad UTF-8
            return _error(400, "invalid_json", "We could not parse the JSON body of your request.")
        problem = _validate(body)
        if problem is not None:
            return _error(400, "invalid_request", problem)
        header = request.headers.get("X-Sim-Fault")
        if header is not None:
            header = header.strip().lower()
            if header != "none" and header not in FAULTS:
                known = ", ".join(sorted(FAULTS))
                message = f"unknown X-Sim-Fault {header!r}; choose from none, {known}"
                return _error(400, "unknown_fault", message)
        with self._lock:
            cfg = self._config
            self._by_model[body["model"]] += 1
            self._history.append(body)
            fault = self._pick_fault(cfg, header)
            if fault is not None:
                self._faults[fault] += 1
            self._ids += 1
            call_id = f"chatcmpl-sim{self._id_prefix}{self._ids:08x}"
            jitter = self._jitter_rng.random() * cfg.jitter if cfg.jitter else 0.0
        if cfg.latency or jitter:
            await asyncio.sleep(cfg.latency + jitter)
        if fault is not None and fault not in _BODY_FAULTS:
            return await self._fail(request, fault, cfg)
        result = simulate_completion(
            body, seed=cfg.seed, cached_ratio=cfg.cached_ratio, reasoning_ratio=cfg.reasoning_ratio
        )
        usage = None if fault == "no_usage" else self._usage(result, body["model"], cfg, fault)
        if body.get("stream"):
            return await self._stream(request, body, cfg, call_id, result, usage, fault)
        from aiohttp import web

        payload = _dumps(
            {
                "id": call_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
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
        ).encode()
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

    @staticmethod
    def _usage(
        result: SimulatedCompletion, model: str, cfg: _Config, fault: str | None
    ) -> dict[str, Any]:
        completion = result.completion_tokens
        if fault == "negative_usage":
            completion = -completion
        usage: dict[str, Any] = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": result.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": result.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        price = cfg.prices.get(model) if cfg.report_cost else None
        if price is not None:
            inp, out, cached = price
            uncached = result.prompt_tokens - result.cached_tokens
            cost = (uncached * inp + result.cached_tokens * cached + completion * out) / _MILLION
            usage["cost"] = float(cost * Decimal(str(cfg.cost_factor)))
        return usage

    async def _fail(self, request: web.BaseRequest, fault: str, cfg: _Config) -> web.StreamResponse:
        from aiohttp import web

        if fault == "rate_limit":
            wait = cfg.retry_after
            return _error(
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
            return _error(500, "server_error", message, "server_error")
        if fault == "unavailable":
            message = "The engine is currently overloaded, please try again later (simulated)."
            return _error(503, "service_unavailable", message, "server_error")
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
            return _error(504, "timeout", "Gateway timeout (simulated).", "server_error")
        return _error(503, "shutting_down", "The simulator is shutting down.", "server_error")

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

    async def _stream(
        self,
        request: web.BaseRequest,
        body: Mapping[str, Any],
        cfg: _Config,
        call_id: str,
        result: SimulatedCompletion,
        usage: dict[str, Any] | None,
        fault: str | None,
    ) -> web.StreamResponse:
        from aiohttp import web

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        head = {
            "id": call_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_holysheep_sim",
        }
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + _dumps({**head, "choices": [choice], **extra}).encode() + b"\n\n"

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        words = result.text.split(" ") if result.text else []
        k = cfg.stream_chunk_words
        for i in range(0, len(words), k):
            piece = " ".join(words[i : i + k]) + (" " if i + k < len(words) else "")
            events.append(chunk({"content": piece}))
        if fault == "cut_stream":
            events = events[: min(len(events), 3)]
        elif fault == "malformed":
            broken = chunk({"content": "x"})
            events = [events[0], broken[: len(broken) // 2] + b"\n\n", b"data: [DONE]\n\n"]
        else:
            events.append(chunk({}, result.finish_reason))
            if include_usage and usage is not None:
                events.append(
                    b"data: " + _dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n"
                )
            events.append(b"data: [DONE]\n\n")

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


def serve(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Run a simulator in the foreground until Ctrl-C (or SIGTERM); prints its base URL."""
    sim = Simulator(host=host, port=port, **options)

    def on_ready(error: BaseException | None) -> None:
        if error is None:
            print(f"holysheep-lab simulator: {sim.base_url}  (Ctrl-C to stop)", flush=True)
            print(f"  export HOLYSHEEP_BASE_URL={sim.base_url}", flush=True)

    try:
        asyncio.run(sim._serve(on_ready, foreground=True))
    except KeyboardInterrupt:
        pass

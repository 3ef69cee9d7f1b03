"""`holysheep-lab serve LOG_DIR`: the seed's dashboard API, read-only, over aiohttp.

    GET /                          the HTML spend report (rebuilt when the log changes)
    GET /api/usage/current         today's usage report (JSON, the seed's keys)
    GET /api/usage/history?days=N  the report over the last N days (1..366)

Safe defaults, unlike the seed: binds 127.0.0.1, optional bearer token (constant-time
compare), no CORS headers at all (a browser page on another origin cannot read it), only
GET/HEAD, a Host-header check against DNS rebinding on loopback, and no file is ever served
by path: the three routes above are the whole surface, everything else is 404.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError, HolySheepError, MissingExtraError

__all__ = ["MAX_DAYS", "log_signature", "make_app", "serve"]

MAX_DAYS = 366
_JSON = "application/json; charset=utf-8"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _web() -> Any:
    try:
        from aiohttp import web
    except ImportError as exc:
        raise MissingExtraError("aiohttp", "holysheep-lab serve") from exc
    return web


def log_signature(log_dir: Path) -> tuple[int, int, int]:
    """(files, newest mtime_ns, total bytes) of the log folder: changes whenever a row lands."""
    count = newest = size = 0
    for root, _dirs, files in os.walk(log_dir):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:  # rolled or compacted meanwhile: the next request sees the new file
                continue
            count, newest, size = count + 1, max(newest, st.st_mtime_ns), size + st.st_size
    return count, newest, size


def _days(raw: str | None) -> int:
    if raw is None:
        return 7
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}, got {raw[:20]!r}")
    return int(raw)


def make_app(log_dir: str | os.PathLike[str], token: str | None = None, budget: Budget | None = None,
             *, allowed_hosts: Collection[str] | None = None) -> Any:
    """The aiohttp application (tests run it on a loopback port; `serve` runs it in the foreground).

    `allowed_hosts`: Host header values (host or host:port) to accept; None accepts any.
    """
    web = _web()
    root = Path(log_dir)
    if not root.is_dir():
        raise ConfigError(f"Log folder {str(root)!r} does not exist: pass the log_dir your client writes to.")
    if token is not None and not token:
        raise ConfigError("token must be a non-empty string (or None for no token).")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be hs.Budget(...), not {type(budget).__name__}.")
    expected = f"Bearer {token}".encode() if token else None
    hosts = {h.lower() for h in allowed_hosts} if allowed_hosts is not None else None

    def error(status: int, message: str, **headers: str) -> Any:
        body = json.dumps({"error": message, "status": status})
        return web.Response(status=status, text=body, content_type="application/json", headers=headers)

    @web.middleware
    async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        if hosts is not None:
            host = (request.headers.get("Host") or "").lower()
            if host not in hosts and host.rsplit(":", 1)[0] not in hosts:
                return error(421, "Unexpected Host header (this server answers only its own address).")
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error(401, "Missing or wrong bearer token: send 'Authorization: Bearer <token>'.",
                             **{"WWW-Authenticate": 'Bearer realm="holysheep-lab"'})
        if request.method not in ("GET", "HEAD"):
            return error(405, "This API is read-only: use GET.", Allow="GET, HEAD")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404 and friends: answer in JSON, never a file
            return error(exc.status, exc.reason)
        return response

    async def on_prepare(_request: Any, response: Any) -> None:
        response.headers.update(_HEADERS)
        # No Access-Control-* header ever: browsers then refuse cross-origin reads.
        for name in [h for h in response.headers if h.lower().startswith("access-control-")]:
            del response.headers[name]

    def report_json(days: int) -> str:
        from holysheep_lab.reports.usage import usage_from_log

        return json.dumps(usage_from_log(root, days, budget=budget), default=str, allow_nan=False)

    async def usage(days: int) -> Any:
        try:
            text = await asyncio.to_thread(report_json, days)
        except HolySheepError as exc:
            return error(500, f"Cannot read the log: {exc}")
        return web.Response(text=text, content_type="application/json")

    async def current(_request: Any) -> Any:
        return await usage(1)

    async def history(request: Any) -> Any:
        values = request.query.getall("days", [])
        if len(values) > 1:
            return error(400, "Pass days once.")
        try:
            days = _days(values[0] if values else None)
        except ValueError as exc:
            return error(400, str(exc))
        return await usage(days)

    cache: dict[str, Any] = {"sig": None, "html": None}
    lock = asyncio.Lock()

    def build_report() -> str:
        import holysheep_lab as hs

        df = hs.read_log(root)
        return str(hs.report(df, budget=budget, title=f"LLM spend: {root.name}").html)

    async def page(_request: Any) -> Any:
        async with lock:  # one rebuild at a time; later requests reuse it
            sig = await asyncio.to_thread(log_signature, root)
            if sig != cache["sig"]:
                try:
                    cache["html"] = await asyncio.to_thread(build_report)
                except HolySheepError as exc:
                    return error(500, f"Cannot build the report: {exc}")
                cache["sig"] = sig
            text = cache["html"]
        return web.Response(text=text, content_type="text/html")

    app = web.Application(middlewares=[guard])
    app.on_response_prepare.append(on_prepare)
    app.router.add_get("/", page)
    app.router.add_get("/api/usage/current", current)
    app.router.add_get("/api/usage/history", history)
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(log_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          budget: Budget | None = None) -> None:
    """Serve the API in the foreground until Ctrl-C."""
    web = _web()
    hosts = None
    if _loopback(host):
        names = {host, "127.0.0.1", "localhost", "[::1]"}
        hosts = {f"{n}:{port}" for n in names} | names
    elif token is None:
        print(f"warning: serving on {host} without --token: anyone who can reach it reads your usage.",
              file=sys.stderr)
    app = make_app(log_dir, token=token, budget=budget, allowed_hosts=hosts)
    # Load pyarrow before the port opens: the first request is then as quick as the rest.
    import pyarrow.compute  # noqa: F401

    from holysheep_lab.log import reader  # noqa: F401
    from holysheep_lab.reports import usage as report_data  # noqa: F401

    print(f"holysheep-lab serve: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)

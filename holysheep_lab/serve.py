"""`holysheep-lab serve LOG_DIR`: the seed's dashboard API, read-only, over aiohttp.

    GET /                          the HTML spend report (rebuilt when the log changes)
    GET /api/usage/current         today's usage report (JSON, the seed's keys)
    GET /api/usage/history?days=N  the report over the last N days (1..366)

Safe defaults, unlike the seed: binds 127.0.0.1, optional bearer token (constant-time
compare, the scheme in any case), no CORS headers at all (a browser page on another origin
cannot read it), only GET/HEAD, a Host-header check against DNS rebinding on loopback, and no
file is ever served by path: the three routes above are the whole surface, everything else is
404. Any other address needs a token: from `--token-file PATH` (kept out of `ps` and shell
history), $HOLYSHEEP_SERVE_TOKEN, or `--token`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path

from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError, HolySheepError, MissingExtraError

try:
    from aiohttp import web
    from aiohttp.typedefs import Handler
except ImportError as exc:
    raise MissingExtraError("aiohttp", "holysheep-lab serve") from exc

__all__ = ["MAX_DAYS", "TOKEN_ENV", "Gate", "ReportPage", "UsageAPI", "check_exposure", "log_signature", "make_app",
           "resolve_token", "security_headers", "serve"]

#: The environment variable `serve` takes its token from when neither --token nor --token-file is given.
TOKEN_ENV = "HOLYSHEEP_SERVE_TOKEN"
# A token goes into a header as is: visible ASCII only (no spaces, no line breaks).
_TOKEN = re.compile(r"[!-~]+")

MAX_DAYS = 366
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


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


def _error(status: int, message: str, **headers: str) -> web.Response:
    """Every refusal is JSON: {"error": message, "status": status}."""
    body = json.dumps({"error": message, "status": status})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def _bearer_matches(header: str, expected: bytes) -> bool:
    # RFC 9110: the scheme is case-insensitive ("bearer", "BEARER"); the token is not.
    scheme, _, given = header.strip().partition(" ")
    same = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected)
    return same and scheme.lower() == "bearer"


class Gate:
    """The middleware every request passes: Host check (DNS rebinding), bearer token (constant-time
    compare), read-only methods, and JSON for aiohttp's own refusals (404 and friends), never a file.

    `allowed_hosts`: Host header values (host or host:port) to accept; None accepts any.
    """

    def __init__(self, token: str | None = None, allowed_hosts: Collection[str] | None = None) -> None:
        self._expected = token.encode() if token else None
        self._hosts = {h.lower() for h in allowed_hosts} if allowed_hosts is not None else None

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer for a request that may not reach a handler, or None to let it through."""
        if self._hosts is not None:
            host = (request.headers.get("Host") or "").lower()
            if host not in self._hosts and host.rsplit(":", 1)[0] not in self._hosts:
                return _error(421, "Unexpected Host header (this server answers only its own address).")
        expected = self._expected
        if expected is not None and not _bearer_matches(request.headers.get("Authorization", ""), expected):
            return _error(401, "Missing or wrong bearer token: send 'Authorization: Bearer <token>'.",
                          **{"WWW-Authenticate": 'Bearer realm="holysheep-lab"'})
        if request.method not in ("GET", "HEAD"):
            return _error(405, "This API is read-only: use GET.", Allow="GET, HEAD")
        return None

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """On every response: no caching, no sniffing, no framing, no referrer, and no CORS."""
    response.headers.update(_HEADERS)
    # No Access-Control-* header ever: browsers then refuse cross-origin reads.
    for name in [h for h in response.headers if h.lower().startswith("access-control-")]:
        del response.headers[name]


class UsageAPI:
    """GET /api/usage/current and /api/usage/history?days=N: the usage report as JSON."""

    def __init__(self, log_dir: Path, budget: Budget | None = None) -> None:
        self.log_dir = log_dir
        self.budget = budget

    def report_json(self, days: int) -> str:
        """The usage report of the last `days` days, read from the log (blocking)."""
        from holysheep_lab.reports.usage import usage_from_log

        return json.dumps(usage_from_log(self.log_dir, days, budget=self.budget), default=str, allow_nan=False)

    async def _usage(self, days: int) -> web.Response:
        try:
            text = await asyncio.to_thread(self.report_json, days)
        except HolySheepError as exc:
            return _error(500, f"Cannot read the log: {exc}")
        return web.Response(text=text, content_type="application/json")

    async def current(self, _request: web.Request) -> web.Response:
        return await self._usage(1)

    async def history(self, request: web.Request) -> web.Response:
        values = request.query.getall("days", [])
        if len(values) > 1:
            return _error(400, "Pass days once.")
        try:
            days = _days(values[0] if values else None)
        except ValueError as exc:
            return _error(400, str(exc))
        return await self._usage(days)


class ReportPage:
    """GET /: the HTML spend report, rebuilt only when the log folder changes (`log_signature`)."""

    def __init__(self, log_dir: Path, budget: Budget | None = None) -> None:
        self.log_dir = log_dir
        self.budget = budget
        self._signature: tuple[int, int, int] | None = None
        self._html = ""
        self._lock = asyncio.Lock()  # one rebuild at a time; later requests reuse it

    def build(self) -> str:
        """The report page of the whole log (blocking)."""
        from holysheep_lab.log.reader import read_log
        from holysheep_lab.reports.html import report

        df = read_log(self.log_dir)
        return report(df, budget=self.budget, title=f"LLM spend: {self.log_dir.name}").html

    async def get(self, _request: web.Request) -> web.Response:
        async with self._lock:
            signature = await asyncio.to_thread(log_signature, self.log_dir)
            if signature != self._signature:
                try:
                    self._html = await asyncio.to_thread(self.build)
                except HolySheepError as exc:
                    return _error(500, f"Cannot build the report: {exc}")
                self._signature = signature
            text = self._html
        return web.Response(text=text, content_type="text/html")


def _check_token(token: str | None, source: str = "token") -> None:
    if token is None:
        return
    if not isinstance(token, str) or not token:
        raise ConfigError(f"{source} must be a non-empty string (or None for no token).")
    if not _TOKEN.fullmatch(token):
        raise ConfigError(f"{source} must be visible ASCII characters only (no spaces or line breaks), "
                          "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")


def _check_options(root: Path, token: str | None, budget: Budget | None) -> None:
    if not root.is_dir():
        raise ConfigError(f"Log folder {str(root)!r} does not exist: pass the log_dir your client writes to.")
    _check_token(token)
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be hs.Budget(...), not {type(budget).__name__}.")


def make_app(log_dir: str | os.PathLike[str], token: str | None = None, budget: Budget | None = None,
             *, allowed_hosts: Collection[str] | None = None) -> web.Application:
    """The aiohttp application (tests run it on a loopback port; `serve` runs it in the foreground).

    `allowed_hosts`: Host header values (host or host:port) to accept; None accepts any.
    """
    root = Path(log_dir)
    _check_options(root, token, budget)
    api = UsageAPI(root, budget)
    app = web.Application(middlewares=[web.middleware(Gate(token, allowed_hosts))])
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", ReportPage(root, budget).get)
    app.router.add_get("/api/usage/current", api.current)
    app.router.add_get("/api/usage/history", api.history)
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None = None, token_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> str | None:
    """The token to require: `token`, else the first line of `token_file`, else $HOLYSHEEP_SERVE_TOKEN
    (None: no token). Giving both `token` and `token_file` is a ConfigError."""
    if token is not None and token_file is not None:
        raise ConfigError("Pass the token once: --token or --token-file, not both.")
    if token is not None:
        _check_token(token)
        return token
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"Cannot read the token file {str(path)!r} ({why}): pass --token-file PATH of a "
                              "file holding the token on its first line.") from None
        lines = text.splitlines()
        file_token = lines[0].strip() if lines else ""
        _check_token(file_token, f"The token in {str(path)!r}")
        return file_token
    env_token = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if env_token is None or not env_token.strip():
        return None
    env_token = env_token.strip()
    _check_token(env_token, f"${TOKEN_ENV}")
    return env_token


def check_exposure(host: str, token: str | None) -> None:
    """ConfigError for an address other machines can reach without a token: anyone there would
    read the usage (models, spend, budgets)."""
    if token is None and not _loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host!r} without a token: anyone who can reach it would read your usage. "
            f"Set a token (--token-file PATH, or ${TOKEN_ENV}, or --token) or serve on 127.0.0.1."
        )


def serve(log_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          budget: Budget | None = None, *, token_file: str | os.PathLike[str] | None = None) -> None:
    """Serve the API in the foreground until Ctrl-C. The token comes from `token`, `token_file` or
    $HOLYSHEEP_SERVE_TOKEN (see `resolve_token`); a non-loopback `host` needs one."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0..65535 (0: any free port), not {port!r}.")
    token = resolve_token(token, token_file)
    check_exposure(host, token)
    hosts = None
    if _loopback(host):
        names = {host, "127.0.0.1", "localhost", "[::1]"}
        hosts = {f"{n}:{port}" for n in names} | names
    app = make_app(log_dir, token=token, budget=budget, allowed_hosts=hosts)
    # Load pyarrow before the port opens: the first request is then as quick as the rest.
    import pyarrow.compute  # noqa: F401

    from holysheep_lab.log import reader  # noqa: F401
    from holysheep_lab.reports import usage  # noqa: F401

    print(f"holysheep-lab serve: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)

"""The served dashboard API over real HTTP on loopback: shape, refusals, no traversal, no CORS."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from conftest import free_port

import holysheep_lab as hs
from holysheep_lab.log import CallRecord, LogWriter
from holysheep_lab.serve import TOKEN_ENV, check_exposure, make_app, resolve_token, serve

TOKEN = "s3cret-token"
NOW = datetime.now(UTC)
TODAY = max(NOW - timedelta(minutes=1), NOW.replace(hour=0, minute=0, second=0, microsecond=0))
YESTERDAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=2)
SEED_KEYS = {"period_days", "total_requests", "total_cost_usd", "total_input_tokens", "total_output_tokens",
             "avg_latency_ms", "model_breakdown", "daily_budget_remaining", "monthly_budget_remaining"}


def _rec(i: int, ts: datetime, model: str, cost: float, status: str = "ok") -> CallRecord:
    return CallRecord(call_id=f"c{i}", ts=ts, model=model, status=status, input_tokens=100, output_tokens=50,
                      cost_usd=cost if status != "blocked" else 0.0, latency_ms=200.0 + i, attempts=1)


def _write(log, records) -> None:
    with LogWriter(log) as w:
        for r in records:
            w.append(r)


class Server:
    def __init__(self, log, **kw) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = make_app(log, **kw)
        from aiohttp import web

        self.runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def raw(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        """http.client sends the path byte for byte (httpx would normalise '..')."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    d = tmp_path_factory.mktemp("served") / "calls"
    d.mkdir()
    _write(d, [
        _rec(1, TODAY, "gpt-4.1", 0.50), _rec(2, TODAY, "gpt-4.1", 0.25), _rec(3, TODAY, "deepseek-v3.2", 0.01),
        _rec(4, TODAY, "gpt-4.1", 0.0, status="blocked"),
        _rec(5, YESTERDAY, "claude-sonnet-4.5", 1.00), _rec(6, NOW - timedelta(days=10), "gpt-4.1", 2.00),
    ])
    return d


@pytest.fixture(scope="module")
def server(log):
    s = Server(log, token=TOKEN, budget=hs.Budget(daily=5, monthly=100, tz="UTC"),
               allowed_hosts={"127.0.0.1", "localhost"})
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server.port}",
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def test_current_is_todays_report(api):
    r = api.get("/api/usage/current")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body.keys() >= SEED_KEYS
    assert body["period_days"] == 1
    assert body["total_requests"] == 3 and body["blocked_requests"] == 1
    assert body["total_cost_usd"] == pytest.approx(0.76)
    assert body["total_input_tokens"] == 300 and body["total_output_tokens"] == 150
    assert body["model_breakdown"]["gpt-4.1"] == {"requests": 2, "cost_usd": 0.75, "input_tokens": 200,
                                                  "output_tokens": 100}
    assert list(body["model_breakdown"]) == ["gpt-4.1", "deepseek-v3.2"]  # costliest first
    assert body["daily_budget_remaining"] == pytest.approx(5 - 0.76)
    month_spent = (0.76 + (1.0 if YESTERDAY.month == NOW.month else 0)
                   + (2.0 if (NOW - timedelta(days=10)).month == NOW.month else 0))
    assert body["monthly_budget_remaining"] == pytest.approx(100 - month_spent)


@pytest.mark.parametrize(("days", "requests", "cost"), [(1, 3, 0.76), (2, 4, 1.76), (30, 5, 3.76), (366, 5, 3.76)])
def test_history_counts_the_days_asked(api, days, requests, cost):
    body = api.get("/api/usage/history", params={"days": days}).json()
    assert body["period_days"] == days and body["total_requests"] == requests
    assert body["total_cost_usd"] == pytest.approx(cost)


def test_history_defaults_to_seven_days(api):
    assert api.get("/api/usage/history").json()["period_days"] == 7


@pytest.mark.parametrize("query", ["days=0", "days=367", "days=abc", "days=-1", "days=1.5", "days=", "days=%EF%BC%91",
                                   "days=1&days=2", "days=99999999999999999999"])
def test_bad_days_are_400_with_a_clear_message(server, query):
    status, headers, body = server.raw("GET", f"/api/usage/history?{query}", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert b'"error"' in body and (b"1 to 366" in body or b"once" in body)


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {TOKEN}x", TOKEN, "Bearer ", f"Basic {TOKEN}",
                                  f"bearer {TOKEN.upper()}", f"Bearerx {TOKEN}", f"{TOKEN} Bearer", f"Token {TOKEN}"])
def test_token_is_required(server, auth):
    status, headers, body = server.raw("GET", "/api/usage/current", {"Authorization": auth} if auth else {})
    assert status == 401 and "bearer" in headers["www-authenticate"].lower()
    assert b"total_cost_usd" not in body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive_the_token_is_not(server, scheme):
    status, _, body = server.raw("GET", "/api/usage/current", {"Authorization": f"{scheme} {TOKEN}"})
    assert status == 200 and b"total_cost_usd" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/usage/current", "/api/usage/history?days=7"])
def test_read_only(server, method, path):
    status, headers, _ = server.raw(method, path, {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert not any(h.startswith("access-control-") for h in headers)


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/usage/..%2f..%2f..%2fetc%2fpasswd", "/api/usage/current/../../../../etc/passwd", "//etc/passwd",
    "/etc/passwd", "/%252e%252e/etc/passwd", "/_journal/", "/date=2026-01-01/", "/..\\..\\etc\\passwd",
])
def test_no_file_is_served_by_path(server, path):
    status, _, body = server.raw("GET", path, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 404
    assert b"root:" not in body and b"PAR1" not in body


def test_no_cors_headers_even_when_asked(api):
    r = api.get("/api/usage/current", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in r.headers)
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"


def test_foreign_host_header_is_refused(server):
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    status, _, _ = server.raw("GET", "/api/usage/current", {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"})
    assert status == 421


def test_html_report_is_rebuilt_when_the_log_changes(tmp_path):
    log = tmp_path / "calls"
    log.mkdir()
    _write(log, [_rec(1, TODAY, "gpt-4.1", 0.5)])
    s = Server(log)  # no token: open
    try:
        t0 = time.perf_counter()
        status, headers, first = s.raw("GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"<!DOCTYPE html>" in first and b"gpt-4.1" in first and b"fresh-model" not in first
        t1 = time.perf_counter()
        assert s.raw("GET", "/")[2] == first
        assert time.perf_counter() - t1 < max(0.5, (t1 - t0) / 3)  # cached, not rebuilt
        _write(log, [_rec(2, TODAY, "fresh-model", 0.1)])
        assert b"fresh-model" in s.raw("GET", "/")[2]
        assert s.raw("HEAD", "/")[0] == 200
    finally:
        s.close()


def test_make_app_checks_its_arguments(tmp_path):
    with pytest.raises(hs.ConfigError, match="does not exist"):
        make_app(tmp_path / "missing")
    with pytest.raises(hs.ConfigError, match="non-empty"):
        make_app(tmp_path, token="")


def _other_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_cli_serves_on_loopback_only(log):
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "holysheep-lab")
    proc = subprocess.Popen([exe, "serve", str(log), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/api/usage/current", timeout=30)
                break
            except httpx2.ConnectError:  # not listening yet
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["total_requests"] == 3
        other = _other_address()
        if other is not None:
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=1):
                pass
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


# -- exposure and where the token comes from --------------------------------------------------


def _refused_to_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def never_serves(monkeypatch):
    """A regression must fail here, not serve forever on an open address."""
    from aiohttp import web

    def run_app(*_a, **_k):
        raise AssertionError("serve() started the server")

    monkeypatch.setattr(web, "run_app", run_app)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "relay.example.com"])
def test_a_reachable_host_without_a_token_is_refused(log, host, never_serves):
    with pytest.raises(hs.ConfigError) as info:
        serve(log, host=host, port=free_port())
    message = str(info.value)
    assert "without a token" in message and "--token-file" in message and TOKEN_ENV in message


def test_the_cli_names_the_fix_and_never_listens(log):
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "holysheep-lab")
    try:
        out = subprocess.run([exe, "serve", str(log), "--host", "0.0.0.0", "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:  # it served (run() has killed it)
        pytest.fail("serve --host 0.0.0.0 without a token ran")
    assert out.returncode == 2 and _refused_to_connect(port)
    assert "holysheep-lab:" in out.stderr and "--token-file PATH" in out.stderr and TOKEN_ENV in out.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::"])
def test_a_reachable_host_with_a_token_is_allowed(host):
    check_exposure(host, "t0ken")  # no error: the token guards it


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1"])
def test_loopback_needs_no_token(host):
    check_exposure(host, None)


def test_the_token_comes_from_the_argument_the_file_or_the_environment(tmp_path):
    f = tmp_path / "token"
    f.write_text("from-file\nignored second line\n")
    env = {TOKEN_ENV: "  from-env \n"}
    assert resolve_token("from-arg", None, env) == "from-arg"
    assert resolve_token(None, f, env) == "from-file"
    assert resolve_token(None, None, env) == "from-env"
    assert resolve_token(None, None, {}) is None
    assert resolve_token(None, None, {TOKEN_ENV: ""}) is None  # set but empty: as unset


@pytest.mark.parametrize(("content", "match"), [
    ("", "must be a non-empty string"), ("\n\n", "must be a non-empty string"),
    ("two words\n", "visible ASCII"), ("caf\u00e9\n", "visible ASCII"),
])
def test_a_bad_token_file_is_a_config_error(tmp_path, content, match):
    f = tmp_path / "token"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(hs.ConfigError, match=match) as info:
        resolve_token(None, f, {})
    assert str(f) in str(info.value)


def test_token_sources_are_checked(tmp_path):
    with pytest.raises(hs.ConfigError, match="not both"):
        resolve_token("a", tmp_path / "t", {})
    with pytest.raises(hs.ConfigError, match="Cannot read the token file") as info:
        resolve_token(None, tmp_path / "missing", {})
    assert "--token-file PATH" in str(info.value)
    with pytest.raises(hs.ConfigError, match=TOKEN_ENV):
        resolve_token(None, None, {TOKEN_ENV: "has space"})
    with pytest.raises(hs.ConfigError, match="visible ASCII"):
        make_app(tmp_path, token="line\nbreak")


def _serve_cli(log, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "holysheep-lab")
    return subprocess.Popen([exe, "serve", str(log), "--port", str(port), *extra], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
    raise AssertionError("serve did not start")


@pytest.mark.parametrize("source", ["env", "file"])
def test_cli_takes_the_token_from_the_environment_or_a_file(log, tmp_path, source):
    secret = f"tok-{source}-{os.getpid()}"
    port = free_port()
    if source == "env":
        proc = _serve_cli(log, port, env={TOKEN_ENV: secret})
    else:
        (tmp_path / "tok").write_text(secret + "\n")
        proc = _serve_cli(log, port, "--token-file", str(tmp_path / "tok"))
    try:
        _wait_listening(proc, port)
        url = f"http://127.0.0.1:{port}/api/usage/current"
        assert httpx2.get(url, timeout=30).status_code == 401
        assert httpx2.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
        r = httpx2.get(url, headers={"Authorization": f"bearer {secret}"}, timeout=30)
        assert r.status_code == 200 and r.json()["total_requests"] == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)

"""Headless Chromium with the network blocked, and every attempt to reach it recorded.

All of Chromium's traffic (loopback included) is sent to a local proxy that refuses it (HTTP 403)
and notes what was asked for: a page that tries to load vega from a CDN shows up in the requests,
and gets nothing. A `file://` page itself needs no network.

Chromium asks a few Google services for things of its own whatever the page (accounts, push,
a search-box feature), and no flag stops all of them: `page_requests` leaves those out, and
`CSP_PROBE` catches, inside the page, any load the page itself attempts.
"""

from __future__ import annotations

import shutil
import socketserver
import subprocess
import threading
from pathlib import Path


class _Refuser(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        if line:
            self.server.requests.append(line)  # type: ignore[attr-defined]
        while True:  # drain the headers, then refuse
            header = self.rfile.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class BlockedNetwork:
    """A refusing proxy on loopback; `requests` lists the request lines it was sent."""

    def __init__(self) -> None:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuser)
        self.server.daemon_threads = True
        self.server.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[str]:
        return list(self.server.requests)  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BlockedNetwork:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def dump_dom_offline(tmp_path: Path, url: str, *, budget_ms: int = 15_000) -> tuple[str, str, list[str]]:
    """(DOM after `budget_ms` of virtual time, Chromium's stderr, the network requests it tried)."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with BlockedNetwork() as net:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
               "--no-pings", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
               f"--proxy-server={net.url}", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
               f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        requests = net.requests
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, out.stderr, requests



def _host(request_line: str) -> str:
    """The host a proxy request line names: 'CONNECT h:443 HTTP/1.1' or 'GET http://h/p HTTP/1.1'."""
    target = request_line.split(" ")[1] if " " in request_line else request_line
    target = target.split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0]


#: Where Chromium itself goes (accounts, push, time, search-box features), whatever the page.
BROWSER_SERVICES = (".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com", ".gvt2.com")


def page_requests(requests: list[str]) -> list[str]:
    """`requests` without the browser's own calls to Google services (`BROWSER_SERVICES`); what
    the page itself tries is caught by a Content-Security-Policy report (see `CSP_PROBE`)."""
    return [r for r in requests if not ("." + _host(r)).endswith(BROWSER_SERVICES)]


#: For the <head> of a test page: nothing but the page's own inline scripts and styles may load,
#: and every attempt to load anything else is listed in <div id="csp-violations"> for the DOM dump.
CSP_PROBE = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
    "<script>var hsViolations = [];"
    "document.addEventListener('securitypolicyviolation', function (e) { hsViolations.push(e.blockedURI); });"
    "window.addEventListener('load', function () { setTimeout(function () {"
    "var d = document.createElement('div'); d.id = 'csp-violations'; d.textContent = JSON.stringify(hsViolations);"
    "document.body.appendChild(d); }, 5000); });</script>"
)

"""Local stand-ins for the LINE Messaging API and a Teams Workflows webhook (aiohttp).

Each listens on 127.0.0.1 in a thread of its own and checks every request the way the real
service documents it (method, path, headers, JSON shape, limits), answering as the service
would: LINE with ``{"message": ..., "details": [...]}`` bodies and 409 for a retry key it
already accepted, Workflows with 202 Accepted. `script` makes the next requests answer a
given status on demand (after the request itself was checked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from _support.local_service import LocalService

__all__ = ["FakeLine", "FakeTeams", "utf16_len"]

LINE_ID = re.compile(r"[UCR][0-9a-f]{32}")
USER_ID = re.compile(r"U[0-9a-f]{32}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------- LINE

_LINE_BODIES = {
    400: "The property, 'to', in the request body is invalid (line: -, column: -)",
    401: "Authentication failed. Confirm that the access token in the authorization header is valid.",
    403: "Access to this API is not available for your account",
    404: "Not found",
    429: "The API rate limit has been exceeded. Try again later.",
    500: "Internal server error",
}


class _Invalid(Exception):
    def __init__(self, prop: str, message: str) -> None:
        super().__init__(message)
        self.prop, self.message = prop, message


def _check_flex_node(node: Any, prop: str) -> None:
    if isinstance(node, dict):
        if node.get("type") == "text":
            text = node.get("text")
            if not isinstance(text, str) or not text:
                raise _Invalid(f"{prop}.text", "must be a non-empty string")
        for key in ("color", "backgroundColor"):
            if key in node and not HEX_COLOUR.fullmatch(str(node[key])):
                raise _Invalid(f"{prop}.{key}", "must be a hex colour such as #RRGGBB")
        for key, value in node.items():
            _check_flex_node(value, f"{prop}.{key}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            _check_flex_node(item, f"{prop}[{n}]")


def _check_message(msg: Any, prop: str) -> None:
    if not isinstance(msg, dict):
        raise _Invalid(prop, "must be a message object")
    kind = msg.get("type")
    if kind == "text":
        if set(msg) - {"type", "text", "emojis", "quoteToken", "quickReply", "sender"}:
            raise _Invalid(prop, "unknown property")
        text = msg.get("text")
        if not isinstance(text, str) or not text:
            raise _Invalid(f"{prop}.text", "must not be empty")
        if utf16_len(text) > 5000:
            raise _Invalid(f"{prop}.text", "Length must be between 0 and 5000")
    elif kind == "flex":
        if set(msg) - {"type", "altText", "contents", "quickReply", "sender"}:
            raise _Invalid(prop, "unknown property")
        alt = msg.get("altText")
        if not isinstance(alt, str) or not alt or utf16_len(alt) > 1500:
            raise _Invalid(f"{prop}.altText", "Length must be between 1 and 1500")
        contents = msg.get("contents")
        if not isinstance(contents, dict) or contents.get("type") not in ("bubble", "carousel"):
            raise _Invalid(f"{prop}.contents", "must be a bubble or carousel container")
        if len(json.dumps(contents, ensure_ascii=False).encode()) > 30 * 1024:
            raise _Invalid(f"{prop}.contents", "Size must be 30 KB or less")
        _check_flex_node(contents, f"{prop}.contents")
    else:
        raise _Invalid(f"{prop}.type", f"unsupported message type {kind!r}")


class FakeLine(LocalService):
    """POST /v2/bot/message/push and /multicast, checked like api.line.me checks them.

    `members`: the ids the bot can reach (None: every well-formed id); others get LINE's 400
    for an invalid 'to'. `fail_first`: {id: status} answers that status to the first
    request for that id. Script entries: a status, "monthly" (429 quota used up),
    "accept-then-500" (accepted, but the answer is a 500: a lost answer), "echo-token"
    (a 400 whose message quotes the token).
    """

    def __init__(self, token: str, script: Iterable[int | str] = (), *, retry_after: str | None = None,
                 members: Iterable[str] | None = None, fail_first: dict[str, int] | None = None) -> None:
        super().__init__(script, retry_after=retry_after)
        self.token = token
        self.members = None if members is None else set(members)
        self.fail_first = dict(fail_first or {})
        self.accepted: list[dict[str, Any]] = []  # {"path", "to", "messages", "retry_key"}
        self._keys: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _reply(self, status: int, message: str | None = None, **extra: Any) -> web.Response:
        payload: dict[str, Any] = {"message": message or _LINE_BODIES.get(status, "error"), **extra}
        headers = {"X-Line-Request-Id": f"req-{len(self.calls)}"}
        if status == 429 and self.retry_after:
            headers["Retry-After"] = self.retry_after
        return web.json_response(payload, status=status, headers=headers)

    def _check(self, request: web.Request, body: bytes) -> tuple[str, dict[str, Any]]:
        if not request.content_type == "application/json":
            raise _Invalid("Content-Type", f"The content type, {request.content_type}, is not supported")
        key = request.headers.get("X-Line-Retry-Key", "")
        if not UUID.fullmatch(key):
            raise _Invalid("X-Line-Retry-Key", "The value for the 'X-Line-Retry-Key' header is invalid")
        try:
            data = json.loads(body)
        except ValueError:
            raise _Invalid("", "The request body could not be parsed as JSON (line: -, column: -)") from None
        if not isinstance(data, dict) or set(data) - {"to", "messages", "notificationDisabled",
                                                      "customAggregationUnits"}:
            raise _Invalid("", "The request body has unknown properties")
        to = data.get("to")
        if request.path.endswith("/push"):
            ok = isinstance(to, str) and LINE_ID.fullmatch(to)
        else:  # multicast: user ids only, at most 500
            ok = (isinstance(to, list) and 1 <= len(to) <= 500
                  and all(isinstance(i, str) and USER_ID.fullmatch(i) for i in to))
        if not ok:
            raise _Invalid("to", "The property, 'to', in the request body is invalid (line: -, column: -)")
        messages = data.get("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
            raise _Invalid("messages", "Size must be between 1 and 5")
        for n, msg in enumerate(messages):
            _check_message(msg, f"messages[{n}]")
        return key, data

    async def answer(self, request: web.Request, body: bytes) -> web.Response:
        if request.method != "POST":
            return self._reply(405, "Method not allowed")
        if request.path not in ("/v2/bot/message/push", "/v2/bot/message/multicast"):
            return self._reply(404)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._reply(401)
        try:
            key, data = self._check(request, body)
        except _Invalid as bad:
            if bad.prop in ("", "to", "Content-Type", "X-Line-Retry-Key"):
                status = 415 if bad.prop == "Content-Type" else 400
                return self._reply(status, bad.message)
            return self._reply(400, "The request body has 1 error(s)",
                               details=[{"message": bad.message, "property": bad.prop}])
        if key in self._keys:
            return self._reply(409, "The retry key is already accepted",
                               sentMessages=[])  # LINE also sends x-line-accepted-request-id
        ids = [data["to"]] if isinstance(data["to"], str) else data["to"]
        if self.members is not None and any(i not in self.members for i in ids):
            return self._reply(400)
        for i in ids:
            if i in self.fail_first:
                return self._reply(self.fail_first.pop(i))
        step = self.script.popleft() if self.script else None
        if step == "monthly":
            return self._reply(429, "You have reached your monthly limit.")
        if step == "echo-token":
            return self._reply(400, f"bad request for channel token {self.token}")
        if isinstance(step, int):
            return self._reply(step)
        self._keys.add(key)
        self.accepted.append({"path": request.path, "to": data["to"], "messages": data["messages"],
                              "retry_key": key})
        if step == "accept-then-500":
            return self._reply(500)
        return web.json_response({"sentMessages": [{"id": str(len(self.accepted)), "quoteToken": "q"}]},
                                 headers={"X-Line-Request-Id": f"req-{len(self.calls)}"})


# --------------------------------------------------------------------------- Teams

_CARD_STYLES = {"default", "emphasis", "good", "attention", "warning", "accent"}
_TEXT_COLOURS = {"default", "dark", "light", "accent", "good", "warning", "attention"}


def _check_card(card: Any) -> str | None:
    """None if `card` is an Adaptive Card Teams renders, else what is wrong with it."""
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return "content.type must be AdaptiveCard"
    if card.get("version") not in ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5"):
        return "content.version must be 1.0 .. 1.5"
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return "content.body must be a non-empty list"

    def walk(items: list[Any]) -> str | None:
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "TextBlock":
                if not isinstance(item.get("text"), str) or not item["text"]:
                    return "TextBlock.text must be a non-empty string"
                if "color" in item and item["color"] not in _TEXT_COLOURS:
                    return f"TextBlock.color {item['color']!r} is not a colour name"
            elif kind == "FactSet":
                facts = item.get("facts")
                if not isinstance(facts, list) or not all(
                    isinstance(f, dict) and set(f) == {"title", "value"}
                    and all(isinstance(v, str) for v in f.values()) for f in facts
                ):
                    return "FactSet.facts must be a list of {title, value} strings"
            elif kind == "Container":
                if item.get("style", "default") not in _CARD_STYLES:
                    return f"Container.style {item.get('style')!r} is not a style"
                problem = walk(item.get("items") or [])
                if problem:
                    return problem
            else:
                return f"unexpected element {kind!r}"
        return None

    return walk(body)


class FakeTeams(LocalService):
    """A Workflows "When a Teams webhook request is received" trigger: POST to its path with
    its `sig`, a message wrapping one Adaptive Card, at most 28 KB; answers 202 Accepted."""

    WORKFLOW = "8a1f0c7e2b3d4f5a9c6e1b2d3f4a5c6e"
    SIG = "s3cretSIGnature0123456789abcdefXYZ"

    def __init__(self, script: Iterable[int | str] = (), *, retry_after: str | None = None) -> None:
        super().__init__(script, retry_after=retry_after)
        self.cards: list[dict[str, Any]] = []

    @property
    def path(self) -> str:
        return f"/workflows/{self.WORKFLOW}/triggers/manual/paths/invoke"

    def url(self, *, sig: str | None = None, path: str | None = None) -> str:
        return (f"http://127.0.0.1:{self.port}{path or self.path}?api-version=1"
                f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig or self.SIG}")

    def _error(self, status: int, code: str, message: str) -> web.Response:
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
        return web.json_response({"error": {"code": code, "message": message}}, status=status,
                                 headers=headers)

    async def answer(self, request: web.Request, body: bytes) -> web.Response:
        if request.method != "POST":
            return self._error(405, "MethodNotAllowed", "The trigger accepts POST only.")
        if request.path != self.path:
            return self._error(404, "WorkflowNotFound", "The workflow could not be found.")
        query = parse_qs(urlsplit(request.path_qs).query)
        if query.get("sig") != [self.SIG]:
            return self._error(401, "DirectApiAuthorizationRequired",
                               "The request must be authenticated with a valid signature.")
        if request.content_type != "application/json":
            return self._error(415, "UnsupportedMediaType", "The content type is not supported.")
        if len(body) > 28 * 1024:
            return self._error(413, "MessageTooLarge", "The message is too large.")
        try:
            data = json.loads(body)
        except ValueError:
            return self._error(400, "InvalidRequestContent", "The body is not valid JSON.")
        attachments = data.get("attachments") if isinstance(data, dict) else None
        if data.get("type") != "message" or not isinstance(attachments, list) or len(attachments) != 1:
            return self._error(400, "InvalidRequestContent", "Expected a message with attachments.")
        (att,) = attachments
        if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return self._error(400, "InvalidRequestContent", "Only Adaptive Cards are supported.")
        problem = _check_card(att.get("content"))
        if problem:
            return self._error(400, "InvalidRequestContent", problem)
        step = self.script.popleft() if self.script else None
        if isinstance(step, int):
            return self._error(step, "Scripted", f"scripted {step}")
        self.cards.append(att["content"])
        return web.Response(status=202)

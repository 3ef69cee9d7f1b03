"""Microsoft Teams channel: an Adaptive Card posted to a Teams Workflows webhook.

Teams retired Office 365 connectors in favour of Workflows: a flow started by the trigger
"When a Teams webhook request is received" (template "Send webhook alerts to a channel")
gets a URL and posts the Adaptive Cards it receives as

    {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                          "contentUrl": null, "content": {<AdaptiveCard>}}]}

Workflows accept Adaptive Cards only (no MessageCard) and a message of about 28 KB at most;
every text here is clipped so the body stays far below that however long the names in an
alert are. The URL carries the workflow's signature (`sig=`): it is a secret, handled like
WebhookChannel's URL. `TeamsStyle` is the card and the hints; WebhookChannel sends it.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import Any

from holysheep_lab.alerts.channel import CONTROL, LOOPBACK, clip, one_line
from holysheep_lab.alerts.model import Alert, Level
from holysheep_lab.alerts.webhook import WebhookChannel
from holysheep_lab.errors import ConfigError

__all__ = [
    "CARD_VERSION",
    "MAX_MESSAGE_BYTES",
    "TeamsChannel",
    "TeamsStyle",
    "card_style",
    "payload_size",
    "teams_payload",
]

CARD_VERSION = "1.4"  # rendered by Teams desktop, web and mobile
MAX_MESSAGE_BYTES = 28 * 1024  # Teams' limit for one message posted by a webhook

# Adaptive Cards have no free colours: a container style and a text colour stand for the level.
_STYLE_BY_COLOUR = {
    0x3498DB: "accent",
    0xF1C40F: "warning",
    0xE67E22: "attention",
    0xE74C3C: "attention",
}
_HINTS = {
    400: "Teams Workflows rejected the message: check the flow starts with 'When a Teams webhook "
    "request is received' and posts the card it receives ('Post card in a chat or channel')",
    401: "the workflow refused the URL's signature: copy the URL again from the flow's trigger "
    "(it changes when the trigger is regenerated)",
    403: "the workflow refused the URL's signature or its owner lost access: copy the URL "
    "again from the flow's trigger and check the flow's owner can still post to the channel",
    404: "no workflow answers at this URL: it was deleted or turned off; turn it on or create "
    "a new one and copy its URL",
    413: f"the message is larger than Teams accepts (about {MAX_MESSAGE_BYTES // 1024} KB)",
}


def _clip_line(text: str, limit: int) -> str:
    return clip(one_line(text), limit)


def card_style(level: Level) -> str:
    """The Adaptive Card style for a level: accent (INFO), warning, attention (CRITICAL and
    EMERGENCY); levels of other colours by threshold band."""
    style = _STYLE_BY_COLOUR.get(level.colour)
    if style is not None:
        return style
    if level.threshold < 0.75:
        return "accent"
    return "warning" if level.threshold < 0.9 else "attention"


def teams_payload(alert: Alert) -> dict[str, Any]:
    """The Workflows webhook body: one Adaptive Card with the title in the level's style, the
    alert text, a fact per detail (spent, in flight, level, scope, window, resets, ...)."""
    style = card_style(alert.level)
    stamp = alert.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "Container",
                "style": style,
                "bleed": True,
                "items": [
                    {
                        "type": "TextBlock",
                        "text": _clip_line(alert.title, 200),
                        "size": "Medium",
                        "weight": "Bolder",
                        "color": style,
                        "wrap": True,
                    }
                ],
            },
            {"type": "TextBlock", "text": _clip_line(alert.text, 1000), "wrap": True},
            {
                "type": "FactSet",
                "facts": [
                    {"title": label, "value": _clip_line(value, 300) or "-"}
                    for label, value in alert.details()[:12]
                ],
            },
            {
                "type": "TextBlock",
                "text": f"holysheep-lab · {alert.level.name} fires at {alert.level.percent} "
                f"of the limit · {stamp}",
                "size": "Small",
                "isSubtle": True,
                "wrap": True,
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def payload_size(payload: dict[str, Any]) -> int:
    """Bytes of `payload` as posted (UTF-8 JSON), or as UTF-16 if Teams re-encodes it: the
    larger, so a message under MAX_MESSAGE_BYTES is under the limit either way."""
    text = json.dumps(payload, ensure_ascii=False)
    return max(len(text.encode("utf-8")), len(text.encode("utf-16-le")))


class TeamsStyle:
    """The Teams Workflows style of a WebhookChannel: an Adaptive Card, and a fix per refusal."""

    name = "teams"
    # Teams counts the size of a body without a charset as if it were UTF-16.
    headers: Mapping[str, str] = MappingProxyType({"Content-Type": "application/json; charset=utf-8"})

    def payload(self, alert: Alert) -> dict[str, Any]:
        return teams_payload(alert)

    def hint(self, status: int) -> str | None:
        return _HINTS.get(status)

    def __repr__(self) -> str:
        return "TeamsStyle()"


class TeamsChannel(WebhookChannel):
    """Post each alert to a Microsoft Teams chat or channel through a Workflows webhook.

    `webhook_url`: the HTTP POST URL of a flow whose trigger is "When a Teams webhook request
    is received" (Teams: the channel's "…" menu, Workflows, "Send webhook alerts to a
    channel"). It is a secret (its `sig` parameter signs requests): it never appears in repr,
    str, errors, delivery records or logs; only ``scheme://host/…`` does. It must be https
    (http only for a loopback test server).

    The transport, proxies, TLS and timeouts are WebhookChannel's. A 2xx (Workflows answer
    202 Accepted) is a delivery; 429 and 5xx are retried (honouring Retry-After), other
    failures are not, and their error says what to fix. The flow runs after it has answered,
    so a flow that fails later (say, its owner left the team) shows in the flow's run
    history, not here.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        timeout: float = 5.0,
        name: str | None = None,
        proxy: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        fix = (
            "TeamsChannel webhook_url must be the https:// URL of a Teams Workflows webhook "
            "(copy it from the flow's 'When a Teams webhook request is received' trigger)"
        )
        if not isinstance(webhook_url, str) or not webhook_url.strip():
            raise ConfigError(fix + "; it is empty.")
        if CONTROL.search(webhook_url):
            raise ConfigError(fix + "; it contains a line break.")
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            # Never echo the URL: a malformed one is still someone's signature.
            raise ConfigError(fix + "; plain http:// is only allowed to a loopback test server.")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(fix + f"; got a {parts.scheme or 'scheme-less'} URL.")
        super().__init__(webhook_url, TeamsStyle(), timeout=timeout, proxy=proxy, verify=verify)
        self.name = one_line(name) if name else f"teams:{parts.hostname}"

    def __repr__(self) -> str:
        return f"TeamsChannel(url={self.safe_url!r}, timeout={self.timeout:g})"

    __str__ = __repr__

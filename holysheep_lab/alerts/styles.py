"""Webhook styles: what one chat service wants from a WebhookChannel.

A style is an object with a `name` (shown in the channel's name and repr), the `headers`
its service needs, ``payload(alert)``, the JSON body, and ``hint(status)``, the fix to add
to an HTTP failure (None: the status says enough). WebhookChannel does the transport,
secrets and retries; the style only shapes the message. Slack, Discord and generic JSON
live here; Teams' Adaptive Card style lives beside TeamsChannel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from holysheep_lab.alerts.channel import clip
from holysheep_lab.alerts.model import Alert

__all__ = [
    "STYLES",
    "DiscordStyle",
    "GenericStyle",
    "SlackStyle",
    "WebhookStyle",
    "discord_payload",
    "generic_payload",
    "slack_payload",
]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@runtime_checkable
class WebhookStyle(Protocol):
    """The message format of one webhook service."""

    @property
    def name(self) -> str:
        """A short word such as 'slack' (part of the channel's name; no secrets)."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers the service needs (the channel's own `headers` override them)."""
        ...

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body posted for `alert`."""
        ...

    def hint(self, status: int) -> str | None:
        """What to fix when the service answers HTTP `status`; None adds nothing."""
        ...


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup ("<!channel>" pings everyone): escape user text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack incoming-webhook body: `text` (notification fallback) plus Block Kit blocks."""
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(clip(value, 300))}"}
        for label, value in alert.details()[:10]  # a section holds at most 10 fields
    ]
    stamp = alert.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {
        "text": _slack_escape(alert.text),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(alert.title, 150)}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(clip(alert.text, 2000))},
                "fields": fields,
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"holysheep-lab · {alert.level.name} fires at "
                        f"{alert.level.percent} of the limit · {stamp}",
                    }
                ],
            },
        ],
    }


def discord_payload(alert: Alert, username: str = "holysheep-lab") -> dict[str, Any]:
    """Discord execute-webhook body: one embed coloured by level; mentions disabled."""
    return {
        "username": clip(username, 80),
        # A project or model name like "@everyone" must not ping anyone.
        "allowed_mentions": {"parse": []},
        "embeds": [
            {
                "title": clip(alert.title, 256),
                "description": clip(alert.text, 4096),
                "color": alert.level.colour,
                "fields": [
                    {"name": label, "value": clip(value, 1024), "inline": True}
                    for label, value in alert.details()[:25]
                ],
                "timestamp": alert.ts.astimezone(UTC).isoformat(),
                "footer": {"text": "holysheep-lab"},
            }
        ],
    }


def generic_payload(alert: Alert) -> dict[str, Any]:
    """Plain JSON of the alert: floats for money, ISO 8601 times."""
    return {"source": "holysheep-lab", **alert.to_dict()}


class SlackStyle:
    """Slack incoming webhooks: Block Kit, user text escaped so nothing pings."""

    name = "slack"
    headers: Mapping[str, str] = _NO_HEADERS

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert)

    def hint(self, status: int) -> str | None:
        return None

    def __repr__(self) -> str:
        return "SlackStyle()"


class DiscordStyle:
    """Discord execute-webhook: one embed per alert, posted as `username`."""

    name = "discord"
    headers: Mapping[str, str] = _NO_HEADERS

    def __init__(self, username: str = "holysheep-lab") -> None:
        self.username = username

    def payload(self, alert: Alert) -> dict[str, Any]:
        return discord_payload(alert, self.username)

    def hint(self, status: int) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"DiscordStyle(username={self.username!r})"


class GenericStyle:
    """Any JSON receiver: the alert's fields as plain JSON."""

    name = "generic"
    headers: Mapping[str, str] = _NO_HEADERS

    def payload(self, alert: Alert) -> dict[str, Any]:
        return generic_payload(alert)

    def hint(self, status: int) -> str | None:
        return None

    def __repr__(self) -> str:
        return "GenericStyle()"


# The names WebhookChannel(url, style="...") accepts; only Discord's takes the `username`.
STYLES: Mapping[str, Callable[[str], WebhookStyle]] = MappingProxyType({
    "slack": lambda username: SlackStyle(),
    "discord": DiscordStyle,
    "generic": lambda username: GenericStyle(),
})

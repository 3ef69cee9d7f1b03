"""Budget alerts: levels crossed by settled spend, delivered in the background.

    AlertManager(channels=[...], levels=None, cooldown=300.0)   # observe(events), fire(alert)
    WebhookChannel(url, style="slack"|"discord"|"generic"|WebhookStyle), EmailChannel(...),
    NotebookChannel(), CallbackChannel(fn)
    LineChannel(channel_access_token, to), TeamsChannel(webhook_url)
    Alert, Level, Delivery

One module per channel (webhook, email, notebook, callback, line, teams); `channel` holds
the Channel contract and the helpers they share, `styles` the webhook styles.
"""

from __future__ import annotations

from holysheep_lab.alerts.callback import CallbackChannel
from holysheep_lab.alerts.channel import Channel
from holysheep_lab.alerts.email import EmailChannel
from holysheep_lab.alerts.line import LineChannel
from holysheep_lab.alerts.manager import AlertManager
from holysheep_lab.alerts.model import DEFAULT_LEVELS, Alert, Delivery, Level
from holysheep_lab.alerts.notebook import NotebookChannel
from holysheep_lab.alerts.teams import TeamsChannel
from holysheep_lab.alerts.webhook import WebhookChannel

__all__ = [
    "Alert",
    "AlertManager",
    "CallbackChannel",
    "Channel",
    "DEFAULT_LEVELS",
    "Delivery",
    "EmailChannel",
    "Level",
    "LineChannel",
    "NotebookChannel",
    "TeamsChannel",
    "WebhookChannel",
]

"""Budget alerts: levels crossed by settled spend, delivered in the background.

    AlertManager(channels=[...], levels=None, cooldown=300.0)   # observe(events), fire(alert)
    WebhookChannel(url, style="slack"|"discord"|"generic"), EmailChannel(...),
    NotebookChannel(), CallbackChannel(fn)
    LineChannel(channel_access_token, to), TeamsChannel(webhook_url)
    Alert, Level, Delivery
"""

from __future__ import annotations

from holysheep_lab.alerts.channels import CallbackChannel, Channel, EmailChannel, NotebookChannel, WebhookChannel
from holysheep_lab.alerts.line import LineChannel
from holysheep_lab.alerts.manager import AlertManager
from holysheep_lab.alerts.model import DEFAULT_LEVELS, Alert, Delivery, Level
from holysheep_lab.alerts.teams import TeamsChannel

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

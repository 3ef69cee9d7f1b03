"""Notebook views: live budget meters and a dashboard (ipywidgets, imported on first use)."""

from __future__ import annotations

from .charts import chart_bundle, offline_charts
from .dashboard import Dashboard, dashboard
from .meter import BudgetMeter

__all__ = ["BudgetMeter", "Dashboard", "chart_bundle", "dashboard", "offline_charts"]

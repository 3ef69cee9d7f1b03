"""Notebook views: live budget meters and a dashboard (ipywidgets, imported on first use)."""

from __future__ import annotations

from holysheep_lab.notebook.board import Dashboard, dashboard
from holysheep_lab.notebook.meter import BudgetMeter
from holysheep_lab.notebook.render import chart_bundle, offline_charts

__all__ = ["BudgetMeter", "Dashboard", "chart_bundle", "dashboard", "offline_charts"]

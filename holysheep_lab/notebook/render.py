"""Altair charts that render offline in any notebook viewer.

Altair's default renderer loads vega from a CDN, so offline (and in exported pages) charts
stay blank. `chart_bundle` sends an SVG drawn in the kernel by vl-convert instead: it shows in
JupyterLab, VS Code, GitHub and nbconvert exports with no network. (Not the Vega-Lite spec as
well: altair 6 names it `application/vnd.vegalite.v6.json`, which nbformat rejects as a JSON
output and JupyterLab's built-in renderer, made for v5, does not know.) For interactive charts
save a report (`hs.report`), whose page inlines Vega.
"""

from __future__ import annotations

from typing import Any

from holysheep_lab.errors import MissingExtraError

__all__ = ["RENDERER", "chart_bundle", "offline_charts"]

RENDERER = "holysheep-offline"


def _display_module() -> Any:
    try:
        import altair as alt
        import vl_convert  # noqa: F401  (the SVG needs it; fail here with the hint, not later)
    except ImportError as exc:
        raise MissingExtraError(getattr(exc, "name", None) or "altair", "Offline charts") from exc
    return alt.vegalite.v6.display if hasattr(alt.vegalite, "v6") else alt.vegalite.v5.display


def _render(spec: dict[str, Any], **_metadata: Any) -> dict[str, Any]:
    mod = _display_module()
    title = spec.get("title")
    title = title.get("text") if isinstance(title, dict) else title
    return {"text/plain": f"<chart: {title or 'untitled'}>", **mod.svg_renderer(spec)}


def chart_bundle(chart: Any) -> dict[str, Any]:
    """The display bundle of an altair chart: an SVG (and a text title)."""
    return _render(chart.to_dict())


def offline_charts() -> None:
    """Make every altair chart in this kernel display as an SVG (no CDN)."""
    import altair as alt

    mod = _display_module()
    if RENDERER not in mod.renderers.names():
        mod.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)

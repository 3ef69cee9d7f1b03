"""Renders altair charts offline: display bundles that show in any notebook viewer.

The charts themselves are built in `analysis/charts.py`; this module only turns them into
something a notebook shows. Altair's default renderer loads vega from a CDN, so offline (and in
exported pages) charts stay blank. `chart_bundle` sends an SVG drawn in the kernel by
vl-convert instead: it shows in JupyterLab, VS Code, GitHub and nbconvert exports with no
network. (Not the Vega-Lite spec as well: altair 6 names it `application/vnd.vegalite.v6.json`,
which nbformat rejects as a JSON output and JupyterLab's built-in renderer, made for v5, does
not know.) `offline_charts()` makes this the renderer of every chart in the kernel. For
interactive charts save a report (`hs.report`), whose page inlines Vega.
"""

from __future__ import annotations

from typing import Any

from holysheep_lab.errors import MissingExtraError

__all__ = ["RENDERER", "chart_bundle", "offline_charts"]

RENDERER = "holysheep-offline"


def _require_altair() -> None:
    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401  (the SVG needs it; fail here with the hint, not later)
    except ImportError as exc:
        raise MissingExtraError(exc.name or "altair", "Offline charts") from exc


def _svg(spec: dict[str, Any]) -> dict[str, Any]:
    """What altair's own "svg" renderer returns, for whichever Vega-Lite version is installed."""
    import altair as alt
    from altair.utils.mimebundle import spec_to_mimebundle

    return spec_to_mimebundle(spec, format="svg", mode="vega-lite", vega_version=alt.VEGA_VERSION,
                              vegaembed_version=alt.VEGAEMBED_VERSION, vegalite_version=alt.VEGALITE_VERSION)


def _render(spec: dict[str, Any], **_metadata: Any) -> dict[str, Any]:
    _require_altair()
    title = spec.get("title")
    title = title.get("text") if isinstance(title, dict) else title
    return {"text/plain": f"<chart: {title or 'untitled'}>", **_svg(spec)}


def chart_bundle(chart: Any) -> dict[str, Any]:
    """The display bundle of an altair chart: an SVG (and a text title)."""
    return _render(chart.to_dict())


def offline_charts() -> None:
    """Make every altair chart in this kernel display as an SVG (no CDN)."""
    _require_altair()
    import altair as alt

    # `alt.renderers` is the registry of the installed altair's Vega-Lite version.
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)

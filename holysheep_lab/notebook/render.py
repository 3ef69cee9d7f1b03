"""Offline chart display: one display bundle that works in every notebook viewer, no network.

The charts themselves are built in `analysis/charts.py`; this module turns an altair chart into
what a notebook shows. Altair's default renderer loads Vega from a CDN, so offline (and in
exported pages) its charts stay blank. `chart_bundle` sends instead:

* ``text/html``: the interactive chart (tooltips, the same Vega-Lite spec), drawn by the vega,
  vega-lite and vega-embed bundle that vl-convert-python ships, inlined (`vega_bundle`), so it
  draws with no network in JupyterLab, VS Code and an nbconvert HTML export. Until the script
  runs (or where scripts are stripped) the container shows the static SVG below;
* ``image/svg+xml``: that static SVG, drawn in the kernel by vl-convert, for viewers that run
  no scripts (GitHub, widget-state snapshots, PDF exports).

Every chart of `analysis/charts.py` displays this way by itself; `offline_charts()` makes it the
renderer of every other altair chart in the kernel too. The report (`reports/html.py`) inlines
the same bundle once per page.

The bundle is about 0.9 MB of JavaScript in each chart's output: what buys a chart that draws
with no network wherever the notebook is opened (one copy per page would break as soon as the
cell holding it is cleared, or not yet drawn by a windowed notebook).
"""

from __future__ import annotations

import html
import importlib
import json
import os
import re
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from holysheep_lab.errors import MissingExtraError

__all__ = ["RENDERER", "chart_bundle", "chart_html", "chart_svg", "offline_charts", "vega_bundle"]

RENDERER = "holysheep-offline"


def _vl_convert() -> Any:
    # As Any: its stubs mark optional arguments (javascript_bundle's `snippet`) as required.
    try:
        return importlib.import_module("vl_convert")
    except ImportError as exc:  # pragma: no cover - in the lock
        raise MissingExtraError("vl-convert-python", "Offline charts") from exc


def _require_altair() -> None:
    try:
        import altair  # noqa: F401
    except ImportError as exc:  # pragma: no cover - in the lock
        raise MissingExtraError(exc.name or "altair", "Offline charts") from exc
    _vl_convert()


@lru_cache(maxsize=1)
def _vl_version() -> str | None:
    """The Vega-Lite version (as vl-convert names it, '6.4') of the installed altair's specs, or
    None (vl-convert's newest) when vl-convert does not ship that one."""
    import altair as alt

    wanted = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    return wanted if wanted in _vl_convert().get_vegalite_versions() else None


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one classic script (sets window.vegaEmbed).

    vl-convert builds it offline (seconds), so it is cached per process and on disk under
    $XDG_CACHE_HOME/holysheep-lab (or ~/.cache), keyed by the vl-convert and Vega-Lite versions.
    """
    vlc = _vl_convert()
    _require_altair()
    version = _vl_version()
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "holysheep-lab"
    cached = cache_dir / f"vega-bundle-{vlc.__version__}{f'-vl{version}' if version else ''}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    js: str = vlc.javascript_bundle(vl_version=version) if version else vlc.javascript_bundle()
    try:  # the cache is only an optimisation: any failure just means rebuilding next time
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(js, encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:
        pass
    return js


_SCRIPT_END = re.compile(r"</(script)|<(!--)", re.IGNORECASE)


def _script_safe(text: str) -> str:
    # Inside <script>, "</script" would end the tag and "<!--" change how it is parsed. Both can
    # only sit in JavaScript strings or regexes, where "<\/" and "<\!" read back the same.
    return _SCRIPT_END.sub(lambda m: f"<\\/{m.group(1)}" if m.group(1) else f"<\\{m.group(2)}", text)


def _spec_json(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_svg(spec: dict[str, Any]) -> str:
    """The chart drawn as a static SVG, in the kernel (vl-convert; no browser, no network)."""
    version = _vl_version()
    svg: str = _vl_convert().vegalite_to_svg(spec, vl_version=version) if version else _vl_convert().vegalite_to_svg(spec)
    return svg


# Runs where the output is shown: draws the interactive chart next to the static one, then drops
# the static one. The bundle sits in a function so that two charts on one page do not declare its
# top-level names twice, and runs only if no earlier chart on the page has defined vegaEmbed.
_EMBED = """(function () {
  var root = document.currentScript && document.currentScript.previousElementSibling;
  if (!root || root.id !== %(id)s) { root = document.getElementById(%(id)s); }
  if (!root) { return; }
  if (!window.vegaEmbed) { (function () { %(bundle)s }).call(window); }
  var view = document.createElement('div');
  view.className = 'hs-chart-view';
  root.appendChild(view);
  window.vegaEmbed(view, %(spec)s, {renderer: 'svg', actions: false}).then(function (result) {
    var still = root.querySelector('.hs-chart-static');
    if (still) { still.remove(); }
    root.setAttribute('data-hs-interactive', 'true');
    root.hsView = result.view;
  }).catch(function (err) {
    view.remove();
    console.error('holysheep-lab: the interactive chart could not be drawn; the static one stays.', err);
  });
})();"""


def chart_html(spec: dict[str, Any], svg: str | None = None) -> str:
    """The chart's self-contained HTML: its static SVG, replaced by the interactive chart (inlined
    Vega; no network) where the viewer runs scripts. MathJax is told to keep out ($ in ticks)."""
    title = _title(spec)
    cid = f"hs-chart-{uuid.uuid4().hex}"
    static = svg if svg is not None else chart_svg(spec)
    script = _EMBED % {"id": json.dumps(cid), "bundle": vega_bundle(), "spec": _spec_json(spec)}
    return (
        f'<div id="{cid}" class="hs-chart tex2jax_ignore mathjax_ignore" data-hs-chart="{html.escape(title, quote=True)}">'
        f'<div class="hs-chart-static">{static}</div></div>'
        f'<script type="text/javascript">{_script_safe(script)}</script>'
    )


def _title(spec: dict[str, Any]) -> str:
    title = spec.get("title")
    title = title.get("text") if isinstance(title, dict) else title
    if isinstance(title, list):
        title = " ".join(map(str, title))
    return str(title or "untitled")


def _bundle(spec: dict[str, Any]) -> dict[str, Any]:
    _require_altair()
    svg = chart_svg(spec)
    return {"text/plain": f"<chart: {_title(spec)}>", "text/html": chart_html(spec, svg), "image/svg+xml": svg}


def _render(spec: dict[str, Any], **_metadata: Any) -> dict[str, Any]:
    return _bundle(spec)


def chart_bundle(chart: Any) -> dict[str, Any]:
    """The display bundle of an altair chart: interactive offline HTML, a static SVG, a title."""
    _require_altair()
    return _bundle(chart.to_dict())


def offline_charts() -> None:
    """Make every altair chart in this kernel display through `chart_bundle` (no CDN).

    The charts of `df.hs.plot` and `holysheep_lab.analysis.charts` already do, whatever the
    renderer; this covers charts made with altair directly."""
    _require_altair()
    import altair as alt

    # `alt.renderers` is the registry of the installed altair's Vega-Lite version.
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)

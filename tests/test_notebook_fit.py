"""Static figures in a notebook fit the output area: wide figures lose their fixed width in plotly's JupyterLab
output (autosized, responsive), narrow ones, exports and other renderers are left as built."""

from __future__ import annotations

import copy

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from explorer.viz.notebook import FIT_ABOVE_PX, RENDERER, fitted_figure_dict, notebook_fit


@pytest.fixture
def default_renderer():
    before = pio.renderers.default
    yield
    pio.renderers.default = before


def _mime(fig: go.Figure) -> dict:
    bundle = pio.renderers._build_mime_bundle(fig.to_dict(), renderers_string=pio.renderers.default)
    return bundle["application/vnd.plotly.v1+json"]


def test_a_wide_figure_is_autosized_and_a_narrow_one_kept():
    wide = go.Figure(layout=dict(width=1250, height=330, title="t")).to_dict()
    keep = copy.deepcopy(wide)
    out = fitted_figure_dict(wide)
    assert "width" not in out["layout"] and out["layout"]["autosize"] is True and out["layout"]["height"] == 330
    assert wide == keep  # the caller's dict is untouched
    narrow = go.Figure(layout=dict(width=FIT_ABOVE_PX, height=300)).to_dict()
    assert fitted_figure_dict(narrow) is narrow
    free = go.Figure(layout=dict(height=300)).to_dict()  # already autosized
    assert fitted_figure_dict(free) is free


def test_the_jupyterlab_output_is_fitted_and_switches_off(default_renderer):
    pio.renderers.default = "plotly_mimetype+notebook_connected"
    assert notebook_fit() == f"{RENDERER}+notebook_connected"
    fig = go.Figure(go.Scatter(y=[1, 3, 2]), layout=dict(width=1250, height=300))
    shown = _mime(fig)
    assert "width" not in shown["layout"] and shown["layout"]["autosize"] is True
    assert shown["config"]["responsive"] is True
    assert shown["data"][0]["y"] == [1, 3, 2]
    assert fig.layout.width == 1250  # the figure itself (and what it exports) keeps its width
    assert notebook_fit(False) == "plotly_mimetype+notebook_connected"
    assert _mime(fig)["layout"]["width"] == 1250


def test_other_renderers_are_left_alone(default_renderer):
    pio.renderers.default = "png"
    assert notebook_fit() == "png"


def test_importing_the_figures_turns_it_on():
    import subprocess
    import sys

    code = ("import plotly.io as pio; pio.renderers.default = 'plotly_mimetype+notebook'; "
            "import explorer.viz; print(pio.renderers.default)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{RENDERER}+notebook"

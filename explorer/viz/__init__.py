"""Plotly figure builders (pure: results in, figures out; never runs a model)."""

from .images import data_uri
from .mae import ratio_curve, reconstruction_figure, reconstruction_grid, reconstruction_update
from .maps import map_strip
from .notebook import notebook_fit
from .paper import paper_style

notebook_fit()  # wide static figures fit the notebook's output area (notebook_fit(False) to turn off)

__all__ = ["data_uri", "map_strip", "notebook_fit", "paper_style", "ratio_curve", "reconstruction_figure", "reconstruction_grid",
           "reconstruction_update"]

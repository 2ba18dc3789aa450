"""Plotly figure builders (pure: results in, figures out; never runs a model)."""

from .images import data_uri
from .mae import ratio_curve, reconstruction_figure, reconstruction_grid, reconstruction_update
from .maps import map_strip
from .paper import paper_style

__all__ = ["data_uri", "map_strip", "paper_style", "ratio_curve", "reconstruction_figure", "reconstruction_grid",
           "reconstruction_update"]

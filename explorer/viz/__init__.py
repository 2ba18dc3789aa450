"""Visualisation layer: pure builders from result objects to plotly figures (never runs a model)."""

from .images import data_uri
from .mae import ratio_curve, reconstruction_figure, reconstruction_grid, reconstruction_update

__all__ = ["data_uri", "ratio_curve", "reconstruction_figure", "reconstruction_grid", "reconstruction_update"]

"""The recipe registry: a name plus JSON options that rebuild a figure from a model and inputs.

A recipe is what makes an export reproducible: the sidecar stores the recipe's name, its
options, the model reference and the input references, and ``python -m explorer reproduce``
calls the same builder again.  Exports *always* go through a recipe (also from the widgets),
so the exported file and the reproduced file come from the same code path.

Adding a view = one builder function registered with :func:`recipe`.
Builders take ``(adapter, images, options)`` where ``images`` is a list of
:class:`explorer.LoadedImage` and return a plotly figure.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path
from typing import Callable



@dataclass(frozen=True)
class Recipe:
    name: str
    build: Callable
    n_inputs: str  # "one", "many" or "none" (the inputs are named in the options)
    defaults: dict
    description: str
    letters: bool = True  # panel letters by default (off for image grids)
    family: str = "image"  # "fusion": the model is an image+text adapter


RECIPES: dict[str, Recipe] = {}

#: The folder an export is written to (and a sidecar read from): recipes resolve relative input files against it.
_INPUT_FOLDER: contextvars.ContextVar = contextvars.ContextVar("input_folder", default=Path("."))


@contextlib.contextmanager
def input_folder(folder: "str | Path"):
    """Within this block, :func:`input_path` resolves relative paths against ``folder``."""
    token = _INPUT_FOLDER.set(Path(folder))
    try:
        yield
    finally:
        _INPUT_FOLDER.reset(token)


def input_path(relative: str) -> Path:
    """A path stored in recipe options, resolved against the export's folder."""
    return _INPUT_FOLDER.get() / relative


def recipe(name: str, *, n_inputs: str = "one", defaults: dict | None = None, letters: bool = True, family: str = "image"):
    """Register a builder ``f(adapter, images, options) -> go.Figure`` under ``name``."""

    def deco(fn):
        RECIPES[name] = Recipe(name, fn, n_inputs, dict(defaults or {}), (fn.__doc__ or "").strip().splitlines()[0], letters,
                               family)
        return fn

    return deco


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown figure recipe {name!r}; known: {', '.join(sorted(RECIPES))}.") from None


def options_for(name: str, options: dict | None) -> dict:
    """``options`` completed with the recipe's defaults; unknown keys are refused."""
    r = get_recipe(name)
    opts = dict(r.defaults)
    for k, v in (options or {}).items():
        if k not in r.defaults:
            raise ValueError(f"Recipe {name!r} has no option {k!r}; options: {', '.join(sorted(r.defaults))}.")
        opts[k] = v
    return opts

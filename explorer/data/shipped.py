"""Where the shipped mini models live: ``<data root>/models/<name>/`` (config.json, model.safetensors, card).

The data root is, in this order:

1. ``$EXPLORER_DATA`` when set;
2. the package data of an installed wheel, ``explorer/_shipped/`` (found with :mod:`importlib.resources`;
   setup.py packs the repository's ``data/models/**`` there);
3. the repository's top-level ``data/`` folder (a source checkout or an editable install).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: the package whose ``_shipped/`` folder holds the packaged data (a setting so tests can point it elsewhere)
_PACKAGE = "explorer"
_PACKAGED = "_shipped"


def packaged_data_dir() -> Path | None:
    """``explorer/_shipped/`` of an installed wheel, or ``None`` (source checkout, editable install)."""
    try:
        root = resources.files(_PACKAGE) / _PACKAGED
    except ModuleNotFoundError:
        return None
    # Only a real folder will do: the models are memory-mapped from files (a zipped package is not supported).
    return root if isinstance(root, Path) and root.is_dir() else None


def repository_data_dir() -> Path:
    """The repository's top-level ``data/`` folder (it exists only in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "data"


def data_dir() -> Path:
    """The data root: ``$EXPLORER_DATA``, else the packaged ``explorer/_shipped/``, else the repository's ``data/``."""
    env = os.environ.get("EXPLORER_DATA")
    if env:
        return Path(env)
    return packaged_data_dir() or repository_data_dir()


def shipped_models() -> dict[str, Path]:
    """Mini models shipped with the package: name → folder."""
    root = data_dir() / "models"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}

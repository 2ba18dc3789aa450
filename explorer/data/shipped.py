"""Where the shipped mini models live: ``data/models/<name>/`` (config.json, model.safetensors, card).

Override the data root with ``$EXPLORER_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The repository's ``data/`` folder (override with ``$EXPLORER_DATA``)."""
    env = os.environ.get("EXPLORER_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def shipped_models() -> dict[str, Path]:
    """Mini models shipped with the repository: name → folder."""
    root = data_dir() / "models"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}

"""Sidecars: the JSON that travels with every exported figure.

The same JSON (without the list of written files and their hashes) is embedded in the
files themselves: PNG ``iTXt`` chunk ``explorer:sidecar``, PDF document-information entry
``/explorer:sidecar``, SVG ``<metadata id="explorer-sidecar">``.  It holds no timestamps, so
identical inputs give identical files.
"""

from __future__ import annotations

import functools
import io
import json
import platform
import re
import shutil
import subprocess
from importlib import metadata as md
from pathlib import Path

SCHEMA = "explorer-figure/1"
PNG_KEY = "explorer:sidecar"
PDF_KEY = "/explorer:sidecar"

_PACKAGES = ("explorer", "torch", "transformers", "numpy", "opencv-python-headless", "plotly", "kaleido", "pillow",
             "pypdf", "safetensors")


@functools.lru_cache(maxsize=1)
def _chromium_version() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        return "not found"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out or "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Versions of everything that can change the pixels of an export."""
    out = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for name in _PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["chromium"] = _chromium_version()
    return out


def dumps(sidecar: dict) -> str:
    """Canonical JSON (sorted keys), so equal sidecars are equal strings."""
    return json.dumps(sidecar, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)


def embedded(sidecar: dict) -> dict:
    """The part of a sidecar that is embedded in the figure files (no file list)."""
    return {k: v for k, v in sidecar.items() if k != "files"}


class SidecarError(ValueError):
    """The file holds no explorer sidecar or an unreadable one."""


def read_sidecar(path: "str | Path") -> dict:
    """The sidecar of an export: from ``FIGURE.json``, or embedded in a ``.png`` / ``.pdf`` / ``.svg``."""
    path = Path(path)
    if not path.is_file():
        raise SidecarError(f"{path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                text = im.text.get(PNG_KEY) if hasattr(im, "text") else None
            if text is None:
                raise SidecarError(f"{path} has no {PNG_KEY!r} text chunk: not exported by explorer.")
            data = json.loads(text)
        elif suffix == ".pdf":
            from pypdf import PdfReader

            from .render import quiet_pypdf

            with quiet_pypdf():
                info = PdfReader(io.BytesIO(path.read_bytes())).metadata or {}
            if PDF_KEY not in info:
                raise SidecarError(f"{path} has no {PDF_KEY} entry: not exported by explorer.")
            data = json.loads(str(info[PDF_KEY]))
        elif suffix == ".svg":
            from xml.sax.saxutils import unescape

            m = re.search(r'<metadata id="explorer-sidecar">(.*?)</metadata>', path.read_text(encoding="utf-8"), re.S)
            if not m:
                raise SidecarError(f"{path} has no explorer metadata element.")
            data = json.loads(unescape(m.group(1)))
        else:
            raise SidecarError(f"Cannot read a sidecar from a {suffix or 'suffix-less'} file; give the .json, .png, .pdf or .svg.")
    except json.JSONDecodeError as e:
        raise SidecarError(f"The sidecar in {path} is not valid JSON: {e}.") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SidecarError(f"{path} is not an explorer figure sidecar (schema {data.get('schema') if isinstance(data, dict) else None!r}).")
    return data

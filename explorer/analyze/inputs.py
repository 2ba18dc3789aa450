"""What ``explorer analyze`` reads: a folder, a glob, a list file or a Parquet of paths → one record per input.

    list_inputs("photos/")            # recursive; ImageFolder layout (photos/<class>/<file>) gives a label
    list_inputs("photos/**/*.jpg")    # a glob (recursive ``**``)
    list_inputs("inputs.txt")         # one path a line, relative to the list's folder; '#' starts a comment
    list_inputs("inputs.parquet")     # a ``path`` column (and optionally ``label``)

Each record is ``{"path": str, "label": str}`` (``label`` is ``""`` when the layout gives none), sorted by path
so a run's row order does not depend on the file system.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")


class AnalyzeError(ValueError):
    """Bad arguments or inputs of an analysis run; the message is for the user."""


def _folder(root: Path) -> list[dict]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    rel = [p.relative_to(root).parts for p in files]
    # ImageFolder: every image sits in exactly one level of class folders
    image_folder = bool(rel) and all(len(r) == 2 for r in rel)
    return [{"path": str(p), "label": r[0] if image_folder else ""} for p, r in zip(files, rel)]


def list_inputs(inputs) -> list[dict]:
    """The inputs of a run: ``inputs`` is a folder, a glob, a ``.txt`` / ``.lst`` list, a ``.parquet`` with a
    ``path`` column, or a Python list of paths.

    Returns:
        ``[{"path": str, "label": str}, ...]`` sorted by path (duplicates removed).
    Raises:
        AnalyzeError: nothing matches, or the list / Parquet cannot be read.
    """
    if isinstance(inputs, (list, tuple)):
        recs = [{"path": str(p), "label": ""} for p in inputs]
    else:
        text = str(inputs)
        p = Path(text)
        if p.is_dir():
            recs = _folder(p)
        elif p.is_file() and p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            try:
                t = pq.read_table(p)
            except Exception as e:  # noqa: BLE001 - any reader error is a message
                raise AnalyzeError(f"Cannot read {p} as Parquet: {e}") from None
            if "path" not in t.column_names:
                raise AnalyzeError(f"{p} has no 'path' column (columns: {', '.join(t.column_names)}).")
            paths = [str(x) for x in t.column("path").to_pylist()]
            labels = ([("" if x is None else str(x)) for x in t.column("label").to_pylist()]
                      if "label" in t.column_names else [""] * len(paths))
            recs = [{"path": str((p.parent / q) if not os.path.isabs(q) else q), "label": lab} for q, lab in zip(paths, labels)]
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst", ".list", ".csv"):
            lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            recs = [{"path": str(Path(q) if os.path.isabs(q) else p.parent / q), "label": ""} for q in lines]
        elif any(c in text for c in "*?["):
            recs = [{"path": q, "label": ""} for q in _glob.glob(text, recursive=True) if os.path.isfile(q)]
        elif p.is_file():
            recs = [{"path": str(p), "label": ""}]
        else:
            raise AnalyzeError(f"{text}: no such folder, file or glob.")
    seen, out = set(), []
    for r in sorted(recs, key=lambda r: r["path"]):
        if r["path"] not in seen:
            seen.add(r["path"])
            out.append(r)
    if not out:
        raise AnalyzeError(f"No inputs found in {inputs!r} (images: {', '.join(IMAGE_SUFFIXES)}).")
    return out


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes (what :func:`explorer.load_image` records), or ``"unreadable:<path>"``."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return f"unreadable:{path}"
    return h.hexdigest()


def hash_all(paths: list[str], threads: int = 8) -> list[str]:
    """:func:`file_sha256` of every path, read in ``threads`` threads (hashlib releases the GIL)."""
    with ThreadPoolExecutor(max(1, threads)) as ex:
        return list(ex.map(file_sha256, paths))

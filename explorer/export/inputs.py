"""Input references in sidecars: enough to find the exact input again, checked by SHA-256.

An input is recorded as one of

* ``{"sample": "chelsea", "sha256": ...}`` — a photo shipped with the explorer;
* ``{"path": "/data/cat.jpg", "sha256": ...}`` — a file on disk (kept as given; relative
  paths are resolved against the sidecar's folder first);
* a copy written next to the export, for inputs that have no file (uploads, bytes, arrays):
  ``{"path": "inputs/<sha>.png", ...}`` with the original bytes, or ``.npy`` for arrays
  (read back with ``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import os
from pathlib import Path

import numpy as np

from ..io import LoadedImage, load_image
from ..data.samples import SAMPLES, load_sample
from ..files import write_atomic
from ..reconstruction.multimodal import MultiModalInputError


class ReproduceError(RuntimeError):
    """A recorded input or model cannot be found again, or is not the one recorded."""


def _raw_bytes(source) -> tuple[bytes | None, str]:
    """Bytes and a file name for uploads / bytes sources; ``(None, "")`` otherwise."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "input"
    if isinstance(source, dict) and "content" in source:
        return bytes(source["content"]), str(source.get("name", "upload"))
    if isinstance(source, (tuple, list)) and source and isinstance(source[0], dict) and "content" in source[0]:
        return bytes(source[0]["content"]), str(source[0].get("name", "upload"))
    return None, ""


def store_input(folder: "str | os.PathLike", sha256: str, suffix: str, data: bytes) -> str:
    """Keep an input next to an export: ``<folder>/inputs/<sha256[:16]><suffix>``, written atomically once per content.

    Returns the path relative to ``folder`` (what sidecars record).
    """
    rel = f"inputs/{sha256[:16]}{suffix}"
    target = Path(folder) / rel
    if not target.exists():
        write_atomic(target, data)
    return rel


def npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as ``.npy`` bytes (numeric arrays only: never pickled)."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def input_spec(source, loaded: LoadedImage, store_dir: "str | os.PathLike") -> dict:
    """A JSON reference to ``source`` (what the user passed), whose decoded form is ``loaded``.

    Inputs without a file are copied into ``store_dir/inputs/`` (once per content).
    """
    spec = {"name": loaded.name, "sha256": loaded.sha256}
    if isinstance(source, str) and source in SAMPLES:
        return {"sample": source, **spec}
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return {"path": str(Path(source).resolve()), **spec}
    data, fname = _raw_bytes(source)
    if data is not None:
        rel = store_input(store_dir, loaded.sha256, Path(fname).suffix.lower()[:8] or ".bin", data)
        return {"path": rel, "copied_from": fname, **spec}
    if isinstance(source, np.ndarray):
        return {"path": store_input(store_dir, loaded.sha256, ".npy", npy_bytes(source)), "copied_from": "<array>", **spec}
    if isinstance(source, LoadedImage):
        if source.name in SAMPLES and load_sample(source.name).sha256 == source.sha256:
            return {"sample": source.name, **spec}
        as_array = load_image(source.pixels, name=source.name)
        return input_spec(source.pixels, as_array, store_dir) | {"sha256_original": source.sha256}
    raise ReproduceError(f"Cannot record an input of type {type(source).__name__} for reproduction.")


def resolve_input(spec: dict, base_dir: "str | os.PathLike | None" = None, override=None) -> tuple[LoadedImage, object]:
    """Load the input a sidecar recorded and check its SHA-256.

    Args:
        spec: a dict from :func:`input_spec`.
        base_dir: folder of the sidecar (relative paths are looked up there first).
        override: a path to use instead of the recorded one (same content required).
    Returns:
        ``(LoadedImage, source)`` where ``source`` is what to pass on to :func:`input_spec`.
    """
    want = spec.get("sha256")
    if override is not None:
        path = Path(override)
    elif "sample" in spec:
        loaded = load_sample(spec["sample"])
        _check_sha(loaded.sha256, want, f"sample {spec['sample']!r}")
        return loaded, spec["sample"]
    else:
        rec = Path(spec["path"])
        candidates = [rec] if rec.is_absolute() else []
        if base_dir is not None:
            candidates.append(Path(base_dir) / rec)
            candidates.append(Path(base_dir) / "inputs" / rec.name)
        candidates.append(rec)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ReproduceError(
                f"Input {spec['path']!r} was not found (looked in: {', '.join(map(str, candidates))}). "
                "Pass its new location with --input.")
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        loaded = load_image(arr, name=spec.get("name"))
        _check_sha(loaded.sha256, want, str(path))
        return loaded, arr
    loaded = load_image(path, name=spec.get("name"))
    _check_sha(loaded.sha256, want, str(path))
    return loaded, str(path)


def _check_sha(got: str, want: str | None, what: str) -> None:
    if want and got != want:
        raise ReproduceError(f"{what} has SHA-256 {got[:12]}…, the figure was made from {want[:12]}…: not the same input.")


def file_sha256(path: "str | os.PathLike") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- multimodal inputs (named arrays)
def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """One hash over named arrays (names and float32 contents)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode() + array_sha256(np.ascontiguousarray(arrays[k], np.float32)).encode())
    return h.hexdigest()


def store_arrays(arrays: dict[str, np.ndarray], folder) -> tuple[str, str]:
    """Keep prepared inputs next to an export as ``<folder>/inputs/<sha>.npz`` (numeric arrays only, written atomically
    once per content).

    Returns ``(path relative to folder, sha256)``; :func:`load_arrays` reads it back and checks the hash.
    """
    sha = _arrays_sha256(arrays)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()})
    return store_input(folder, sha, ".npz", buf.getvalue()), sha


def load_arrays(path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read :func:`store_arrays`' file (never unpickles) and check its hash."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MultiModalInputError(f"Cannot read the stored inputs {path}: {e}") from e
    if sha256 and _arrays_sha256(arrays) != sha256:
        raise MultiModalInputError(f"The stored inputs {path} changed since the export (SHA-256 differs).")
    return arrays

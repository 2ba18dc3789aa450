"""Input references in sidecars: enough to find the exact input again, checked by SHA-256.

An input is recorded as one of

* ``{"sample": "chelsea", "sha256": ...}`` — a photo shipped with the explorer;
* ``{"path": "/data/cat.jpg", "sha256": ...}`` — a file on disk (kept as given; relative
  paths are resolved against the sidecar's folder first);
* a copy written next to the export, for inputs that have no file (uploads, bytes, arrays):
  ``{"path": "inputs/<sha>.png", ...}`` with the original bytes, or ``.npy`` for arrays
  (read back with ``allow_pickle=False``).

Inputs a recipe names in its options (a video clip, a multimodal model's arrays) are *attached*: the caller hands the
in-memory input over (:data:`ATTACHMENTS`), the export records ``<option>="inputs/<sha>.<ext>"`` and
``<option>_sha256``.  Nothing is written here while an export is being decided: every copy is a :class:`StoredInput`
that :func:`explorer.export.export_recipe` writes (:func:`write_inputs`) only once it has settled the figure's name
(after the no-overwrite check); until then recipes read them from memory (:func:`pending_inputs`, :func:`input_bytes`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io import LoadedImage, array_sha256, load_image
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


@dataclass(frozen=True)
class StoredInput:
    """An input to keep next to an export: ``<folder>/<path>`` holding ``data``, named by its content.

    Attributes:
        path: relative to the export's folder, ``inputs/<sha256[:16]><suffix>`` (what sidecars record).
        data: the bytes to write.
        sha256: the input's hash as its loader reports it (recorded next to the path and checked on reproduction).
    """

    path: str
    data: bytes
    sha256: str


def stored_input(sha256: str, suffix: str, data: bytes) -> StoredInput:
    """The :class:`StoredInput` of ``data`` with hash ``sha256``: ``inputs/<sha256[:16]><suffix>``."""
    return StoredInput(f"inputs/{sha256[:16]}{suffix}", bytes(data), sha256)


def write_inputs(folder: "str | os.PathLike", stored: "list[StoredInput]") -> list[Path]:
    """Write each input not yet in ``folder`` (atomically; an input of the same content already there is kept).

    Returns the files this call created (what to remove again if the export it belongs to fails).
    """
    created = []
    for s in stored:
        target = Path(folder) / s.path
        if target.exists():
            continue
        try:
            write_atomic(target, s.data)
        except FileExistsError:  # written meanwhile by another export: the same content (its name is its hash)
            continue
        created.append(target)
    return created


#: absolute path → bytes of inputs an export will write once it has decided to (see :func:`pending_inputs`).
_PENDING: contextvars.ContextVar = contextvars.ContextVar("pending_inputs", default={})


def _key(path: "str | os.PathLike") -> str:
    return os.path.normpath(os.path.abspath(path))


@contextlib.contextmanager
def pending_inputs(folder: "str | os.PathLike", stored: "list[StoredInput]"):
    """Within this block, :func:`input_bytes` finds ``stored`` as if they were written to ``folder`` (nothing is)."""
    token = _PENDING.set({**_PENDING.get(), **{_key(Path(folder) / s.path): s.data for s in stored}})
    try:
        yield
    finally:
        _PENDING.reset(token)


def input_bytes(path: "str | os.PathLike") -> bytes | None:
    """The bytes of a stored input at ``path``: from memory while its export is being built (:func:`pending_inputs`),
    else from the file; ``None`` when neither exists."""
    data = _PENDING.get().get(_key(path))
    if data is not None:
        return data
    p = Path(path)
    return p.read_bytes() if p.is_file() else None


def npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as ``.npy`` bytes (numeric arrays only: never pickled)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def input_spec(source, loaded: LoadedImage) -> tuple[dict, StoredInput | None]:
    """A JSON reference to ``source`` (what the user passed), whose decoded form is ``loaded``.

    Returns ``(spec, stored)``: inputs without a file are referenced as ``inputs/<sha><suffix>``, and ``stored`` is the
    copy to write there (``None`` for samples and files on disk).
    """
    spec = {"name": loaded.name, "sha256": loaded.sha256}
    if isinstance(source, str) and source in SAMPLES:
        return {"sample": source, **spec}, None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return {"path": str(Path(source).resolve()), **spec}, None
    data, fname = _raw_bytes(source)
    if data is not None:
        st = stored_input(loaded.sha256, Path(fname).suffix.lower()[:8] or ".bin", data)
        return {"path": st.path, "copied_from": fname, **spec}, st
    if isinstance(source, np.ndarray):
        st = stored_input(loaded.sha256, ".npy", npy_bytes(source))
        return {"path": st.path, "copied_from": "<array>", **spec}, st
    if isinstance(source, LoadedImage):
        if source.name in SAMPLES and load_sample(source.name).sha256 == source.sha256:
            return {"sample": source.name, **spec}, None
        as_array = load_image(source.pixels, name=source.name)
        spec, st = input_spec(source.pixels, as_array)
        return spec | {"sha256_original": source.sha256}, st
    raise ReproduceError(f"Cannot record an input of type {type(source).__name__} for reproduction.")


# ---------------------------------------------------------------- attached inputs (named in a recipe's options)
#: option name → ``encode(value) -> StoredInput``: what :func:`explorer.export.export_recipe` accepts in ``attach``.
ATTACHMENTS: dict[str, Callable[[Any], StoredInput]] = {}


def attachment(option: str):
    """Register ``encode(value) -> StoredInput`` for inputs a recipe names in option ``option`` (and ``option_sha256``)."""

    def deco(fn):
        ATTACHMENTS[option] = fn
        return fn

    return deco


def attach_inputs(attach: "dict | None") -> tuple[dict, list[StoredInput]]:
    """Recipe options naming the in-memory inputs of ``attach`` (``{option: value}``), and the copies to write.

    Returns ``({option: "inputs/<sha>.<ext>", option + "_sha256": sha}, [StoredInput, ...])``.
    """
    options, stored = {}, []
    for option, value in (attach or {}).items():
        if option not in ATTACHMENTS:
            raise ValueError(f"Cannot attach an input as {option!r}; attachable: {', '.join(sorted(ATTACHMENTS))}.")
        st = ATTACHMENTS[option](value)
        options[option], options[f"{option}_sha256"] = st.path, st.sha256
        stored.append(st)
    return options, stored


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


@attachment("arrays")
def arrays_input(arrays: dict[str, np.ndarray]) -> StoredInput:
    """Prepared multimodal inputs as ``inputs/<sha>.npz`` (float32, numeric arrays only); :func:`load_arrays` reads it
    back and checks the hash."""
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError("Attach multimodal inputs as a non-empty dict of modality → array.")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()})
    return stored_input(_arrays_sha256(arrays), ".npz", buf.getvalue())


def load_arrays(path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read :func:`arrays_input`'s file (never unpickles; from memory while its export is being built) and check its
    hash."""
    try:
        data = input_bytes(path)
        if data is None:
            raise OSError(f"{path} does not exist")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MultiModalInputError(f"Cannot read the stored inputs {path}: {e}") from e
    if sha256 and _arrays_sha256(arrays) != sha256:
        raise MultiModalInputError(f"The stored inputs {path} changed since the export (SHA-256 differs).")
    return arrays

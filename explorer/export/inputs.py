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
that :func:`explorer.export.export_figure` writes only once it has settled the figure's name (after the no-overwrite
check), together with the figure's files, all or none; until then recipes read them from memory
(:func:`pending_inputs`, :func:`input_bytes`).

Sidecars come from other people, so reading them back is guarded (:func:`resolve_input`, :func:`load_arrays`,
:func:`load_npy`): every input needs its recorded SHA-256; a recorded path is read only inside the sidecar's folder
(or a folder or file the user names: ``--input-dir`` / ``--input``); stored arrays are read only after their
declared sizes (zip members, ``.npy`` headers) are checked against the bytes that are really there and a limit.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io import LoadedImage, array_sha256, load_image
from ..data.samples import SAMPLES, load_sample
from ..files import write_atomic
from ..reconstruction.multimodal import MultiModalInputError
from .registry import OutsideFolderError, inside

#: Largest file a sidecar's input (image, clip, stored arrays) may be: larger ones are refused before reading.
MAX_INPUT_BYTES = 2 << 30
#: Largest array a stored ``.npy`` / ``.npz`` member may declare, and largest sum of an ``.npz``'s members.
MAX_ARRAY_BYTES = 2 << 30
#: Most members a stored ``.npz`` may have.
MAX_NPZ_MEMBERS = 64


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
    """The :class:`StoredInput` of ``data`` with hash ``sha256``: ``inputs/<sha256[:16]><suffix>``.

    ``suffix`` comes from an upload's name: anything but ``.`` and 1-7 letters or digits becomes ``.bin``.
    """
    suffix = suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,7}", suffix.lower()) else ".bin"
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
    if not p.is_file():
        return None
    _check_file_size(p)
    return p.read_bytes()


def _check_file_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise ReproduceError(f"{path} is {size / 2**30:.1f} GiB, above the {MAX_INPUT_BYTES / 2**30:.0f} GiB an input may "
                             "be: not read.")


def load_npy(data: bytes, what: str = "the stored array") -> np.ndarray:
    """A ``.npy`` file's array, read only after its header is checked: a numeric dtype (never pickled objects), at most
    :data:`MAX_ARRAY_BYTES`, and exactly as many bytes of data as the shape declares.

    Raises:
        ValueError: a header that does not fit the data or the limits (before any array is allocated).
    """
    from numpy.lib import format as npf

    fp = io.BytesIO(data)
    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = npf.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _fortran, dtype = npf.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, OSError) as e:
        raise ValueError(f"{what} is not a readable .npy array ({e}).") from e
    if dtype.hasobject or dtype.kind not in "biufc" or dtype.fields is not None:
        raise ValueError(f"{what} holds {dtype} data; only plain numeric arrays are read.")
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise ValueError(f"{what} declares {nbytes / 2**30:.1f} GiB of data, above the {MAX_ARRAY_BYTES / 2**30:.0f} GiB "
                         "limit: not read.")
    if nbytes != len(data) - fp.tell():
        raise ValueError(f"{what} declares {nbytes} bytes of data but holds {len(data) - fp.tell()}: damaged, not read.")
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_npz(data: bytes, what: str = "the stored arrays") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, checked before anything is decompressed: at most :data:`MAX_NPZ_MEMBERS`
    ``.npy`` members whose declared sizes add up to at most :data:`MAX_ARRAY_BYTES` (a zip bomb is refused here);
    each member is read no further than its declared size and then checked as :func:`load_npy` does.

    Raises:
        ValueError: anything that does not fit (``zipfile.BadZipFile`` for a damaged archive).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise ValueError(f"{what} has {len(infos)} members, above the {MAX_NPZ_MEMBERS} allowed: not read.")
        total = sum(i.file_size for i in infos)
        if total > MAX_ARRAY_BYTES:
            raise ValueError(f"{what} declares {total / 2**30:.1f} GiB once decompressed, above the "
                             f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB limit: not read.")
        out = {}
        for info in infos:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise ValueError(f"{what} holds {info.filename!r}, not a .npy array: not read.")
            with zf.open(info) as f:
                member = f.read(info.file_size + 1)
            if len(member) != info.file_size:
                raise ValueError(f"{what}: member {info.filename!r} does not have its declared size: damaged, not read.")
            out[info.filename[:-4]] = load_npy(member, f"{what} ({info.filename})")
    return out


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


def _outside_hint(rec: str, base_dir) -> str:
    return (f"Input {rec!r} lies outside the sidecar's folder{f' ({base_dir})' if base_dir is not None else ''}: a "
            "sidecar's paths are read only inside the folder it lies in. If you trust this sidecar, name the file "
            f"yourself: --input {rec} (or its folder with --input-dir; reproduce(inputs=..., input_dirs=...)).")


def _find_recorded(rec: str, base_dir, search: "list | tuple") -> Path:
    """The file a sidecar's ``path`` names, looked up only inside the sidecar's folder (``rec``, then
    ``inputs/<file name>``) and the folders the user named in ``search`` (``rec``, then ``<file name>``)."""
    recorded = Path(rec)
    roots = [(Path(base_dir), "inputs")] if base_dir is not None else []
    roots += [(Path(d), "") for d in search]
    looked = []
    for root, sub in roots:
        for cand in (recorded, Path(sub) / recorded.name):
            try:
                path = inside(root, cand)
            except OutsideFolderError:
                continue
            looked.append(str(path))
            if path.is_file():
                return path
    if not any(_is_inside(root, recorded) for root, _ in roots):
        raise ReproduceError(_outside_hint(rec, base_dir))
    raise ReproduceError(f"Input {rec!r} was not found (looked in: {', '.join(dict.fromkeys(looked))}). "
                         "Pass its new location with --input.")


def _is_inside(root: Path, recorded: Path) -> bool:
    try:
        inside(root, recorded)
        return True
    except OutsideFolderError:
        return False


def resolve_input(spec: dict, base_dir: "str | os.PathLike | None" = None, override=None, *,
                  search: "list | tuple" = ()) -> tuple[LoadedImage, object]:
    """Load the input a sidecar recorded and check its SHA-256 (which the sidecar must record).

    Args:
        spec: a dict from :func:`input_spec`.
        base_dir: folder of the sidecar: a recorded path is read only inside it (relative paths are resolved against
            it, then ``inputs/<file name>`` is tried); never relative to the working directory.
        override: a path the user gives instead of the recorded one (read where it is; same content required).
        search: folders the user names (``--input-dir``): the recorded file name is also looked up there.
    Returns:
        ``(LoadedImage, source)`` where ``source`` is what to pass on to :func:`input_spec`.
    Raises:
        ReproduceError: no recorded hash, a path outside the allowed folders, a missing file, another content.
    """
    want = spec.get("sha256")
    what = spec.get("sample") or spec.get("path")
    if not want:
        raise ReproduceError(f"Input {what!r} has no recorded SHA-256: it cannot be checked against the figure, so it "
                             "is not read.")
    if override is not None:
        path = Path(override)
    elif "sample" in spec:
        if spec["sample"] not in SAMPLES:
            raise ReproduceError(f"Unknown sample {spec['sample']!r}; shipped samples: {', '.join(SAMPLES)}.")
        loaded = load_sample(spec["sample"])
        _check_sha(loaded.sha256, want, f"sample {spec['sample']!r}")
        return loaded, spec["sample"]
    else:
        path = _find_recorded(spec["path"], base_dir, search)
    if path.is_file():
        _check_file_size(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = load_npy(path.read_bytes(), str(path))
        except OSError as e:
            raise ReproduceError(f"Cannot read {path}: {e}") from e
        except ValueError as e:
            raise ReproduceError(str(e)) from e
        loaded = load_image(arr, name=spec.get("name"))
        _check_sha(loaded.sha256, want, str(path))
        return loaded, arr
    loaded = load_image(path, name=spec.get("name"))
    _check_sha(loaded.sha256, want, str(path))
    return loaded, str(path)


def _check_sha(got: str, want: str | None, what: str) -> None:
    if not want:
        raise ReproduceError(f"{what} has no recorded SHA-256: it cannot be checked, so it is not used.")
    if got != want:
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


def load_arrays(path, sha256: str | None) -> dict[str, np.ndarray]:
    """Read :func:`arrays_input`'s file (never unpickles; from memory while its export is being built) and check its
    hash, which must be given; declared sizes are checked before anything is decompressed (:func:`load_npz`)."""
    if not sha256:
        raise MultiModalInputError(f"The stored inputs {path} have no recorded SHA-256: they cannot be checked, so they "
                                   "are not read.")
    try:
        data = input_bytes(path)
        if data is None:
            raise OSError(f"{path} does not exist")
        arrays = load_npz(data, f"the stored inputs {Path(path).name}")
    except (OSError, ValueError, EOFError, ReproduceError, zipfile.BadZipFile) as e:
        raise MultiModalInputError(f"Cannot read the stored inputs {path}: {e}") from e
    if _arrays_sha256(arrays) != sha256:
        raise MultiModalInputError(f"The stored inputs {path} changed since the export (SHA-256 differs).")
    return arrays

"""Export a figure to PDF / SVG / PNG with a reproducible sidecar.

    from explorer import export
    res = export.export_recipe("reconstruction", "figs/cat", model=adapter, inputs=["chelsea"],
                               options=dict(ratio=0.75, seed=0), preset="double-column")
    res.files        # {"pdf": Path("figs/cat.pdf"), "svg": ..., "png": ..., "json": ...}

    python -m explorer reproduce figs/cat.json      # rebuilds it and compares the bytes

Inputs without a file of their own (uploads, bytes, arrays; clips and arrays passed as ``attach``) are copied to
``<folder>/inputs/`` only once the export has settled the figure's name (after the no-overwrite check).  Every file of
an export (the figure in each format, its sidecar, its stored inputs) is written under a temporary name first and then
moved into place with the others: all of them, or none (:func:`explorer.files.write_all`).  Names are checked before any
work (:func:`explorer.files.check_name`): control characters, path separators, and names too long for the file system
once the suffix and the temporary name are added are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from ..files import check_name, free_stem, remove_stale_parts, write_all
from .inputs import ReproduceError, StoredInput, attach_inputs, input_spec, pending_inputs
from ..viz.presets import Preset, get_preset
from .registry import OutsideFolderError, get_recipe, input_folder, inside, options_for
from .render import FORMATS, normalise_pdf, normalise_png, normalise_svg, render_raw
from .sidecar import MAX_HEIGHT_IN, PDF_KEY, PNG_KEY, SCHEMA, dumps, embedded, validate, versions

#: Most pixels a PNG export may have (width × height at the preset's dpi).
MAX_PNG_PIXELS = 100_000_000


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        files: format → path, including ``"json"`` for the sidecar.
        sidecar: the sidecar dict (as written to the JSON file).
        notes: changes made while styling (e.g. a replaced colour scale).
    """

    files: dict[str, Path]
    sidecar: dict
    notes: list[str] = field(default_factory=list)

    def _repr_html_(self) -> str:  # a readable summary in notebooks (names come from uploads: escaped)
        items = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in self.files.values())
        return f"<b>Exported</b><ul>{items}</ul>" + "".join(f"<div>note: {html.escape(str(n))}</div>" for n in self.notes)


def _stem(path: "str | os.PathLike") -> Path:
    p = Path(path)
    if p.suffix.lower().lstrip(".") in (*FORMATS, "json"):
        p = p.with_suffix("")
    return p


def render_files(fig: go.Figure, preset: Preset, formats, sidecar: dict) -> dict[str, bytes]:
    """Bytes of every requested format, normalised and with the sidecar embedded."""
    size_pt = (sidecar["style"]["width_pt"], sidecar["style"]["height_pt"])
    text = dumps(embedded(sidecar))
    out = {}
    for fmt in formats:
        if fmt == "png":
            out["png"] = normalise_png(render_raw(fig, "png", scale=preset.dpi / 96.0), preset.dpi,
                                       {PNG_KEY: text, "Software": "explorer"})
        elif fmt == "svg":
            out["svg"] = normalise_svg(render_raw(fig, "svg"), metadata=text)
        elif fmt == "pdf":
            out["pdf"] = normalise_pdf(render_raw(fig, "pdf"), {PDF_KEY: text, "/Title": sidecar.get("title") or "explorer figure"}, size_pt=size_pt)
        else:
            raise ValueError(f"Unknown format {fmt!r}; choose from {FORMATS}.")
    return out


def _formats(formats) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    if not formats:
        raise ValueError("Give at least one format (pdf, svg, png).")
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"Unknown format {f!r}; choose from {', '.join(FORMATS)}.")
    return formats


def _settle_stem(path, formats, *, overwrite: bool, rename: bool) -> Path:
    """The stem the files will take: ``path``'s (``overwrite``), the next free one (``rename``), or refused."""
    stem = _stem(path)
    suffixes = [f".{f}" for f in formats] + [".json"]
    check_name(stem.name, suffixes=suffixes, folder=stem.parent)
    if not overwrite and not rename:
        taken = [stem.with_name(stem.name + s) for s in suffixes if stem.with_name(stem.name + s).exists()]
        if taken:
            raise FileExistsError(f"{taken[0]} exists: not overwritten (tick overwrite / pass overwrite=True to replace it, "
                                  "or choose another name); nothing was written.")
    stem = free_stem(stem, suffixes, overwrite=overwrite)
    check_name(stem.name, suffixes=suffixes, folder=stem.parent)  # "-2", "-3"… made it longer
    return stem


def check_size(style: dict, formats) -> None:
    """Refuse a figure taller than :data:`MAX_HEIGHT_IN` inches or a PNG of more than :data:`MAX_PNG_PIXELS` pixels."""
    height_in = float(style["height_pt"]) / 72.0
    if height_in > MAX_HEIGHT_IN:
        raise ValueError(f"The figure would be {height_in:.1f} in tall; at most {MAX_HEIGHT_IN:g} in are exported.")
    if "png" in formats:
        dpi = float(style["preset"]["dpi"])
        pixels = float(style["preset"]["width_in"]) * dpi * height_in * dpi
        if pixels > MAX_PNG_PIXELS:
            raise ValueError(f"The PNG would have {pixels / 1e6:.0f} million pixels; at most {MAX_PNG_PIXELS / 1e6:.0f} "
                             "million are exported (lower the dpi or the height).")


def caption(title: "str | None", notes: "list[str]") -> "str | None":
    """A caption a paper can start from: the title, then every note shown with the result (``None`` when neither)."""
    parts = [t for t in [(title or "").strip().rstrip(".")] if t] + [n.strip() for n in notes if n.strip()]
    return ". ".join(p.rstrip(".") for p in parts) + "." if parts else None


def export_figure(fig: go.Figure, path: "str | os.PathLike", *, preset: "str | Preset" = "double-column",
                  formats=FORMATS, dpi: int | None = None, height_in: float | None = None, letters: bool = True,
                  overwrite: bool = False, rename: bool = True, recipe: dict | None = None,
                  provenance: dict | None = None, title: str | None = None,
                  store: "list[StoredInput]" = (), rows: "int | str | None" = "auto",
                  title_pt: float | None = None) -> ExportResult:
    """Style ``fig`` for a paper and write it in every format of ``formats`` plus a JSON sidecar.

    Args:
        fig: a plotly figure (usually from :mod:`explorer.viz`).
        path: output stem (``figs/cat`` → ``figs/cat.pdf``, ``.svg``, ``.png``, ``.json``); a
            suffix such as ``.pdf`` is dropped.
        overwrite: replace files of that stem.  Without it, when any of them exists, ``-2``, ``-3``, ... is appended
            (``rename=True``) or the export is refused with ``FileExistsError`` before anything is written (``rename=False``).
        preset: name from :data:`explorer.export.PRESETS` or a :class:`Preset`.
        dpi: PNG resolution (default: the preset's, 300).
        height_in: figure height in inches (default: keep the figure's aspect ratio).
        letters: panel letters a, b, c, ...
        rows: how a one-row strip of panels is laid out (:func:`explorer.viz.paper.fit_layout`).  ``"auto"``: one
            row when its titles and letters fit (titles shrink down to the preset's ``min_font_pt`` first), else two
            rows, three, ...  A number keeps that many rows; when they cannot be made legible the export still
            happens, and a note (in the result's ``notes`` and the sidecar) and a
            :class:`explorer.viz.paper.LayoutWarning` say what collides and propose the rows that would fit.
            ``None``: no layout check, the panels as the figure placed them (how sidecars written before this option
            reproduce).  The sidecar records the rows and title size used, so ``reproduce`` rebuilds the same layout.
        title_pt: panel-title size in points (default: chosen with ``rows``); only with ``rows``.
        recipe / provenance: what regenerates the figure (filled by :func:`export_recipe`);
            without a recipe the sidecar still records style and versions, but
            ``reproduce`` cannot rebuild the figure.
        store: inputs to keep next to the figure (filled by :func:`export_recipe`): written once the name is settled,
            together with the figure's files (all or none).

    Raises:
        ValueError: a bad name (checked before any work), options or sizes out of range (the sidecar's schema,
            :func:`explorer.export.sidecar.validate`), a figure too large (:func:`check_size`).
        FileExistsError: the name is taken and neither ``overwrite`` nor ``rename``; nothing was written.
    """
    from ..viz.notes import figure_notes
    from ..viz.paper import LayoutWarning, add_footnote, fit_layout, paper_style

    formats = _formats(formats)
    p = get_preset(preset, **({"dpi": int(dpi)} if dpi else {}))
    _settle_stem(path, formats, overwrite=overwrite, rename=rename)  # refuse before the work
    layout = None
    if rows is not None:
        layout = fit_layout(fig, p, rows=rows, title_pt=title_pt, height_in=height_in, letters=letters)
    elif title_pt is not None:
        raise ValueError("title_pt needs rows ('auto' or a number): without rows the figure is styled as it was built.")
    styled, notes = paper_style(fig, p, height_in=height_in, letters=letters,
                                **({"rows": layout.rows, "title_pt": layout.title_pt} if layout else {}))
    warning = layout.note(p) if layout else None
    if warning:
        warnings.warn(warning, LayoutWarning, stacklevel=2)
        notes.append(warning)
    # The caveats the screen shows beside the result (attached by the figure builders) go under the figure, into
    # the caption and into the sidecar: an export never drops what the app told its user.
    shown = figure_notes(fig)
    styled = add_footnote(styled, shown, p)
    notes = [*shown, *notes]
    sidecar = {
        "schema": SCHEMA, "title": title, "caption": caption(title, shown), "recipe": recipe, "provenance": provenance,
        "style": {"preset": p.as_dict(), "height_in": height_in, "letters": letters,
                  **({"rows": layout.rows, "title_pt": layout.title_pt} if layout else {}),
                  "width_pt": round(p.width_in * 72, 3), "height_pt": round(float(styled.layout.height) * 0.75, 3)},
        "formats": list(formats), "notes": notes, "versions": versions(),
    }
    validate(sidecar)  # what reproduce will accept: refused here, before the work, if it would not be
    check_size(sidecar["style"], formats)
    blobs = render_files(styled, p, formats, sidecar)
    remove_stale_parts(_stem(path).parent)
    stem = _settle_stem(path, formats, overwrite=overwrite, rename=rename)
    files = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in blobs}
    sidecar["files"] = {fmt: {"name": files[fmt].name, "sha256": hashlib.sha256(data).hexdigest()}
                        for fmt, data in blobs.items()}
    files["json"] = stem.with_name(f"{stem.name}.json")
    inputs = {stem.parent / s.path: s.data for s in store}
    write_all([*inputs.items(), *((files[fmt], data) for fmt, data in blobs.items()),
               (files["json"], (dumps(sidecar) + "\n").encode())], overwrite=overwrite, keep_existing=set(inputs))
    return ExportResult(files, sidecar, notes)


# ---------------------------------------------------------------------------- recipes
def model_spec(adapter) -> dict:
    i = adapter.info
    spec = {"id": i.model_id, "model_type": i.model_type, "weights_sha256": i.weights_sha256, "device": i.device,
            "dtype": i.dtype}
    if i.family in ("fusion", "multimodal"):
        spec["family"] = i.family
    elif getattr(adapter, "kind", None) == "hierarchical":  # a UniFormer: load_uniformer_model reads it again
        spec["family"] = "hierarchical"
    return spec


def _load_any(name, *, family: str | None = None, device: str = "auto", dtype: str = "float32"):
    """An image model (``load_model``), for ``family="fusion"`` an image+text model, for ``"multimodal"`` a multimodal MAE,
    for ``"hierarchical"`` a UniFormer."""
    if family == "hierarchical":
        from ..models import load_uniformer_model

        return load_uniformer_model(name, device=device, dtype=dtype)
    if family == "multimodal":
        from ..multimodal import load_multimodal_model

        return load_multimodal_model(name, device=device, dtype=dtype)
    if family == "fusion":
        from ..fusion import load_fusion_model

        return load_fusion_model(name, device=device, dtype=dtype)
    from ..models import load_model

    return load_model(name, device=device, dtype=dtype)


_MODELS: dict[tuple, object] = {}
#: Model folders the user named in this process (to :func:`export_recipe`, as an adapter or a path): a sidecar that
#: names one of them may load it again, wherever it lies.
_TRUSTED_MODELS: set[str] = set()


def _trust_model(model) -> None:
    name = model if isinstance(model, (str, os.PathLike)) else getattr(getattr(model, "info", None), "model_id", None)
    if name is None:
        return
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        path = Path(name).expanduser()
        if path.exists():
            _TRUSTED_MODELS.add(str(path.resolve()))


def _hub_cached(model_id: str) -> bool:
    """Whether the Hugging Face cache holds ``model_id``'s config (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid id, an unreadable cache: not cached
        return False


@contextlib.contextmanager
def _hub_offline():
    """Within this block the model loaders treat the Hugging Face hub as offline (cache only)."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def model_source(name: str, base: "str | os.PathLike | None", *, allow_download: bool = False) -> tuple[str, bool]:
    """What to load for the model a sidecar in ``base`` names, and whether to load it from the local cache only.

    * a shipped name loads as it is;
    * a folder loads when it lies inside the sidecar's folder (a relative path is resolved against it), or when the
      user named that folder in this process (:func:`export_recipe`); any other path is refused;
    * a Hugging Face id loads from the local cache (the hub is not asked), or from the hub with ``allow_download``.

    Raises:
        ReproduceError: a folder outside, or an id that would have to be downloaded without ``allow_download``.
    """
    from ..data.shipped import shipped_models

    if name in shipped_models():
        return name, False
    if base is not None:
        with contextlib.suppress(OutsideFolderError, OSError, ValueError):
            target = inside(base, name)
            if target.exists():
                return str(target), False
    path = Path(name).expanduser()
    try:
        is_path = path.is_absolute() or name.startswith((".", "~")) or path.exists() or name.count("/") != 1
        resolved = str(path.resolve()) if is_path else None
    except (OSError, ValueError, RuntimeError):
        is_path, resolved = True, None
    if is_path:
        if resolved in _TRUSTED_MODELS and Path(resolved).exists():
            return resolved, False
        raise ReproduceError(
            f"The sidecar names the model {name!r}, which is not a shipped model and not a folder inside the sidecar's "
            f"folder{f' ({base})' if base is not None else ''}: a sidecar's paths are read only inside the folder it "
            "lies in. If you trust it, name the model yourself: --model PATH (reproduce(model=...)).")
    if allow_download:
        return name, False
    if _hub_cached(name):
        return name, True
    raise ReproduceError(
        f"The sidecar names the Hugging Face model {name!r}, which is not in this machine's Hugging Face cache; "
        "reproduce does not download a model a sidecar names unless you say so: pass --allow-download "
        "(reproduce(allow_download=True)), or --model FOLDER with a local copy.")


def resolve_model(spec: dict, *, device: str | None = None, check: bool = True, base: "str | os.PathLike | None" = None,
                  allow_download: bool = False, model=None):
    """Load the model a sidecar recorded (cached per source/device/dtype) and check its weights' hash.

    Args:
        base: the sidecar's folder (where recorded folders must lie; see :func:`model_source`).
        allow_download: let a Hugging Face id the sidecar names be fetched from the hub.
        model: the user's own choice instead of the recorded id (an adapter, a shipped name, a folder, a hub id):
            loaded as given; its weights are still checked against the recorded hash.
    """
    from ..models.device import available_devices

    dev = device or spec.get("device", "auto")
    if dev not in available_devices() and dev.split(":")[0] not in available_devices():
        dev = "auto"
    if model is not None and not isinstance(model, (str, os.PathLike)):
        adapter = model
    else:
        source, offline = (str(model), False) if model is not None else model_source(spec["id"], base,
                                                                                      allow_download=allow_download)
        key = (source, spec.get("family"), dev, spec.get("dtype", "float32"))
        if key not in _MODELS:
            with _hub_offline() if offline else contextlib.nullcontext():
                _MODELS[key] = _load_any(source, family=spec.get("family"), device=dev, dtype=spec.get("dtype", "float32"))
        adapter = _MODELS[key]
    if check and spec.get("weights_sha256") and adapter.weights_sha256 != spec["weights_sha256"]:
        raise ReproduceError(
            f"Model {spec['id']!r} loaded here has weights {adapter.weights_sha256[:12]}…, the figure was made with "
            f"{spec['weights_sha256'][:12]}…: a different checkpoint (pass --skip-weight-check to go on anyway).")
    return adapter


def build_recipe(name: str, adapter, images: list, options: dict | None = None) -> go.Figure:
    """The figure of recipe ``name`` (no files written)."""
    r = get_recipe(name)
    if r.n_inputs == "one" and len(images) != 1:
        raise ValueError(f"Recipe {name!r} takes exactly one input, got {len(images)}.")
    if r.n_inputs == "none" and images:
        raise ValueError(f"Recipe {name!r} takes its inputs from its options, not as images.")
    if not images and r.n_inputs != "none":
        raise ValueError(f"Recipe {name!r} needs at least one input.")
    return r.build(adapter, images, options_for(name, options))


def export_recipe(name: str, path: "str | os.PathLike", *, model, inputs: list, options: dict | None = None,
                  attach: dict | None = None, **export_kwargs) -> ExportResult:
    """Build recipe ``name`` and export it with a sidecar that lets ``reproduce`` rebuild it.

    Args:
        model: an adapter from :func:`explorer.load_model` or a model id / shipped name / folder.
        inputs: sources as :func:`explorer.load_image` takes them, or sample names.  Inputs
            without a file (uploads, bytes, arrays) are copied to ``<out folder>/inputs/``.
        options: recipe options (see ``explorer.export.RECIPES[name].defaults``).
        attach: in-memory inputs a recipe names in its options, ``{option: value}``: ``{"video": clip}`` (bytes, an
            upload, a path or a ``(T, H, W, 3)`` array) or ``{"arrays": {modality: array}}``.  Each is copied to
            ``<out folder>/inputs/<sha>.<ext>`` and named in the options (``option`` and ``option_sha256``).
        export_kwargs: passed to :func:`export_figure` (preset, formats, dpi, overwrite, rename, ...).

    Copies of inputs are written only once the figure's name is settled (after the no-overwrite check), atomically,
    and removed again if the figure's files cannot be written; until then the recipe reads them from memory.
    """
    from ..reconstruction import load_input

    family = get_recipe(name).family if get_recipe(name).family in ("fusion", "multimodal", "hierarchical") else None
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"The options of recipe {name!r} must be a dict, got {type(options).__name__}.")
    _settle_stem(path, _formats(export_kwargs.get("formats", FORMATS)), overwrite=export_kwargs.get("overwrite", False),
                 rename=export_kwargs.get("rename", True))  # refused before the model runs
    attached, stored = attach_inputs(attach)
    opts = options_for(name, {**(options or {}), **attached})
    adapter = _load_any(model, family=family) if isinstance(model, (str, os.PathLike)) else model
    _trust_model(model if isinstance(model, (str, os.PathLike)) else adapter)
    out_dir = _stem(path).parent
    loaded = [load_input(s) for s in inputs]
    specs = []
    for s, li in zip(inputs, loaded):
        spec, st = input_spec(s, li)
        specs.append(spec)
        stored += [st] if st is not None else []
    with input_folder(out_dir), pending_inputs(out_dir, stored):
        fig = build_recipe(name, adapter, loaded, opts)
    export_kwargs.setdefault("letters", get_recipe(name).letters)
    return export_figure(fig, path, recipe={"name": name, "options": opts},
                         provenance={"model": model_spec(adapter), "inputs": specs}, store=stored, **export_kwargs)

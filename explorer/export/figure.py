"""Export a figure to PDF / SVG / PNG with a reproducible sidecar.

    from explorer import export
    res = export.export_recipe("reconstruction", "figs/cat", model=adapter, inputs=["chelsea"],
                               options=dict(ratio=0.75, seed=0), preset="double-column")
    res.files        # {"pdf": Path("figs/cat.pdf"), "svg": ..., "png": ..., "json": ...}

    python -m explorer reproduce figs/cat.json      # rebuilds it and compares the bytes

Inputs without a file of their own (uploads, bytes, arrays; clips and arrays passed as ``attach``) are copied to
``<folder>/inputs/`` only once the export has settled the figure's name (after the no-overwrite check), just before the
figure's files, and removed again if those cannot be written: a refused or failed export leaves no new file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from ..files import free_stem, remove_stale_parts, write_atomic
from .inputs import ReproduceError, StoredInput, attach_inputs, file_sha256, input_spec, pending_inputs, write_inputs
from ..viz.presets import Preset, get_preset
from .registry import get_recipe, input_folder, options_for
from .render import FORMATS, normalise_pdf, normalise_png, normalise_svg, render_raw
from .sidecar import PDF_KEY, PNG_KEY, SCHEMA, dumps, embedded, versions


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

    def _repr_html_(self) -> str:  # a readable summary in notebooks
        items = "".join(f"<li><code>{p}</code></li>" for p in self.files.values())
        return f"<b>Exported</b><ul>{items}</ul>" + "".join(f"<div>note: {n}</div>" for n in self.notes)


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
    if not overwrite and not rename:
        taken = [stem.with_name(stem.name + s) for s in suffixes if stem.with_name(stem.name + s).exists()]
        if taken:
            raise FileExistsError(f"{taken[0]} exists: not overwritten (tick overwrite / pass overwrite=True to replace it, "
                                  "or choose another name); nothing was written.")
    return free_stem(stem, suffixes, overwrite=overwrite)


def export_figure(fig: go.Figure, path: "str | os.PathLike", *, preset: "str | Preset" = "double-column",
                  formats=FORMATS, dpi: int | None = None, height_in: float | None = None, letters: bool = True,
                  overwrite: bool = False, rename: bool = True, recipe: dict | None = None,
                  provenance: dict | None = None, title: str | None = None,
                  store: "list[StoredInput]" = ()) -> ExportResult:
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
        recipe / provenance: what regenerates the figure (filled by :func:`export_recipe`);
            without a recipe the sidecar still records style and versions, but
            ``reproduce`` cannot rebuild the figure.
        store: inputs to keep next to the figure (filled by :func:`export_recipe`): written once the name is settled,
            before the figure's files, and removed again if those cannot be written.
    """
    from ..viz.paper import paper_style

    formats = _formats(formats)
    p = get_preset(preset, **({"dpi": int(dpi)} if dpi else {}))
    _settle_stem(path, formats, overwrite=overwrite, rename=rename)  # refuse before the work
    styled, notes = paper_style(fig, p, height_in=height_in, letters=letters)
    sidecar = {
        "schema": SCHEMA, "title": title, "recipe": recipe, "provenance": provenance,
        "style": {"preset": p.as_dict(), "height_in": height_in, "letters": letters,
                  "width_pt": round(p.width_in * 72, 3), "height_pt": round(float(styled.layout.height) * 0.75, 3)},
        "formats": list(formats), "notes": notes, "versions": versions(),
    }
    blobs = render_files(styled, p, formats, sidecar)
    remove_stale_parts(_stem(path).parent)
    stem = _settle_stem(path, formats, overwrite=overwrite, rename=rename)
    created = write_inputs(stem.parent, list(store))
    files: dict[str, Path] = {}
    try:
        for fmt, data in blobs.items():
            files[fmt] = write_atomic(stem.with_name(f"{stem.name}.{fmt}"), data, overwrite=overwrite)
        sidecar["files"] = {fmt: {"name": pth.name, "sha256": file_sha256(pth)} for fmt, pth in files.items()}
        files["json"] = write_atomic(stem.with_name(f"{stem.name}.json"), (dumps(sidecar) + "\n").encode(), overwrite=overwrite)
    except BaseException:
        for pth in created:  # the export did not happen: leave no input it brought
            with contextlib.suppress(OSError):
                pth.unlink()
        raise
    return ExportResult(files, sidecar, notes)


# ---------------------------------------------------------------------------- recipes
def model_spec(adapter) -> dict:
    i = adapter.info
    spec = {"id": i.model_id, "model_type": i.model_type, "weights_sha256": i.weights_sha256, "device": i.device,
            "dtype": i.dtype}
    if i.family in ("fusion", "multimodal"):
        spec["family"] = i.family
    return spec


def _load_any(name, *, family: str | None = None, device: str = "auto", dtype: str = "float32"):
    """An image model (``load_model``), for ``family="fusion"`` an image+text model, for ``"multimodal"`` a multimodal MAE."""
    if family == "multimodal":
        from ..multimodal import load_multimodal_model

        return load_multimodal_model(name, device=device, dtype=dtype)
    if family == "fusion":
        from ..fusion import load_fusion_model

        return load_fusion_model(name, device=device, dtype=dtype)
    from ..models import load_model

    return load_model(name, device=device, dtype=dtype)


_MODELS: dict[tuple, object] = {}


def resolve_model(spec: dict, *, device: str | None = None, check: bool = True):
    """Load the model a sidecar recorded (cached per id/device/dtype) and check its weights' hash."""
    from ..models.device import available_devices

    dev = device or spec.get("device", "auto")
    if dev not in available_devices() and dev.split(":")[0] not in available_devices():
        dev = "auto"
    key = (spec["id"], spec.get("family"), dev, spec.get("dtype", "float32"))
    if key not in _MODELS:
        _MODELS[key] = _load_any(spec["id"], family=spec.get("family"), device=dev, dtype=spec.get("dtype", "float32"))
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

    family = get_recipe(name).family if get_recipe(name).family in ("fusion", "multimodal") else None
    attached, stored = attach_inputs(attach)
    opts = options_for(name, {**(options or {}), **attached})
    _settle_stem(path, _formats(export_kwargs.get("formats", FORMATS)), overwrite=export_kwargs.get("overwrite", False),
                 rename=export_kwargs.get("rename", True))  # refused before the model runs
    adapter = _load_any(model, family=family) if isinstance(model, (str, os.PathLike)) else model
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

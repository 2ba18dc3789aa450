"""Regenerate an exported figure from its sidecar and compare it with the original files.

    python -m explorer reproduce figs/cat.json [--out DIR] [--input NEW_PATH ...] [--input-dir DIR]
                                               [--model PATH] [--allow-download]

Sidecars travel with shared figures, so ``reproduce`` treats them as untrusted: the whole sidecar is checked against
its schema before anything runs (:func:`explorer.export.sidecar.validate`), every path it names is read only inside
its own folder (files elsewhere only when the user names them: ``--input``, ``--input-dir``, ``--model``), every
input must carry its SHA-256, and a Hugging Face id it names is not downloaded without ``--allow-download``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import check_name
from .figure import ExportResult, _stem, build_recipe, check_size, export_figure, resolve_model
from .inputs import ReproduceError, file_sha256, resolve_input
from ..viz.presets import Preset
from .registry import OutsideFolderError, input_folder, inside
from .sidecar import read_sidecar, versions


@dataclass
class ReproduceReport:
    """Outcome of :func:`reproduce`.

    Attributes:
        result: the files written.
        comparison: format → ``"identical"``, ``"differs: ..."`` or ``"original missing"``.
        version_changes: package → (recorded, here) for versions that differ.
    """

    result: ExportResult
    comparison: dict[str, str] = field(default_factory=dict)
    version_changes: dict[str, tuple] = field(default_factory=dict)

    batched: bool = False
    max_png_difference: int | None = None

    @property
    def identical(self) -> bool:
        return bool(self.comparison) and all(v == "identical" for v in self.comparison.values())

    @property
    def equivalent(self) -> bool:
        """Identical, or (for figures from a batched forward) PNG within one grey level of the original."""
        if self.identical:
            return True
        return self.batched and self.max_png_difference is not None and self.max_png_difference <= 1

    def summary(self) -> str:
        lines = [f"{fmt}: {self.result.files[fmt]} — {state}" for fmt, state in self.comparison.items()]
        for k, (a, b) in self.version_changes.items():
            lines.append(f"version of {k}: recorded {a}, here {b}")
        if self.identical:
            lines.append("All files are byte-identical to the originals.")
        elif self.equivalent:
            lines.append("The original came from a batched forward (batch export); this one from a single forward. "
                         "Float rounding differs between the two, so a few pixels differ by one grey level: the "
                         "figures agree within rounding.")
        else:
            lines.append("Some files differ from the originals (see above).")
        return "\n".join(lines)


def _png_difference(a: Path, b: Path) -> tuple[str, int | None]:
    from PIL import Image

    try:
        with Image.open(a) as ia, Image.open(b) as ib:
            if ia.size != ib.size:  # compared on the header alone: a huge "original" is never decoded
                return f"differs: size {ia.size[0]}x{ia.size[1]} vs {ib.size[0]}x{ib.size[1]}", None
            x, y = np.asarray(ia.convert("RGBA"), np.int16), np.asarray(ib.convert("RGBA"), np.int16)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"differs: the original cannot be read as a PNG ({type(e).__name__})", None
    d = np.abs(x - y)
    if not d.any():
        return "differs: same pixels, other bytes (the embedded sidecar or the PNG encoder)", 0
    return f"differs: {int((d.max(-1) > 0).sum())} pixels, at most {int(d.max())}/255", int(d.max())


@dataclass(frozen=True)
class Reopened:
    """What an exported figure was made from, read back from its sidecar (see :func:`reopen`).

    Attributes:
        recipe: the recipe's name (``"reconstruction"``, ``"attention_methods"``, …).
        options: the recipe's options as recorded (ratio, seed, strategy, layer, query, …).
        model: the adapter, loaded and checked against the recorded weights' hash.
        inputs: the recorded inputs, loaded and checked against their hashes (``LoadedImage`` each).
        sources: what each input came from (a sample name or a path), for a later export to record again.
        sidecar: the whole sidecar.
    """

    recipe: str
    options: dict
    model: object
    inputs: list
    sources: list
    sidecar: dict


def reopen(sidecar_path: "str | Path", *, device: str | None = None, check_weights: bool = True,
           allow_download: bool = False) -> Reopened:
    """Read the sidecar of an exported figure and load its model and inputs, checked, without building a figure.

    The apps' ``from_sidecar`` uses this to come back to the view a figure was exported from.  The sidecar is read as
    untrusted, as by :func:`reproduce` (paths only inside its folder, hashes required, no download unless
    ``allow_download``).

    Raises:
        SidecarError: no sidecar, or one that does not fit the schema.
        ReproduceError: a bare figure (no recipe), an input or model that is not the recorded one, or would need a
            download.
    """
    sidecar_path = Path(sidecar_path)
    if sidecar_path.suffix.lower() != ".json" and sidecar_path.with_suffix(".json").is_file():
        sidecar_path = sidecar_path.with_suffix(".json")
    sc = read_sidecar(sidecar_path)
    if not sc.get("recipe"):
        raise ReproduceError(f"{sidecar_path} was exported from a bare figure (no recipe): there is no view to reopen.")
    base = sidecar_path.parent
    prov = sc["provenance"]
    loaded = [resolve_input(spec, base) for spec in prov["inputs"]]
    adapter = resolve_model(prov["model"], device=device, check=check_weights, base=base, allow_download=allow_download)
    return Reopened(sc["recipe"]["name"], dict(sc["recipe"]["options"]), adapter, [li for li, _ in loaded],
                    [src for _, src in loaded], sc)


def reproduce(sidecar_path: "str | Path", *, out: "str | Path | None" = None, inputs: "list | None" = None,
              device: str | None = None, check_weights: bool = True, overwrite: bool = False,
              allow_download: bool = False, model=None, input_dirs: "list | tuple" = ()) -> ReproduceReport:
    """Rebuild the figure described by ``sidecar_path`` (a ``.json`` sidecar or an exported file).

    The sidecar is checked as a whole before anything runs, and read as untrusted: paths it names are read only inside
    its own folder, each input needs its recorded SHA-256, and a model id it names is not downloaded unless
    ``allow_download``.

    Args:
        out: output stem; default ``<original stem>-reproduced`` next to the original.
        inputs: replacement paths for the recorded inputs (same order; ``None`` keeps one); read where they are.
        input_dirs: folders (besides the sidecar's) where the recorded inputs may be read, by their recorded path or
            file name (e.g. the input folder of a batch export).
        device: run the model here instead of the recorded device.
        check_weights: refuse a checkpoint whose weights' SHA-256 differs from the recorded one.
        allow_download: let a Hugging Face id named in the sidecar be fetched from the hub (default: only a shipped
            model, a folder inside the sidecar's folder, a model folder used in this process, or the local cache).
        model: use this model instead of the recorded one (an adapter, a shipped name, a folder or a hub id; its
            weights are still checked unless ``check_weights=False``).
    Raises:
        SidecarError: no sidecar, or one that does not fit the schema.
        ReproduceError: the sidecar has no recipe, a path outside its folder, an input / model that is not the
            recorded one or that would need a download.
        ValueError: an output name that cannot be written, a figure too large.
    """
    sidecar_path = Path(sidecar_path)
    given = sidecar_path
    if sidecar_path.suffix.lower() != ".json" and sidecar_path.with_suffix(".json").is_file():
        sidecar_path = sidecar_path.with_suffix(".json")  # the full sidecar lists every file's hash
    sc = read_sidecar(sidecar_path)  # checked against the schema as a whole
    if not sc.get("recipe"):
        raise ReproduceError(f"{sidecar_path} was exported from a bare figure (no recipe), so it cannot be rebuilt.")
    base = sidecar_path.parent
    prov = sc["provenance"]
    specs = prov["inputs"]
    if inputs is not None and len(inputs) > len(specs):
        raise ReproduceError(f"{len(inputs)} inputs given, but the figure was made from {len(specs)}.")
    style = sc["style"]
    stem = sidecar_path.with_suffix("")
    target = _stem(out) if out is not None else stem.with_name(stem.name + "-reproduced")
    check_name(target.name, suffixes=[f".{f}" for f in sc["formats"]] + [".json"], folder=target.parent)
    check_size(style, sc["formats"])  # as recorded; checked again on the rebuilt figure
    overrides = list(inputs or []) + [None] * (len(specs) - len(inputs or []))
    images = [resolve_input(spec, base, ov, search=tuple(input_dirs))[0] for spec, ov in zip(specs, overrides)]
    adapter = resolve_model(prov["model"], device=device, check=check_weights, base=base, allow_download=allow_download,
                            model=model)
    with input_folder(base):
        fig = build_recipe(sc["recipe"]["name"], adapter, images, sc["recipe"]["options"])
    preset = Preset(**style["preset"])
    result = export_figure(fig, target, preset=preset, formats=sc["formats"], height_in=style["height_in"],
                           letters=style["letters"], recipe=sc["recipe"], provenance=prov, title=sc.get("title"),
                           overwrite=overwrite, rows=style.get("rows"), title_pt=style.get("title_pt"))
    report = ReproduceReport(result, batched=bool(prov.get("batched")))
    recorded = dict(sc.get("files") or {})
    if not recorded and given.suffix.lower().lstrip(".") in result.files:  # an exported file alone
        recorded[given.suffix.lower().lstrip(".")] = {"name": given.name, "sha256": file_sha256(given)}
    for fmt, rec in recorded.items():
        new = result.files.get(fmt)
        if new is None:
            report.comparison[fmt] = "not rebuilt (not among the sidecar's formats)"
            continue
        got = file_sha256(new)
        if got == rec["sha256"]:
            report.comparison[fmt] = "identical"
            continue
        try:
            orig = inside(base, rec["name"])  # a plain file name (schema), and no link out of the folder
        except OutsideFolderError:
            orig = None
        if fmt == "png" and orig is not None and orig.is_file():
            report.comparison[fmt], report.max_png_difference = _png_difference(orig, new)
        else:
            report.comparison[fmt] = f"differs (SHA-256 {got[:12]}…, recorded {rec['sha256'][:12]}…)"
    here = versions()
    report.version_changes = {k: (v, here.get(k)) for k, v in sc.get("versions", {}).items() if here.get(k) != v}
    return report

"""Regenerate an exported figure from its sidecar and compare it with the original files.

    python -m explorer reproduce figs/cat.json [--out DIR] [--input NEW_PATH ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .figure import ExportResult, build_recipe, export_figure, resolve_model
from .inputs import ReproduceError, file_sha256, resolve_input
from ..viz.presets import Preset
from .registry import input_folder
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

    with Image.open(a) as ia, Image.open(b) as ib:
        x, y = np.asarray(ia.convert("RGBA"), np.int16), np.asarray(ib.convert("RGBA"), np.int16)
    if x.shape != y.shape:
        return f"differs: size {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}", None
    d = np.abs(x - y)
    return f"differs: {int((d.max(-1) > 0).sum())} pixels, at most {int(d.max())}/255", int(d.max())


def reproduce(sidecar_path: "str | Path", *, out: "str | Path | None" = None, inputs: "list | None" = None,
              device: str | None = None, check_weights: bool = True, overwrite: bool = False) -> ReproduceReport:
    """Rebuild the figure described by ``sidecar_path`` (a ``.json`` sidecar or an exported file).

    Args:
        out: output stem; default ``<original stem>-reproduced`` next to the original.
        inputs: replacement paths for the recorded inputs (same order; ``None`` keeps one).
        device: run the model here instead of the recorded device.
        check_weights: refuse a checkpoint whose weights' SHA-256 differs from the recorded one.
    Raises:
        ReproduceError: the sidecar has no recipe, or an input / model is not the recorded one.
    """
    sidecar_path = Path(sidecar_path)
    given = sidecar_path
    if sidecar_path.suffix.lower() != ".json" and sidecar_path.with_suffix(".json").is_file():
        sidecar_path = sidecar_path.with_suffix(".json")  # the full sidecar lists every file's hash
    sc = read_sidecar(sidecar_path)
    if not sc.get("recipe"):
        raise ReproduceError(f"{sidecar_path} was exported from a bare figure (no recipe), so it cannot be rebuilt.")
    base = sidecar_path.parent
    prov = sc["provenance"]
    adapter = resolve_model(prov["model"], device=device, check=check_weights)
    specs = prov["inputs"]
    overrides = list(inputs or []) + [None] * (len(specs) - len(inputs or []))
    images = [resolve_input(spec, base, ov)[0] for spec, ov in zip(specs, overrides)]
    with input_folder(base):
        fig = build_recipe(sc["recipe"]["name"], adapter, images, sc["recipe"]["options"])
    style = sc["style"]
    preset = Preset(**style["preset"])
    stem = sidecar_path.with_suffix("")
    target = Path(out) if out is not None else stem.with_name(stem.name + "-reproduced")
    result = export_figure(fig, target, preset=preset, formats=sc["formats"], height_in=style["height_in"],
                           letters=style["letters"], recipe=sc["recipe"], provenance=prov, title=sc.get("title"),
                           overwrite=overwrite)
    report = ReproduceReport(result, batched=bool(prov.get("batched")))
    recorded = dict(sc.get("files") or {})
    if not recorded and given.suffix.lower().lstrip(".") in result.files:  # an exported file alone
        recorded[given.suffix.lower().lstrip(".")] = {"name": given.name, "sha256": file_sha256(given)}
    for fmt, rec in recorded.items():
        orig = base / rec["name"]
        new = result.files[fmt]
        if file_sha256(new) == rec["sha256"]:
            report.comparison[fmt] = "identical"
        elif fmt == "png" and orig.is_file():
            report.comparison[fmt], report.max_png_difference = _png_difference(orig, new)
        else:
            report.comparison[fmt] = f"differs (SHA-256 {file_sha256(new)[:12]}…, recorded {rec['sha256'][:12]}…)"
    here = versions()
    report.version_changes = {k: (v, here.get(k)) for k, v in sc.get("versions", {}).items() if here.get(k) != v}
    return report

"""Loading multimodal MAEs (RGB-D, audio-visual) and running them on numpy inputs.

    mm = load_multimodal_model("mini-rgbd-mae")          # or "mini-av-mae", or a folder
    mm.modalities                                         # [Modality rgb (64, 64, 3), Modality depth (64, 64)]

Supported: our MultiMAE-style mini models (:class:`explorer.models.mini.multimae.MiniMultiMAE`, safetensors +
config.json).  Video-only MAEs (``VideoMAEForPreTraining``) open in :class:`explorer.VideoMAEApp`.
Published multimodal MAEs — MultiMAE (EPFL-VILAB), Audio-MAE and CAV-MAE / MAViL — have no implementation
in transformers (5.x ships ViTMAE, VideoMAE and the Audio Spectrogram Transformer classifier, which has no
decoder), so their hub ids get a message saying so instead of a silent wrong model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .base import HashedWeights
from .device import pick_device, pick_dtype
from .registry import ModelLoadError, resolve_source, shipped_models
from ..modalities import Modality

#: Hub ids of published multimodal MAEs that transformers cannot load, and why (shown to the user).
UNSUPPORTED_HUB = {
    "EPFL-VILAB/multimae-b": "MultiMAE (RGB + depth + semantics) is implemented in EPFL-VILAB's own repository, not in transformers",
    "facebook/audiomae": "Audio-MAE is released as a PyTorch checkpoint for its own repository, not in transformers",
    "yuangongnd/cav-mae": "CAV-MAE is released for its own repository, not in transformers",
}


class MultiMAEAdapter(HashedWeights):
    """A loaded multimodal MAE.

    Attributes:
        model: the torch module (:class:`explorer.models.mini.multimae.MiniMultiMAE`); modalities: its :class:`Modality` list; model_id; task (``"rgbd"`` /
        ``"audio-visual"``); device; dtype.
    """

    family = "multimodal"

    def __init__(self, model, *, model_id: str, device: torch.device, dtype: torch.dtype):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model_id, self.device, self.dtype = model_id, device, dtype
        self.modalities: list[Modality] = model.specs
        self.task = model.cfg.task
        self._sha: str | None = None

    @property
    def info(self):
        """What export sidecars record (:class:`explorer.models.base.ModelInfo`)."""
        from .base import ModelInfo

        first = self.modalities[0]
        return ModelInfo(self.model_id, self.family, "mini-multimae", str(self.device), str(self.dtype).replace("torch.", ""),
                         int(first.shape[-2] if first.kind == "image" else first.shape[1]), int(first.patch[-1]), False,
                         self.weights_sha256)

    def spec(self, name: str) -> Modality:
        for s in self.modalities:
            if s.name == name:
                return s
        raise KeyError(f"This model has no {name!r} modality; it has: {', '.join(s.name for s in self.modalities)}.")

    @torch.no_grad()
    def predict(self, arrays: dict[str, np.ndarray], visible: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every patch of every modality, from the visible ones.

        Args:
            arrays: name → ``(B, *shape)`` float (NaN = unknown; modalities with nothing visible may be absent).
            visible: name → ``(B, N_m)`` bool.
        Returns:
            name → ``(B, *shape)`` float32 predictions in the modality's units.
        """
        b = len(next(iter(visible.values())))
        tokens, vis = {}, {}
        for s in self.modalities:
            x = arrays.get(s.name)
            if x is None:
                tokens[s.name] = torch.zeros(b, s.num_patches, s.patch_dim, device=self.device, dtype=self.dtype)
            else:
                t = torch.as_tensor(np.asarray(x, np.float32))
                tokens[s.name] = s.patchify(s.normalise(t)).to(self.device, self.dtype)
            vis[s.name] = torch.as_tensor(np.asarray(visible[s.name], bool), device=self.device)
        out = self.model(tokens, vis)
        return {s.name: s.denormalise(s.unpatchify(out[s.name].float().cpu())).numpy() for s in self.modalities}


def _is_multimae_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "mini-multimae"
    except (OSError, ValueError):
        return False


def list_multimodal_models() -> list[str]:
    """Shipped multimodal MAEs (what the widgets offer)."""
    return [n for n, p in shipped_models().items() if _is_multimae_folder(p)]


def load_multimodal_model(name_or_path: "str | os.PathLike", *, device: str = "auto", dtype: str = "float32") -> MultiMAEAdapter:
    """Load a multimodal MAE.

    Args:
        name_or_path: ``"mini-rgbd-mae"``, ``"mini-av-mae"`` or a folder holding ``config.json`` (model_type
            ``"mini-multimae"``) and ``model.safetensors``.
        device: ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``; dtype: ``"float32"`` or ``"bfloat16"``.
    Raises:
        ModelLoadError: unknown name, another kind of model, a published checkpoint transformers cannot load,
            missing or mismatched weights.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    from safetensors.torch import load_file

    from .mini.multimae import MiniMultiMAE, MultiMAEConfig

    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    name = str(name_or_path)
    if name in UNSUPPORTED_HUB:
        raise ModelLoadError(f"{name!r}: {UNSUPPORTED_HUB[name]}, so it cannot be loaded here. Supported multimodal MAEs: "
                             f"{', '.join(list_multimodal_models())} (or a folder with the same format).")
    folder = resolve_source(name, example="mini-rgbd-mae")
    if folder is None:
        raise ModelLoadError(
            f"{name!r} looks like a Hugging Face id, but transformers has no multimodal (RGB-D or audio-visual) MAE class; "
            f"supported here: {', '.join(list_multimodal_models())} or a folder in their format. Video-only MAEs "
            "(VideoMAEForPreTraining, e.g. MCG-NJU/videomae-base) open in explorer.VideoMAEApp.")
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") != "mini-multimae":
        raise ModelLoadError(f"{name!r} is a {raw.get('model_type', '?')!r} model, not a multimodal MAE; open it with "
                             "explorer.load_model (images), explorer.VideoMAEApp (video) or explorer.load_fusion_model (image+text).")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{folder} has no model.safetensors (only safetensors weights are loaded; nothing is unpickled).")
    model = MiniMultiMAE(MultiMAEConfig.from_dict(raw))
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as e:
        raise ModelLoadError(f"The weights in {weights} do not fit its config.json: {str(e)[:300]}") from e
    return MultiMAEAdapter(model, model_id=name, device=dev, dtype=dt)

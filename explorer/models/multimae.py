"""The multimodal MAE adapter (RGB-D, audio-visual): runs a loaded model on numpy inputs.

Loading is :func:`explorer.models.registry.load_multimodal_model` (family ``"mini-multimae"``):

    mm = load_multimodal_model("mini-rgbd-mae")          # or "mini-av-mae", or a folder
    mm.modalities                                         # [Modality rgb (64, 64, 3), Modality depth (64, 64)]

Supported: our MultiMAE-style mini models (:class:`explorer.models.mini.multimae.MiniMultiMAE`, safetensors +
config.json).  Video-only MAEs (``VideoMAEForPreTraining``) open in :class:`explorer.VideoMAEApp`.
Published multimodal MAEs — MultiMAE (EPFL-VILAB), Audio-MAE and CAV-MAE / MAViL — have no implementation
in transformers (5.x ships ViTMAE, VideoMAE and the Audio Spectrogram Transformer classifier, which has no
decoder), so their hub ids get a message saying so instead of a silent wrong model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import HashedWeights
from .hub import ModelLoadError, read_json
from ..modalities import Modality

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

    @classmethod
    def from_folder(cls, folder: str | Path, *, model_id: str | None = None, device: torch.device = torch.device("cpu"),
                    dtype: torch.dtype = torch.float32) -> "MultiMAEAdapter":
        """Load ``config.json`` (model_type ``"mini-multimae"``) + ``model.safetensors`` (nothing is unpickled).

        Raises:
            ModelLoadError: no safetensors weights, damaged weights (not a valid safetensors file), or weights that do
                not fit the config.
        """
        from .hub import load_safetensors_into
        from .mini.multimae import MiniMultiMAE, MultiMAEConfig

        folder = Path(folder)
        model = load_safetensors_into(MiniMultiMAE(MultiMAEConfig.from_dict(read_json(folder / "config.json"))), folder)
        return cls(model, model_id=model_id or folder.name, device=device, dtype=dtype)

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

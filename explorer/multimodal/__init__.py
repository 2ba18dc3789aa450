"""Multimodal masked autoencoders: RGB + depth and audio + video, with per-modality visible budgets.

    from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
    mm = load_multimodal_model("mini-rgbd-mae")
    rec = reconstruct_multimodal(mm, {"rgb": image, "depth": depth}, {"rgb": 1.0, "depth": 0.1}, seed=0)
"""

from ..masking.budgets import BudgetError, dirichlet_counts, visible_counts, visible_masks
from ..modalities import Modality
from ..models.multimae import MultiMAEAdapter
from ..models.registry import list_multimodal_models, load_multimodal_model
from ..reconstruction.multimodal import ModalityResult, MultiModalInputError, MultiModalReconstruction, modality_metrics, reconstruct_multimodal

__all__ = ["BudgetError", "Modality", "ModalityResult", "MultiMAEAdapter", "MultiModalInputError", "MultiModalReconstruction",
           "dirichlet_counts", "list_multimodal_models", "load_multimodal_model", "modality_metrics", "reconstruct_multimodal",
           "visible_counts", "visible_masks"]

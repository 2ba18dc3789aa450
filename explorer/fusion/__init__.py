"""Cross-modal fusion explorer, compute layer: image+text adapters, per-word maps, modality attributions.

    from explorer.fusion import load_fusion_model, align
    model = load_fusion_model("mini-fusion")              # or "Salesforce/blip-itm-base-coco", a folder…
    al = align(model, image, "a red circle left of a blue square")
    al.word_map("relevance", 1)                           # (gh, gw) map of word 1 ("red")
"""

from .alignment import METHOD_NAMES, METHODS, Alignment, ModalityReport, align, deletion_auc, modality_report, pointing_hits, word_ig
from ..models.fusion_base import CallRole, FusionAdapter, FusionInputError, JointLayout, TextInput
from ..models.registry import load_fusion_model

__all__ = [
    "Alignment", "CallRole", "FusionAdapter", "FusionInputError", "JointLayout", "METHODS", "METHOD_NAMES", "ModalityReport",
    "TextInput", "align", "deletion_auc", "load_fusion_model", "modality_report", "pointing_hits", "word_ig",
]


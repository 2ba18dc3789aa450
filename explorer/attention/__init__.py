"""Attention explorer compute layer: capture, per-layer/head maps, rollout, relevance, faithfulness."""

from .capture import AttentionCall, AttentionCapture, AttentionError, attention_probs
from .maps import METHODS, AttentionMaps, Relevance, TokenLayout, attention_maps, capture_all, check_capture_memory, explain
from .methods import FUSIONS, RelevanceAccumulator, RolloutAccumulator, rollout_step
from .provenance import Provenance, provenance
from .interventions import Ablation, HeadHooks, HeadImportance, Patching, ablate, corrupt, head_importance, patch_heads

__all__ = [
    "AttentionCall", "AttentionCapture", "AttentionError", "AttentionMaps", "FUSIONS", "METHODS", "Relevance",
    "RelevanceAccumulator", "RolloutAccumulator", "TokenLayout", "attention_maps", "attention_probs", "explain",
    "rollout_step", "Provenance", "provenance", "capture_all", "check_capture_memory",
    "Ablation", "HeadHooks", "HeadImportance", "Patching", "ablate", "corrupt", "head_importance", "patch_heads",
]

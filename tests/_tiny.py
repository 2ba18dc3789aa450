"""Tiny random-weight models saved with save_pretrained: the same code path as a hub id, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            decoder_hidden_size=24, decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=48)


def tiny_config(**overrides) -> ViTMAEConfig:
    return ViTMAEConfig(**{**TINY, **overrides})


def save_tiny_mae(folder: Path, seed: int = 0, **overrides) -> Path:
    """A random ``ViTMAEForPreTraining`` written by ``save_pretrained`` into ``folder``."""
    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(copy.deepcopy(tiny_config(**overrides)))
    # Random (not zero) mask token and decoder positions so that hidden patches really differ.
    with torch.no_grad():
        model.decoder.mask_token.normal_(0, 0.5)
        model.decoder.decoder_pos_embed.normal_(0, 0.5)
        model.vit.embeddings.position_embeddings.normal_(0, 0.5)  # token order matters (transformers 5 leaves these 0)
    model.save_pretrained(folder)
    return folder


def random_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image ``(size, size, 3)`` float32 in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.random((4, 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def save_tiny_vit(folder: Path, seed: int = 0, num_labels: int = 3, **overrides) -> Path:
    """A random ``ViTForImageClassification`` written by ``save_pretrained``."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    cfg = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
               num_labels=num_labels)
    model = ViTForImageClassification(ViTConfig(**{**cfg, **overrides}))
    with torch.no_grad():  # transformers 5 leaves position embeddings at zero: give tokens an order
        model.vit.embeddings.position_embeddings.normal_(0, 0.5)
        model.vit.embeddings.cls_token.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A random ``CLIPModel`` (both towers) written by ``save_pretrained``."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=16),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=64),
        projection_dim=16)
    model = CLIPModel(cfg)
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.weight.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder

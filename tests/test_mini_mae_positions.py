"""mini-mae's position tables: the training script freezes them, and the card says what the shipped weights hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from transformers import ViTMAEForPreTraining

from explorer.models import shipped_models
from explorer.training.model_card import POSITION_KEYS
from explorer.models.mae import sincos_table
from explorer.training.train_mini_mae import position_tables, trainable_parameters

from _tiny import random_image, save_tiny_mae


def mae_reference_sincos(dim: int, grid: int) -> np.ndarray:
    """The MAE authors' 2-D sin-cos table (their util/pos_embed.py, written out from the paper's code): ``(1 + grid**2, dim)``."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))  # w first, as in MAE
    emb = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb], axis=0)


def test_sincos_table_is_maes():
    for dim, grid in ((16, 4), (128, 14)):
        np.testing.assert_allclose(sincos_table(grid, dim).numpy(), mae_reference_sincos(dim, grid), atol=1e-6)


def test_a_stage_started_from_saved_weights_keeps_the_position_tables(tmp_path):
    model = ViTMAEForPreTraining.from_pretrained(save_tiny_mae(tmp_path / "m"))
    # the trap: transformers 5 returns them trainable after from_pretrained
    assert all(p.requires_grad for p in position_tables(model))
    before = [p.detach().clone() for p in position_tables(model)]
    others = {n: p.detach().clone() for n, p in model.named_parameters() if "pos" not in n}
    params = trainable_parameters(model)
    assert not any(p is q for p in params for q in position_tables(model))
    opt = torch.optim.AdamW(params, lr=1e-2)
    size = model.config.image_size
    x = torch.from_numpy(random_image(size, seed=1)).permute(2, 0, 1)[None]
    model(pixel_values=x).loss.backward()
    opt.step()
    for b, p in zip(before, position_tables(model)):
        assert torch.equal(b, p)
    assert any(not torch.equal(others[n], p) for n, p in model.named_parameters() if n in others)


def test_the_card_states_how_far_the_shipped_tables_are_from_sincos():
    from safetensors.torch import load_file

    folder = shipped_models()["mini-mae"]
    card = (folder / "README.md").read_text()
    weights = load_file(str(folder / "model.safetensors"))
    grid = int(round((weights[POSITION_KEYS["encoder"]].shape[1] - 1) ** 0.5))
    for name, key in POSITION_KEYS.items():
        stored = weights[key].reshape(1 + grid * grid, -1).double().numpy()
        ref = mae_reference_sincos(stored.shape[-1], grid)
        rel = np.linalg.norm(stored - ref) / np.linalg.norm(ref)
        m = re.search(rf"{name} (\d+\.\d)% \(largest element change (\d\.\d+)\)", card)
        if rel < 1e-6:
            assert "hold exactly those tables" in card
            continue
        assert m, f"the card does not state the {name} table's change from sin-cos"
        assert abs(float(m.group(1)) - 100 * rel) < 0.06
        assert abs(float(m.group(2)) - np.abs(stored - ref).max()) < 6e-4

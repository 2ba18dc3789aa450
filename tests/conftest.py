"""Minimal shared test setup."""

import sys
from pathlib import Path

import pytest

# tests/browser_helpers.py is imported as a plain module, also under --import-mode=importlib.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)



@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """A tiny random ViT classifier (tests/_tiny.py), loaded like any checkpoint folder."""
    import explorer
    from _tiny import save_tiny_vit

    return explorer.load_model(str(save_tiny_vit(tmp_path_factory.mktemp("vit"))), device="cpu")


@pytest.fixture(scope="module")
def mae(tmp_path_factory):
    """A tiny random ViTMAE (seed 2), loaded like any checkpoint folder."""
    import explorer
    from _tiny import save_tiny_mae

    return explorer.load_model(str(save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=2)), device="cpu")

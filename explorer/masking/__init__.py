"""Masks: pure, seeded and nested across ratios.

- :mod:`.image`: patch masks for images (random, block, grid, manual) and the ratio sweep.
- :mod:`.video`: token masks for video (tube, random, frame).
- :mod:`.budgets`: per-modality visible budgets for multimodal MAEs (counts, Dirichlet split).

The image API is re-exported here (``from explorer.masking import make_mask``).
"""

from .image import (
    STRATEGIES,
    SWEEP_RATIOS,
    MaskError,
    MaskSpec,
    block_order,
    grid_order,
    make_mask,
    manual_indices,
    manual_mask,
    mask_from_order,
    mask_to_noise,
    masking_order,
    num_masked,
    random_order,
)

__all__ = [
    "MaskError", "MaskSpec", "STRATEGIES", "SWEEP_RATIOS", "block_order", "grid_order", "make_mask", "manual_indices", "manual_mask",
    "mask_from_order", "mask_to_noise", "masking_order", "num_masked", "random_order",
]

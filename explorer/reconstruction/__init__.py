"""Masked reconstruction, by medium.

- :mod:`.image`: image MAEs (``reconstruct``, the nested ratio sweep and its cache).
- :mod:`.video`: video MAEs (``reconstruct_video``).
- :mod:`.multimodal`: multimodal MAEs with per-modality budgets (``reconstruct_multimodal``).
- :mod:`.baselines`: non-learned fills (Telea inpainting, mean colour, nearest frame) to compare against.

The image API is re-exported here (``from explorer.reconstruction import reconstruct``).
"""

from .image import (
    InputInfo,
    Reconstruction,
    ReconstructionSweep,
    SweepCache,
    as_input,
    load_input,
    reconstruct,
    reconstruct_manual,
    reconstruct_sweep,
)

__all__ = [
    "InputInfo", "Reconstruction", "ReconstructionSweep", "SweepCache", "as_input", "load_input", "reconstruct",
    "reconstruct_manual", "reconstruct_sweep",
]

"""Modalities of a multimodal MAE: their array shape, patch grid, (un)patchify and normalisation.

    rgb = Modality("rgb", "image", (64, 64, 3), (8, 8), mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))
    tokens = rgb.patchify(x)          # (B, 64, 64, 3) → (B, 64, 192)
    x2 = rgb.unpatchify(tokens)       # and back, exactly

An array is its patch axes followed (for ``image`` / ``video``) by a channel axis: ``image (H, W, C)``,
``depth (H, W)``, ``video (T, H, W, C)``, ``spectrogram (mel bins, frames)``, ``semantic (H, W)`` (a class id per
pixel, stored as float so that NaN can mark unknown pixels; its ``classes`` name the ids).  Patches tile the patch
axes row-major (time, then rows, then columns), each flattened as ``(patch axes..., channels)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import prod

import numpy as np
import torch

KINDS = ("image", "depth", "video", "spectrogram", "semantic")

#: The 133 classes of COCO panoptic segmentation in contiguous-id order (things, then stuff), the classes of MultiMAE's
#: semantic maps (Mask2Former pseudo labels), and their colours in the COCO panoptic API's category list
#: (cocodataset/panopticapi ``panoptic_coco_categories.json``, CC BY 4.0).
COCO_PANOPTIC_CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep',
    'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich',
    'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
    'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
    'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
    'banner', 'blanket', 'bridge', 'cardboard', 'counter', 'curtain', 'door-stuff', 'floor-wood', 'flower', 'fruit',
    'gravel', 'house', 'light', 'mirror-stuff', 'net', 'pillow', 'platform', 'playingfield', 'railroad', 'river',
    'road', 'roof', 'sand', 'sea', 'shelf', 'snow', 'stairs', 'tent', 'towel', 'wall-brick', 'wall-stone',
    'wall-tile', 'wall-wood', 'water-other', 'window-blind', 'window-other', 'tree-merged', 'fence-merged',
    'ceiling-merged', 'sky-other-merged', 'cabinet-merged', 'table-merged', 'floor-other-merged', 'pavement-merged',
    'mountain-merged', 'grass-merged', 'dirt-merged', 'paper-merged', 'food-other-merged', 'building-other-merged',
    'rock-merged', 'wall-other-merged', 'rug-merged')
COCO_PANOPTIC_COLOURS = ((220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
    (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30), (100, 170, 30), (220, 220, 0), (175, 116, 175),
    (250, 0, 30), (165, 42, 42), (255, 77, 255), (0, 226, 252), (182, 182, 255), (0, 82, 0), (120, 166, 157),
    (110, 76, 0), (174, 57, 255), (199, 100, 0), (72, 0, 118), (255, 179, 240), (0, 125, 92), (209, 0, 151),
    (188, 208, 182), (0, 220, 176), (255, 99, 164), (92, 0, 73), (133, 129, 255), (78, 180, 255), (0, 228, 0),
    (174, 255, 243), (45, 89, 255), (134, 134, 103), (145, 148, 174), (255, 208, 186), (197, 226, 255), (171, 134, 1),
    (109, 63, 54), (207, 138, 255), (151, 0, 95), (9, 80, 61), (84, 105, 51), (74, 65, 105), (166, 196, 102),
    (208, 195, 210), (255, 109, 65), (0, 143, 149), (179, 0, 194), (209, 99, 106), (5, 121, 0), (227, 255, 205),
    (147, 186, 208), (153, 69, 1), (3, 95, 161), (163, 255, 0), (119, 0, 170), (0, 182, 199), (0, 165, 120),
    (183, 130, 88), (95, 32, 0), (130, 114, 135), (110, 129, 133), (166, 74, 118), (219, 142, 185), (79, 210, 114),
    (178, 90, 62), (65, 70, 15), (127, 167, 115), (59, 105, 106), (142, 108, 45), (196, 172, 0), (95, 54, 80),
    (128, 76, 255), (201, 57, 1), (246, 0, 122), (191, 162, 208), (255, 255, 128), (147, 211, 203), (150, 100, 100),
    (168, 171, 172), (146, 112, 198), (210, 170, 100), (92, 136, 89), (218, 88, 184), (241, 129, 0), (217, 17, 255),
    (124, 74, 181), (70, 70, 70), (255, 228, 255), (154, 208, 0), (193, 0, 92), (76, 91, 113), (255, 180, 195),
    (106, 154, 176), (230, 150, 140), (60, 143, 255), (128, 64, 128), (92, 82, 55), (254, 212, 124), (73, 77, 174),
    (255, 160, 98), (255, 255, 255), (104, 84, 109), (169, 164, 131), (225, 199, 255), (137, 54, 74), (135, 158, 223),
    (7, 246, 231), (107, 255, 200), (58, 41, 149), (183, 121, 142), (255, 73, 97), (107, 142, 35), (190, 153, 153),
    (146, 139, 141), (70, 130, 180), (134, 199, 156), (209, 226, 140), (96, 36, 108), (96, 96, 96), (64, 170, 64),
    (152, 251, 152), (208, 229, 228), (206, 186, 171), (152, 161, 64), (116, 112, 0), (0, 114, 143), (102, 102, 156),
    (250, 141, 255))


@dataclass(frozen=True)
class Modality:
    """One input stream.

    Attributes:
        name: key used everywhere (``"rgb"``, ``"depth"``, ``"video"``, ``"audio"``).
        kind: one of :data:`KINDS`.
        shape: the array shape one sample has (see the module docstring).
        patch: patch size along each patch axis (``len(patch)`` = number of patch axes).
        mean, std: normalisation per channel (one value for single-channel kinds).
        unit: what values mean, for labels (``"metres"``, ``"log mel power"``).
        classes: for kind ``"semantic"``, the name of each class id (``classes[k]`` names id ``k``); empty otherwise.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    patch: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    unit: str = ""
    classes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown modality kind {self.kind!r}; known: {', '.join(KINDS)}.")
        if (self.kind == "semantic") != bool(self.classes):
            raise ValueError(f"{self.name}: a semantic map needs its class names (classes=...), and only a semantic "
                             f"map has them (kind {self.kind!r}, {len(self.classes)} classes).")
        axes = self.shape[:len(self.patch)]
        if any(a % p for a, p in zip(axes, self.patch)):
            raise ValueError(f"{self.name}: shape {self.shape} is not a multiple of the patch {self.patch}.")

    @property
    def channels(self) -> int:
        return self.shape[-1] if len(self.shape) > len(self.patch) else 1

    @property
    def grid(self) -> tuple[int, ...]:
        """Patches along each patch axis, e.g. ``(8, 8)`` or ``(4, 6, 6)``."""
        return tuple(a // p for a, p in zip(self.shape, self.patch))

    @property
    def num_patches(self) -> int:
        return prod(self.grid)

    @property
    def patch_dim(self) -> int:
        return prod(self.patch) * self.channels

    def to_dict(self) -> dict:
        """Plain values (JSON-ready); ``classes`` only where there are some."""
        d = asdict(self)
        if not d["classes"]:
            del d["classes"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Modality":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def _with_channels(self, x):
        return x[..., None] if len(self.shape) == len(self.patch) else x

    def check(self, x: np.ndarray | torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, *shape)``."""
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise ValueError(f"{self.name}: expected arrays of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}.")

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *shape)`` → ``(B, num_patches, patch_dim)``."""
        self.check(x)
        x = self._with_channels(x)
        b, k = x.shape[0], len(self.patch)
        split = [b]
        for g, p in zip(self.grid, self.patch):
            split += [g, p]
        x = x.reshape(*split, self.channels)
        order = [0] + [1 + 2 * i for i in range(k)] + [2 + 2 * i for i in range(k)] + [1 + 2 * k]
        return x.permute(*order).reshape(b, self.num_patches, self.patch_dim)

    @staticmethod
    def unknown_patches(tokens: torch.Tensor) -> torch.Tensor:
        """``(..., N, D)`` patches → ``(..., N)`` bool: more than half the patch's values are unknown (NaN / inf).

        Such patches are never shown to the model (in training and in reconstruction alike)."""
        return (~torch.isfinite(tokens)).float().mean(-1) > 0.5

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, num_patches, patch_dim)`` → ``(B, *shape)`` (inverse of :meth:`patchify`)."""
        b, k = tokens.shape[0], len(self.patch)
        x = tokens.reshape(b, *self.grid, *self.patch, self.channels)
        order = [0]
        for i in range(k):
            order += [1 + i, 1 + k + i]
        x = x.permute(*order, 1 + 2 * k).reshape(b, *self.shape[:k], self.channels)
        return x.reshape(b, *self.shape)

    def _stats(self, like: torch.Tensor):
        m = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        s = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        return m, s

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Values → model units (per channel ``(x - mean) / std``); NaN (unknown) stays NaN."""
        m, s = self._stats(x)
        return (self._with_channels(x) - m) / s if self.channels > 1 else (x - m[0]) / s[0]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._stats(x)
        return self._with_channels(x) * s + m if self.channels > 1 else x * s[0] + m[0]

    def patch_index(self, position: tuple[int, ...]) -> int:
        """Row-major token index of a patch given its grid coordinates."""
        return int(np.ravel_multi_index(position, self.grid))

    def unpatchify_mask(self, tokens: np.ndarray) -> np.ndarray:
        """``(N,)`` bool per patch → ``shape`` bool per value (each patch's flag spread over its values)."""
        t = torch.from_numpy(np.repeat(np.asarray(tokens, np.float32)[:, None], self.patch_dim, 1)[None])
        return self.unpatchify(t)[0].numpy() > 0.5

"""What each mini multimodal MAE is trained and evaluated on: data, modalities, augmentation, budgets.

    task = TASKS["rgbd"]()
    data = task.generate(range(100))     # name → (N, *shape) float32 arrays (NaN = unknown)
    specs = task.specs(data)             # Modality list with normalisation measured on ``data``
"""

from __future__ import annotations

import numpy as np
import torch

from ..modalities import Modality

HELD_OUT_SEED = 10_000_000


class Task:
    """Interface: ``generate``, ``specs``, ``augment``, ``budget_range``, ``quick_eval``."""

    name = ""

    def sample(self, seed: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def generate(self, seeds) -> dict[str, np.ndarray]:
        """Stack ``sample(seed)`` over ``seeds``: name → ``(N, *shape)`` float32."""
        rows = [self.sample(int(s)) for s in seeds]
        return {k: np.stack([r[k] for r in rows]).astype(np.float32) for k in rows[0]}

    def specs(self, data: dict[str, np.ndarray]) -> list[Modality]:
        raise NotImplementedError

    def augment(self, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return arrays

    def budget_range(self, specs: list[Modality]) -> tuple[int, int]:
        raise NotImplementedError

    def quick_eval(self, model, specs: list[Modality]) -> dict:
        return {}

    @staticmethod
    @torch.no_grad()
    def predict_from(model, source: Modality, target: Modality, x: np.ndarray) -> np.ndarray:
        """``target`` predicted by a two-modality ``model`` from every patch of ``source`` alone.

        ``x``: ``(B, *source.shape)`` → ``(B, *target.shape)`` in the target's units.
        """
        b = len(x)
        tokens = {source.name: source.patchify(source.normalise(torch.from_numpy(np.asarray(x, np.float32)))),
                  target.name: torch.zeros(b, target.num_patches, target.patch_dim)}
        vis = {source.name: torch.ones(b, source.num_patches, dtype=torch.bool),
               target.name: torch.zeros(b, target.num_patches, dtype=torch.bool)}
        return target.denormalise(target.unpatchify(model(tokens, vis)[target.name])).numpy()


def _stats(x: np.ndarray, channels: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    axes = tuple(range(x.ndim - 1)) if channels else None
    m = np.nanmean(x, axis=axes)
    s = np.nanstd(x, axis=axes)
    return tuple(float(round(v, 4)) for v in np.atleast_1d(m)), tuple(float(round(v, 4)) for v in np.atleast_1d(s))


class RGBDTask(Task):
    """Generated rooms (90 %) and motorcycle training crops (10 %); 64² RGB + metric depth, 8 px patches."""

    name = "rgbd"
    size = 64

    def sample(self, seed: int) -> dict[str, np.ndarray]:
        from ..data.rgbd import make_rgbd_scene, motorcycle_rgbd

        s = motorcycle_rgbd(seed, self.size, "train") if seed % 10 == 9 else make_rgbd_scene(seed, self.size)
        return {"rgb": s.image, "depth": s.depth}

    def specs(self, data):
        rm, rs = _stats(data["rgb"], True)
        dm, ds = _stats(data["depth"], False)
        return [Modality("rgb", "image", (self.size, self.size, 3), (8, 8), rm, rs, "intensity"),
                Modality("depth", "depth", (self.size, self.size), (8, 8), dm, ds, "metres")]

    def augment(self, arrays, rng):
        flip = rng.random(len(arrays["rgb"])) < 0.5
        return {k: np.where(flip.reshape(-1, *[1] * (v.ndim - 1)), v[:, :, ::-1], v) for k, v in arrays.items()}

    def budget_range(self, specs):
        return 8, 72

    def quick_eval(self, model, specs, n: int = 48) -> dict:
        """Depth from all RGB patches (no depth shown) on held-out rooms: RMSE (m) and absolute relative error."""
        from ..data.rgbd import make_rgbd_scene

        rgb, depth = specs
        scenes = [make_rgbd_scene(HELD_OUT_SEED + i, self.size) for i in range(n)]
        truth = np.stack([s.depth for s in scenes])
        pred = self.predict_from(model, rgb, depth, np.stack([s.image for s in scenes]))
        const = np.full_like(truth, depth.mean[0])
        out = {}
        for k, p in (("model", pred), ("mean depth", const)):
            out[f"depth_from_rgb_rmse_{k}"] = float(np.sqrt(np.mean((p - truth) ** 2)))
            out[f"depth_from_rgb_absrel_{k}"] = float(np.mean(np.abs(p - truth) / truth))
        return out


class AVTask(Task):
    """Generated sounding clips: video (8 × 48², tubelets 2 × 8 × 8) + a 1 s log-mel spectrogram (128 × 96, 16² patches)."""

    name = "audio-visual"

    def sample(self, seed: int) -> dict[str, np.ndarray]:
        from ..data.av_clips import make_av_clip

        c = make_av_clip(seed)
        return {"video": c.frames, "audio": c.spectrogram}

    def specs(self, data):
        vm, vs = _stats(data["video"], True)
        am, as_ = _stats(data["audio"], False)
        return [Modality("video", "video", data["video"].shape[1:], (2, 8, 8), vm, vs, "intensity"),
                Modality("audio", "spectrogram", data["audio"].shape[1:], (16, 16), am, as_, "log mel power")]

    def budget_range(self, specs):
        return 8, 64

    def quick_eval(self, model, specs, n: int = 32) -> dict:
        """Sound from all video patches (no sound shown) on held-out clips: spectrogram RMSE vs the training mean."""
        video, audio = specs
        clips = [self.sample(HELD_OUT_SEED + i) for i in range(n)]
        truth = np.stack([c["audio"] for c in clips])
        pred = self.predict_from(model, video, audio, np.stack([c["video"] for c in clips]))
        return {"audio_from_video_rmse_model": float(np.sqrt(np.mean((pred - truth) ** 2))),
                "audio_from_video_rmse_mean": float(np.sqrt(np.mean((audio.mean[0] - truth) ** 2)))}


TASKS = {"rgbd": RGBDTask, "audio-visual": AVTask}

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

    def model_options(self, data: dict[str, np.ndarray]) -> dict:
        """Extra :class:`MultiMAEConfig` fields this task's model is built with."""
        return {}

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
    """Generated rooms (80 %) and motorcycle training crops (20 %: seeds ending in 4 or 9); 64² RGB + metric depth, 8 px patches; in training,
    depth is scaled by a random global factor (:attr:`depth_scale_range`) whenever some of it is shown."""

    name = "rgbd"
    size = 64
    #: each training sample that shows depth has it scaled by a log-uniform factor in this range (RGB unchanged)
    depth_scale_range = (0.25, 4.0)

    def model_options(self, data):
        """Scale-invariant depth (the visible depth's median sets the output's scale; the training median stands in when
        none is visible), predicted as a residual over an inverse-distance fill of the visible depth patches."""
        return {"depth_scale": "visible-median", "depth_ref": float(round(float(np.nanmedian(data["depth"])), 3)),
                "depth_base": "visible-idw"}

    def sample(self, seed: int) -> dict[str, np.ndarray]:
        from ..data.rgbd import make_rgbd_scene, motorcycle_rgbd

        s = motorcycle_rgbd(seed, self.size, "train") if seed % 5 == 4 else make_rgbd_scene(seed, self.size)
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
    """Generated sounding clips: video (8 × 48², tubelets 2 × 8 × 8) + a 1 s log-mel spectrogram (128 × 96, 16² patches),
    mixed with one-second speech windows shown with a still frame (:meth:`sample`)."""

    name = "audio-visual"
    #: seed % 10 → what the sample is: generated clip, Asterisk training prompt, espeak-ng (full band), espeak-ng (8 kHz band)
    MIX = {**{k: "clip" for k in range(6)}, 6: "asterisk", 7: "asterisk", 8: "espeak", 9: "espeak 8 kHz"}

    def sample(self, seed: int) -> dict[str, np.ndarray]:
        """Seeds ending 0–5: a generated clip (its frames and sound); 6–7: a second of an Asterisk *training* prompt
        (real speech, ±6 dB); 8–9: a second of espeak-ng speech (9: band-limited to 4 kHz like the 8 kHz prompts).  Speech
        comes with a still frame (a generated background repeated over the 8 frames: nothing moves, nothing bounces)."""
        from ..data.av_clips import make_av_clip, spectrogram_patch_array

        kind = self.MIX[seed % 10]
        if kind == "clip":
            c = make_av_clip(seed)
            return {"video": c.frames, "audio": c.spectrogram}
        from ..data import speech

        if kind == "asterisk":
            files = speech.asterisk_prompts("train")
            x = speech.load_prompt(files[int(np.random.default_rng([seed, 3]).integers(len(files)))])
            w = speech.speech_window(x, seed, gain_db=(-6.0, 6.0))
        else:
            x = speech.espeak_speech(seed)
            w = speech.speech_window(speech.telephone_band(x) if kind == "espeak 8 kHz" else x, seed, gain_db=(-6.0, 3.0))
        return {"video": still_frames(seed), "audio": spectrogram_patch_array(w)}

    def specs(self, data):
        vm, vs = _stats(data["video"], True)
        am, as_ = _stats(data["audio"], False)
        return [Modality("video", "video", data["video"].shape[1:], (2, 8, 8), vm, vs, "intensity"),
                Modality("audio", "spectrogram", data["audio"].shape[1:], (16, 16), am, as_, "log mel power")]

    def budget_range(self, specs):
        return 8, 64

    def model_options(self, data):
        """Loudness read from the visible sound: its mean log power is taken out before the encoder and put back."""
        return {"spectrogram_level": "visible-mean"}

    def quick_eval(self, model, specs, n: int = 32) -> dict:
        """Sound from all video patches (no sound shown) on held-out clips: spectrogram RMSE vs the training mean; and
        sound from 20 % of held-out real speech (+ its still frame): RMSE vs the training mean."""
        video, audio = specs
        clips = [self.sample(HELD_OUT_SEED + 10 * i) for i in range(n)]
        truth = np.stack([c["audio"] for c in clips])
        pred = self.predict_from(model, video, audio, np.stack([c["video"] for c in clips]))
        out = {"audio_from_video_rmse_model": float(np.sqrt(np.mean((pred - truth) ** 2))),
               "audio_from_video_rmse_mean": float(np.sqrt(np.mean((audio.mean[0] - truth) ** 2)))}
        speech = held_out_speech(16)
        truth = np.stack([x["audio"] for x in speech])
        tokens = {"video": video.patchify(video.normalise(torch.from_numpy(np.stack([x["video"] for x in speech])))),
                  "audio": audio.patchify(audio.normalise(torch.from_numpy(truth)))}
        rng = np.random.default_rng(0)
        k = int(round(0.2 * audio.num_patches))
        vis_a = np.zeros((len(speech), audio.num_patches), bool)
        for b in range(len(speech)):
            vis_a[b, rng.choice(audio.num_patches, k, replace=False)] = True
        vis = {"video": torch.zeros(len(speech), video.num_patches, dtype=torch.bool), "audio": torch.from_numpy(vis_a)}
        with torch.no_grad():
            p = audio.denormalise(audio.unpatchify(model(tokens, vis)["audio"])).numpy()
        hidden = ~np.stack([audio.unpatchify_mask(v) for v in vis_a])
        out["speech_20pct_rmse_model"] = float(np.sqrt(np.mean((p - truth)[hidden] ** 2)))
        out["speech_20pct_rmse_mean"] = float(np.sqrt(np.mean((audio.mean[0] - truth)[hidden] ** 2)))
        return out


def still_frames(seed: int, frames: int = 8, size: int = 48) -> np.ndarray:
    """``(frames, size, size, 3)`` float32: one generated background (seeded), the same in every frame — the picture
    that goes with speech."""
    from ..data.procedural import _background

    return np.repeat(_background(np.random.default_rng([seed, 5]), size)[None], frames, 0).astype(np.float32)


def held_out_speech(n: int | None = None, *, min_seconds: float = 1.0) -> list[dict]:
    """Held-out real speech: one second of each held-out Asterisk prompt at least ``min_seconds`` long (sorted by path;
    the first ``n``; window ``i`` from seed ``i``), with a still frame.  Returns ``[{"video": (8, 48, 48, 3),
    "audio": (128, 96)}, …]``."""
    from ..data import speech
    from ..data.av_clips import spectrogram_patch_array

    out = []
    for p in speech.asterisk_prompts("test"):
        x = speech.load_prompt(p)
        if len(x) < min_seconds * speech.RATE:
            continue
        i = len(out)
        out.append({"video": still_frames(HELD_OUT_SEED + i), "audio": spectrogram_patch_array(speech.speech_window(x, i))})
        if n is not None and len(out) >= n:
            break
    return out


TASKS = {"rgbd": RGBDTask, "audio-visual": AVTask}

"""Audio-MAE (Huang et al., "Masked Autoencoders that Listen", NeurIPS 2022): the authors' pretraining checkpoint.

    mm = load_multimodal_model("pretrained.pth")     # facebookresearch/AudioMAE, ViT-B AS-2M, encoder + decoder
    mm.modalities                                     # [Modality audio (128, 1024) spectrogram, 16 x 16 patches]
    x, notes = mm.audio_input(samples, 16_000)        # their Kaldi fbank front end → (128 mel bins, 1024 frames)
    rec = reconstruct_multimodal(mm, {"audio": x}, {"audio": 0.2}, seed=0)

The model, written here from the paper and the checkpoint's key layout: a ViT encoder over the log-mel "image"
(1024 frames × 128 mel bins cut into 16 × 16 patches, tokens time-major: token ``t * 8 + f``) sees only the visible
patches; a decoder fills in every patch.  Two decoders exist in their code (``decoder_mode``):

* ``"global"`` (0): a plain ViT decoder over [CLS] + every patch (the image MAE's);
* ``"swin"`` (1): 16 local blocks over the (64 × 8) patch grid — scaled cosine attention inside 4 × 4 windows with a
  log-spaced continuous position bias (a small MLP), post-norm, every second block shifted by 2 patches in time.
  The published AS-2M checkpoint uses this one (``submit_pretrain_audioset2M.sh``: ``--decoder_mode 1``).

What is inferred from the checkpoint's shapes: widths, depths, patch size, number of patches, the decoder kind, the
Swin decoder's heads (``tau``).  What is not in the weights and is taken from the published configuration: 128 mel
bins (so frames = patches / 8 × 16), the encoder's heads (6 / 12 / 16 / 16 for widths 384 / 768 / 1024 / 1280;
other widths: 64-dim heads, or 8-dim heads below 64 — our test models), the global decoder's 16 heads, 4 × 4
windows with a (2, 0) shift, LayerNorm eps 1e-6, and ``norm_pix_loss=True`` (their pretraining flag: predictions
are per-patch-normalised and are shown here with each patch's true mean and variance, as MAE's figures do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import HashedWeights
from .checkpoint_file import CheckpointFormat, strict_load
from .hub import ModelLoadError
from ..audio import AUDIOSET_FBANK_MEAN, AUDIOSET_FBANK_STD
from ..modalities import Modality

#: Encoder heads of the published widths (models_mae.py: ViT-S/B/L/H).
PUBLISHED_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16}
#: The published decoders' heads (``decoder_num_heads=16``; the Swin decoder hard-codes 16).
DECODER_HEADS = 16
N_MELS = 128
LN_EPS = 1e-6


@dataclass(frozen=True)
class AudioMAEConfig:
    """Geometry of an Audio-MAE.

    Attributes:
        frames, mels: spectrogram size (time × frequency); patch: square patch side.
        width, depth, heads: encoder; decoder: ``"global"`` or ``"swin"``; decoder_width, decoder_depth, decoder_heads.
        window, shift: the Swin decoder's window and the shift of its odd blocks, in patches (time, frequency).
        meta_hidden: hidden width of the Swin position-bias MLP; mlp_ratio: MLP width / width.
    """

    frames: int = 1024
    mels: int = N_MELS
    patch: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    decoder: str = "swin"
    decoder_width: int = 512
    decoder_depth: int = 16
    decoder_heads: int = 16
    window: tuple[int, int] = (4, 4)
    shift: tuple[int, int] = (2, 0)
    meta_hidden: int = 384
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> tuple[int, int]:
        """Patches along (time, frequency), e.g. ``(64, 8)``."""
        return self.frames // self.patch, self.mels // self.patch

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


# ---------------------------------------------------------------------------------------------- layers
def sincos_pos_embed(dim: int, rows: int, cols: int) -> torch.Tensor:
    """``(1 + rows * cols, dim)`` fixed 2-D sine-cosine position embedding with a zero row for [CLS] (MAE's).

    Half the channels encode the column, half the row (each half: sines then cosines of ``pos / 10000^(2i/d)``).
    Audio-MAE builds it on a (frequency patches, time patches) = (8, 64) grid while its tokens run time-major; the
    checkpoint stores the result, which is what is used when one is loaded.
    """
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    c, r = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    emb = np.concatenate([one_d(dim // 2, c), one_d(dim // 2, r)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), emb], axis=0)).float()


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None, act=nn.GELU):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act(), nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Attention(nn.Module):
    """Multi-head self-attention (scaled dot product)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x, keep: list | None = None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if keep is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            a = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
            keep.append(a)
            out = a @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    """Pre-norm transformer block (ViT)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=LN_EPS), _Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=LN_EPS), _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, keep=None):
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class _WindowAttention(nn.Module):
    """Scaled cosine attention inside a window, plus a position bias that an MLP computes from log-spaced relative
    offsets (Swin Transformer V2, as in Audio-MAE's decoder)."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int], meta_hidden: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.meta_mlp = _Mlp(2, meta_hidden, heads, act=nn.ReLU)
        self.tau = nn.Parameter(torch.ones(heads))
        ii, jj = torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
        pos = torch.stack([ii.flatten(), jj.flatten()])                     # (2, A)
        rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0).reshape(-1, 2).float()
        self.register_buffer("rel_log", torch.sign(rel) * torch.log1p(rel.abs()), persistent=False)

    def forward(self, x, mask=None, keep=None):
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        cos = (q @ k.transpose(-2, -1)) / (q.norm(dim=-1, keepdim=True) @ k.norm(dim=-1, keepdim=True).transpose(-2, -1)).clamp(min=1e-6)
        a = cos / self.tau.clamp(min=0.01).view(1, -1, 1, 1)
        a = a + self.meta_mlp(self.rel_log.to(x.dtype)).transpose(0, 1).reshape(1, self.heads, n, n)
        if mask is not None:
            nw = mask.shape[0]
            a = (a.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        a = a.softmax(-1)
        if keep is not None:
            keep.append(a)
        return self.proj((a @ v).transpose(1, 2).reshape(bw, n, c))


def _windows(x: torch.Tensor, w: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B · windows, w0 · w1, C)``, windows row-major."""
    b, h, ww, c = x.shape
    return x.view(b, h // w[0], w[0], ww // w[1], w[1], c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w[0] * w[1], c)


def _unwindows(x: torch.Tensor, w: tuple[int, int], h: int, ww: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w[0]) * (ww // w[1]))
    return x.view(b, h // w[0], ww // w[1], w[0], w[1], -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, ww, -1)


class _SwinBlock(nn.Module):
    """Post-norm local block over a (time, frequency) patch grid; shifted windows when ``shift`` is non-zero."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                 mlp_ratio: float, meta_hidden: int):
        super().__init__()
        self.grid = grid
        self.window = tuple(min(g, w) for g, w in zip(grid, window))        # a window never exceeds the grid
        self.shift = tuple(0 if g <= w else s for g, w, s in zip(grid, self.window, shift))
        self.attn = _WindowAttention(dim, heads, self.window, meta_hidden)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", self._mask(), persistent=False)

    def _mask(self):
        """``(windows, A, A)``: -100 between positions that the cyclic shift brought together from different regions."""
        if not any(self.shift):
            return None
        region = torch.zeros(self.grid, dtype=torch.long)
        for axis, (g, w, s) in enumerate(zip(self.grid, self.window, self.shift)):
            if s:
                idx = torch.arange(g)
                part = (idx >= g - w).long() + (idx >= g - s).long()       # 0 | 1 (last window, before the wrap) | 2
                region = region * 3 + (part[:, None] if axis == 0 else part[None, :])
            else:
                region = region * 3
        r = _windows(region[None, :, :, None].float(), self.window)[..., 0]  # (windows, A)
        return torch.where(r[:, None, :] != r[:, :, None], -100.0, 0.0)

    def forward(self, x, keep=None):
        b, n, c = x.shape
        h, w = self.grid
        y = x.view(b, h, w, c)
        if any(self.shift):
            y = torch.roll(y, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        mask = None if self.attn_mask is None else self.attn_mask.to(x.dtype)
        y = _unwindows(self.attn(_windows(y, self.window), mask, keep), self.window, h, w)
        if any(self.shift):
            y = torch.roll(y, shifts=self.shift, dims=(1, 2))
        x = x + self.norm1(y.reshape(b, n, c))
        return x + self.norm2(self.mlp(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class AudioMAE(nn.Module):
    """Audio-MAE in the authors' key layout (``patch_embed.proj``, ``blocks.N``, ``decoder_blocks.N`` …).

    Input: ``(B, 1, frames, mels)`` normalised fbank; tokens are time-major (``t * grid[1] + f``).
    """

    def __init__(self, cfg: AudioMAEConfig):
        super().__init__()
        self.cfg = cfg
        d, dd, n = cfg.width, cfg.decoder_width, cfg.num_patches
        self.patch_embed = _PatchEmbed(cfg.patch, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(sincos_pos_embed(d, cfg.grid[1], cfg.grid[0])[None], requires_grad=False)
        self.blocks = nn.ModuleList(_Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(dd, cfg.grid[1], cfg.grid[0])[None], requires_grad=False)
        if cfg.decoder == "swin":
            self.decoder_blocks = nn.ModuleList(
                _SwinBlock(dd, cfg.decoder_heads, cfg.grid, cfg.window, cfg.shift if i % 2 else (0, 0), cfg.mlp_ratio,
                           cfg.meta_hidden) for i in range(cfg.decoder_depth))
        elif cfg.decoder == "global":
            self.decoder_blocks = nn.ModuleList(_Block(dd, cfg.decoder_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
        else:
            raise ValueError(f"Unknown Audio-MAE decoder {cfg.decoder!r}: 'global' or 'swin'.")
        self.decoder_norm = nn.LayerNorm(dd, eps=LN_EPS)
        self.decoder_pred = nn.Linear(dd, cfg.patch ** 2)

    def encode(self, x: torch.Tensor, keep: torch.Tensor, attention: list | None = None) -> torch.Tensor:
        """``x (B, 1, frames, mels)``, ``keep (B, K)`` long token indices → ``(B, 1 + K, width)`` ([CLS] first)."""
        t = self.patch_embed(x) + self.pos_embed[:, 1:]
        t = torch.gather(t, 1, keep[..., None].expand(-1, -1, t.shape[-1]))
        t = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(len(t), -1, -1), t], dim=1)
        for blk in self.blocks:
            t = blk(t, attention)
        return self.norm(t)

    def decode(self, latent: torch.Tensor, keep: torch.Tensor, attention: list | None = None) -> torch.Tensor:
        """``latent (B, 1 + K, width)`` of the tokens ``keep (B, K)`` → ``(B, N, patch²)`` prediction of every patch."""
        y = self.decoder_embed(latent)
        b, dd = len(y), y.shape[-1]
        full = self.mask_token.expand(b, self.cfg.num_patches, dd).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, dd), y[:, 1:])
        y = torch.cat([y[:, :1], full], dim=1) + self.decoder_pos_embed
        if self.cfg.decoder == "swin":
            y = y[:, 1:]
        for blk in self.decoder_blocks:
            y = blk(y, attention)
        y = self.decoder_pred(self.decoder_norm(y))
        return y if self.cfg.decoder == "swin" else y[:, 1:]

    def forward(self, x: torch.Tensor, keep: torch.Tensor, *, attention: bool = False):
        """Returns ``(pred (B, N, patch²), latent (B, 1 + K, width), {"encoder": [...], "decoder": [...]})``; the
        attention lists hold each block's ``(B, heads, 1 + K, 1 + K)`` (encoder) and ``(B, heads, 1 + N, 1 + N)`` /
        ``(B · windows, heads, A, A)`` (decoder) maps when ``attention``, else they are empty."""
        enc, dec = ([], []) if attention else (None, None)
        latent = self.encode(x, keep, enc)
        pred = self.decode(latent, keep, dec)
        return pred, latent, {"encoder": enc or [], "decoder": dec or []}


# ---------------------------------------------------------------------------------------------- checkpoints
def _layer_count(state: dict, prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()}
    return max(ids) + 1 if ids else 0


def encoder_heads(width: int) -> int:
    """Heads of an encoder of this width: the published ones, else 64-dim heads (8-dim below 64: test models)."""
    if width in PUBLISHED_HEADS:
        return PUBLISHED_HEADS[width]
    return max(1, width // 64) if width >= 64 else max(1, width // 8)


def config_from_state(state: dict[str, torch.Tensor]) -> AudioMAEConfig:
    """The geometry of a pretraining checkpoint, from its shapes (see the module docstring for what is assumed)."""
    w = state["patch_embed.proj.weight"]                                   # (width, 1, p, p)
    width, patch = int(w.shape[0]), int(w.shape[-1])
    n = int(state["pos_embed"].shape[1]) - 1
    per_frame = N_MELS // patch
    if N_MELS % patch or n % per_frame:
        raise ModelLoadError(f"{n} patches of {patch} x {patch} do not tile a {N_MELS}-mel-bin spectrogram "
                             "(Audio-MAE's AudioSet input); this layout is not supported.")
    dd = int(state["decoder_embed.weight"].shape[0])
    swin = "decoder_blocks.0.attn.tau" in state
    return AudioMAEConfig(
        frames=n // per_frame * patch, mels=N_MELS, patch=patch, width=width, depth=_layer_count(state, "blocks."),
        heads=encoder_heads(width), decoder="swin" if swin else "global", decoder_width=dd,
        decoder_depth=_layer_count(state, "decoder_blocks."),
        decoder_heads=int(state["decoder_blocks.0.attn.tau"].shape[0]) if swin else DECODER_HEADS,
        meta_hidden=int(state["decoder_blocks.0.attn.meta_mlp.fc1.weight"].shape[0]) if swin else 384,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / width)


def _is_audio_vit(state) -> bool:
    w = state.get("patch_embed.proj.weight")
    return (w is not None and w.ndim == 4 and w.shape[1] == 1 and w.shape[2] == w.shape[3]
            and "pos_embed" in state and "blocks.0.attn.qkv.weight" in state)


def claims_pretraining(state: dict) -> bool:
    """An Audio-MAE pretraining checkpoint: a one-channel ViT encoder with an MAE decoder."""
    return _is_audio_vit(state) and "decoder_pred.weight" in state and "mask_token" in state


def claims_finetuned(state: dict) -> bool:
    """An Audio-MAE fine-tuned classifier (one-channel ViT, ``head`` / ``fc_norm``, no decoder)."""
    return _is_audio_vit(state) and "decoder_pred.weight" not in state and "head.weight" in state


def build_model(state: dict[str, torch.Tensor], *, what: str = "the checkpoint") -> AudioMAE:
    """An :class:`AudioMAE` built from ``state``'s shapes and strictly loaded with it (fp32, CPU)."""
    try:
        cfg = config_from_state(state)
    except KeyError as e:
        raise ModelLoadError(f"{what} lacks {e.args[0]!r}, which every Audio-MAE pretraining checkpoint has.") from None
    return strict_load(AudioMAE(cfg), state, what=what)


def _build(state, *, path, model_id, device, dtype):
    model = build_model(state, what=f"{Path(path).name} (Audio-MAE)")
    return AudioMAEAdapter(model, model_id=model_id, source=str(path), device=device, dtype=dtype)


def _refuse_finetuned(state, *, path, model_id, device, dtype):
    raise ModelLoadError(
        f"{Path(path).name} is an Audio-MAE fine-tuned classifier (keys {', '.join(k for k in ('head.weight', 'fc_norm.weight') if k in state)}; "
        "no decoder_* keys): it has no decoder, so it cannot reconstruct masked audio. Use the pretraining checkpoint "
        "(pretrained.pth, 'ViT-B, AS-2M pretrained' in facebookresearch/AudioMAE's README).")


SOURCE = ("facebookresearch/AudioMAE README, 'Checkpoints: ViT-B, AS-2M pretrained' (pretrained.pth, Google Drive; "
          "CC-BY 4.0). Training checkpoints pickle argparse.Namespace args: re-save their 'model' dict.")
FORMATS = (
    CheckpointFormat(
        tag="audiomae", kind="multimodal", title="Audio-MAE (facebookresearch/AudioMAE)", claims=claims_pretraining,
        build=_build, source=SOURCE,
        views="multimodal app / reconstruct_multimodal: one spectrogram modality (128 mel bins x 1024 frames of Kaldi "
              "fbank, 10.24 s), visible budget with random / time / frequency / time-frequency masking, original | seen "
              "| reconstruction | error per hidden patch; encoder and decoder attention maps from AudioMAEAdapter.run",
        unsupported="the fine-tuned AudioSet classifier (no decoder); use_custom_patch (overlapping 10-stride patches, "
                    "never published); spectrograms other than 128 mel bins",
        extra={"front_end": "kaldi-fbank"}),
    CheckpointFormat(
        tag="audiomae-finetuned", kind="multimodal", title="Audio-MAE fine-tuned classifier (facebookresearch/AudioMAE)",
        claims=claims_finetuned, build=_refuse_finetuned, source=SOURCE, views="",
        unsupported="no decoder: nothing to reconstruct"),
)


# ---------------------------------------------------------------------------------------------- adapter
def to_token_order(grid: tuple[int, int], ours: np.ndarray) -> np.ndarray:
    """``(..., F·T)`` per-patch values in our spectrogram order (frequency-major, as :class:`Modality` tiles
    ``(mels, frames)``) → ``(..., T·F)`` in Audio-MAE's token order (time-major)."""
    t, f = grid
    return np.swapaxes(np.asarray(ours).reshape(*np.shape(ours)[:-1], f, t), -1, -2).reshape(*np.shape(ours)[:-1], t * f)


class AudioMAEAdapter(HashedWeights):
    """A loaded Audio-MAE, shaped like :class:`explorer.models.multimae.MultiMAEAdapter`: one ``"audio"`` spectrogram
    modality ``(mels, frames)`` in log mel power (Kaldi fbank), normalised with AudioSet's statistics as the authors do.

    Attributes:
        model: :class:`AudioMAE`; modalities; model_id; source (the checkpoint's path); task ``"audio"``;
        front_end ``"kaldi-fbank"`` (what :meth:`audio_input` computes); norm_pix: predictions are per-patch
        normalised (their pretraining flag; shown with each patch's true mean and variance).
    """

    family = "multimodal"
    task = "audio"
    front_end = "kaldi-fbank"
    upload_labels = ("Sound", "(not used)")
    upload_accept = (".wav,.flac,.ogg,.oga,.mp3,.aif,.aiff,audio/*", ".wav,.flac,.ogg,.oga,.mp3,.aif,.aiff,audio/*")

    def __init__(self, model: AudioMAE, *, model_id: str, source: str | None = None, device=torch.device("cpu"),
                 dtype=torch.float32, norm_pix: bool = True):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model_id, self.source, self.device, self.dtype = model_id, source or model_id, device, dtype
        self.norm_pix = norm_pix
        c = model.cfg
        self.modalities = [Modality("audio", "spectrogram", (c.mels, c.frames), (c.patch, c.patch),
                                    mean=(AUDIOSET_FBANK_MEAN,), std=(2 * AUDIOSET_FBANK_STD,), unit="log mel power")]
        self._sha = None

    @property
    def info(self):
        """What export sidecars record: the checkpoint's path (so that a sidecar can reload it)."""
        from .base import ModelInfo

        c = self.model.cfg
        return ModelInfo(self.source, self.family, "audiomae", str(self.device), str(self.dtype).replace("torch.", ""),
                         (c.mels, c.frames), c.patch, self.norm_pix, self.weights_sha256)

    def spec(self, name: str) -> Modality:
        for s in self.modalities:
            if s.name == name:
                return s
        raise KeyError(f"This model has no {name!r} modality; it has: audio.")

    @property
    def prediction_notes(self) -> tuple[str, ...]:
        """How predictions are shown (``norm_pix``)."""
        if not self.norm_pix:
            return ()
        return ("Audio-MAE predicts each hidden patch normalised by its own mean and variance (norm_pix_loss): shown "
                "with the true patch's statistics, as the paper's figures do",)

    @property
    def notes(self) -> tuple[str, ...]:
        """What is assumed, not read from the weights (the apps show these): see the module docstring."""
        c = self.model.cfg
        return self.prediction_notes + (
            f"Audio-MAE {c.decoder} decoder; {c.mels} mel bins (AudioSet Kaldi fbank, normalised with AudioSet's mean "
            f"and 2 x std) and {c.heads} encoder heads are the published values, not stored in the checkpoint",)

    # ------------------------------------------------------------------ running
    def _image(self, x: np.ndarray) -> torch.Tensor:
        """``(B, mels, frames)`` log-mel → ``(B, 1, frames, mels)`` normalised model input (NaN → 0)."""
        s = self.modalities[0]
        t = s.normalise(torch.as_tensor(np.asarray(x, np.float32)))
        return torch.nan_to_num(t, nan=0.0).transpose(1, 2)[:, None]

    def _patches(self, img: torch.Tensor) -> torch.Tensor:
        """``(B, 1, frames, mels)`` → ``(B, N, p²)`` in token order (each patch row-major: time, then frequency)."""
        p, (t, f) = self.model.cfg.patch, self.model.cfg.grid
        return img.reshape(len(img), t, p, f, p).permute(0, 1, 3, 2, 4).reshape(len(img), t * f, p * p)

    def _unpatch(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_patches`, returned as ``(B, mels, frames)``."""
        p, (t, f) = self.model.cfg.patch, self.model.cfg.grid
        x = tokens.reshape(len(tokens), t, f, p, p).permute(0, 1, 3, 2, 4).reshape(len(tokens), t * p, f * p)
        return x.transpose(1, 2)

    @torch.no_grad()
    def run(self, spectrogram: np.ndarray, visible: np.ndarray, *, attention: bool = False) -> dict:
        """The model on one batch, in its own terms.

        Args:
            spectrogram: ``(B, mels, frames)`` log mel power (NaN = unknown).
            visible: ``(B, N)`` bool in our patch order (:class:`Modality`: frequency-major); the same count per sample.
        Returns:
            ``{"pred": (B, N, p²) raw decoder output in Audio-MAE's token order, "keep": (B, K) token indices,
            "latent": (B, 1 + K, width), "encoder_attention" / "decoder_attention": lists of arrays (when asked)}``.
        """
        vis = to_token_order(self.model.cfg.grid, np.asarray(visible, bool))
        counts = vis.sum(1)
        if len(set(counts.tolist())) != 1:
            raise ValueError(f"Every sample of a batch needs the same number of visible patches, got {sorted(set(counts.tolist()))}.")
        keep = torch.as_tensor(np.stack([np.flatnonzero(v) for v in vis]), dtype=torch.long, device=self.device)
        img = self._image(spectrogram).to(self.device, self.dtype)
        pred, latent, att = self.model(img, keep, attention=attention)
        out = {"pred": pred.float().cpu().numpy(), "keep": keep.cpu().numpy(), "latent": latent.float().cpu().numpy()}
        if attention:
            out["encoder_attention"] = [a.float().cpu().numpy() for a in att["encoder"]]
            out["decoder_attention"] = [a.float().cpu().numpy() for a in att["decoder"]]
        return out

    def predict(self, arrays: dict[str, np.ndarray], visible: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every patch of the spectrogram from the visible ones (as :meth:`MultiMAEAdapter.predict`).

        Args:
            arrays: ``{"audio": (B, mels, frames)}`` log mel power; visible: ``{"audio": (B, N)}`` bool.
        Returns:
            ``{"audio": (B, mels, frames)}`` float32 log mel power.
        """
        s = self.modalities[0]
        x = arrays.get("audio")
        vis = np.asarray(visible["audio"], bool)
        if x is None:
            x = np.full((len(vis), *s.shape), np.nan, np.float32)
        x = np.asarray(x, np.float32)
        outs = []
        for i in range(len(vis)):  # one at a time: the visible counts may differ
            pred = torch.from_numpy(self.run(x[i:i + 1], vis[i:i + 1])["pred"])
            if self.norm_pix:
                target = self._patches(torch.as_tensor(s.normalise(torch.from_numpy(x[i:i + 1]))).transpose(1, 2)[:, None])
                pred = pred * _patch_std(target) + _patch_mean(target)
            outs.append(s.denormalise(self._unpatch(pred)).numpy())
        return {"audio": np.concatenate(outs).astype(np.float32)}

    # ------------------------------------------------------------------ inputs (the app and reproduce ask the adapter)
    def audio_input(self, samples: np.ndarray, rate: int = 16_000) -> tuple[np.ndarray, list[str]]:
        """Their front end: ``(mels, frames)`` Kaldi fbank of mono ``samples`` at ``rate`` Hz (resampled to 16 kHz
        first; see :func:`explorer.audio.audiomae_spectrogram`), and notes."""
        from fractions import Fraction

        from ..audio import TARGET_RATE, audiomae_spectrogram

        notes, x = [], np.asarray(samples, np.float32).ravel()
        if int(rate) != TARGET_RATE:
            from scipy.signal import resample_poly

            f = Fraction(TARGET_RATE, int(rate)).limit_denominator(1000)
            x = resample_poly(x, f.numerator, f.denominator).astype(np.float32)
            notes.append(f"resampled from {rate} Hz to {TARGET_RATE} Hz (Audio-MAE reads 16 kHz)")
        spec, more = audiomae_spectrogram(x, TARGET_RATE, frames=self.model.cfg.frames, num_mel_bins=self.model.cfg.mels)
        return spec, notes + more

    def sample_names(self) -> list[tuple[str, str]]:
        """(label, name) of the generated sounds offered."""
        return [(f"generated sound {s} (ringing shapes, {self.model.cfg.frames / 100:.2f} s)", f"sound:{s}")
                for s in (10_000_002, 10_000_005, 10_000_009)]

    def sample_inputs(self, name: str) -> tuple[dict, list[str]]:
        """``{"audio": (mels, frames)}`` of a named sample (``"sound:<seed>"``) and notes."""
        from ..data.av_clips import make_av_clip

        kind, _, seed = str(name).partition(":")
        if kind != "sound" or not seed.isdecimal():
            raise ValueError(f"Unknown sample {name!r} for an Audio-MAE; e.g. {self.sample_names()[0][1]}.")
        seconds = math.ceil(self.model.cfg.frames / 100 + 0.015)
        audio = np.concatenate([make_av_clip(int(seed) * 16 + k).audio for k in range(seconds)])
        x, notes = self.audio_input(audio, 16_000)
        return {"audio": x}, [f"generated sound {seed}: {seconds} one-second clips of ringing shapes, not real audio"] + notes

    def prepare_files(self, first=None, second=None, **_ignored) -> "AudioInputs":
        """The input made from a WAV file given in either box (:func:`explorer.audio.load_audio`, then
        :meth:`audio_input`): ``.arrays`` ``{"audio": (mels, frames)}``, ``.notes``, ``.key`` ``"upload:<sha256>"``.

        Raises:
            ValueError: no file; AudioLoadError: not a usable WAV.
        """
        from ..audio import load_audio

        src = first if first is not None else second
        if src is None:
            raise ValueError("Upload a sound (WAV) first.")
        a = load_audio(src)
        x, notes = self.audio_input(a.samples, a.rate)
        return AudioInputs({"audio": x}, list(a.notes) + notes, f"upload:{a.sha256}")


@dataclass(frozen=True)
class AudioInputs:
    """An Audio-MAE input made from a file (the fields of :class:`explorer.multimodal.inputs.PreparedInputs`)."""

    arrays: dict
    notes: list
    key: str


def _patch_mean(t: torch.Tensor) -> torch.Tensor:
    m = torch.nanmean(t, dim=-1, keepdim=True)
    return torch.nan_to_num(m, nan=0.0)


def _patch_std(t: torch.Tensor) -> torch.Tensor:
    """``sqrt(var + 1e-6)`` per patch with the unbiased variance (``torch.var``, as their ``forward_loss``); 1 where
    the patch is unknown."""
    n = torch.isfinite(t).sum(-1, keepdim=True)
    d = torch.where(torch.isfinite(t), t - _patch_mean(t), torch.zeros_like(t))
    var = (d ** 2).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
    return torch.where(n > 1, (var + 1e-6).sqrt(), torch.ones_like(var))

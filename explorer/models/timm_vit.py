"""ViT checkpoints in timm's key layout: timm's MAE encoders and the MAE authors' own files.

Two formats share timm's ``VisionTransformer`` names (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head``):

* ``"timm-vit"``: an encoder (``vit_base_patch16_224.mae`` and friends: the MAE encoder with no decoder; or a
  timm ViT classifier with a ``head``).  Opens in the attention views; the reconstruction views refuse it with the
  reason (no decoder).
* ``"mae-authors"``: the MAE authors' full pretraining model (facebookresearch/mae ``models_mae.py``: the encoder
  plus ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``,
  ``decoder_pred``), e.g. their demo's ``mae_visualize_vit_large.pth``.  Opens everywhere a ViTMAE does.

Both are converted, tensor by tensor, into the transformers class with the same computation (``ViTModel`` inside
``ViTForImageClassification``, or ``ViTMAEForPreTraining``), so every view, method and sidecar of those families
works unchanged.  The fused ``qkv`` projection is split into query, key and value.  tests/test_timm_vit.py checks
the converted models against timm's and the MAE authors' own forwards on small random checkpoints.

What the weights do not say, and what is assumed:
* heads: 192 → 3, 384 → 6, 768 → 12, 1024 → 16, 1280 → 16 (the published ViT-Ti/S/B/L/H), otherwise width / 64;
  the decoder: width / 32 (512 → 16, the authors' decoder);
* the decoder predicts plain pixels (``norm_pix_loss=False``): true of the authors' visualisation checkpoints;
  their encoder-only files have no decoder;
* LayerNorm ε = 1e-6 and exact GELU, as in timm and the MAE code; ImageNet mean / std.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from .checkpoint_file import CheckpointFormat, strict_load
from .hub import IMAGENET_MEAN, IMAGENET_STD, ModelLoadError
from .mae import MAEAdapter
from .vit import ViTAdapter

#: Published ViT widths → heads (ViT-Ti, S, B, L, H).
ENCODER_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}

_ENCODER_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")
_DECODER_KEYS = ("decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_pred.weight", "decoder_norm.weight")


def _count(state: dict, prefix: str) -> int:
    """How many numbered blocks ``<prefix>N.`` the state dict has."""
    found = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def encoder_heads(width: int) -> int:
    """Heads of a ViT encoder of this width (the published models'; else width / 64)."""
    return ENCODER_HEADS.get(width, max(1, width // 64))


def decoder_heads(width: int) -> int:
    """Heads of an MAE decoder of this width (the authors' 512-wide decoder has 16)."""
    return max(1, width // 32)


# ---------------------------------------------------------------------------------------------- key conversion
def _block_names(own: set[str], prefix: str) -> dict[str, str]:
    """timm block parameter → the transformers name, for this transformers version (``prefix`` = ``vit.layers.0.``)."""
    if f"{prefix}attention.q_proj.weight" in own:  # transformers ≥ 5.x naming
        attn = {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj", "o": "attention.o_proj"}
        mlp = {"fc1": "mlp.fc1", "fc2": "mlp.fc2"}
    else:  # the older naming
        attn = {"q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
                "o": "attention.output.dense"}
        mlp = {"fc1": "intermediate.dense", "fc2": "output.dense"}
    return {"norm1": "layernorm_before", "norm2": "layernorm_after", **attn, **mlp}


def _layer_prefix(own: set[str], stack: str) -> str:
    """``vit.layers.`` or ``vit.encoder.layer.`` (and the decoder's), whichever the built model has."""
    for cand in (f"{stack}.layers.", f"{stack}.encoder.layer.", f"{stack}.decoder_layers.", f"{stack}.decoder_layer."):
        if any(k.startswith(cand) for k in own):
            return cand
    raise ModelLoadError(f"This transformers version names the {stack} blocks in a way the timm converter does not know.")


def _convert_blocks(state: dict, src: str, dst: str, n: int, own: set[str], out: dict) -> None:
    """``src{i}.*`` (timm) → ``dst{i}.*`` (transformers), splitting ``attn.qkv`` into q, k, v."""
    names = _block_names(own, f"{dst}0.")
    for i in range(n):
        s, d = f"{src}{i}.", f"{dst}{i}."
        for kind in ("weight", "bias"):
            qkv = state.get(f"{s}attn.qkv.{kind}")
            if qkv is not None:
                q, k, v = qkv.chunk(3, dim=0)
                out[f"{d}{names['q']}.{kind}"], out[f"{d}{names['k']}.{kind}"], out[f"{d}{names['v']}.{kind}"] = q, k, v
            for a, b in (("norm1", "norm1"), ("norm2", "norm2"), ("attn.proj", "o"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
                t = state.get(f"{s}{a}.{kind}")
                if t is not None:
                    out[f"{d}{names[b]}.{kind}"] = t


def _used(state: dict, prefixes: tuple[str, ...], exact: tuple[str, ...]) -> list[str]:
    """Keys of ``state`` the conversion does not read (reported as unexpected)."""
    return [k for k in state if not k.startswith(prefixes) and k not in exact]


def _timm_block_keys(prefix: str, n: int) -> tuple[str, ...]:
    parts = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")
    return tuple(f"{prefix}{i}.{p}" for i in range(n) for p in parts)


def _geometry(state: dict, what: str) -> dict:
    """Width, patch, grid, depth, MLP width of the encoder in ``state`` (timm layout)."""
    w = state["patch_embed.proj.weight"]  # (D, C, p, p)
    width, channels, p = int(w.shape[0]), int(w.shape[1]), int(w.shape[-1])
    if w.shape[-2] != w.shape[-1]:
        raise ModelLoadError(f"{what}: non-square patches {tuple(w.shape[-2:])} are not supported.")
    tokens = int(state["pos_embed"].shape[1])
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1:
        raise ModelLoadError(f"{what}: pos_embed has {tokens} positions, not a CLS token plus a square grid "
                             "(timm models without a class position or with register tokens are not supported).")
    return {"width": width, "channels": channels, "patch": p, "image_size": side * p,
            "depth": _count(state, "blocks."), "mlp": int(state["blocks.0.mlp.fc1.weight"].shape[0]),
            "qkv_bias": "blocks.0.attn.qkv.bias" in state}


def _refuse_variants(state: dict, what: str) -> None:
    """timm ViT variants whose computation transformers' ViT does not have: say so by key."""
    variants = {"fc_norm.weight": "global average pooling with fc_norm (a fine-tuned head); the explorer reads the "
                                  "token-pooled encoder (the pretraining checkpoint)",
                "reg_token": "register tokens", "blocks.0.ls1.gamma": "layer scale (ls1 / ls2)",
                "blocks.0.attn.q_norm.weight": "query / key normalisation", "attn_pool.latent": "attention pooling",
                "norm_pre.weight": "a pre-norm before the blocks"}
    found = [f"{k} ({why})" for k, why in variants.items() if k in state]
    if found:
        raise ModelLoadError(f"{what} is a timm ViT variant transformers' ViT cannot run: it has {'; '.join(found)}.")


# ---------------------------------------------------------------------------------------------- timm encoders
def _claims_encoder(state: dict) -> bool:
    return all(k in state for k in _ENCODER_KEYS) and not any(k in state for k in _DECODER_KEYS)


def convert_encoder(state: dict, what: str = "the checkpoint"):
    """A timm ViT encoder / classifier state dict → ``(ViTConfig, transformers state dict)`` (no model is built).

    Raises:
        ModelLoadError: a timm variant transformers' ViT cannot run, or keys a timm ViT does not have.
    """
    from transformers import ViTConfig

    _refuse_variants(state, what)
    g = _geometry(state, what)
    classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    cfg = ViTConfig(hidden_size=g["width"], num_hidden_layers=g["depth"], num_attention_heads=encoder_heads(g["width"]),
                    intermediate_size=g["mlp"], image_size=g["image_size"], patch_size=g["patch"],
                    num_channels=g["channels"], qkv_bias=g["qkv_bias"], layer_norm_eps=1e-6, hidden_act="gelu",
                    num_labels=classes, architectures=["ViTForImageClassification"])
    own = _names("ViTForImageClassification", cfg)
    out = {"vit.embeddings.cls_token": state["cls_token"], "vit.embeddings.position_embeddings": state["pos_embed"],
           "vit.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "vit.embeddings.patch_embeddings.projection.bias": state.get("patch_embed.proj.bias"),
           "vit.layernorm.weight": state.get("norm.weight"), "vit.layernorm.bias": state.get("norm.bias")}
    if classes:
        out["classifier.weight"], out["classifier.bias"] = state["head.weight"], state.get("head.bias")
    _convert_blocks(state, "blocks.", _layer_prefix(own, "vit"), g["depth"], own, out)
    extra = _used(state, (), ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
                              "norm.bias", "head.weight", "head.bias") + _timm_block_keys("blocks.", g["depth"]))
    if extra:
        raise ModelLoadError(f"{what} has keys a timm ViT encoder does not: {', '.join(extra[:6])}"
                             f"{f' … ({len(extra)} in all)' if len(extra) > 6 else ''}.")
    return cfg, {k: v for k, v in out.items() if v is not None}


def _names(class_name: str, cfg) -> set[str]:
    """The state-dict names of ``transformers.<class_name>(cfg)`` (built on the meta device: no memory, no init)."""
    import transformers

    with torch.device("meta"):
        return set(getattr(transformers, class_name)(cfg).state_dict())


def _instantiate(class_name: str, cfg, converted: dict, what: str, device, dtype) -> torch.nn.Module:
    """``transformers.<class_name>(cfg)`` filled with ``converted`` (strictly), on ``device`` in ``dtype``."""
    import transformers

    with torch.device("meta"):
        model = getattr(transformers, class_name)(cfg)
    model = model.to_empty(device="cpu")
    _no_loose_buffers(model, what)
    strict_load(model, converted, what=what)
    return model.to(device=device, dtype=dtype).eval()


def _build_encoder(state: dict, *, path: Path, model_id: str, device, dtype) -> "TimmViTAdapter":
    what = f"{Path(path).name} (a timm ViT)"
    cfg, converted = convert_encoder(state, what)
    model = _instantiate("ViTForImageClassification", cfg, converted, what, device, dtype)
    return TimmViTAdapter(model, model_id=model_id, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, device=device,
                          dtype=dtype)


def _no_loose_buffers(model: torch.nn.Module, what: str) -> None:
    """A meta-device build leaves buffers uninitialised; these classes have none (all state is loaded): check it."""
    loose = [n for n, _ in model.named_buffers() if n not in model.state_dict()]
    if loose:
        raise ModelLoadError(f"{what}: this transformers version adds buffers the converter does not fill: {', '.join(loose)}.")


class TimmViTAdapter(ViTAdapter):
    """A timm-layout ViT encoder (or classifier) converted into transformers' ``ViTForImageClassification``.

    Encoders (no ``head`` in the file; timm's ``.mae`` weights) have no classes: attention targets and faithfulness
    use the final (layer-normed) CLS output; classifiers use their logits.
    """

    family = "timm-vit"
    embedding_name = "final CLS output"
    #: why the masked-reconstruction views cannot show it (they say this instead of a generic refusal)
    no_reconstruction = ("it is a ViT encoder in timm's layout with no MAE decoder (timm's .mae weights and the MAE "
                         "authors' mae_pretrain_vit_*.pth keep only the encoder), so there is nothing to paint hidden "
                         "patches back; the authors' demo files mae_visualize_vit_*.pth include the decoder")

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.classifier = int(model.config.num_labels or 0) > 0
        if not self.classifier:
            self.labels = {}

    @property
    def head_modules(self) -> list:
        return [self.model.classifier] if self.classifier else [self.model.vit.layernorm]

    @property
    def attention_notes(self) -> tuple[str, ...]:
        if self.classifier:
            return ()
        return ("timm-layout ViT encoder (no decoder, no classes): targets are its final CLS output.",)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if not self.classifier:
            return super(ViTAdapter, self).logits(x)
        return self.model(pixel_values=x).logits

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The final (layer-normed) CLS output ``(B, D)``."""
        return self.model.vit(pixel_values=x).last_hidden_state[:, 0]


# ---------------------------------------------------------------------------------------------- MAE authors
def _claims_mae(state: dict) -> bool:
    return all(k in state for k in _ENCODER_KEYS + _DECODER_KEYS) and "decoder_blocks.0.attn.qkv.weight" in state


def convert_mae(state: dict, what: str = "the checkpoint"):
    """The MAE authors' pretraining state dict → ``(ViTMAEConfig, transformers state dict)`` (no model is built).

    Raises:
        ModelLoadError: a decoder that does not predict ``p² × C`` values per patch, or keys their model does not have.
    """
    from transformers import ViTMAEConfig

    _refuse_variants(state, what)
    g = _geometry(state, what)
    dw = int(state["decoder_embed.weight"].shape[0])
    dd = _count(state, "decoder_blocks.")
    pred = int(state["decoder_pred.weight"].shape[0])
    if pred != g["patch"] ** 2 * g["channels"]:
        raise ModelLoadError(f"{what}: decoder_pred predicts {pred} values per patch, not {g['patch']}² × {g['channels']}.")
    cfg = ViTMAEConfig(hidden_size=g["width"], num_hidden_layers=g["depth"], num_attention_heads=encoder_heads(g["width"]),
                       intermediate_size=g["mlp"], image_size=g["image_size"], patch_size=g["patch"],
                       num_channels=g["channels"], qkv_bias=g["qkv_bias"], layer_norm_eps=1e-6, hidden_act="gelu",
                       decoder_hidden_size=dw, decoder_num_hidden_layers=dd, decoder_num_attention_heads=decoder_heads(dw),
                       decoder_intermediate_size=int(state["decoder_blocks.0.mlp.fc1.weight"].shape[0]),
                       norm_pix_loss=False, mask_ratio=0.75, architectures=["ViTMAEForPreTraining"])
    own = _names("ViTMAEForPreTraining", cfg)
    out = {"vit.embeddings.cls_token": state["cls_token"], "vit.embeddings.position_embeddings": state["pos_embed"],
           "vit.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "vit.embeddings.patch_embeddings.projection.bias": state.get("patch_embed.proj.bias"),
           "vit.layernorm.weight": state.get("norm.weight"), "vit.layernorm.bias": state.get("norm.bias"),
           "decoder.mask_token": state["mask_token"], "decoder.decoder_pos_embed": state["decoder_pos_embed"]}
    for a in ("decoder_embed", "decoder_norm", "decoder_pred"):
        for kind in ("weight", "bias"):
            out[f"decoder.{a}.{kind}"] = state.get(f"{a}.{kind}")
    _convert_blocks(state, "blocks.", _layer_prefix(own, "vit"), g["depth"], own, out)
    _convert_blocks(state, "decoder_blocks.", _layer_prefix(own, "decoder"), dd, own, out)
    known = ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
             "mask_token", "decoder_pos_embed") + tuple(f"{a}.{k}" for a in ("decoder_embed", "decoder_norm", "decoder_pred")
                                                        for k in ("weight", "bias")) \
        + _timm_block_keys("blocks.", g["depth"]) + _timm_block_keys("decoder_blocks.", dd)
    extra = _used(state, (), known)
    if extra:
        raise ModelLoadError(f"{what} has keys the MAE authors' model does not: {', '.join(extra[:6])}"
                             f"{f' … ({len(extra)} in all)' if len(extra) > 6 else ''}.")
    return cfg, {k: v for k, v in out.items() if v is not None}


def _build_mae(state: dict, *, path: Path, model_id: str, device, dtype) -> MAEAdapter:
    what = f"{Path(path).name} (the MAE authors' pretraining model)"
    cfg, converted = convert_mae(state, what)
    model = _instantiate("ViTMAEForPreTraining", cfg, converted, what, device, dtype)
    return MAEAdapter(model, model_id=model_id, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, device=device,
                      dtype=dtype)


FORMATS = (
    CheckpointFormat(
        "mae-authors", "image", "MAE (facebookresearch/mae, encoder + decoder)", _claims_mae, _build_mae,
        source="the MAE authors' demo checkpoints (mae_visualize_vit_large.pth …) from github.com/facebookresearch/mae",
        views="everything a ViTMAE shows: masked reconstruction under the ratio slider, attention, provenance",
        unsupported="norm_pix_loss decoders are read as plain-pixel decoders (the file does not say which it is)"),
    CheckpointFormat(
        "timm-vit", "image", "timm ViT (e.g. vit_base_patch16_224.mae)", _claims_encoder, _build_encoder,
        source="timm's hub weights (model.safetensors of timm/vit_base_patch16_224.mae …) or the MAE authors' "
               "encoder-only mae_pretrain_vit_*.pth",
        views="attention maps per layer and head, rollout / relevance, attributions, faithfulness",
        unsupported="masked reconstruction (these files have no decoder); fc_norm / register / layer-scale variants"),
)

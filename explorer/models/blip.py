"""Adapter for transformers' ``BlipForImageTextRetrieval`` (e.g. ``Salesforce/blip-itm-base-coco``).

The text encoder reads the caption with cross-attention to the image tokens in every layer; the
image-text matching (ITM) head on its first token gives two logits (no match, match).  The score
is ``logit(match) − logit(no match)`` (the log-odds of a match) from ``use_itm_head=True``.

transformers 5.x computes all BLIP attention by hand (``matmul`` + ``softmax``; BLIP has no SDPA
path and cannot switch), so :class:`~explorer.attention.AttentionCapture` would see none of it.
The adapter rebinds the ``forward`` of the vision ``BlipAttention`` and text
``BlipTextSelfAttention`` modules of *its* model to the same arithmetic through SDPA (the
capture then sees every call, with gradients), and makes ``BlipTextEmbeddings`` add the position
embeddings out of place (captum's layer attribution hands it a leaf tensor that must not be
modified in place).
"""

from __future__ import annotations

import math

import torch

from .fusion_base import CallRole, TextInput, match_answer
from .fusion_hf import HFFusionAdapter, rebind_forward, sdpa


def _vision_attention(self, hidden_states: torch.Tensor, **kwargs):
    """``BlipAttention.forward`` through SDPA: ``(B, N, D)`` → ``((B, N, D), None)``."""
    bsz, n, d = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(bsz, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
    ctx = sdpa(qkv[0], qkv[1], qkv[2], None, dropout=self.dropout.p if self.training else 0.0, scale=self.scale)
    return self.projection(ctx.permute(0, 2, 1, 3).reshape(bsz, n, d)), None


def _text_attention(self, hidden_states: torch.Tensor, attention_mask=None, encoder_hidden_states=None,
                    encoder_attention_mask=None, cache=None, **kwargs):
    """``BlipTextSelfAttention.forward`` through SDPA (self- or cross-attention; generation with a cache keeps the
    original): ``(B, T, D)`` [+ image ``(B, N, Dv)``] → ``((B, T, D), None)``."""
    if cache is not None:
        return self._explorer_original_forward(hidden_states, attention_mask=attention_mask,
                                               encoder_hidden_states=encoder_hidden_states,
                                               encoder_attention_mask=encoder_attention_mask, cache=cache, **kwargs)
    d = self.attention_head_size
    q = self.query(hidden_states).view(*hidden_states.shape[:-1], -1, d).transpose(1, 2)
    cross = encoder_hidden_states is not None
    # As transformers does: a cross-attention call takes its mask from ``encoder_attention_mask`` (which
    # BlipTextAttention does not pass on, so cross-attention is unmasked; ITM's image mask is all ones anyway).
    mask = encoder_attention_mask if cross else attention_mask
    src = encoder_hidden_states if cross else hidden_states
    k = self.key(src).view(*src.shape[:-1], -1, d).transpose(1, 2)
    v = self.value(src).view(*src.shape[:-1], -1, d).transpose(1, 2)
    ctx = sdpa(q, k, v, mask, dropout=self.dropout.p if self.training else 0.0, scale=1.0 / math.sqrt(d))
    return ctx.permute(0, 2, 1, 3).reshape(*hidden_states.shape[:-1], self.all_head_size), None


def _text_embeddings(self, input_ids=None, position_ids=None, inputs_embeds=None, cache_length: int = 0):
    """``BlipTextEmbeddings.forward`` with the position embeddings added out of place."""
    seq_length = (input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1])[1]
    if position_ids is None:
        position_ids = self.position_ids[:, cache_length: seq_length + cache_length]
    if inputs_embeds is None:
        inputs_embeds = self.word_embeddings(input_ids)
    embeddings = inputs_embeds + self.position_embeddings(position_ids)
    return self.dropout(self.LayerNorm(embeddings))


def use_sdpa(model) -> int:
    """Rebind BLIP's attention / text-embedding modules of ``model`` (see the module docstring); returns how many
    attention modules now call SDPA."""
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextEmbeddings, BlipTextSelfAttention

    n = 0
    for m in model.modules():
        if getattr(m, "_explorer_original_forward", None) is not None:
            continue
        if isinstance(m, BlipAttention):
            rebind_forward(m, _vision_attention)
            n += 1
        elif isinstance(m, BlipTextSelfAttention):
            rebind_forward(m, _text_attention)
            n += 1
        elif isinstance(m, BlipTextEmbeddings):
            rebind_forward(m, _text_embeddings)
    return n


class BlipITMAdapter(HFFusionAdapter):
    """A ``BlipForImageTextRetrieval`` read through its ITM head.

    Image token space: the vision tower's ``[CLS] + L patches`` (``N = 1 + L``, ``patch_index = 1..L``), the keys of
    every cross-attention call.  Text token space: the tokenizer's ids (``[CLS] … [SEP]``).
    """

    kind = "cross-attention"
    output_name = "ITM match log-odds"
    architectures = ("BlipForImageTextRetrieval",)

    def __init__(self, model, tokenizer, *, model_id: str, image_mean, image_std, device, dtype):
        super().__init__(model, tokenizer, **self._two_towers(model, tokenizer, model_id=model_id, image_mean=image_mean,
                                                              image_std=image_std, device=device, dtype=dtype))
        self.max_text_tokens = self._tokenizer_limit(model.config.text_config.max_position_embeddings)
        self.sdpa_modules = use_sdpa(model)

    @property
    def text_embeddings(self) -> torch.nn.Module:
        """``text_encoder.embeddings.word_embeddings``: ids ``(B, T)`` → ``(B, T, D)`` (before positions / LayerNorm)."""
        return self.model.text_encoder.embeddings.word_embeddings

    def itm_logits(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 2)`` ITM logits (no match, match): ``BlipForImageTextRetrieval(..., use_itm_head=True).itm_score``."""
        pixels, ids, mask, _ = self.broadcast(pixels, text, text_embeds)
        with self.replaced_embeddings(text_embeds):
            return self.model(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=True).itm_score

    def score(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``logit(match) − logit(no match)`` → ``(B,)``; ``sigmoid`` of it is the ITM match probability."""
        logits = self.itm_logits(pixels, text, text_embeds=text_embeds)
        return logits[:, 1] - logits[:, 0]

    def role(self, call, text: TextInput) -> CallRole | None:
        """Vision self-attention → image ↔ image; text self-attention → text ↔ text; cross-attention → text → image."""
        n = call.name
        Tq, Tk = call.probs.shape[-2:]
        if n.startswith("vision_model."):
            return CallRole("image", "image", torch.arange(Tq), torch.arange(Tk))
        if n.startswith("text_encoder."):
            if ".crossattention." in n:
                return CallRole("text", "image", torch.arange(Tq), torch.arange(Tk))
            if ".attention." in n:
                return CallRole("text", "text", torch.arange(Tq), torch.arange(Tk))
        return None

    def answer_from_score(self, score: float) -> str:
        return match_answer(score, "log-odds")

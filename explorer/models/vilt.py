"""Adapter for ViLT single-stream models: ``ViltForQuestionAnswering`` and ``ViltForImageAndTextRetrieval``.

One transformer reads ``[text tokens] + [image CLS + patches]`` together; every layer's attention is
one joint ``(T + N) × (T + N)`` map (:meth:`ViltAdapter.joint_layout` says which rows are which).

Two transformers 5.x quirks, handled here:

* ViLT's ``visual_embed`` *shuffles* the patch tokens (``torch.multinomial`` without replacement
  picks all of them in random order on every forward), so the joint sequence has no fixed layout.
  The adapter embeds the image itself — the same ``patch conv + position + [CLS]`` arithmetic, at
  the fixed square side ``config.image_size``, patches in row-major order — and passes it as
  ``image_embeds`` with an all-ones patch-level ``pixel_mask``.  The logits are those of
  transformers' forward (attention and pooling do not depend on the order of the patches).
* ViLT computes attention by hand (no SDPA path; cannot switch), so the adapter rebinds
  ``ViltSelfAttention.forward`` of its model to the same arithmetic through SDPA, which
  :class:`~explorer.attention.AttentionCapture` sees (``output_attentions=True`` still works).
"""

from __future__ import annotations

import math

import torch

from .fusion_base import CallRole, JointLayout, TextInput, match_answer
from .fusion_hf import HFFusionAdapter, rebind_forward, sdpa


def _self_attention(self, hidden_states: torch.Tensor, attention_mask=None, output_attentions: bool = False):
    """``ViltSelfAttention.forward`` through SDPA: ``(B, T+N, D)`` → ``((B, T+N, D),)`` (+ probs if asked)."""
    d = self.attention_head_size
    shape = (*hidden_states.shape[:-1], -1, d)
    q = self.query(hidden_states).view(shape).transpose(1, 2)
    k = self.key(hidden_states).view(shape).transpose(1, 2)
    v = self.value(hidden_states).view(shape).transpose(1, 2)
    ctx = sdpa(q, k, v, attention_mask, dropout=self.dropout.p if self.training else 0.0, scale=1.0 / math.sqrt(d))
    ctx = ctx.permute(0, 2, 1, 3).reshape(*hidden_states.shape[:-1], self.all_head_size)
    if not output_attentions:
        return (ctx,)
    with torch.no_grad():
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d)
        probs = torch.softmax(s if attention_mask is None else s + attention_mask, dim=-1)
    return ctx, probs


def use_sdpa(model) -> int:
    """Rebind every ``ViltSelfAttention`` of ``model`` to :func:`_self_attention`; returns how many."""
    from transformers.models.vilt.modeling_vilt import ViltSelfAttention

    n = 0
    for m in model.modules():
        if isinstance(m, ViltSelfAttention) and getattr(m, "_explorer_original_forward", None) is None:
            rebind_forward(m, _self_attention)
            n += 1
    return n


class ViltAdapter(HFFusionAdapter):
    """A ViLT VQA or retrieval model.

    Image token space: ``[image CLS] + L patches`` (``N = 1 + L``, ``patch_index = 1..L``); text token space: the
    tokenizer's ids (``[CLS] … [SEP]``); the joint sequence is text then image.

    Attributes:
        target: VQA only: the answer index whose logit :meth:`score` returns; ``None`` = the model's top answer
            for the current input, fixed by :meth:`set_target`.
    """

    kind = "single-stream"
    architectures = ("ViltForQuestionAnswering", "ViltForImageAndTextRetrieval")

    def __init__(self, model, tokenizer, *, model_id: str, image_mean, image_std, device, dtype):
        c = model.config
        S, P = c.image_size, c.patch_size
        if not isinstance(S, int) or not isinstance(P, int):
            raise ValueError(f"ViLT with non-square image_size / patch_size ({S}, {P}) is not supported.")
        L = (S // P) ** 2
        super().__init__(model, tokenizer, model_id=model_id, image_mean=image_mean, image_std=image_std, device=device,
                         dtype=dtype, image_size=S, patch_size=P, num_image_tokens=1 + L, patch_index=torch.arange(1, L + 1),
                         max_text_tokens=0)
        self.max_text_tokens = self._tokenizer_limit(c.max_position_embeddings)
        self.vqa = hasattr(model, "classifier")
        self.output_name = "answer logit" if self.vqa else "match logit"
        self.target: int | None = None
        self._auto_target: int | None = None
        self.sdpa_modules = use_sdpa(model)

    # ------------------------------------------------------------------ image
    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` → ``(B, 1 + L, D)``: ``[CLS]`` + patch embeddings + positions, patches row-major —
        ``ViltEmbeddings.visual_embed`` for a full square image, without its random patch order."""
        emb = self.model.vilt.embeddings
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"Expected pixels of side {self.image_size}, got {tuple(pixels.shape[-2:])}.")
        x = emb.patch_embeddings(pixels).flatten(2).transpose(1, 2)        # (B, L, D)
        pos = emb.position_embeddings                                       # (1, 1 + L, D)
        cls = (emb.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        return emb.dropout(torch.cat([cls, x + pos[:, 1:]], dim=1))

    # ------------------------------------------------------------------ model
    @property
    def text_embeddings(self) -> torch.nn.Module:
        """``vilt.embeddings.text_embeddings.word_embeddings``: ids ``(B, T)`` → ``(B, T, D)``."""
        return self.model.vilt.embeddings.text_embeddings.word_embeddings

    def logits(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, num_answers)`` VQA logits or ``(B, 1)`` retrieval logits."""
        pixels, ids, mask, B = self.broadcast(pixels, text, text_embeds)
        img = self.image_embeds(pixels)
        patch_mask = torch.ones(img.shape[:2], dtype=torch.long, device=img.device)
        with self.replaced_embeddings(text_embeds):
            return self.model(input_ids=ids, attention_mask=mask, image_embeds=img, pixel_mask=patch_mask).logits

    def set_target(self, pixels: torch.Tensor, text: TextInput) -> None:
        """VQA with ``target=None``: fix the answer to explain as the model's top answer for this (first) input."""
        if self.vqa and self.target is None:
            with torch.no_grad():
                self._auto_target = int(self.logits(pixels[:1], text)[0].argmax())

    @property
    def current_target(self) -> int:
        """The answer index :meth:`score` returns (``target``, else the one :meth:`set_target` chose)."""
        if self.target is not None:
            return int(self.target)
        if self._auto_target is None:
            raise RuntimeError("No answer chosen: set adapter.target or call adapter.set_target(pixels, text) first.")
        return self._auto_target

    def score(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """VQA: ``logits[:, target]``; retrieval: the match logit → ``(B,)``.  With ``target=None`` and no
        :meth:`set_target` yet, the top answer of the first input is chosen now."""
        out = self.logits(pixels, text, text_embeds=text_embeds)
        if not self.vqa:
            return out[:, 0]
        if self.target is None and self._auto_target is None:
            self._auto_target = int(out[0].detach().argmax())
        return out[:, self.current_target]

    def label(self, index: int) -> str:
        return str(self.config.id2label.get(index, self.config.id2label.get(str(index), index)))

    def answer(self, pixels: torch.Tensor, text: TextInput) -> str:
        """VQA: ``"answer: <label> (p = …)"`` with ``p = sigmoid(logit)`` (ViLT's VQA head is trained with binary
        cross-entropy on soft answer scores); the explained target too when it differs.  Retrieval: match / no match."""
        with torch.no_grad():
            out = self.logits(pixels[:1], text)[0]
        if not self.vqa:
            s = float(out[0])
            return match_answer(s, "logit")
        p = torch.sigmoid(out)
        top = int(out.argmax())
        msg = f"answer: {self.label(top)} (p = {float(p[top]):.2f})"
        t = self.target if self.target is not None else self._auto_target
        if t is not None and int(t) != top:
            msg += f"; explaining '{self.label(int(t))}' (p = {float(p[int(t)]):.2f})"
        return msg

    def joint_layout(self, text: TextInput) -> JointLayout:
        """Text tokens at ``0..T-1``, image tokens (``[CLS]`` + patches) at ``T..T+N-1``."""
        T = len(text.tokens)
        return JointLayout(text=torch.arange(T), image=torch.arange(T, T + self.num_image_tokens))

    def role(self, call, text: TextInput) -> CallRole | None:
        """Every encoder self-attention call relates the joint sequence to itself."""
        if not call.name.startswith("vilt.encoder."):
            return None
        Tq, Tk = call.probs.shape[-2:]
        return CallRole("joint", "joint", torch.arange(Tq), torch.arange(Tk))

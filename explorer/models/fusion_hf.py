"""Plumbing shared by the adapters over transformers image+text models (CLIP, BLIP, ViLT).

* :class:`HFFusionAdapter` — tokenisation with the checkpoint's own tokenizer (notes on
  truncation, unknown characters and byte pieces), blanking words, broadcasting a text over a
  pixel batch (or a batch of texts / embeddings over one image), and replacing the output of the
  token-embedding module (:meth:`HFFusionAdapter.replaced_embeddings`).
* :func:`sdpa` — attention through ``torch.nn.functional.scaled_dot_product_attention`` looked up
  at call time, so :class:`~explorer.attention.AttentionCapture` (which swaps that function for
  the duration of a forward) sees it.  BLIP and ViLT compute attention by hand in transformers
  5.x (``matmul`` + ``softmax``, no SDPA path); their adapters rebind those modules' ``forward``
  to an SDPA version of the same arithmetic (see ``blip.py`` / ``vilt.py``).
"""

from __future__ import annotations

import contextlib
import math
import types

import torch
import torch.nn.functional as F

from .fusion_base import FusionAdapter, FusionInputError, TextInput

#: Markers the tokenizers add to display strings (CLIP's end-of-word suffix).
_WORD_END = "</w>"


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, *, dropout: float = 0.0,
         scale: float | None = None) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask) v`` through SDPA.

    Args:
        q: ``(B, H, Tq, d)``; k, v: ``(B, H, Tk, d)``.
        mask: additive float or bool (True = may attend), broadcastable to ``(B, H, Tq, Tk)``; or ``None``.
    Returns:
        ``(B, H, Tq, d)``.
    """
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                          scale=scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))


def rebind_forward(module: torch.nn.Module, fn) -> None:
    """Replace ``module.forward`` by ``fn(module, ...)`` for this instance only (the class is untouched)."""
    module._explorer_original_forward = module.forward
    module.forward = types.MethodType(fn, module)


class HFFusionAdapter(FusionAdapter):
    """Base of the transformers-backed adapters.

    Attributes:
        tokenizer: the checkpoint's tokenizer (a ``PreTrainedTokenizerBase``).
        config: the model's ``config``.
    """

    #: transformers class names this adapter wraps (``config.architectures`` is checked against them).
    architectures: tuple[str, ...] = ()
    #: ``attn_implementation`` to load with (``None``: the model's only / default one).
    attn_implementation: str | None = None

    def __init__(self, model, tokenizer, *, model_id: str, image_mean, image_std, device, dtype, **geometry):
        super().__init__(model, model_id=model_id, model_type=model.config.model_type, image_mean=image_mean,
                         image_std=image_std, device=device, dtype=dtype, **geometry)
        self.tokenizer = tokenizer
        self.config = model.config

    @classmethod
    def _two_towers(cls, model, tokenizer, **kw) -> dict:
        """Keyword arguments for a model with a ViT image tower (``[CLS]`` + patches) and a text tower."""
        vc = model.config.vision_config
        L = (vc.image_size // vc.patch_size) ** 2
        return dict(kw, image_size=vc.image_size, patch_size=vc.patch_size, num_image_tokens=1 + L,
                    patch_index=torch.arange(1, L + 1), max_text_tokens=0)

    # ------------------------------------------------------------------ text
    def _tokenizer_limit(self, model_limit: int) -> int:
        tl = getattr(self.tokenizer, "model_max_length", None)
        return int(min(model_limit, tl)) if isinstance(tl, int) and 0 < tl < 100_000 else int(model_limit)

    def tokenize(self, text: str) -> TextInput:
        """Text → :class:`TextInput` with the checkpoint's tokenizer (special tokens included).

        Raises:
            FusionInputError: not a string, or empty / whitespace-only.
        """
        if not isinstance(text, str):
            raise FusionInputError(f"The text must be a string, got {type(text).__name__}.")
        if not text.strip():
            raise FusionInputError("The text is empty: type a caption or a question (e.g. 'a photo of a red circle "
                                   "left of a blue square').")
        tok = self.tokenizer
        limit = self.max_text_tokens
        whole = tok(text, add_special_tokens=True, truncation=False, verbose=False, return_special_tokens_mask=True)
        full = whole["input_ids"]
        enc = tok(text, add_special_tokens=True, truncation=True, max_length=limit, return_special_tokens_mask=True,
                  return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        special = list(enc["special_tokens_mask"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        notes: list[str] = []
        truncated = len(full) > len(ids)
        if truncated:
            n_drop = len(full) - len(ids)
            kept_content = sum(1 for s in special if not s)
            # content tokens by the same mask as the kept ones: unknown pieces count (and show) as content
            content = [i for i, s in zip(full, whole["special_tokens_mask"]) if not s]
            dropped = tok.decode(content[kept_content:]).strip()
            dropped = dropped if len(dropped) <= 60 else dropped[:57] + "…"
            notes.append(f"The text has {len(full)} tokens (start/end tokens included); this model reads at most {limit}, "
                         f"so the last {n_drop} token(s) were dropped: '{dropped}'.")
        unk = tok.unk_token_id
        unknown = [text[a:b] for i, s, (a, b) in zip(ids, special, offsets) if not s and i == unk]
        if unknown:
            notes.append(f"{len(unknown)} piece(s) of the text are not in the model's vocabulary and read as "
                         f"{tok.unk_token}: " + ", ".join(dict.fromkeys(unknown)) + ".")
        tokens = []
        byte_split: dict[str, int] = {}
        for i, s, (a, b) in zip(ids, special, offsets):
            t = tok.convert_ids_to_tokens(i)
            if not s and i != unk and "\ufffd" in tok.decode([i]):  # a piece of a multi-byte character
                t = text[a:b]
                byte_split[t] = byte_split.get(t, 0) + 1
            tokens.append(t[: -len(_WORD_END)] if t.endswith(_WORD_END) and len(t) > len(_WORD_END) else t)
        if byte_split:
            notes.append("Character(s) outside the vocabulary are read as raw byte pieces (one token per piece): "
                         + ", ".join(f"{c} → {n} pieces" for c, n in byte_split.items()) + ".")
        words = [p for p, s in enumerate(special) if not s]
        if not words:
            raise FusionInputError(f"The text {text!r} has no word the tokenizer keeps (only spaces / control characters?): "
                                   "type a caption or a question.")
        ids_t = torch.tensor([ids], dtype=torch.long, device=self.device)
        return TextInput(text=text, ids=ids_t, attention_mask=torch.ones_like(ids_t), tokens=tokens,
                         words=words, notes=notes, truncated=truncated)

    def blank_token(self) -> tuple[int, str]:
        """``(id, display)`` of the token that blanks a word: the mask token, else unknown / padding when those are
        not the start / end tokens (CLIP's are: its end token pools the sentence), else id 0 (``!`` in CLIP's
        vocabulary, open_clip's padding token)."""
        tok = self.tokenizer
        structural = {tok.bos_token_id, tok.eos_token_id, tok.cls_token_id, tok.sep_token_id} - {None}
        for tid in (tok.mask_token_id, tok.unk_token_id, tok.pad_token_id):
            if tid is not None and tid not in structural:
                return int(tid), tok.convert_ids_to_tokens(int(tid))
        return 0, tok.convert_ids_to_tokens(0)

    def blank_text(self, text: TextInput, positions=None) -> TextInput:
        """The same length of text with the tokens at ``positions`` (default: every word) replaced by :meth:`blank_token`."""
        pos = text.words if positions is None else [int(p) for p in positions]
        bad = [p for p in pos if p not in text.words]
        if bad:
            raise FusionInputError(f"Token(s) {bad} are not words of the text (start / end tokens cannot be blanked).")
        bid, shown = self.blank_token()
        ids = text.ids.clone()
        toks = list(text.tokens)
        for p in pos:
            ids[0, p] = bid
            toks[p] = shown
        return TextInput(text=text.text, ids=ids, attention_mask=text.attention_mask, tokens=toks, words=list(text.words),
                         notes=text.notes + [f"{len(pos)} token(s) replaced by {shown}"], truncated=text.truncated)

    def embedding_positions(self, text: TextInput) -> list[int]:
        """Canonical positions of the rows of :attr:`text_embeddings`' output: every token, specials included."""
        return list(range(len(text.tokens)))

    # ------------------------------------------------------------------ batching
    @staticmethod
    def broadcast(pixels: torch.Tensor, text: TextInput, text_embeds: torch.Tensor | None = None):
        """Bring pixels ``(1|B, 3, S, S)``, ids / mask ``(1|B, T)`` and embeds ``(1|B, T, D)`` to one batch ``B``.

        Returns:
            ``(pixels (B, 3, S, S), ids (B, T), mask (B, T), B)``.
        """
        sizes = {pixels.shape[0], text.ids.shape[0]} | ({text_embeds.shape[0]} if text_embeds is not None else set())
        B = max(sizes)
        if not sizes <= {1, B}:
            raise FusionInputError(f"Batch sizes {sorted(sizes)} do not broadcast (each must be 1 or {B}).")
        ids = text.ids.expand(B, -1)
        mask = text.attention_mask.expand(B, -1)
        return pixels.expand(B, -1, -1, -1), ids, mask, B

    @contextlib.contextmanager
    def replaced_embeddings(self, text_embeds: torch.Tensor | None):
        """Inside, :attr:`text_embeddings` returns ``text_embeds`` ``(B, T, D)`` (a no-op for ``None``)."""
        if text_embeds is None:
            yield
            return

        def hook(_m, _a, out):
            if tuple(out.shape) != tuple(text_embeds.shape):
                raise FusionInputError(f"text_embeds has shape {tuple(text_embeds.shape)}; the token embeddings of this "
                                       f"input have shape {tuple(out.shape)}.")
            return text_embeds.to(out.dtype).clone()  # models may add to it in place; the caller's tensor stays intact

        h = self.text_embeddings.register_forward_hook(hook)
        try:
            yield
        finally:
            h.remove()

    # ------------------------------------------------------------------ capture
    @property
    def capture_root(self) -> torch.nn.Module:
        """The model's top-level children in a plain container: module names are the model's own, and
        :class:`~explorer.attention.AttentionCapture` finds no ``config`` to switch (BLIP / ViLT cannot switch to SDPA
        through transformers; their attention modules already call SDPA, see :func:`rebind_forward`)."""
        return torch.nn.ModuleDict(dict(self.model.named_children()))

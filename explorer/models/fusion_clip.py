"""Adapter for transformers' ``CLIPModel`` as an image+text dual encoder.

The two towers never attend to each other: the score is ``logit_scale.exp() · cos(image, text)``
(CLIP's ``logits_per_image``), and word ↔ region alignment comes from FILIP-style per-token
embeddings (:meth:`CLIPFusionAdapter.token_embeddings`): every patch token and every text token
projected into the shared space the pooled embeddings live in.
"""

from __future__ import annotations

import torch

from .fusion_base import CallRole, TextInput
from .fusion_hf import HFFusionAdapter


def _unit(x: torch.Tensor) -> torch.Tensor:
    """``x / ‖x‖`` over the last axis, computed as CLIP computes it (``_get_vector_norm``)."""
    return x / torch.pow(torch.sum(torch.pow(x, 2), dim=-1, keepdim=True), 0.5)


class CLIPFusionAdapter(HFFusionAdapter):
    """A ``CLIPModel`` (both towers).

    Image token space: the vision tower's sequence ``[CLS] + L patches`` (``N = 1 + L``, ``patch_index = 1..L``).
    Text token space: the tokenizer's ids, ``<|startoftext|> … <|endoftext|>``; the text tower is causal and its
    sentence embedding is the final-layer state of the end token.
    """

    kind = "dual-encoder"
    output_name = "cosine similarity × logit scale"
    architectures = ("CLIPModel",)
    attn_implementation = "sdpa"

    def __init__(self, model, tokenizer, *, model_id: str, image_mean, image_std, device, dtype):
        super().__init__(model, tokenizer, **self._two_towers(model, tokenizer, model_id=model_id, image_mean=image_mean,
                                                              image_std=image_std, device=device, dtype=dtype))
        self.max_text_tokens = self._tokenizer_limit(model.config.text_config.max_position_embeddings)

    # ------------------------------------------------------------------ model
    @property
    def text_embeddings(self) -> torch.nn.Module:
        """``text_model.embeddings.token_embedding``: ids ``(B, T)`` → ``(B, T, D_text)`` (before position embeddings)."""
        return self.model.text_model.embeddings.token_embedding

    @property
    def capture_root(self) -> torch.nn.Module:
        return self.model

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` → unit image embeddings ``(B, P)`` (``get_image_features``, normalised)."""
        return _unit(self.model.get_image_features(pixel_values=pixels).pooler_output)

    def text_features(self, text: TextInput, *, text_embeds: torch.Tensor | None = None, batch: int = 1) -> torch.Tensor:
        """Text → unit text embeddings ``(B, P)``; ``text_embeds (B, T, D_text)`` replaces the token embeddings."""
        B = max(batch, text.ids.shape[0], 1 if text_embeds is None else text_embeds.shape[0])
        with self.replaced_embeddings(text_embeds):
            out = self.model.get_text_features(input_ids=text.ids.expand(B, -1),
                                               attention_mask=text.attention_mask.expand(B, -1)).pooler_output
        return _unit(out)

    def score(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``logit_scale.exp() · cos(image_embeds, text_embeds)`` → ``(B,)``: ``logits_per_image[:, 0]`` of
        ``CLIPModel`` for one text.  Each tower runs once on its own batch (1 or ``B``); the result broadcasts."""
        text_batch = max(text.ids.shape[0], 1 if text_embeds is None else text_embeds.shape[0])
        img = self.image_features(pixels)                                 # (Bp, P)
        txt = self.text_features(text, text_embeds=text_embeds, batch=text_batch)  # (Bt, P)
        if {img.shape[0], txt.shape[0]} - {1, max(img.shape[0], txt.shape[0])}:
            raise ValueError(f"Image batch {img.shape[0]} and text batch {txt.shape[0]} do not broadcast.")
        return (img * txt).sum(-1) * self.model.logit_scale.exp()

    def image_token_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every image token of the first image in the shared space: the vision tower's last hidden state →
        ``post_layernorm`` → ``visual_projection`` → unit length: ``(N, P)`` (row 0, ``[CLS]``, is
        ``get_image_features`` normalised; rows :attr:`patch_index` are the patches, row-major)."""
        vm = self.model.vision_model
        h = vm(pixel_values=pixels[:1]).last_hidden_state[0]                     # (N, Dv)
        return _unit(self.model.visual_projection(vm.post_layernorm(h)))

    def text_token_embeddings(self, text: TextInput) -> torch.Tensor:
        """Every text token in the shared space: the text tower's last hidden state (CLIP applies ``final_layer_norm``
        to every token) → ``text_projection`` → unit length: ``(T, P)`` (the end-token row is ``get_text_features``
        normalised).  The text tower is causal: token ``t`` has seen tokens ``0..t`` only."""
        t = self.model.text_model(input_ids=text.ids[:1], attention_mask=text.attention_mask[:1]).last_hidden_state[0]
        return _unit(self.model.text_projection(t))

    def token_embeddings(self, pixels: torch.Tensor, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """FILIP-style per-token embeddings (Yao et al. 2021) of the first image and the text, in the shared space:
        ``(patches (L, P), text tokens (T, P))``, unit length (see :meth:`image_token_embeddings`,
        :meth:`text_token_embeddings`)."""
        return self.image_token_embeddings(pixels)[self.patch_index.to(pixels.device)], self.text_token_embeddings(text)

    def alignment_embeddings(self, pixels: torch.Tensor, text: TextInput) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One pass of each tower for the alignment view: ``(patches (L, P), text tokens (T, P), score)``; the score is
        ``logit_scale.exp() · cos`` of the ``[CLS]`` row and the pooled end-token row (what :meth:`score` returns)."""
        img = self.image_token_embeddings(pixels)
        txt = self.text_token_embeddings(text)
        ids = text.ids[0]
        eos = self.model.config.text_config.eos_token_id
        pooled = int(ids.argmax()) if eos == 2 else int((ids == eos).int().argmax())  # transformers' pooling rule
        score = float((img[0] * txt[pooled]).sum() * self.model.logit_scale.exp())
        return img[self.patch_index.to(pixels.device)], txt, score

    def answer_from_score(self, s: float) -> str:
        scale = float(self.model.logit_scale.detach().exp())
        return f"similarity {s / scale:+.3f} (× logit scale {scale:.1f} = {s:.2f})"

    def intervention_layers(self) -> list:
        """The towers never attend to each other: the image tower's self-attention layers are the ones ablated."""
        return [(f"vision_model.encoder.layers.{i}.self_attn", layer.self_attn)
                for i, layer in enumerate(self.model.vision_model.encoder.layers)]

    def role(self, call, text: TextInput) -> CallRole | None:
        """Vision self-attention → image ↔ image (``[CLS]`` + patches); text self-attention → text ↔ text."""
        Tq, Tk = call.probs.shape[-2:]
        if call.name.startswith("vision_model."):
            return CallRole("image", "image", torch.arange(Tq), torch.arange(Tk))
        if call.name.startswith("text_model."):
            return CallRole("text", "text", torch.arange(Tq), torch.arange(Tk))
        return None

"""What every image+text adapter offers the alignment code (compute layer; no plotting).

An adapter hides one model family's quirks behind a few calls:

* :meth:`FusionAdapter.tokenize` — text → :class:`TextInput` (ids, display tokens, which tokens
  a user can click, truncation notes).  Empty text raises :class:`FusionInputError`.
* :meth:`FusionAdapter.score` — normalised pixels ``(B, 3, S, S)`` + text → the model's output
  scalar ``(B,)`` (match logit, cosine similarity × scale, answer logit), differentiable; the
  token embeddings can be replaced (captum's LayerIntegratedGradients does so through
  :attr:`FusionAdapter.text_embeddings`).
* :meth:`FusionAdapter.role` — what one captured attention call relates: text → image,
  image → text, image → image, text → text, or one joint sequence (single-stream models); and
  where each axis's entries sit in the canonical text / image token spaces.

Canonical spaces: *text* = the :class:`TextInput` tokens ``0..T-1``; *image* = the image
encoder's token sequence ``0..N-1`` of which :attr:`FusionAdapter.patch_index` are the
``gh·gw`` patches in row-major order (the rest are CLS / register tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import PixelModel


class FusionInputError(ValueError):
    """The text or image cannot be given to this model; the message says why and what to do."""


@dataclass
class TextInput:
    """A tokenised text.

    Attributes:
        text: what the user typed.
        ids: ``(1, T)`` long token ids (on the model's device).
        attention_mask: ``(1, T)`` long, 1 = real token.
        tokens: ``T`` display strings (word pieces, ``[CLS]``…).
        words: positions (into ``tokens``) a user can click: content tokens, no specials.
        notes: what happened to the text on the way (truncation, unknown words, normalisation).
        truncated: the text was longer than the model's limit and was cut.
    """

    text: str
    ids: torch.Tensor
    attention_mask: torch.Tensor
    tokens: list[str]
    words: list[int]
    notes: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class CallRole:
    """What a captured attention call ``(B, H, Tq, Tk)`` relates.

    Attributes:
        query, key: ``"text"``, ``"image"`` or ``"joint"`` (one sequence holding both).
        q_pos, k_pos: ``(Tq,)`` / ``(Tk,)`` long: canonical position of each axis entry in its
            space (``-1`` = an entry outside it, e.g. a learned "none" slot).  For ``"joint"`` the
            canonical space is the joint sequence itself and ``q_pos`` is ``arange``.
    """

    query: str
    key: str
    q_pos: torch.Tensor
    k_pos: torch.Tensor


@dataclass(frozen=True)
class JointLayout:
    """Single-stream models: where text tokens and image tokens sit in the joint sequence."""

    text: torch.Tensor   # (T,) long
    image: torch.Tensor  # (N,) long


class FusionAdapter(PixelModel):
    """Base class of image+text adapters.

    Attributes:
        model: the torch module (eval mode).
        model_id: name, hub id or folder it was loaded from.
        kind: ``"cross-attention"``, ``"single-stream"`` or ``"dual-encoder"``.
        output_name: what :meth:`score` returns, for labels.
        image_size, patch_size, grid ``(gh, gw)``, num_patches ``L``.
        patch_index: ``(L,)`` long, positions of the patches in the image token sequence.
        num_image_tokens: ``N``, length of the image token sequence.
        max_text_tokens: the model's text length limit (tokens, specials included).
    """

    family = "fusion"
    shape_error = FusionInputError
    kind = "cross-attention"
    output_name = "match logit"

    def __init__(self, model, *, model_id: str, model_type: str, image_size: int, patch_size: int, image_mean, image_std,
                 num_image_tokens: int, patch_index, max_text_tokens: int, device, dtype):
        self.model = model.eval()
        self.model_id = model_id
        self.model_type = model_type
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.grid = (self.image_size // self.patch_size, self.image_size // self.patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.num_image_tokens = int(num_image_tokens)
        self.patch_index = torch.as_tensor(patch_index, dtype=torch.long)
        self.max_text_tokens = int(max_text_tokens)
        self.device = torch.device(device)
        self.dtype = dtype
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self._sha: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def info(self):
        """:class:`explorer.models.base.ModelInfo` for results and sidecars (family ``"fusion"``)."""
        from .base import ModelInfo

        return ModelInfo(model_id=self.model_id, family=self.family, model_type=self.model_type, device=str(self.device),
                         dtype=str(self.dtype).replace("torch.", ""), image_size=self.image_size, patch_size=self.patch_size,
                         norm_pix_loss=False, weights_sha256=self.weights_sha256)

    # ------------------------------------------------------------------ inputs
    def blank_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The "no image" input used when the image modality is masked: the mean colour (zeros after normalisation)."""
        return torch.zeros_like(pixels)

    def tokenize(self, text: str) -> TextInput:
        """Text → :class:`TextInput`; raises :class:`FusionInputError` on empty text."""
        raise NotImplementedError

    def blank_text(self, text: TextInput, positions=None) -> TextInput:
        """The same text with the tokens at ``positions`` (default: every clickable word) replaced by
        the model's mask / unknown token: the input used to mask the text modality or one word."""
        raise NotImplementedError

    def replace_word(self, text: TextInput, position: int, new_word: str) -> TextInput:
        """Counterfactual: the text with the word at token ``position`` replaced (re-tokenised)."""
        words = self.word_strings(text)
        pos_to_word = {p: k for k, p in enumerate(text.words)}
        if position not in pos_to_word:
            raise FusionInputError(f"Token {position} is not a word of the text.")
        parts = text.text.split()
        k = pos_to_word[position]
        if len(parts) == len(words):
            parts[k] = new_word
            return self.tokenize(" ".join(parts))
        toks = [text.tokens[p] for p in text.words]
        toks[k] = new_word
        return self.tokenize(" ".join(toks))

    def word_strings(self, text: TextInput) -> list[str]:
        """Display strings of the clickable words, in order."""
        return [text.tokens[p] for p in text.words]

    # ------------------------------------------------------------------ model
    def score(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``pixels (B, 3, S, S)`` normalised + text (broadcast over ``B``) → ``(B,)`` output scalar.

        ``text_embeds`` ``(B, T, D)``: replaces the output of :attr:`text_embeddings`.
        """
        raise NotImplementedError

    @property
    def text_embeddings(self) -> torch.nn.Module:
        """The module whose output ``(B, T, D)`` is the per-token text input embedding."""
        raise NotImplementedError

    def embed_text(self, text: TextInput) -> torch.Tensor:
        """``(1, T', D)``: the output of :attr:`text_embeddings` for this text (what ``text_embeds`` replaces)."""
        return self.text_embeddings(text.ids)

    def embedding_positions(self, text: TextInput) -> list[int]:
        """Canonical text positions of the ``T'`` rows of :meth:`embed_text` (default: all ``T`` tokens)."""
        return list(range(len(text.tokens)))

    def set_target(self, pixels: torch.Tensor, text: TextInput) -> None:
        """Fix what :meth:`score` measures for this input (e.g. the VQA answer); no-op for match models."""

    @property
    def capture_root(self) -> torch.nn.Module:
        """The module to wrap in :class:`~explorer.attention.AttentionCapture` for one forward."""
        return self.model

    def role(self, call, text: TextInput) -> CallRole | None:
        """What a captured call relates (``None``: ignore it)."""
        raise NotImplementedError

    def intervention_layers(self) -> "list[tuple[str, torch.nn.Module]] | None":
        """``[(name, module)]``: one module per layer whose heads the interventions ablate and patch (each makes one
        attention call per forward).  ``None`` (default): the cross-modal layers the alignment views show."""
        return None

    def joint_layout(self, text: TextInput) -> JointLayout | None:
        """Single-stream models: positions of text and image tokens in the joint sequence."""
        return None

    def token_embeddings(self, pixels: torch.Tensor, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """Dual encoders: ``(patch embeddings (L, D), token embeddings (T, D))`` in the shared space, L2-normalised."""
        raise NotImplementedError(f"{type(self).__name__} is not a dual encoder.")

    def answer_from_score(self, score: float) -> str | None:
        """The readable output when the score alone makes it (match models); ``None``: :meth:`answer` needs a forward."""
        return None

    def answer(self, pixels: torch.Tensor, text: TextInput) -> str:
        """A human-readable output: ``"match (p = 0.93)"``, ``"answer: blue (p = 0.71)"``."""
        with torch.no_grad():
            s = float(self.score(pixels[:1], text)[0])
        return self.answer_from_score(s) or f"{self.output_name} = {s:.3f}"


def match_answer(score: float, unit: str = "logit") -> str:
    """``"match (p = 0.93, logit +2.61)"`` for a binary match logit."""
    import math

    return f"{'match' if score > 0 else 'no match'} (p = {1.0 / (1.0 + math.exp(-score)):.2f}, {unit} {score:+.2f})"

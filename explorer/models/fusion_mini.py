"""Adapter for our own mini fusion model (``data/models/mini-fusion``): image patches query the words."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import torch

from .mini.fusion import FusionConfig, MiniFusion
from .fusion_base import CallRole, FusionAdapter, FusionInputError, TextInput, match_answer

NONE_TOKEN = "[none]"


class MiniFusionAdapter(FusionAdapter):
    """The mini model's text space is ``[none] + words``: token 0 is the learned "none of these
    words" key of the fusion layers, so a per-word map is column ``1 + k`` of the fusion attention."""

    kind = "cross-attention"
    output_name = "match logit"

    def __init__(self, model: MiniFusion, *, model_id: str, device, dtype):
        c = model.config
        super().__init__(model, model_id=model_id, model_type="mini_fusion", image_size=c.image_size,
                         patch_size=c.patch_size, image_mean=c.image_mean, image_std=c.image_std,
                         num_image_tokens=(c.image_size // c.patch_size) ** 2,
                         patch_index=torch.arange((c.image_size // c.patch_size) ** 2),
                         max_text_tokens=c.max_words + 1, device=device, dtype=dtype)
        self.config = c
        self._index = {w: i for i, w in enumerate(c.vocab)}

    @classmethod
    def from_folder(cls, folder: str | Path, *, model_id: str | None = None, device="cpu", dtype=torch.float32) -> "MiniFusionAdapter":
        """Load ``config.json`` + ``model.safetensors`` (no pickle).

        Raises:
            ModelLoadError: no weights, damaged weights (not a valid safetensors file), or weights that do not fit
                the config.
        """
        from .hub import load_safetensors_into

        folder = Path(folder)
        d = json.loads((folder / "config.json").read_text())
        d.pop("model_type", None)
        model = load_safetensors_into(MiniFusion(FusionConfig.from_dict(d)), folder)
        return cls(model.to(device, dtype), model_id=model_id or folder.name, device=device, dtype=dtype)

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str) -> TextInput:
        if not isinstance(text, str):
            raise FusionInputError(f"The text must be a string, got {type(text).__name__}.")
        notes: list[str] = []
        clean = unicodedata.normalize("NFKC", text)
        words = clean.lower().split()
        if not words:
            raise FusionInputError("The text is empty: type a caption or a question (e.g. 'a red circle left of a blue square').")
        limit = self.config.max_words
        truncated = len(words) > limit
        if truncated:
            notes.append(f"The text has {len(words)} words; this model reads at most {limit}, so the last "
                         f"{len(words) - limit} ({' '.join(words[limit:])}) were dropped.")
            words = words[:limit]
        unknown = [w for w in words if w not in self._index]
        if unknown:
            notes.append(f"{len(unknown)} word(s) are not in the model's {len(self._index) - 2}-word vocabulary and read as [unk]: "
                         + ", ".join(dict.fromkeys(unknown)) + ".")
        ids = torch.tensor([[0] + [self._index.get(w, 1) for w in words]], device=self.device)
        return TextInput(text=text, ids=ids, attention_mask=torch.ones_like(ids), tokens=[NONE_TOKEN] + words,
                         words=list(range(1, len(words) + 1)), notes=notes, truncated=truncated)

    def blank_text(self, text: TextInput, positions=None) -> TextInput:
        pos = text.words if positions is None else list(positions)
        ids = text.ids.clone()
        toks = list(text.tokens)
        for p in pos:
            ids[0, p] = 1
            toks[p] = "[unk]"
        return TextInput(text=text.text, ids=ids, attention_mask=text.attention_mask, tokens=toks, words=text.words,
                         notes=text.notes + [f"{len(pos)} word(s) masked as [unk]"], truncated=text.truncated)

    # ------------------------------------------------------------------ model
    def score(self, pixels: torch.Tensor, text: TextInput, *, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        B = max(pixels.shape[0], 1 if text_embeds is None else text_embeds.shape[0])
        ids = text.ids[:, 1:].expand(B, -1)
        pad = torch.zeros_like(ids, dtype=torch.bool)
        if pixels.shape[0] != B:
            pixels = pixels.expand(B, -1, -1, -1)
        return self.model(pixels, ids, pad, embeds=text_embeds)

    @property
    def text_embeddings(self) -> torch.nn.Module:
        return self.model.token

    def embed_text(self, text: TextInput) -> torch.Tensor:
        return self.model.token(text.ids[:, 1:])

    def embedding_positions(self, text: TextInput) -> list[int]:
        """Canonical positions of the rows of :attr:`text_embeddings`' output (the words; not ``[none]``)."""
        return list(range(1, len(text.tokens)))

    def role(self, call, text: TextInput) -> CallRole | None:
        n = call.name
        Tq, Tk = call.probs.shape[-2:]
        if n.startswith(("image_encoder", "image_after")):
            a = torch.arange(Tq)
            return CallRole("image", "image", a, a)
        if n.startswith("text_encoder"):
            a = torch.arange(1, Tq + 1)
            return CallRole("text", "text", a, a)
        if n.startswith("fusion"):
            return CallRole("image", "text", torch.arange(Tq), torch.arange(Tk))
        return None

    def answer_from_score(self, score: float) -> str:
        return match_answer(score, "logit")

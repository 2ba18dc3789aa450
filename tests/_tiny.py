"""Tiny random-weight models saved with save_pretrained: the same code path as a hub id, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            decoder_hidden_size=24, decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=48)


def tiny_config(**overrides) -> ViTMAEConfig:
    return ViTMAEConfig(**{**TINY, **overrides})


def save_tiny_mae(folder: Path, seed: int = 0, **overrides) -> Path:
    """A random ``ViTMAEForPreTraining`` written by ``save_pretrained`` into ``folder``."""
    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(copy.deepcopy(tiny_config(**overrides)))
    # Random (not zero) mask token and decoder positions so that hidden patches really differ.
    with torch.no_grad():
        model.decoder.mask_token.normal_(0, 0.5)
        model.decoder.decoder_pos_embed.normal_(0, 0.5)
        model.vit.embeddings.position_embeddings.normal_(0, 0.5)  # token order matters (transformers 5 leaves these 0)
    model.save_pretrained(folder)
    return folder


def eager_reference(folder, cls_name: str):
    """A second, untouched copy of a saved checkpoint as ``transformers.<cls_name>`` with eager attention (what
    ``output_attentions`` reads): the reference the adapters' own forwards are compared with."""
    import transformers

    return getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager").eval()


def random_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image ``(size, size, 3)`` float32 in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.random((4, 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def save_tiny_vit(folder: Path, seed: int = 0, num_labels: int = 3, **overrides) -> Path:
    """A random ``ViTForImageClassification`` written by ``save_pretrained``."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    cfg = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
               num_labels=num_labels)
    model = ViTForImageClassification(ViTConfig(**{**cfg, **overrides}))
    with torch.no_grad():  # transformers 5 leaves position embeddings at zero: give tokens an order
        model.vit.embeddings.position_embeddings.normal_(0, 0.5)
        model.vit.embeddings.cls_token.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A random ``CLIPModel`` (both towers) written by ``save_pretrained``."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=16),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=64),
        projection_dim=16)
    model = CLIPModel(cfg)
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.weight.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- image + text models
#: Words every tiny image+text tokenizer knows (lower case; anything else is unknown / split).
TINY_WORDS = ("a", "an", "the", "photo", "of", "red", "green", "blue", "circle", "square", "triangle", "left", "right",
              "above", "below", "small", "big", "is", "what", "colour", "color", "shape", "on", "and", "with", "dog",
              "cat", "?", ".", ",")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte → printable character table (the order of the first 256 vocabulary entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_vocab(folder: Path, words=TINY_WORDS) -> None:
    """``vocab.json`` + ``merges.txt`` laid out like CLIP's: 256 byte characters, the same with ``</w>``, one merge chain
    per word, then ``<|startoftext|>`` and ``<|endoftext|>`` (so id 0 is ``!`` as in the real vocabulary)."""
    import json

    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[str] = []
    for w in words:
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            m = f"{pieces[0]} {pieces[1]}"
            if m not in merges:
                merges.append(m)
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    vocab = list(dict.fromkeys(vocab)) + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def write_bert_vocab(folder: Path, words=TINY_WORDS) -> None:
    """A BERT ``vocab.txt``: the five specials, the words, a few ``##`` pieces."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = ["##s", "##ed", "##ing", "##ish"]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *pieces]) + "\n")


def save_tiny_clip_pair(folder: Path, seed: int = 0, max_text: int = 16) -> Path:
    """A random ``CLIPModel`` + its ``CLIPTokenizer`` + ``CLIPImageProcessor`` (32 px, patch 8), all via ``save_pretrained``."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = Path(folder)
    write_clip_vocab(folder)
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=max_text)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=max_text, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64),
        projection_dim=16)
    model = CLIPModel(cfg)
    with torch.no_grad():  # token order matters
        model.vision_model.embeddings.position_embedding.weight.normal_(0, 0.5)
        model.text_model.embeddings.position_embedding.weight.normal_(0, 0.5)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                          image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]
                          ).save_pretrained(folder)
    return folder


def save_tiny_blip_itm(folder: Path, seed: int = 0, max_text: int = 16) -> Path:
    """A random ``BlipForImageTextRetrieval`` + ``BertTokenizer`` + ``BlipImageProcessor`` (32 px, patch 8)."""
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = Path(folder)
    write_bert_vocab(folder)
    tok = BertTokenizer.from_pretrained(folder, model_max_length=512)
    torch.manual_seed(seed)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=max_text, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                         eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id, initializer_range=0.2),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, initializer_range=0.2),
        image_text_hidden_size=16)
    model = BlipForImageTextRetrieval(cfg)
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.normal_(0, 0.5)
        model.text_encoder.embeddings.position_embeddings.weight.normal_(0, 0.5)
        model.itm_head.weight.normal_(0, 0.5)  # a score that moves visibly with the inputs
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


TINY_ANSWERS = ("yes", "no", "red", "green", "blue", "circle", "square")


def save_tiny_vilt_vqa(folder: Path, seed: int = 0, max_text: int = 16, retrieval: bool = False) -> Path:
    """A random ``ViltForQuestionAnswering`` (or ``ViltForImageAndTextRetrieval``) + ``BertTokenizer`` +
    ``ViltImageProcessor``: 32 px, patch 8, text limit ``max_text`` tokens."""
    from transformers import BertTokenizer, ViltConfig, ViltForImageAndTextRetrieval, ViltForQuestionAnswering
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    folder = Path(folder)
    write_bert_vocab(folder)
    tok = BertTokenizer.from_pretrained(folder, model_max_length=max_text)
    torch.manual_seed(seed)
    cfg = ViltConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     image_size=32, patch_size=8, max_position_embeddings=max_text, pad_token_id=tok.pad_token_id,
                     initializer_range=0.2,  # weights large enough that every token visibly moves the output
                     id2label=dict(enumerate(TINY_ANSWERS)), label2id={a: i for i, a in enumerate(TINY_ANSWERS)})
    model = (ViltForImageAndTextRetrieval if retrieval else ViltForQuestionAnswering)(cfg)
    with torch.no_grad():  # transformers 5 leaves the image positions and the image [CLS] at zero
        emb = model.vilt.embeddings
        emb.position_embeddings.normal_(0, 0.5)
        emb.cls_token.normal_(0, 0.5)
        emb.text_embeddings.position_embeddings.weight.normal_(0, 0.5)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    ViltImageProcessorPil(size={"shortest_edge": 32}, size_divisor=8).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- multimodal MAE
from explorer.modalities import Modality  # noqa: E402

RGB = Modality("rgb", "image", (32, 32, 3), (8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "intensity")
DEPTH = Modality("depth", "depth", (32, 32), (8, 8), (5.0,), (2.0,), "metres")
VIDEO = Modality("video", "video", (4, 16, 16, 3), (2, 8, 8), (0.5,) * 3, (0.25,) * 3)
AUDIO = Modality("audio", "spectrogram", (32, 48), (16, 16), (-5.0,), (3.0,), "log mel power")


def save_tiny_multimae(folder, specs, task="rgbd", seed=0):
    """A random-weight MiniMultiMAE over ``specs`` saved as safetensors + config.json in ``folder``."""
    import json

    import torch
    from safetensors.torch import save_file

    from explorer.models.mini.multimae import MiniMultiMAE, MultiMAEConfig

    torch.manual_seed(seed)
    cfg = MultiMAEConfig(modalities=[s.to_dict() for s in specs], dim=32, depth=1, heads=2, dec_dim=32, dec_depth=1, dec_heads=2,
                         task=task)
    model = MiniMultiMAE(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    return folder


def save_tiny_mini_fusion(folder: Path, seed: int = 0) -> Path:
    """A random-weight mini fusion model (width 32, 2 heads) written like the shipped one: safetensors + config.json."""
    import json

    from safetensors.torch import save_file

    from explorer.models.mini.fusion import FusionConfig, MiniFusion

    torch.manual_seed(seed)
    cfg = FusionConfig(dim=32, heads=2)
    model = MiniFusion(cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "mini_fusion", **cfg.to_dict()}))
    return folder


def save_tiny_videomae(folder, seed: int = 0) -> Path:
    """A random ``VideoMAEForPreTraining`` (32 px, 4 frames, tubelets of 2, patches of 8) saved in ``folder``."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(seed)
    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=4, intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=4, decoder_intermediate_size=64, norm_pix_loss=False)
    VideoMAEForPreTraining(cfg).save_pretrained(folder)
    return Path(folder)


class Points:
    """What plotly hands a click callback: model-pixel coordinates of the clicked point."""

    def __init__(self, xs=(0,), ys=(0,), inds=(0,)):
        self.xs, self.ys, self.point_inds = list(xs), list(ys), list(inds)


def export_png(app, folder, name):
    """Export the view on screen of ``app`` as PNG only (plus its sidecar) into ``folder`` under ``name``; the result."""
    panel = app.export_panel
    panel.folder.value, panel.name.value = str(folder), name
    for fmt in ("pdf", "svg"):
        panel.formats[fmt].value = False
    res = panel.export()
    assert res is not None, panel.status.value
    return res
